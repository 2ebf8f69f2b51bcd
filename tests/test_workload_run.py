"""`pmsim run`: every preset on every design that has its operations, and the recorded numbers
agree with each other (Little's law, CPU fractions, counts and throughputs, the time series)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from pmsim.cli import main
from pmsim.designs import designs
from pmsim.errors import ConfigError
from pmsim.operations import COUNTED_OPERATIONS, REPORTED_OPERATIONS
from pmsim.process import PROCESS_LOCKS
from pmsim.sweeps.store import RUN_TABLES
from pmsim.workload.load import load_spec, presets, read_workload, validate_spec
from pmsim.workload.runner import run_workload

SMALL = ["machine.cores=4", "duration=3ms", "warmup=1ms"]


def small(preset: str) -> list[str]:
    """Overrides that shrink a preset to 4 cores, a few threads and 3 ms."""
    raw, _ = read_workload(preset)
    return SMALL + [f"processes.{i}.threads=2" for i, _ in enumerate(raw["processes"])]


def supports(design_cls, spec) -> bool:
    return spec.operations() <= design_cls.entry_points


CASES = [(p, d) for p in presets() for d in designs()]
REFUSED = [(p, d) for p, d in CASES if not supports(designs()[d], load_spec(p))]


@pytest.fixture(scope="module")
def results():
    """Each preset, small, on each design that has its operations (run once per module)."""
    out = {}
    for preset, design in CASES:
        spec = load_spec(preset, small(preset))
        if supports(designs()[design], spec):
            out[preset, design] = run_workload(spec, design)
    return out


def test_every_preset_runs_on_new_and_the_read_presets_on_old(results):
    ran = {p for p, d in results if d == "new"}
    assert ran == set(presets())
    assert {p for p, d in results if d == "old"} >= {
        "read_hits",
        "hot_page",
        "cold_misses",
        "punch_hole",
    }
    for (preset, design), res in results.items():
        assert res.summary["total_ops_per_s"] > 0, (preset, design)


@pytest.mark.parametrize("preset,design", REFUSED)
def test_a_design_lacking_an_operation_is_refused(preset, design):
    spec = load_spec(preset, small(preset))
    with pytest.raises(ConfigError, match=f"design {design}: has no"):
        run_workload(spec, design)


def test_littles_law_per_operation(results):
    """Mean number in progress (measured as time in progress) = throughput x mean latency, up to
    the operations that straddle the window's edges: at most two per thread (a fault is inside
    a touch, so its edge is bounded by the longest touch)."""
    for (preset, design), res in results.items():
        window_s = (res.spec.duration - res.spec.warmup) / 1e9
        threads = res.spec.total_threads + 2
        ops = res.tables["ops"]
        longest = max(ops.latency_us_max.max(), ops.unfinished_age_us_max.max()) * 1e-6
        for row in ops.itertuples():
            lam_w = row.throughput_per_s * row.latency_us_mean * 1e-6
            edge = 2 * threads * longest / window_s
            assert abs(lam_w - row.in_progress_mean) <= edge + 1e-12, (preset, design, row.op)


def test_littles_law_is_tight_on_a_long_run():
    res = run_workload(
        load_spec(
            "read_hits",
            ["machine.cores=4", "processes.0.threads=4", "duration=4ms", "warmup=0.5ms"],
        ),
        "old",
    )
    row = res.tables["ops"].set_index("op").loc["read"]
    lam_w = row.throughput_per_s * row.latency_us_mean * 1e-6
    assert row.in_progress_mean == pytest.approx(
        4.0, rel=1e-3
    )  # closed loop, no think: always reading
    assert lam_w == pytest.approx(row.in_progress_mean, rel=0.01)


def test_cpu_fractions_sum_to_one(results):
    for key, res in results.items():
        cpu = res.summary["cpu"]
        assert all(0.0 <= v <= 1.0 for v in cpu.values()), key
        assert sum(cpu.values()) == pytest.approx(1.0, abs=1e-9), key
        cores = res.tables["cores"]
        assert ((cores[["useful", "spin", "ipi", "idle"]].sum(axis=1)) - 1).abs().max() < 1e-9
        assert cores["useful"].mean() == pytest.approx(cpu["useful"], rel=1e-9, abs=1e-12)


def test_counts_match_throughput_and_total(results):
    for key, res in results.items():
        window_s = (res.spec.duration - res.spec.warmup) / 1e9
        ops = res.summary["ops"]
        for name, o in ops.items():
            assert name in REPORTED_OPERATIONS
            assert o["throughput_per_s"] == pytest.approx(o["count"] / window_s, rel=1e-12)
            lat = o["latency_us"]
            assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"], (key, name)
            assert o["count"] == 0 or lat["mean"] <= lat["max"]
        issued = sum(o["count"] for n, o in ops.items() if n in COUNTED_OPERATIONS)
        assert res.summary["total_ops_per_s"] == pytest.approx(issued / window_s, rel=1e-12)


def test_time_series_counts_the_same_operations(results):
    for key, res in results.items():
        ts = res.tables["timeseries"]
        assert len(ts) == math.ceil(res.spec.duration / 1e6)
        issued = sum(o["count"] for n, o in res.summary["ops"].items() if n in COUNTED_OPERATIONS)
        assert ts.loc[ts.measured, "ops"].sum() == issued, key  # nested faults and misses left out


def test_per_op_time_series_and_histograms_hold_the_summary_counts(results):
    """op_timeseries and latency re-count each operation of the summary: the measured
    milliseconds' completions, their latency sum, the longest; the CDF's buckets."""
    for key, res in results.items():
        ots, lat = res.tables["op_timeseries"], res.tables["latency"]
        for source, ops in (("workload", res.summary["ops"]), ("daemon", res.summary["daemons"])):
            for name, o in ops.items():
                rows = ots[(ots.source == source) & (ots.op == name) & ots.measured]
                assert rows["count"].sum() == o["count"], (key, name)
                if o["count"]:
                    mean = (rows["count"] * rows.latency_us_mean).sum() / o["count"]
                    assert mean == pytest.approx(o["latency_us"]["mean"], rel=1e-9), (key, name)
                    # the max counts those still running at the end (censored) too
                    longest = max(rows.latency_us_max.max(), o["unfinished_age_us_max"])
                    assert longest == pytest.approx(o["latency_us"]["max"], rel=1e-12)
                    assert o["latency_us"]["max_is_lower_bound"] == (
                        o["unfinished_age_us_max"] > rows.latency_us_max.max()
                    )
                    buckets = lat[(lat.source == source) & (lat.op == name)]
                    assert buckets["count"].sum() == o["count"], (key, name)
                    assert buckets["censored"].sum() == o["unfinished"], (key, name)
                    assert buckets.latency_us.is_monotonic_increasing
                    assert buckets.latency_us.iloc[-1] == pytest.approx(
                        o["latency_us"]["max"], rel=1e-12
                    )


def test_holds_by_operation_add_up_to_the_lock(results):
    for key, res in results.items():
        locks, holders = res.tables["locks"].set_index("lock"), res.tables["lock_holders"]
        for name, rows in holders.groupby("lock"):
            mean = (rows["count"] * rows.hold_us_mean).sum() / rows["count"].sum()
            assert mean == pytest.approx(locks.loc[name, "hold_us_mean"], rel=1e-9), (key, name)
            assert (rows.hold_us_mean <= rows.hold_us_max * (1 + 1e-12)).all()
            assert set(rows.op) <= set(REPORTED_OPERATIONS) | {"other"}, (key, name)


def test_misses_are_nested_in_reads_that_miss():
    """Every read of a cold file misses once (one page each); a warm file never misses."""
    cold = run_workload(load_spec("cold_misses", small("cold_misses")), "new").summary["ops"]
    threads = 2
    assert cold["miss"]["count"] > 0
    assert abs(cold["miss"]["count"] - cold["read"]["count"]) <= threads
    assert cold["miss"]["latency_us"]["mean"] < cold["read"]["latency_us"]["mean"]
    warm = run_workload(load_spec("read_hits", small("read_hits")), "new").summary["ops"]
    assert "miss" not in warm


def test_a_miss_stalled_at_the_end_is_unfinished_not_dropped():
    """Misses stuck behind a writeback pass still running at the end are reported with their
    age, as the reads around them are: the stall must not vanish from the miss latencies."""
    spec = load_spec(
        "writeback_readers",
        ["machine.cores=4", "processes.0.threads=3", "duration=8ms", "warmup=1ms"],
    )
    res = run_workload(spec, "new")
    ops, fsync = res.summary["ops"], res.summary["daemons"]["fsync"]
    assert fsync["unfinished"] == 1 and fsync["count"] == 0  # the first pass starts at 5 ms
    assert ops["miss"]["unfinished"] >= 1
    assert ops["miss"]["unfinished"] <= ops["read"]["unfinished"] + ops["write"]["unfinished"]
    assert 1000 < ops["miss"]["unfinished_age_us_max"] <= fsync["unfinished_age_us_max"]
    qlock = res.summary["locks"]["page_lock"]
    assert (
        qlock["acquisitions"] > 0
    )  # a page is born locked by its inserter: that is an acquisition


def test_writeback_passes_are_intervals_and_their_steps_are_timed():
    """The writeback daemon's passes are the intervals (the last one may be unfinished); NEW
    holds pm_qlock for each whole pass, which lock_holders shows as fsync's holds."""
    spec = load_spec(
        "mmap_writeback",
        [
            "machine.cores=4",
            "processes.0.threads=3",
            "duration=14ms",
            "warmup=2ms",
            "daemons.writeback.period=3ms",
        ],
    )
    res = run_workload(spec, "new")
    iv, fsync = res.tables["intervals"], res.summary["daemons"]["fsync"]
    assert (iv.op == "fsync").all() and (iv.start_ms < iv.end_ms).all() and (iv.end_ms <= 14).all()
    finished = iv[iv.finished]
    assert len(finished[finished.end_ms >= 2]) == fsync["count"] > 0
    assert (~iv.finished).sum() == fsync["unfinished"]
    longest = (finished.end_ms - finished.start_ms).max() * 1e3
    oldest = fsync["unfinished_age_us_max"]  # the max counts the unfinished pass at its age
    assert max(longest, oldest) == pytest.approx(fsync["latency_us"]["max"], rel=1e-9)
    assert fsync["latency_us"]["max_is_lower_bound"] == (oldest > longest)
    held = res.tables["lock_holders"].set_index(["lock", "op"]).loc[("pm_qlock", "fsync")]
    assert held["count"] == fsync["count"]
    assert 0 < held.hold_us_max < longest
    timings = res.summary["timings"]
    for step in ("pte_walk", "shootdown_vmrs"):  # the unfinished pass may have done its steps
        assert fsync["count"] <= timings[step]["count"] <= fsync["count"] + fsync["unfinished"], (
            step
        )
    assert 0 < timings["pte_walk"]["us_mean"] < held.hold_us_mean


