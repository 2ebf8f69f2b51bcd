"""Running sweeps: the same tables on every executor, runs that survive a killed Dask worker
or a killed sweep, failed runs recorded and rerun, seeds shared by the designs and stable
under edits of the experiment, resume, and the aggregate's confidence intervals."""

from __future__ import annotations

import concurrent.futures
import json
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal
from scipy import stats

import pmsim
from pmsim.cli import main
from pmsim.errors import ConfigError
from pmsim.sweeps import api, task
from pmsim.sweeps.plan import derive_seed, plan_runs
from pmsim.sweeps.spec import load_experiment
from pmsim.sweeps.store import GATHERED, RUN_TABLES
from pmsim.sweeps.tables import canonical

if (
    str(Path(__file__).resolve().parent) not in sys.path
):  # the fixture's helper module, beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from dask_cluster import dask_cluster, distributed_available, subprocess_env

needs_dask = pytest.mark.skipif(
    not distributed_available(),
    reason="Dask distributed is not installed (python -m pip install 'pmsim[dask]')",
)

# 2 workloads x 2 zipped points x 2 designs x 2 replications = 16 runs of 1 ms simulated.
SMALL = {
    "name": "small",
    "designs": ["old", "new"],
    "grid": {"workload": ["read_hits", "hot_page"]},
    "zip": {"machine.cores": [1, 2], "processes.0.threads": [1, 2]},
    "overrides": {"duration": "1ms", "warmup": "0.2ms"},
    "replications": 2,
    "seed": 7,
}


def tiny(**changes) -> dict:
    """8 runs of read_hits (2 designs x 2 thread counts x 2 replications), 1 ms simulated."""
    exp = {
        "name": "tiny",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "grid": {"processes.0.threads": [1, 2]},
        "overrides": {"machine.cores": 2, "duration": "1ms", "warmup": "0.2ms"},
        "replications": 2,
        "seed": 3,
    }
    exp.update(changes)
    return exp


def write_yaml(path: Path, exp: dict) -> Path:
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    return path


def wait_until(cond, timeout: float, what: str, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def finished(out: Path) -> list[str]:
    """Run ids whose summary file is written (hidden temporary files do not count)."""
    folder = out / "runs" / "summary"
    if not folder.is_dir():
        return []
    return sorted(f.stem for f in folder.glob("*.parquet") if not f.name.startswith("."))


def file_stats(out: Path, run_ids) -> dict:
    """(inode, mtime) of every per-run file of ``run_ids``: a file rewritten since differs in one."""
    ids = set(run_ids)
    got = {}
    for f in (out / "runs").glob("*/*"):
        if f.name.split(".")[0] in ids:
            st = f.stat()
            got[str(f.relative_to(out))] = (st.st_ino, st.st_mtime_ns)
    return got


def hidden(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*"))


def planned_ids(out: Path) -> list[str]:
    return [r["run_id"] for r in json.loads((out / "manifest.json").read_text())["runs"]]


def assert_same_parquet(a: Path, b: Path, obj: str) -> None:
    assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), check_exact=True, obj=obj)
    assert a.read_bytes() == b.read_bytes(), f"{obj}: same table, different bytes"


def assert_same_results(a: Path, b: Path) -> None:
    """Manifest, summary, aggregate and every per-run file identical, bit for bit (provenance:
    file names only, its wall times and pids differ)."""
    assert json.loads((a / "manifest.json").read_text()) == json.loads(
        (b / "manifest.json").read_text()
    )
    for name in (
        "summary.parquet",
        "aggregate.parquet",
        *(f"tables/{t}.parquet" for t in GATHERED),
    ):
        assert_same_parquet(a / name, b / name, name)
    tables = sorted(p.name for p in (a / "runs").iterdir())
    assert tables == sorted(p.name for p in (b / "runs").iterdir())
    assert set(tables) == {*RUN_TABLES, "summary", "provenance", "failed"}
    for table in tables:
        names = sorted(p.name for p in (a / "runs" / table).iterdir())
        assert names == sorted(p.name for p in (b / "runs" / table).iterdir()), table
        if table == "failed":
            assert names == []
            continue
        assert len(names) == len(planned_ids(a)), table
        if table == "provenance":  # wall time, host and pid: not results
            continue
        for n in names:
            assert_same_parquet(a / "runs" / table / n, b / "runs" / table / n, f"runs/{table}/{n}")


class FailOne:
    """``run_task`` that raises for one design at one seed (one point and replication).
    A module-level class, so a process pool can pickle it (a forked worker has this module)."""

    def __init__(self, design: str, seed: int):
        self.design, self.seed = design, seed

    def __call__(self, design, spec):
        if design == self.design and spec.seed == self.seed:
            raise RuntimeError(f"injected failure for {design} at seed {spec.seed}")
        return task.run_task(design, spec)


