"""A sweep's folder is never someone else's: a folder pmsim sweep did not write is refused
whole (a resume deletes files, --no-resume more), two sweeps never share one folder, and a run
whose files went missing is counted, not passed over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import pmsim
from pmsim.cli import main
from pmsim.errors import ConfigError
from pmsim.sweeps.store import SweepStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_cluster import subprocess_env  # noqa: E402


def tiny(**changes) -> dict:
    exp = {
        "name": "tiny",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "overrides": {"machine.cores": 2, "duration": "1ms", "warmup": "0.2ms"},
        "replications": 2,
        "seed": 3,
    }
    return {**exp, **changes}


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _foreign(tmp_path: Path, kind: str) -> Path:
    """A folder holding someone's files that look like a sweep's."""
    d = tmp_path / kind
    (d / "runs" / "ops").mkdir(parents=True)
    (d / "runs" / "ops" / "thesis.tex").write_text("chapter 1")
    (d / "tables").mkdir()
    (d / "tables" / "budget.parquet").write_bytes(b"numbers")
    (d / "summary.parquet").write_bytes(b"mine")
    if kind == "other_manifest":  # some other tool's manifest
        (d / "manifest.json").write_text(json.dumps({"name": "webapp", "version": 3}))
    if kind == "nameless_manifest":  # pmsim's format and digest, but no experiment name
        (d / "manifest.json").write_text(
            json.dumps({"format": "pmsim-sweep/1", "experiment": {}, "code_digest": "x"})
        )
    if kind == "broken_manifest":
        (d / "manifest.json").write_text("{not json")
    return d


@pytest.mark.parametrize(
    "kind", ["sweep_like", "other_manifest", "nameless_manifest", "broken_manifest"]
)
@pytest.mark.parametrize("resume", [True, False])
def test_a_folder_pmsim_did_not_write_is_refused_and_kept(tmp_path, capsys, kind, resume):
    d = _foreign(tmp_path, kind)
    before = snapshot(d)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny()))
    args = ["sweep", str(path), "--out", str(d), "--workers", "1", "--quiet"]
    assert main(args + ([] if resume else ["--no-resume"])) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmsim: error: --out:") and len(err.splitlines()) == 1
    assert "not a sweep's folder" in err
    assert snapshot(d) == before


def test_an_experiments_out_pointing_at_a_foreign_folder_is_refused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "letter.txt").write_text("dear")
    (home / "runs").mkdir()
    work = home / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = snapshot(home)
    with pytest.raises(ConfigError, match="not a sweep's folder"):
        pmsim.sweep(tiny(out="../.."), workers=1, progress=False, resume=False)
    assert snapshot(home) == before


def test_a_sweep_folder_from_before_the_marker_resumes(tmp_path):
    out = tmp_path / "out"
    pmsim.sweep(tiny(), out, workers=1, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["format"]  # as pmsim wrote it before the marker (results/ holds such folders)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert len(pmsim.sweep(tiny(), out, workers=1, progress=False).summary) == 4


def test_a_sweeps_own_folder_resumes_and_is_replaced(tmp_path):
    out = tmp_path / "out"
    pmsim.sweep(tiny(), out, workers=1, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == "pmsim-sweep/1" and manifest["experiment"]["name"] == "tiny"
    (out / "report.md").write_text("a report")  # pmsim report writes beside the tables
    res = pmsim.sweep(tiny(name="other"), out, workers=1, progress=False, resume=False)
    assert res.experiment.name == "other" and len(res.summary) == 4


def test_a_second_sweep_on_a_folder_in_use_is_refused_and_the_first_loses_nothing(tmp_path):
    # The first sweep: 8 runs of ~0.1-0.3 s each in one process, started on the command line.
    first = tiny(replications=4, overrides={"machine.cores": 2, "duration": "15ms"})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(first))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pmsim", "sweep", str(path), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1"],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not list((out / "runs" / "summary").glob("*.parquet")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the first sweep wrote no run"
            time.sleep(0.02)
        assert proc.poll() is None, "the first sweep ended before the second started"
        # The second: the same experiment edited to fewer replications, asked to start over.
        path.write_text(yaml.safe_dump({**first, "replications": 1}))
        second = subprocess.run(
            [*cmd, "--workers", "1", "--no-resume"],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith("pmsim: error: --out:") and "in use" in second.stderr
        assert len(second.stderr.splitlines()) == 1
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "8 runs written, 0 failed;" in stdout
    assert len(list((out / "runs" / "summary").glob("*.parquet"))) == 8
    # The lock went with the process: the folder is free again.
    assert len(pmsim.sweep(first, out, workers=1, progress=False).summary) == 8


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pmsim.sweeps.store import SweepStore; "
            f"SweepStore({str(out)!r}).lock(); print('locked', flush=True); time.sleep(600)",
        ],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match="in use by another sweep"):
            SweepStore(out).lock()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    store = SweepStore(out)
    store.lock()
    store.unlock()


def test_runs_whose_files_vanish_are_counted_missing(tmp_path, monkeypatch, capsys):
    written = []
    real = SweepStore.write_run

    def forgetful(self, plan, output):  # as if someone deleted the first run's files
        real(self, plan, output)
        if not written:
            for f in self.runs.glob(f"*/{plan.run_id}.*"):
                f.unlink()
        written.append(plan.run_id)

    monkeypatch.setattr(SweepStore, "write_run", forgetful)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny()))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "3 runs written, 0 failed, 1 missing" in printed
    assert f"missing: run {written[0]}" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs_missing"] == 1 and manifest["runs_ok"] == 3
    assert main(["report", str(out), "--no-figures"]) == 0
    assert "3 runs finished, 0 failed, 1 missing" in (out / "report.md").read_text()
    monkeypatch.undo()
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 0
    assert "4 runs written, 0 failed;" in capsys.readouterr().out


def test_where_a_folder_cannot_be_locked_a_file_in_it_is(tmp_path, monkeypatch):
    """NFS emulates flock with POSIX locks, which a folder opened read-only cannot take."""
    import errno
    import fcntl
    import stat

    from pmsim.sweeps import store as store_mod

    real = fcntl.flock

    def nfs_flock(fd, op):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd, op)

    monkeypatch.setattr(store_mod.fcntl, "flock", nfs_flock)
    out = tmp_path / "out"
    first = SweepStore(out)
    first.lock()
    with pytest.raises(ConfigError, match="in use by another sweep"):
        SweepStore(out).lock()
    assert [p.name for p in out.iterdir()] == [".pmsim.lock"]
    first.unlock()
    res = pmsim.sweep(tiny(), out, workers=1, progress=False)  # the lock file is no one's data
    assert len(res.summary) == 4