def test_summary_keys_are_stable(results):
    res = results["read_hits", "new"]
    s = json.loads(json.dumps(res.summary_with_provenance()))
    assert set(s) >= {"total_ops_per_s", "ops", "locks", "cpu", "tlb", "io", "rcu", "provenance"}
    assert set(s["ops"]["read"]) >= {"count", "throughput_per_s", "latency_us"}
    stats = {"p50", "p90", "p99", "p999", "max"}
    assert set(s["ops"]["read"]["latency_us"]) == {
        "mean",
        *stats,
        *(f"{q}_is_lower_bound" for q in stats),
    }
    assert set(s["locks"]) >= {"pm_lock", "pm_qlock", "page_lock", *PROCESS_LOCKS}
    for name in designs()["new"].locks + PROCESS_LOCKS:
        assert set(s["locks"][name]) >= {
            "acquisitions",
            "contended_fraction",
            "wait_us_mean",
            "wait_us_p99",
            "wait_us_p99_is_lower_bound",
            "wait_us_max",
            "hold_us_mean",
            "hold_us_max",
            "handoff_us_mean",
            "handoff_us_p99",
        }
    assert set(s["steady"]) == {"mser_truncation_ms", "mser_batch_ms", "unsteady"}  # no daemon
    assert set(s["cpu"]) == {"useful", "spin", "idle", "ipi"}
    assert set(s["tlb"]) == {"shootdowns", "ipis"}
    assert set(s["io"]) == {"reads", "writes", "metadata_rpcs", "utilization", "what_if_stores"}
    assert set(s["costs"]) == {"overridden", "derived_set_explicitly"}
    assert set(s["provenance"]) >= {"wall_s", "host", "pmsim_version"}
    assert "wall_s" not in json.dumps(res.summary)