class CountRuns:
    """``run_task`` that records the runs it executes (in this process: serial sweeps only)."""

    def __init__(self):
        self.ran = []

    def __call__(self, design, spec):
        self.ran.append((design, spec.seed))
        return task.run_task(design, spec)

    def run_ids(self, exp) -> set[str]:
        by_key = {(p.design, p.seed): p.run_id for p in plan_runs(load_experiment(exp))}
        assert len(self.ran) == len(set(self.ran)), "a run executed twice"
        return {by_key[k] for k in self.ran}


@pytest.fixture(scope="module")
def serial_small(tmp_path_factory):
    """The reference: SMALL run in this process, one run after another."""
    out = tmp_path_factory.mktemp("serial") / "out"
    res = pmsim.sweep(SMALL, out, workers=1, progress=False)
    assert len(res.summary) == 16 and (res.summary["status"] == "ok").all()
    assert set(res.provenance["pid"]) == {os.getpid()}
    return out, res


# --- seeds --------------------------------------------------------------------------------


def _seed_map(exp: dict) -> dict:
    """(design, point, replication) -> (seed, run_id)."""
    out = {}
    for p in plan_runs(load_experiment(exp)):
        key = (p.design, canonical(p.point), p.replication)
        assert key not in out
        out[key] = (p.seed, p.run_id)
    return out


def test_seeds_shared_by_designs_distinct_across_points_and_stable_under_edits():
    base = {
        "name": "seeds",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "grid": {"processes.0.threads": [1, 2]},
        "zip": {"machine.cores": [1, 2], "request_pages": [1, 2]},
        "overrides": {"duration": "1ms", "warmup": "0.2ms"},
        "replications": 3,
        "seed": 5,
    }
    plans = plan_runs(load_experiment(base))
    assert len(plans) == 2 * 2 * 2 * 3
    assert len({p.run_id for p in plans}) == len(plans)
    by_point = {}
    for p in plans:
        assert p.spec.seed == p.seed  # the run simulates with its derived seed
        assert p.seed == derive_seed(
            5, canonical({"workload": "read_hits", **p.point}), p.replication
        )
        by_point.setdefault((canonical(p.point), p.replication), {})[p.design] = p.seed
    assert len(by_point) == 4 * 3
    for seeds in by_point.values():  # common random numbers: one seed for every design
        assert set(seeds) == {"old", "new"} and len(set(seeds.values())) == 1
    # ...and a different seed for every point and replication
    assert len({next(iter(s.values())) for s in by_point.values()}) == len(by_point)

    ref = _seed_map(base)
    # Adding a design changes no seed and no run id of the others.
    more = _seed_map({**base, "designs": ["old", "new", "old_mcs"]})
    assert {k: v for k, v in more.items() if k[0] != "old_mcs"} == ref
    assert {v[0] for k, v in more.items() if k[0] == "old_mcs"} == {v[0] for v in ref.values()}
    # Reordering values, and the zip's keys, changes nothing.
    reordered = _seed_map(
        {
            **base,
            "grid": {"processes.0.threads": [2, 1]},
            "zip": {"request_pages": [2, 1], "machine.cores": [2, 1]},
        }
    )
    assert reordered == ref
    # Extending a factor keeps the existing points' seeds and run ids.
    extended = _seed_map({**base, "grid": {"processes.0.threads": [1, 2, 4]}})
    assert len(extended) == len(ref) * 3 // 2
    assert {k: extended[k] for k in ref} == ref
    # More replications keep the first ones.
    assert {k: v for k, v in _seed_map({**base, "replications": 4}).items() if k in ref} == ref
    # The experiment's seed does change every seed.
    other = _seed_map({**base, "seed": 6})
    assert other.keys() == ref.keys()
    assert all(other[k][0] != ref[k][0] for k in ref)


# --- the aggregate -------------------------------------------------------------------------


