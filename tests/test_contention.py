"""Where the time went (issue 16): the lockstat table, cache-line bounces and the blame matrix
agree with what the primitives did, rank the lock that dominates first, and are deterministic;
``pmsim locks`` prints them from a run folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pmsim import probes
from pmsim.cli import main
from pmsim.recorder import LockStats
from pmsim.workload.contention import ALL
from pmsim.workload.load import load_spec
from pmsim.workload.runner import run_workload

SHORT = ["duration=2ms", "warmup=0.5ms"]


def procs(preset: str, cores: int) -> list[str]:
    return [f"machine.cores={cores}", f"processes.0.count={cores}", *SHORT]


@pytest.fixture(scope="module")
def old_hits():
    """OLD read hits by 32 single-thread processes, every contended wait seen by a probe."""
    waits = []

    def watch(original, st, t, wait, contended):
        if contended and t >= st.recorder.warmup:
            waits.append((st.name, wait))
        return original(st, t, wait, contended)

    with probes.attach(LockStats, "acquired", watch):
        res = run_workload(load_spec("read_hits_procs", procs("read_hits_procs", 32)), "old")
    return res, waits


def test_old_read_hits_rank_pm_lock_first_with_waits_that_add_up(old_hits):
    res, waits = old_hits
    ls = res.tables["lockstat"]
    by_lock = ls[ls["site"] == ALL].set_index("lock")
    assert ls.iloc[0]["lock"] == "pm_lock" and ls.iloc[0]["site"] == ALL
    assert by_lock.index[0] == "pm_lock"
    mine = [w for name, w in waits if name == "pm_lock"]
    assert mine, "32 processes on one pm_lock must contend"
    pm = by_lock.loc["pm_lock"]
    assert pm["contentions"] == len(mine)
    assert pm["waittime-total"] == pytest.approx(sum(mine) / 1e3, rel=1e-12)
    assert pm["waittime-max"] == pytest.approx(max(mine) / 1e3)
    assert pm["waittime-min"] == pytest.approx(min(mine) / 1e3)
    assert (by_lock["contentions"] <= by_lock["acquisitions"]).all()
    assert 0 < pm["acq-bounces"] <= pm["acquisitions"]
    assert pm["con-bounces"] <= pm["contentions"]
    # the class's contentions are its sites' (OLD takes pm_lock for a lookup in pm_find_page)
    sites = ls[(ls["lock"] == "pm_lock") & (ls["site"] != ALL)].set_index("site")
    assert "pm_find_page" in sites.index
    assert sites["contentions"].sum() == pm["contentions"]
    assert sites["waittime-total"].sum() == pytest.approx(pm["waittime-total"])
    # the summary's lock table counts the same acquisitions
    assert pm["acquisitions"] == res.summary["locks"]["pm_lock"]["acquisitions"]


def test_one_core_has_no_bounces():
    res = run_workload(load_spec("read_hits_procs", procs("read_hits_procs", 1)), "old")
    ls = res.tables["lockstat"]
    pm = ls[(ls["lock"] == "pm_lock") & (ls["site"] == ALL)].iloc[0]
    assert pm["acquisitions"] > 0
    assert pm["acq-bounces"] == 0 and pm["contentions"] == 0
    lines = res.tables["lines"]
    assert len(lines) and (lines["first_touches"] > 0).any() and (lines["transfers"] == 0).all()


def test_new_hot_page_shows_the_slot_line_bouncing():
    hot = run_workload(load_spec("hot_page_procs", procs("hot_page_procs", 16)), "new")
    uni = run_workload(load_spec("read_hits_procs", procs("read_hits_procs", 16)), "new")
    lines = hot.tables["lines"].set_index("line")
    assert hot.tables["lines"].iloc[0]["line"] == "pm_slot"  # the most transfers
    slot = lines.loc["pm_slot"]
    assert slot["transfers"] > 0 and slot["cas_failures"] > 0
    reads = hot.summary["ops"]["read"]["count"]
    assert slot["transfers"] <= 2 * reads  # a get and a put per read, at most
    u = uni.tables["lines"].set_index("line").loc["pm_slot"]
    assert slot["transfers"] / reads > u["transfers"] / uni.summary["ops"]["read"]["count"]
    window_us = (hot.summary["duration_ms"] - hot.summary["warmup_ms"]) * 1e3
    assert slot["busy_us"] > 0.5 * window_us  # one line (the hot page's), busy most of the time


WB = [
    "duration=8ms",
    "warmup=1ms",
    "daemons.writeback.period=2ms",
    "machine.cores=4",
    "processes.0.threads=4",
    "files.0.dirty=0.002",
]


@pytest.fixture(scope="module")
def writeback():
    return run_workload(load_spec("writeback_readers", WB), "new")


def test_writeback_readers_blame_the_misses_wait_on_the_writeback_pass(writeback):
    b = writeback.tables["blame"]
    q = b[(b["lock"] == "pm_qlock") & (b["waiter_site"] == "pm_insert_page")]
    assert len(q), "misses must wait on pm_qlock"
    by_holder = q.groupby("holder_site")[["wait_us_total", "waiting_us_at_end"]].sum().sum(axis=1)
    assert by_holder.idxmax() == "pm_writeback_pages"
    assert by_holder["pm_writeback_pages"] > 0.5 * by_holder.sum()
    done = q[q["holder_site"] == "pm_writeback_pages"]
    assert done["waits"].sum() > 0 and (done["holder_op"] == "fsync").all()
    # the matrix's finished waits are the lockstat table's contentions of that lock
    ls = writeback.tables["lockstat"]
    pq = ls[(ls["lock"] == "pm_qlock") & (ls["site"] == ALL)].iloc[0]
    mine = b[b["lock"] == "pm_qlock"]
    assert mine["waits"].sum() == pq["contentions"]
    assert mine["wait_us_total"].sum() == pytest.approx(pq["waittime-total"])


def test_the_tables_are_deterministic(writeback):
    again = run_workload(load_spec("writeback_readers", WB), "new")
    for name in ("lockstat", "lines", "blame"):
        pd.testing.assert_frame_equal(writeback.tables[name], again.tables[name])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, old_hits):
    out = tmp_path_factory.mktemp("run") / "old"
    old_hits[0].write(out)
    return out


def test_pmsim_locks_prints_the_table(run_dir, capsys):
    assert main(["locks", str(run_dir), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "pm_lock" in out and "waittime-total" in out and "pm_slot" in out
    assert "fdt_lock" not in out  # --top 1
    assert main(["locks", str(run_dir), "--by", "site", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["rows"][0]["site"] == "pm_find_page"
    assert {r["line"] for r in got["lines"]} >= {"pm_slot"}
    assert main(["locks", str(run_dir), "--by", "holder"]) == 0
    assert "pm_find_page" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, says",
    [
        (["--top", "0"], "--top"),
        (["--by", "nobody"], "--by"),
    ],
)
def test_pmsim_locks_bad_options(run_dir, capsys, args, says):
    assert main(["locks", str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_pmsim_locks_bad_folders(tmp_path, capsys):
    assert main(["locks", str(tmp_path / "none")]) == 2
    assert "RUN_DIR" in capsys.readouterr().err
    assert main(["locks", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lockstat.parquet" in err and len(err.strip().splitlines()) == 1


def parts(res, op: str, stat: str) -> pd.Series:
    b = res.tables["breakdown"]
    b = b[(b["source"] == "workload") & (b["op"] == op) & (b["stat"] == stat)]
    return b.set_index(b["kind"] + ":" + b["what"])["us"]


def test_breakdown_old_read_hits_spin_on_pm_lock_and_add_up(old_hits):
    res = old_hits[0]
    mean = parts(res, "read", "mean")
    lat = res.summary["ops"]["read"]["latency_us"]
    assert mean.sum() == pytest.approx(lat["mean"], rel=1e-9)  # the parts are the latency
    assert mean.idxmax() == "spin:pm_lock" and mean["spin:pm_lock"] > 0.5 * lat["mean"]
    assert "handoff:pm_lock" in mean.index
    p99 = parts(res, "read", "p99")
    assert p99.idxmax() == "spin:pm_lock" and p99.sum() > mean.sum()


def test_breakdown_new_slow_reads_sleep_behind_writeback(writeback):
    p99 = parts(writeback, "read", "p99")
    assert p99.idxmax() == "sleep:pm_qlock"
    mean = parts(writeback, "read", "mean")
    assert "io:gtfs" in mean.index and mean["io:gtfs"] > 0
    b = writeback.tables["breakdown"]
    assert not (b["op"] == "miss").any()  # nested: its waits are the read's
    assert (b["us"] >= 0).all() and (b["share"] <= 1 + 1e-9).all()


def test_the_breakdown_figure_stacks_each_designs_parts(writeback):
    from pmsim.plots import latency_breakdown

    t = writeback.tables["breakdown"]
    fig = latency_breakdown(t, "read")
    ax = fig.axes[0]
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels == ["new mean", "new p99"]
    p99 = t[(t["op"] == "read") & (t["stat"] == "p99")]["us"].sum()
    widest = max(p.get_x() + p.get_width() for p in ax.patches)
    assert widest == pytest.approx(p99)
    with pytest.raises(ValueError, match="no breakdown"):
        latency_breakdown(t, "touch")


@pytest.mark.parametrize(
    "preset, design",
    [("mixed", "new"), ("mmap_churn", "old"), ("mmap_writeback", "new"), ("punch_hole", "new")],
)
def test_every_lock_the_model_takes_names_its_call_site(preset, design):
    res = run_workload(load_spec(preset, ["duration=2ms", "warmup=0.5ms"]), design)
    ls = res.tables["lockstat"]
    sites = ls[ls["site"] != ALL]
    assert len(sites) and "?" not in set(sites["site"]), sorted(set(sites["site"]))
