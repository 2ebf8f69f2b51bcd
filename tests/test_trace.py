"""Timelines (issue 16): ``pmsim run --trace`` writes Chrome trace-event JSON that a parser
loads, with a track per core and per thread, one hold slice per acquisition, hand-off arrows
that pair up, and the run's numbers unchanged; bounded by a window and an event cap."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from pmsim import probes
from pmsim.cli import main
from pmsim.sync.spinlock import SpinLock
from pmsim.trace import trace_run
from pmsim.workload.load import load_spec
from pmsim.workload.runner import run_workload

OLD4 = ["machine.cores=4", "processes.0.count=4", "duration=1ms", "warmup=0ms"]


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def tracks(doc) -> dict[tuple[int, int], str]:
    return {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in doc["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }


@pytest.fixture(scope="module")
def old4(tmp_path_factory):
    """A 1 ms OLD run at 4 cores, traced through the CLI, with its tables."""
    d = tmp_path_factory.mktemp("trace")
    args = ["run", "read_hits_procs", "--design", "old", *sets(OLD4)]
    assert main([*args, "--trace", str(d / "t.json"), "--out", str(d / "run")]) == 0
    doc = json.loads((d / "t.json").read_text())
    return (
        doc,
        pd.read_parquet(d / "run" / "lockstat.parquet"),
        json.loads((d / "run" / "summary.json").read_text()),
    )


def test_one_track_per_core_and_thread(old4):
    doc, _, _ = old4
    names = tracks(doc)
    procs = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "process_name"}
    cores = sorted(n for (pid, _), n in names.items() if procs[pid] == "cores")
    threads = sorted(n for (pid, _), n in names.items() if procs[pid] == "threads")
    assert cores == [f"core {i}" for i in range(4)]
    assert threads == [f"reader{i}.t0" for i in range(4)]
    # every thread track has its reads, as slices that a viewer can draw (non-negative, nested)
    reads = Counter(
        names[e["pid"], e["tid"]]
        for e in doc["traceEvents"]
        if e["ph"] == "X" and e["name"] == "read"
    )
    assert set(reads) == set(threads)
    assert all(e["dur"] >= 0 for e in doc["traceEvents"] if e["ph"] == "X")


def test_hold_slices_per_lock_are_the_acquisitions(old4):
    doc, lockstat, _ = old4
    names = tracks(doc)
    locks_pid = next(
        e["pid"] for e in doc["traceEvents"] if e.get("args", {}).get("name") == "locks"
    )
    holds = Counter(
        names[e["pid"], e["tid"]].split(" #")[0]  # (lanes of one lock name: "chan_lock #2")
        for e in doc["traceEvents"]
        if e["ph"] == "X" and e["pid"] == locks_pid
    )
    acq = lockstat[lockstat["site"] == "*"].set_index("lock")["acquisitions"]
    assert holds["pm_lock"] > 0
    assert dict(holds) == {k: int(v) for k, v in acq.items() if v}


def test_hand_off_arrows_pair_up_and_waits_show(old4):
    doc, lockstat, _ = old4
    flows = [e for e in doc["traceEvents"] if e["ph"] in "sf"]
    starts = {e["id"] for e in flows if e["ph"] == "s"}
    ends = {e["id"] for e in flows if e["ph"] == "f"}
    assert starts and starts == ends
    pm = lockstat[(lockstat["lock"] == "pm_lock") & (lockstat["site"] == "*")].iloc[0]
    waits = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["name"] == "wait pm_lock"]
    assert len(waits) == pm["contentions"]
    assert sum(e["dur"] for e in waits) == pytest.approx(pm["waittime-total"], rel=1e-6)
    spins = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["name"] == "spin pm_lock"]
    assert len(spins) == len(waits)


def test_tracing_changes_no_number(old4):
    _, _, summary = old4
    plain = run_workload(load_spec("read_hits_procs", OLD4), "old").summary
    summary.pop("provenance")
    assert json.loads(json.dumps(plain)) == summary


def test_the_window_and_the_cap_bound_the_trace(tmp_path, capsys):
    args = ["run", "read_hits_procs", "--design", "old", *sets(OLD4)]
    assert main([*args, "--trace", str(tmp_path / "w.json"), "--trace-window", "200us:400us"]) == 0
    doc = json.loads((tmp_path / "w.json").read_text())
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert xs and all(e["ts"] + e["dur"] >= 200 and e["ts"] <= 400 for e in xs)
    capsys.readouterr()
    assert main([*args, "--trace", str(tmp_path / "c.json"), "--trace-max-events", "100"]) == 0
    err = capsys.readouterr().err
    assert "cut at 100 events" in err and "--trace-window" in err
    doc = json.loads((tmp_path / "c.json").read_text())
    assert len([e for e in doc["traceEvents"] if e["ph"] != "M"]) <= 100
    assert "cut" in doc["otherData"]


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--trace-window", "2ms:1ms"], "--trace-window"),
        (["--trace-window", "soon"], "--trace-window"),
        (["--trace-max-events", "0"], "--trace-max-events"),
    ],
)
def test_bad_trace_options(tmp_path, capsys, extra, says):
    args = ["run", "read_hits_procs", "--design", "old", *sets(OLD4)]
    assert main([*args, "--trace", str(tmp_path / "t.json"), *extra]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    assert main([*args, *extra]) == 2  # without --trace
    assert "--trace" in capsys.readouterr().err


def test_marks_become_instant_events():
    """Recorder.mark (what a hazard oracle calls) lands on the thread's track."""

    def mark(original, lock, th):
        yield from original(lock, th)
        lock.machine.recorder.mark("released", lock.env.now, th.name, {"lock": lock.name})

    with probes.attach(SpinLock, "release", mark):
        _, trace = trace_run(load_spec("read_hits_procs", OLD4), "old")
    doc = trace.to_json()
    names = tracks(doc)
    marks = [e for e in doc["traceEvents"] if e["ph"] == "i"]
    assert marks and {names[e["pid"], e["tid"]] for e in marks} <= {
        f"reader{i}.t0" for i in range(4)
    }
    assert {e["args"]["lock"] for e in marks} == {"pm_lock"}  # (the others are private locks)