def test_aggregate_mean_and_ci_by_hand(tmp_path):
    reps = 4
    res = pmsim.sweep(tiny(replications=reps, grid={}), tmp_path / "ci", workers=1, progress=False)
    s, agg = res.summary, res.aggregate
    assert len(s) == 2 * reps and (s["status"] == "ok").all()
    metrics = {
        c
        for c in s.columns
        if c not in {"run_id", "design", "workload", "replication", "seed", "status", "error"}
        and pd.api.types.is_numeric_dtype(s[c])
        and not c.endswith("_is_lower_bound")  # they make the aggregate's lower_bound column
    }
    assert set(agg["metric"]) == metrics
    checked = 0
    for design in ("old", "new"):
        for metric in ("total_ops_per_s", "ops.read.latency_us.mean"):
            x = s.loc[s["design"] == design, metric].to_numpy(dtype=float)
            assert len(x) == reps and np.ptp(x) > 0  # replications differ, so the CI is not trivial
            mean, sd = x.mean(), x.std(ddof=1)
            half = stats.t.ppf(0.975, reps - 1) * sd / math.sqrt(reps)
            row = agg[(agg["design"] == design) & (agg["metric"] == metric)]
            assert len(row) == 1
            row = row.iloc[0]
            assert row["workload"] == "read_hits"
            assert row["n"] == reps
            assert row["mean"] == pytest.approx(mean, rel=1e-12)
            assert row["std"] == pytest.approx(sd, rel=1e-12)
            assert row["ci95_half"] == pytest.approx(half, rel=1e-12)
            assert row["ci95_low"] == pytest.approx(mean - half, rel=1e-12)
            assert row["ci95_high"] == pytest.approx(mean + half, rel=1e-12)
            checked += 1
    assert checked == 4

    # Paired differences: new minus old, replication by replication (each pair shares a seed).
    diff = res.differences
    assert set(diff["design"]) == {"new"} and set(diff["baseline"]) == {"old"}
    for metric in ("total_ops_per_s", "ops.read.latency_us.mean"):
        by = s.set_index(["design", "replication"])[metric]
        d = np.array([by["new", r] - by["old", r] for r in range(reps)])
        half = stats.t.ppf(0.975, reps - 1) * d.std(ddof=1) / math.sqrt(reps)
        row = diff[diff["metric"] == metric].iloc[0]
        assert row["n"] == reps
        assert row["mean"] == pytest.approx(d.mean(), rel=1e-12)
        assert row["ci95_half"] == pytest.approx(half, rel=1e-12)
        assert row["baseline_mean"] == pytest.approx(by["old"].mean(), rel=1e-12)
    assert (tmp_path / "ci" / "differences.parquet").is_file()

    one = pmsim.sweep(tiny(replications=1, grid={}), tmp_path / "one", workers=1, progress=False)
    assert len(one.summary) == 2
    rows = one.aggregate[one.aggregate["metric"] == "total_ops_per_s"].set_index("design")
    for design in ("old", "new"):
        r = rows.loc[design]
        assert r["n"] == 1
        value = one.summary.loc[one.summary["design"] == design, "total_ops_per_s"].item()
        assert r["mean"] == value
        assert math.isnan(r["std"]) and math.isnan(r["ci95_half"])
        assert math.isnan(r["ci95_low"]) and math.isnan(r["ci95_high"])
    assert one.aggregate["ci95_half"].isna().all()


# --- failures ------------------------------------------------------------------------------------


def _target(exp, design="old", replication=1, threads=2):
    plans = plan_runs(load_experiment(exp))
    t = [
        p
        for p in plans
        if p.design == design
        and p.replication == replication
        and p.point["processes.0.threads"] == threads
    ]
    assert len(t) == 1
    return plans, t[0]


def _check_failure_recorded(out: Path, res, target, expect_remote: bool = False):
    s = res.summary
    assert len(s) == 8 and set(s["run_id"]) == set(planned_ids(out))
    failed = s[s["status"] == "failed"]
    assert list(failed["run_id"]) == [target.run_id]
    err = f"RuntimeError: injected failure for old at seed {target.seed}"
    assert failed["error"].item() == err
    assert list(res.failures["run_id"]) == [target.run_id]
    ok = s[s["run_id"] != target.run_id]
    assert (ok["status"] == "ok").all() and ok["error"].isna().all()
    assert ok["total_ops_per_s"].gt(0).all() and failed["total_ops_per_s"].isna().all()
    record = json.loads((out / "runs" / "failed" / f"{target.run_id}.json").read_text())
    assert record["error"] == err and record["run_id"] == target.run_id
    assert (
        record["design"] == "old" and record["replication"] == 1 and record["seed"] == target.seed
    )
    assert "Traceback (most recent call last)" in record["traceback"]
    assert "injected failure" in record["traceback"] and "in __call__" in record["traceback"]
    if expect_remote:  # the worker's own traceback travels with the error
        assert "_RemoteTraceback" in record["traceback"]
    assert sorted(p.name for p in (out / "runs" / "failed").iterdir()) == [f"{target.run_id}.json"]
    for table in (*RUN_TABLES, "summary", "provenance"):  # no tables of the failed run
        assert not (out / "runs" / table / f"{target.run_id}.parquet").exists()
        assert len(list((out / "runs" / table).iterdir())) == 7
    assert target.run_id not in set(res.provenance["run_id"]) and len(res.provenance) == 7
    # The aggregate counts only ok runs: one replication left at the failed design and point.
    agg = res.aggregate
    at = (agg["design"] == "old") & (agg["processes.0.threads"] == 2)
    assert (agg.loc[at, "n"] == 1).all() and (agg.loc[~at, "n"] == 2).all()
    ok_value = ok.loc[
        (ok["design"] == "old") & (ok["processes.0.threads"] == 2), "total_ops_per_s"
    ].item()
    assert agg.loc[at & (agg["metric"] == "total_ops_per_s"), "mean"].item() == ok_value
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs_ok"] == 7 and manifest["runs_failed"] == 1
    assert {r["run_id"]: r["status"] for r in manifest["runs"]}[target.run_id] == "failed"


