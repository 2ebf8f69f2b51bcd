"""Limits: a run or a sweep is estimated before it starts. What cannot fit this machine's
memory is refused; what is large (hours, half the memory, 100k runs) stops with its estimate
unless --allow-large; --workers is capped at the usable CPUs and the runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pmsim
from pmsim import limits
from pmsim.cli import main
from pmsim.errors import ConfigError
from pmsim.sweeps import api, plan
from pmsim.sweeps.executors import default_workers
from pmsim.sweeps.spec import experiments, load_experiment
from pmsim.workload.load import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_cluster import subprocess_env  # noqa: E402

GB = 1e9


@pytest.fixture
def machine_with(monkeypatch):
    """Pretend this machine has ``gb`` of memory available."""

    def set_memory(gb: float):
        monkeypatch.setattr(limits, "available_memory", lambda: gb * GB)

    return set_memory


def one_line(capsys, got: int, status: int = 2) -> str:
    err = capsys.readouterr().err
    assert got == status and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["files.0.pages=10000000"], "needs 3.14 GB of memory (10000000 pages, 16 threads"),
        (["processes.0.count=1000"], "needs 2.7 GB of memory (4096 pages, 16000 threads"),
        (["files.0.pages=1" + "0" * 400], "needs 3e+290 TB of memory"),
    ],
)
def test_a_run_that_cannot_fit_this_machines_memory_is_refused(capsys, machine_with, sets, needle):
    machine_with(2)
    args = sum((["--set", s] for s in sets), [])
    err = one_line(capsys, main(["run", "read_hits", *args, "--allow-large"]))
    assert needle in err and "this machine has 2 GB available" in err


def test_a_long_run_stops_with_its_estimate_unless_allowed(capsys, machine_with):
    machine_with(64)
    err = one_line(capsys, main(["run", "read_hits", "--set", "duration=1000s"]))
    assert "estimated about 639 MB of memory and 3.33 days of wall time" in err
    assert "over 1 h for one run; give --allow-large to run it anyway" in err
    spec = load_spec("read_hits", ["duration=1000s"])
    assert limits.check_run(spec, allow_large=True).wall_s > 3600  # allowed: it would run
    machine_with(1.2)
    big = load_spec("read_hits", ["files.0.pages=2000000"])  # about 0.74 GB, in 10 s
    with pytest.raises(ConfigError, match="over half the 1.2 GB of memory available"):
        limits.check_run(big)
    assert limits.check_run(big, allow_large=True).memory < 1.2 * GB


def test_a_huge_grid_is_refused_before_it_is_planned(monkeypatch, machine_with):
    def no_planning(exp):
        raise AssertionError("planned")

    monkeypatch.setattr(api, "plan_runs", no_planning)
    machine_with(16)
    exp = {
        "name": "huge",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "grid": {"processes.0.threads": list(range(1, 501)), "files.0.pages": list(range(1, 5001))},
    }
    with pytest.raises(ConfigError, match=r"5000000 runs; planning them needs 50 GB of memory"):
        pmsim.sweep(exp, progress=False, allow_large=True)
    exp["grid"]["files.0.pages"] = list(range(1, 201))
    with pytest.raises(ConfigError, match=r"200000 runs .* over 100000; give --allow-large"):
        pmsim.sweep(exp, progress=False)


def test_many_replications_stop_with_the_sweeps_estimate(tmp_path, machine_with):
    machine_with(64)
    exp = {
        "name": "many",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "overrides": {"duration": "200ms"},
        "replications": 2000,
    }
    with pytest.raises(
        ConfigError, match=r"estimated 32 h of wall time for 4000 runs on 2 workers"
    ):
        pmsim.sweep(exp, tmp_path / "o", workers=2, progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(default_workers() < 2, reason="two workers need two usable CPUs")
def test_workers_whose_runs_cannot_fit_together_are_refused(tmp_path, machine_with):
    machine_with(0.25)  # each run (~145 MB) fits; two at once do not...
    exp = {
        "name": "pair",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "overrides": {"files.0.pages": 30000, "duration": "1ms", "warmup": "0.2ms"},
    }
    with pytest.raises(
        ConfigError, match=r"2 workers running runs of up to .* need .*give --workers 1"
    ):
        pmsim.sweep(exp, tmp_path / "o", workers=2, progress=False, allow_large=True)
    assert not (tmp_path / "o").exists()
    res = pmsim.sweep(exp, tmp_path / "o", workers=1, progress=False, allow_large=True)
    assert len(res.summary) == 2


def test_runs_counted_without_listing_them():
    for path in experiments().values():
        exp = load_experiment(path)
        n = len(plan.plan_runs(exp))
        assert plan.count_runs(exp) == n if not exp.exclude else plan.count_runs(exp) > n


def test_workers_are_capped_at_the_usable_cpus_and_the_runs(tmp_path, capsys):
    exp = {
        "name": "one",
        "workload": "read_hits",
        "designs": ["new"],
        "overrides": {"machine.cores": 2, "duration": "1ms", "warmup": "0.2ms"},
    }
    res = pmsim.sweep(exp, tmp_path / "one", workers=default_workers(), progress=False)
    assert list(res.provenance["pid"]) == [os.getpid()]  # one run: in this process, no pool
    capsys.readouterr()
    many = default_workers() + 5
    res = pmsim.sweep({**exp, "replications": 2}, tmp_path / "two", workers=many, progress=False)
    err = capsys.readouterr().err
    usable = default_workers()
    assert err.startswith(f"pmsim sweep: --workers {many}: this machine lets pmsim use {usable}")
    assert res.provenance["pid"].nunique() <= usable


CODE = r"""
import json, sys
from pmsim.limits import estimate
from pmsim.workload.load import load_spec
from pmsim.workload.runner import run_workload
spec = load_spec("read_hits", sys.argv[1:])
run_workload(spec, "new")
status = open("/proc/self/status").read().split("VmHWM:")[1]  # not ru_maxrss: it survives exec
peak = int(status.split()[0]) * 1024
print(json.dumps({"estimate": estimate(spec).memory, "peak": peak}))
"""


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["files.0.pages=400000"],  # pages dominate
        ["processes.0.count=100", "machine.cores=64"],  # threads dominate
    ],
)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_the_memory_estimate_is_within_15_percent_of_the_peak(sets):
    args = [*sets, "duration=1ms", "warmup=0.1ms"]
    got = subprocess.run(
        [sys.executable, "-c", CODE, *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    m = json.loads(got.stdout)
    assert 0.85 < m["estimate"] / m["peak"] < 1.15, m