def test_shootdown_arrows_go_from_the_initiator_to_the_targets_cores():
    spec = load_spec("mmap_churn", ["duration=1ms", "warmup=0ms"])
    res, trace = trace_run(spec, "old")
    doc = trace.to_json()
    names = tracks(doc)
    shoot = [e for e in doc["traceEvents"] if e["ph"] in "sf" and e["name"] == "shootdown"]
    ipis = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["name"] == "IPI handler"]
    assert len(ipis) == res.summary["tlb"]["ipis"] > 0
    src = {names[e["pid"], e["tid"]] for e in shoot if e["ph"] == "s"}
    dst = {names[e["pid"], e["tid"]] for e in shoot if e["ph"] == "f"}
    assert src and all(not n.startswith("core") for n in src)
    assert dst and all(n.startswith("core") for n in dst)
    assert len([e for e in shoot if e["ph"] == "f"]) == len(ipis)


def test_overlapping_holds_of_one_lock_name_get_lanes_that_never_overlap():
    wb = load_spec("writeback_readers", ["duration=3ms", "warmup=0ms"])
    doc = trace_run(wb, "new")[1].to_json()
    names = tracks(doc)
    holds = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["pid"] == 3]
    lanes = {names[e["pid"], e["tid"]] for e in holds}
    assert any(n.startswith("page_lock #") for n in lanes)  # misses on several pages at once
    for tid in {e["tid"] for e in holds}:
        mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in holds if e["tid"] == tid)
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(mine, mine[1:]))


def test_core_tracks_show_who_runs_and_when_they_idle():
    doc = trace_run(load_spec("read_hits_procs", OLD4), "old")[1].to_json()
    names = tracks(doc)
    runs = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["name"].startswith("run ")]
    by_core = {names[e["pid"], e["tid"]]: e for e in runs}
    assert len(runs) == 4 and set(by_core) == {f"core {i}" for i in range(4)}
    assert all(e["ts"] == 0 and e["dur"] == pytest.approx(1000) for e in runs)  # never idle
    wb = load_spec("writeback_readers", ["duration=3ms", "warmup=0ms", "machine.cores=2",
                                         "processes.0.threads=2"])  # fmt: skip
    doc = trace_run(wb, "new")[1].to_json()
    runs = [e for e in doc["traceEvents"] if e["ph"] == "X" and e["name"].startswith("run ")]
    per_core = Counter(e["tid"] for e in runs)
    assert len(per_core) == 2 and min(per_core.values()) > 1  # readers sleep on IO: idle gaps
    for tid in per_core:
        mine = sorted((e["ts"], e["ts"] + e["dur"]) for e in runs if e["tid"] == tid)
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(mine, mine[1:]))  # one thread at a time


def test_hazards_are_marked_where_they_happened():
    """Each hazard the oracle records is an instant event in the trace, with its trail."""
    spec = load_spec("dirty_race", ["duration=4ms", "machine.costs.ipi_latency_ns=3000"])
    res, trace = trace_run(spec, "new")
    doc = trace.to_json()
    marks = [e for e in doc["traceEvents"] if e["ph"] == "i" and e["name"].startswith("hazard ")]
    lost = res.summary["hazards"]["lost_dirty"]["count"]
    assert lost > 0
    assert sum(e["name"] == "hazard lost_dirty" for e in marks) == lost
    assert all(e["args"]["trail"] for e in marks)