def test_same_seed_same_tables_and_other_seed_differs():
    spec = load_spec("punch_hole", small("punch_hole"))
    a, b = run_workload(spec, "new"), run_workload(spec, "new")
    assert a.summary == b.summary
    for name, df in a.tables.items():
        pd.testing.assert_frame_equal(df, b.tables[name])
    c = run_workload(load_spec("punch_hole", small("punch_hole"), seed=spec.seed + 1), "new")
    assert c.summary["ops"] != a.summary["ops"]


def test_the_design_shapes_a_review_expects(results):
    """OLD's reads take pm_lock and spin on it; NEW's take no page-map lock, and spin nowhere
    when the readers are separate processes (threads of one process spin on its fd table);
    NEW's reclaim daemon frees unused pages, their radix nodes through RCU."""
    old = results["read_hits", "old"].summary
    procs = load_spec("read_hits_procs", SMALL + ["processes.0.count=4"])  # one thread each
    new = run_workload(procs, "new").summary
    threads_new = results["read_hits", "new"].summary
    assert threads_new["locks"]["pm_lock"]["acquisitions"] == 0
    assert threads_new["locks"]["fdt_lock"]["contended_fraction"] > 0
    threads = results[
        "read_hits", "old"
    ].spec.total_threads  # reads that locked before warm-up ended
    assert old["locks"]["pm_lock"]["acquisitions"] >= old["ops"]["read"]["count"] - threads
    assert new["locks"]["pm_lock"]["acquisitions"] == 0 and new["cpu"]["spin"] == 0.0
    assert old["cpu"]["spin"] > 0.0
    wb = results["reclaim", "new"].summary
    daemon = wb["daemons"]["reclaim"]
    assert daemon["count"] + daemon["unfinished"] == 1  # once, at 2 ms, in a 3 ms run
    assert wb["counters"]["pages_reclaimed"] > 0 and wb["rcu"]["callbacks"] > 0