def test_failed_run_recorded_others_complete_and_rerun_only_it(tmp_path, monkeypatch, capsys):
    exp = tiny()
    plans, target = _target(exp)
    monkeypatch.setattr(api, "run_task", FailOne("old", target.seed))
    out = tmp_path / "api"
    res = pmsim.sweep(exp, out, workers=1, progress=False)
    _check_failure_recorded(out, res, target)

    # The command line: the same failure, exit status 1, the failure in its report.
    path = write_yaml(tmp_path / "tiny.yaml", exp)
    cli_out = tmp_path / "cli"
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(cli_out), "--workers", "1", "--quiet"]) == 1
    printed = capsys.readouterr()
    assert (
        f"failed: run {target.run_id}" in printed.out and "7 runs written, 1 failed" in printed.out
    )
    cli_res = api.SweepResult.load(cli_out)
    assert cli_res.experiment.name == exp["name"] and cli_res.experiment.designs == exp["designs"]
    _check_failure_recorded(cli_out, cli_res, target)

    # Rerun without the fault: only the failed run runs; the written ones are not touched.
    ok_ids = [p.run_id for p in plans if p.run_id != target.run_id]
    before = file_stats(cli_out, ok_ids)
    assert len(before) == 7 * (len(RUN_TABLES) + 2)
    monkeypatch.undo()
    assert api.run_task is task.run_task
    assert main(["sweep", str(path), "--out", str(cli_out), "--workers", "1"]) == 0
    printed = capsys.readouterr()
    assert "7 already written, 1 to run" in printed.err
    assert "8 runs written, 0 failed" in printed.out
    assert file_stats(cli_out, ok_ids) == before
    summary = pd.read_parquet(cli_out / "summary.parquet")
    assert sorted(summary["run_id"]) == sorted(p.run_id for p in plans)
    assert (summary["status"] == "ok").all()
    assert list((cli_out / "runs" / "failed").iterdir()) == []
    assert (cli_out / "runs" / "summary" / f"{target.run_id}.parquet").is_file()
    # ...and it gives what a sweep that never failed gives.
    clean = pmsim.sweep(exp, tmp_path / "clean", workers=1, progress=False)
    assert_same_results(cli_out, clean.out)


def test_failed_run_in_a_process_pool_is_recorded(tmp_path, monkeypatch):
    exp = tiny()
    _, target = _target(exp)
    # The sweep pickles FailOne to the pool; a forked worker has this module, so it unpickles.
    monkeypatch.setattr(api, "run_task", FailOne("old", target.seed))
    with concurrent.futures.ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("fork")
    ) as ex:
        res = pmsim.sweep(exp, tmp_path / "pool", executor=ex, progress=False)
    assert os.getpid() not in set(res.provenance["pid"])  # the runs ran in the pool
    _check_failure_recorded(tmp_path / "pool", res, target, expect_remote=True)


# --- resume ---------------------------------------------------------------------------------------------


