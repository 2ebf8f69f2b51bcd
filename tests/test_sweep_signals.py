"""A sweep driver that dies takes its pool workers with it (each held ~140 MB, forever), and
SIGTERM stops a sweep as Ctrl-C does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_cluster import subprocess_env  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# 8 runs of ~0.3-1 s wall each: still running when the driver is killed.
EXP = {
    "name": "long",
    "workload": "read_hits",
    "designs": ["old", "new"],
    "overrides": {"machine.cores": 2, "duration": "40ms", "warmup": "0.2ms"},
    "replications": 4,
}


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, by /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)
    return got


def start(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """A sweep on 2 local workers, once both run; and its workers' pids."""
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(EXP))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pmsim", "sweep", str(path), "--out", str(tmp_path / "out")]
        + ["--workers", "2", "--quiet"],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    workers = wait_for(lambda: len(children(proc.pid)) >= 2 and children(proc.pid), 60, "workers")
    time.sleep(0.3)  # into their first runs
    return proc, workers


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_end_with_their_driver(tmp_path, sig):
    proc, workers = start(tmp_path)
    try:
        os.kill(proc.pid, sig)  # the driver alone, not its process group
        proc.wait(timeout=30)
        wait_for(lambda: not any(alive(w) for w in workers), 5, "the workers to exit")
    finally:
        for w in [proc.pid, *workers]:
            if alive(w):
                os.kill(w, signal.SIGKILL)
        proc.wait()
    if sig == signal.SIGTERM:  # as Ctrl-C: one line, status 130, a resumable folder
        err = proc.stderr.read()
        assert proc.returncode == 130, err
        assert err.splitlines() == [
            "pmsim sweep: interrupted; finished runs are written, run the same command again "
            "to resume"
        ]