def test_open_loop_throughput_follows_the_arrivals():
    spec = load_spec(
        "read_hits",
        [
            "machine.cores=2",
            "processes.0.threads=2",
            "duration=6ms",
            "warmup=1ms",
            "loop.kind=open",
            "loop.arrivals=exp:2us",
            "loop.think=null",
        ],
    )
    res = run_workload(spec, "new")
    read = res.summary["ops"]["read"]
    # 2 threads x 1 request / 2us = 1 M/s; Poisson count over 5 ms: sd ~ 1.4%
    assert read["throughput_per_s"] == pytest.approx(1e6, rel=0.06)
    assert res.summary["cpu"]["idle"] > 0.5  # each read takes ~0.6 us of every 2 us
    row = res.tables["ops"].set_index("op").loc["read"]
    assert row.throughput_per_s * row.latency_us_mean * 1e-6 == pytest.approx(
        row.in_progress_mean, rel=0.02
    )


def test_qlock_queue_in_the_time_series_shows_the_writeback_stall():
    """NEW's writeback holds pm_qlock across its IO: the threads that miss meanwhile wait on it."""
    spec = load_spec(
        "mmap_writeback",
        [
            "machine.cores=4",
            "processes.0.count=2",
            "processes.0.threads=2",
            "duration=8ms",
            "warmup=1ms",
            "daemons.writeback.period=2ms",
        ],
    )
    res = run_workload(spec, "new")
    ts = res.tables["timeseries"]
    assert ts.pm_qlock_queue.between(0, spec.total_threads * (1 + 1e-12)).all()  # (float sums)
    assert ts.pm_qlock_queue.max() > 0.5 * spec.total_threads
    assert res.summary["daemons"]["fsync"]["count"] >= 1
    hits = run_workload(load_spec("read_hits", small("read_hits")), "new").tables["timeseries"]
    assert (hits.pm_qlock_queue == 0).all()