def test_resume_extend_reorder_shrink_and_start_over(tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = tiny()
    res1 = pmsim.sweep(first, out, workers=1, progress=False)
    ids1 = {p.run_id for p in plan_runs(load_experiment(first))}
    assert set(res1.summary["run_id"]) == ids1 and (res1.summary["status"] == "ok").all()
    stats1 = file_stats(out, ids1)
    assert len(stats1) == 8 * (len(RUN_TABLES) + 2)

    # A new value: only its runs execute; the others' files are untouched.
    extended = tiny(grid={"processes.0.threads": [1, 2, 3]})
    spy = CountRuns()
    monkeypatch.setattr(api, "run_task", spy)
    res2 = pmsim.sweep(extended, out, workers=1, progress=False)
    ids2 = {p.run_id for p in plan_runs(load_experiment(extended))}
    assert ids1 < ids2 and len(ids2) == 12
    assert spy.run_ids(extended) == ids2 - ids1 and len(spy.ran) == 4
    assert file_stats(out, ids1) == stats1
    stats2 = file_stats(out, ids2)
    assert set(res2.summary["run_id"]) == ids2 and (res2.summary["status"] == "ok").all()
    old_rows = res2.summary[res2.summary["run_id"].isin(ids1)].reset_index(drop=True)
    assert_frame_equal(old_rows, res1.summary, check_exact=True)
    assert set(planned_ids(out)) == ids2

    # Reordered values: nothing to run.
    spy = CountRuns()
    monkeypatch.setattr(api, "run_task", spy)
    res3 = pmsim.sweep(
        tiny(grid={"processes.0.threads": [3, 2, 1]}), out, workers=1, progress=False
    )
    assert spy.ran == [] and set(res3.summary["run_id"]) == ids2
    assert file_stats(out, ids2) == stats2

    # A value removed: its runs' files and rows go, nothing runs.
    shrunk = tiny(grid={"processes.0.threads": [2, 3]})
    ids4 = {p.run_id for p in plan_runs(load_experiment(shrunk))}
    gone = ids2 - ids4
    assert len(gone) == 4 and ids4 < ids2
    spy = CountRuns()
    monkeypatch.setattr(api, "run_task", spy)
    res4 = pmsim.sweep(shrunk, out, workers=1, progress=False)
    assert spy.ran == []
    assert file_stats(out, gone) == {}
    assert len(list((out / "runs").glob("*/*"))) == 8 * (len(RUN_TABLES) + 2)
    for name, df in (("summary", res4.summary), ("provenance", res4.provenance)):
        assert set(df["run_id"]) == ids4, name
        assert set(pd.read_parquet(out / f"{name}.parquet")["run_id"]) == ids4, name
    assert set(res4.aggregate["processes.0.threads"]) == {2, 3}
    assert set(pd.read_parquet(out / "aggregate.parquet")["processes.0.threads"]) == {2, 3}
    assert set(planned_ids(out)) == ids4
    kept = file_stats(out, ids4)

    # resume=False: every run again, into new files, with the same results.
    spy = CountRuns()
    monkeypatch.setattr(api, "run_task", spy)
    res5 = pmsim.sweep(shrunk, out, workers=1, progress=False, resume=False)
    assert spy.run_ids(shrunk) == ids4 and len(spy.ran) == 8
    again = file_stats(out, ids4)
    assert again.keys() == kept.keys()
    assert all(again[k] != kept[k] for k in kept)  # every file rewritten
    assert_frame_equal(res5.summary, res4.summary, check_exact=True)
    assert_frame_equal(res5.aggregate, res4.aggregate, check_exact=True)
    assert hidden(out) == []


def test_out_folder_with_other_files_is_refused(tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="no manifest.json"):
        pmsim.sweep(tiny(), out, workers=1, progress=False)
    with pytest.raises(ConfigError, match="no manifest.json"):
        pmsim.sweep(tiny(), out, workers=1, progress=False, resume=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    path = write_yaml(tmp_path / "tiny.yaml", tiny())
    capsys.readouterr()
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmsim: error: --out:") and "no manifest.json" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_leftovers_of_a_killed_sweep_are_cleared_and_it_resumes(tmp_path):
    out = tmp_path / "out"
    first = pmsim.sweep(tiny(), out, workers=1, progress=False)
    ids = list(first.summary["run_id"])
    # What a kill can leave: a half-written top-level table, a stray file in runs/, a
    # half-written run file; and a folder killed before its first manifest.
    (out / ".summary.parquet.tmp-99999").write_bytes(b"half")
    (out / "runs" / ".DS_Store").write_bytes(b"x")
    (out / "runs" / "ops" / f".{ids[0]}.parquet.tmp-99999").write_bytes(b"half")
    again = pmsim.sweep(tiny(), out, workers=1, progress=False)
    assert hidden(out) == []
    assert_frame_equal(again.summary, first.summary, check_exact=True)
    early = tmp_path / "early"
    early.mkdir()
    (early / ".manifest.json.tmp-123").write_text("{")
    res = pmsim.sweep(tiny(), early, workers=1, progress=False)
    assert len(res.summary) == 8 and hidden(early) == []


def test_resuming_into_another_experiments_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    pmsim.sweep(tiny(), out, workers=1, progress=False)
    before = sorted(p.name for p in (out / "runs" / "summary").iterdir())
    other = tiny(name="other")
    with pytest.raises(ConfigError, match="holds the sweep of experiment 'tiny', not 'other'"):
        pmsim.sweep(other, out, workers=1, progress=False)
    assert sorted(p.name for p in (out / "runs" / "summary").iterdir()) == before
    res = pmsim.sweep(
        other, out, workers=1, progress=False, resume=False
    )  # replacing it is asked for
    assert res.experiment.name == "other" and len(res.summary) == 8


def test_changed_model_code_reruns_and_a_worker_with_other_code_fails(tmp_path, monkeypatch):
    from pmsim.sweeps import plan

    ids = [p.run_id for p in plan_runs(load_experiment(tiny()))]
    monkeypatch.setattr(plan, "code_digest", lambda: "0123456789abcdef")
    assert not set(ids) & {p.run_id for p in plan_runs(load_experiment(tiny()))}
    monkeypatch.undo()
    # A worker whose code differs from the driver's: its tables are not this sweep's.
    monkeypatch.setattr(task, "code_digest", lambda: "0123456789abcdef")
    with concurrent.futures.ProcessPoolExecutor(
        2, mp_context=multiprocessing.get_context("fork")
    ) as ex:
        res = pmsim.sweep(tiny(), tmp_path / "other_code", executor=ex, progress=False)
    assert (res.summary["status"] == "failed").all()
    assert res.summary["error"].str.contains("runs other pmsim code").all()


# --- a killed sweep -----------------------------------------------------------------------------------------


def test_sweep_killed_with_sigkill_resumes_to_the_same_tables(tmp_path):
    # 12 runs of ~0.1-0.3 s wall each, on 2 local processes.
    exp = tiny(
        name="killed",
        replications=3,
        seed=11,
        overrides={"machine.cores": 2, "duration": "12ms", "warmup": "0.2ms"},
    )
    path = write_yaml(tmp_path / "killed.yaml", exp)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "pmsim",
        "sweep",
        str(path),
        "--out",
        str(out),
        "--workers",
        "2",
        "--quiet",
    ]
    env = subprocess_env()
    log = tmp_path / "killed.stderr"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=tmp_path,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_until(
            lambda: len(finished(out)) >= 2 or proc.poll() is not None, 120, "2 runs written"
        )
        assert proc.poll() is None, f"the sweep ended before it was killed: {log.read_text()}"
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep, its fork server and its workers
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    def group_gone():
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return True
        return False

    try:  # best effort: orphans are reaped by init
        wait_until(group_gone, 10, "the killed sweep's processes to exit")
    except AssertionError:
        pass
    done = finished(out)
    planned = planned_ids(out)
    assert len(planned) == 12
    assert 2 <= len(done) < 12, f"killed after {len(done)} of 12 runs"
    assert set(done) <= set(planned)
    before = file_stats(out, done)
    assert len(before) == len(done) * (len(RUN_TABLES) + 2)

    rerun = subprocess.run(
        [c for c in cmd if c != "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{len(done)} already written, {12 - len(done)} to run" in rerun.stderr
    assert "12 runs written, 0 failed" in rerun.stdout
    assert file_stats(out, done) == before  # finished runs were not run again

    summary = pd.read_parquet(out / "summary.parquet")
    assert sorted(summary["run_id"]) == sorted(planned) and summary["run_id"].is_unique
    assert planned_ids(out) == planned
    assert (summary["status"] == "ok").all()
    assert hidden(out) == []
    clean = pmsim.sweep(path, tmp_path / "clean", workers=1, progress=False)
    assert_same_results(out, clean.out)


# --- the same tables on every executor ------------------------------------------------------------------------


def test_local_pool_gives_the_serial_tables_bit_for_bit(serial_small, tmp_path):
    ref, ref_res = serial_small
    res = pmsim.sweep(SMALL, tmp_path / "pool", workers=2, progress=False)
    pids = set(res.provenance["pid"])
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert_same_results(ref, res.out)
    assert_frame_equal(res.summary, ref_res.summary, check_exact=True)
    assert_frame_equal(res.table("ops"), ref_res.table("ops"), check_exact=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not distributed_available():
        pytest.skip("Dask distributed is not installed (python -m pip install 'pmsim[dask]')")
    with dask_cluster(tmp_path_factory.mktemp("dask")) as c:
        yield c


@needs_dask
def test_dask_cluster_gives_the_serial_tables_bit_for_bit(serial_small, cluster, tmp_path):
    ref, ref_res = serial_small
    res = pmsim.sweep(
        SMALL, tmp_path / "dask", scheduler_file=cluster.scheduler_file, progress=False
    )
    assert set(res.provenance["pid"]) <= {w.pid for w in cluster.workers}, cluster.log_tail()
    assert_same_results(ref, res.out)
    assert_frame_equal(res.aggregate, ref_res.aggregate, check_exact=True)


@pytest.fixture
def doomed_cluster(tmp_path):
    """A cluster of its own: a test kills one of its workers."""
    if not distributed_available():
        pytest.skip("Dask distributed is not installed (python -m pip install 'pmsim[dask]')")
    with dask_cluster(tmp_path / "dask") as c:
        yield c


@needs_dask
def test_dask_worker_killed_mid_sweep_loses_no_run(doomed_cluster, tmp_path):
    from distributed import Client

    # 12 runs of ~0.3-0.8 s wall each, on 2 single-threaded workers.
    exp = tiny(
        name="doomed",
        replications=3,
        seed=13,
        overrides={"machine.cores": 2, "duration": "30ms", "warmup": "0.2ms"},
    )
    out = tmp_path / "out"
    victim, survivor = doomed_cluster.workers
    with (
        Client(scheduler_file=doomed_cluster.scheduler_file, timeout="30s") as watch,
        concurrent.futures.ThreadPoolExecutor(1) as th,
    ):
        addr = {pid: a for a, pid in watch.run(os.getpid).items()}[victim.pid]
        fut = th.submit(
            pmsim.sweep, exp, out, scheduler_file=doomed_cluster.scheduler_file, progress=False
        )
        wait_until(lambda: finished(out) or fut.done(), 120, "a run written")
        assert not fut.done(), fut.result()
        in_flight = watch.processing([addr])[addr]
        victim.send_signal(signal.SIGKILL)
        done_at_kill = len(finished(out))
        assert victim.wait(timeout=10) == -signal.SIGKILL
        assert in_flight, "the killed worker had no run in flight"
        assert 1 <= done_at_kill <= 12 - 2, done_at_kill
        res = fut.result(timeout=180)
    s = res.summary
    planned = planned_ids(out)
    assert len(planned) == 12
    assert sorted(s["run_id"]) == sorted(planned) and s["run_id"].is_unique, (
        doomed_cluster.log_tail()
    )
    assert (s["status"] == "ok").all(), s.loc[s["status"] != "ok", "error"].tolist()
    assert len(finished(out)) == 12 and hidden(out) == []
    pids = res.provenance["pid"]
    assert set(pids) <= {victim.pid, survivor.pid}
    # The dead worker did nothing after the kill (one run may have been on its way back then):
    # the rest, the lost run among them, ran on the survivor.
    assert (pids == survivor.pid).sum() >= 12 - done_at_kill - 1


# --- scheduling and the pool's start method -------------------------------------------------------------


def test_longest_first_learns_each_design_and_workloads_speed():
    from pmsim.sweeps.schedule import LongestFirst

    plans = plan_runs(load_experiment(tiny(replications=1)))  # old/new x threads 1, 2
    by = {(p.design, p.spec.total_threads): p for p in plans}
    lf = LongestFirst()
    assert lf.predict(by["old", 2]) == by["old", 2].cost_estimate  # nothing learned: the estimate
    # NEW turns out 3x slower per unit of estimate than OLD: its runs go first from now on.
    lf.learn(by["old", 1], 1.0 * by["old", 1].cost_estimate)
    lf.learn(by["new", 1], 3.0 * by["new", 1].cost_estimate)
    assert lf.predict(by["new", 2]) == pytest.approx(3.0 * by["new", 2].cost_estimate)
    pending = [by["old", 2], by["new", 1], by["new", 2]]
    assert [lf.pop_longest(pending) for _ in range(3)] == [by["new", 2], by["new", 1], by["old", 2]]


def test_the_pool_forks_from_one_thread_and_uses_a_fork_server_beside_others(monkeypatch):
    import threading

    from pmsim.sweeps import executors

    def method():
        pool = executors.local_pool(1)
        try:
            assert pool.submit(os.getpid).result() != os.getpid()
            return pool._mp_context.get_start_method()
        finally:
            pool.shutdown()

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not executors._only_thread()
    finally:
        stop.set()
        t.join()
    monkeypatch.setattr(executors, "_only_thread", lambda: True)
    assert method() == "fork"
    monkeypatch.setattr(executors, "_only_thread", lambda: False)
    assert method() == "forkserver"


class DieOn:
    """run_task, except that the worker running one chosen run is killed (as by the OOM killer)."""

    def __init__(self, design, seed):
        self.design, self.seed = design, seed

    def __call__(self, design, spec):
        if design == self.design and spec.seed == self.seed:
            os.kill(os.getpid(), signal.SIGKILL)
        return task.run_task(design, spec)


def test_a_local_worker_killed_mid_sweep_fails_its_runs_and_a_rerun_completes(
    tmp_path, monkeypatch
):
    from pmsim.sweeps import executors

    exp = tiny()
    _, target = _target(exp)
    monkeypatch.setattr(executors, "_only_thread", lambda: True)  # fork: the workers get the patch
    monkeypatch.setattr(api, "run_task", DieOn("old", target.seed))
    res = pmsim.sweep(exp, tmp_path / "out", workers=2, progress=False)
    failed = res.failures
    assert 1 <= len(failed) < len(res.summary) and len(res.summary) == 8
    assert failed["error"].str.contains("BrokenProcessPool|terminated abruptly").all(), failed[
        "error"
    ].tolist()
    monkeypatch.undo()
    again = pmsim.sweep(exp, tmp_path / "out", workers=1, progress=False)
    assert (again.summary["status"] == "ok").all() and len(again.summary) == 8


def test_a_written_sweep_loads_back_as_the_same_tables(tmp_path):
    res = pmsim.sweep(tiny(replications=1), tmp_path / "out", workers=1, progress=False)
    back = api.SweepResult.load(tmp_path / "out")
    for name in ("summary", "aggregate", "differences", "provenance"):
        assert_frame_equal(getattr(back, name), getattr(res, name), check_exact=True, obj=name)
    assert back.experiment.name == "tiny" and len(back.table("ops")) == len(res.table("ops")) > 0
    with pytest.raises(ConfigError, match="no manifest.json"):
        api.SweepResult.load(tmp_path / "nothing")
    # Tables from two different sweeps, or of a sweep killed before its end, do not load.
    res.aggregate.head(1).to_parquet(tmp_path / "out" / "aggregate.parquet", index=False)
    with pytest.raises(ConfigError, match="did not finish"):
        api.SweepResult.load(tmp_path / "out")
    pmsim.sweep(
        tiny(replications=1), tmp_path / "out", workers=1, progress=False
    )  # the rerun mends it
    api.SweepResult.load(tmp_path / "out")
    from pmsim.sweeps.store import SweepStore

    exp = load_experiment(tiny(replications=1))
    store = SweepStore(tmp_path / "out")
    store.open(exp, plan_runs(exp))  # a sweep starts again, then is killed
    store.unlock()
    with pytest.raises(ConfigError, match="did not finish"):
        api.SweepResult.load(tmp_path / "out")


def test_gathered_tables_keep_a_results_folder_readable_without_its_runs(tmp_path):
    """DIR/tables/ holds each per-run table of the finished runs (what results/ commits), in the
    plan's order; the runs' own files can go; a changed gathered table fails the digest."""
    res = pmsim.sweep(tiny(replications=2), tmp_path / "out", workers=1, progress=False)
    ids = list(res.summary["run_id"])
    for name in GATHERED:
        per_run = [pd.read_parquet(tmp_path / "out" / "runs" / name / f"{r}.parquet") for r in ids]
        gathered = res.table(name)
        assert list(dict.fromkeys(gathered["run_id"])) == [
            r for r, f in zip(ids, per_run) if len(f)
        ], name
        if any(len(f) for f in per_run):
            by_hand = pd.concat([f for f in per_run if len(f)], ignore_index=True)
            assert_frame_equal(gathered, by_hand, check_exact=True, check_dtype=False, obj=name)
        else:  # e.g. no daemon, no intervals
            assert gathered.empty and list(gathered.columns) == list(per_run[0].columns), name
    shutil.rmtree(tmp_path / "out" / "runs")
    back = api.SweepResult.load(tmp_path / "out")
    assert_frame_equal(back.table("latency"), res.table("latency"), check_exact=True)
    res.table("ops").head(1).to_parquet(tmp_path / "out" / "tables" / "ops.parquet", index=False)
    with pytest.raises(ConfigError, match="did not finish"):
        api.SweepResult.load(tmp_path / "out")


def test_gathered_tables_of_a_factor_mixing_numbers_and_strings(tmp_path):
    """A cost given as a number at one point and a duration at another: the factor column holds
    both, which Arrow cannot concatenate; the gathered tables fall back to strings for it."""
    res = pmsim.sweep(
        tiny(replications=1, grid={"cacheline_transfer_ns": [40, "60ns"]}),
        tmp_path / "out",
        workers=1,
        progress=False,
    )
    assert (res.summary["status"] == "ok").all()
    assert sorted(res.summary["cacheline_transfer_ns"]) == ["40", "40", "60ns", "60ns"]
    ops = res.table("ops")
    assert sorted(set(map(str, ops["cacheline_transfer_ns"]))) == ["40", "60ns"]
    assert len(set(ops["run_id"])) == 4
    back = api.SweepResult.load(tmp_path / "out")
    assert_frame_equal(back.table("ops"), ops, check_exact=True)


def test_the_docs_start_dask_schedulers_on_loopback_or_with_tls():
    """A scheduler runs whatever a client sends it: docs/sweeps.md once started one on every
    interface with no authentication."""
    root = Path(__file__).resolve().parents[1]
    lines = [
        line.strip()
        for doc in (root / "README.md", *sorted((root / "docs").glob("*.md")))
        for line in doc.read_text().splitlines()
        if line.strip().startswith(("dask scheduler", "dask-scheduler"))
    ]
    assert lines, "the docs show how to start a cluster by hand"
    for line in lines:
        assert "--host 127.0.0.1" in line or "--protocol tls" in line, line
        if "--protocol tls" in line:
            assert "--tls-cert" in line and "--tls-ca-file" in line, line


def test_progress_bars_only_on_a_terminal(tmp_path, capsys):
    import io

    from pmsim.sweeps.api import bar_wanted

    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert bar_wanted(Tty()) and not bar_wanted(io.StringIO())
    pmsim.sweep(tiny(grid={}), tmp_path / "bar", workers=1, progress=True)
    err = capsys.readouterr().err  # pytest's capture is no terminal: the start line, no bar
    assert "runs (" in err and "\r" not in err and "run/s" not in err