def test_writes_dirty_pages_in_the_time_series():
    spec = load_spec(
        "read_hits",
        [
            "machine.cores=2",
            "processes.0.threads=2",
            "duration=3ms",
            "warmup=1ms",
            "mix.read=0",
            "mix.write=1",
        ],
    )
    ts = run_workload(spec, "new").tables["timeseries"]
    assert (
        ts.dirty_pages.is_monotonic_increasing
        and ts.dirty_pages.iloc[-1] > ts.dirty_pages.iloc[0] > 0
    )


def test_out_writes_every_table_and_the_spec_reruns_identically(tmp_path, capsys):
    out = tmp_path / "run1"
    args = [
        "run",
        "hot_page",
        "--design",
        "old",
        *sum((["--set", s] for s in small("hot_page")), []),
        "--out",
        str(out),
        "--json",
    ]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    names = {p.name for p in out.iterdir()}
    assert names == {f"{t}.parquet" for t in RUN_TABLES} | {"summary.json", "spec.yaml"}
    written = json.loads((out / "summary.json").read_text())
    written.pop("provenance"), printed.pop("provenance")
    assert written == printed
    ops = pd.read_parquet(out / "ops.parquet")
    assert list(ops.columns[:3]) == ["design", "workload", "seed"] and (ops.design == "old").all()
    raw = yaml.safe_load((out / "spec.yaml").read_text())
    again = run_workload(validate_spec(raw), "old")
    assert json.loads(json.dumps(again.summary)) == written
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    # From the command line, as its first line says (it once held a design: key, refused).
    first = (out / "spec.yaml").read_text().splitlines()[0]
    assert first.endswith("pmsim run spec.yaml --design old")
    assert main(["run", str(out / "spec.yaml"), "--design", "old", "--json"]) == 0
    rerun = json.loads(capsys.readouterr().out)
    rerun.pop("provenance")
    assert rerun == written


def test_out_is_all_or_nothing(tmp_path, monkeypatch):
    res = run_workload(load_spec("read_hits", small("read_hits")), "new")
    calls = []

    def failing(self, path, **kw):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        pd.io.parquet.to_parquet(self, path, **kw)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", failing)
    with pytest.raises(OSError):
        res.write(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    res.write(tmp_path / "out")
    (tmp_path / "out" / "ops.parquet").write_bytes(b"stale")
    res.write(tmp_path / "out")  # a folder pmsim run wrote is replaced whole
    assert pd.read_parquet(tmp_path / "out" / "ops.parquet").equals(res.tables["ops"])


def test_out_never_replaces_a_folder_pmsim_run_did_not_write(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (mine / "summary.json").write_text("{}")
    (mine / "spec.yaml").write_text("x: 1")
    args = ["run", "read_hits", *sum((["--set", s] for s in small("read_hits")), [])]
    assert main([*args, "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pmsim: error: --out:") and "not a folder pmsim run wrote" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in mine.iterdir()) == [
        "notes.txt",
        "spec.yaml",
        "sub",
        "summary.json",
    ]
    assert (mine / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args, "--out", str(empty)]) == 0
    assert (empty / "spec.yaml").is_file()


def test_designs_and_workloads_list_one_line_each(capsys):
    assert main(["designs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(designs())
    assert main(["workloads"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(presets())
    assert all(len(ln.split(None, 1)[1]) > 20 for ln in lines)  # each says its design question
