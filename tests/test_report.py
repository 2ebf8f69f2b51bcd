"""`pmsim report`: the design-review report renders, and every number in it is the tables'."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

import pmsim
from pmsim.cli import main
from pmsim.report import write_report
from pmsim.report.review import HAZARDS, THROUGHPUT

SMALL = {
    "name": "small_review",
    "question": "Does the report tell OLD from NEW?",
    "designs": ["old", "new"],
    "grid": {"workload": ["read_hits", "writeback_readers"]},
    "zip": {"machine.cores": [1, 4], "processes.0.threads": [1, 4]},
    "overrides": {
        "duration": "12ms",
        "warmup": "2ms",
        "files.0.pages": 4096,
    },  # writeback passes of ~2 ms
    "exclude": [{"design": "old", "workload": "writeback_readers"}],
    "replications": 2,
    "seed": 3,
}


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    out = tmp_path_factory.mktemp("review")
    res = pmsim.sweep(SMALL, out, workers=1, progress=False)
    md, page = write_report(res, figures=False)
    return res, md.read_text(), page.read_text()


def section(md: str, title: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    m = re.search(
        rf"^(#+) {re.escape(title)}\n(.*?)(?=^#{{1,{{n}}}} |\Z)".replace("{n}", "3"),
        md,
        re.S | re.M,
    )
    assert m, f"no section {title!r}"
    return m.group(2)


def table(text: str) -> list[dict]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")))) for ln in lines[2:]]


def value(cell: str) -> tuple[float, float | None, float]:
    """``1,234.5 ± 0.6`` -> (1234.5, 0.6, half a unit of the last digit shown); a flag after it
    (``(underpowered)``) or a bound's ``≥`` before it is left out."""
    cell = re.sub(r" \((?:unsteady|underpowered)(?:, underpowered)?\)$", "", cell)
    cell = cell.removeprefix("≥ ")
    cell = re.sub(r" \[[-0-9.,]+, [-0-9.,]+\]$", "", cell)  # a bootstrap interval: mean only
    mean, _, half = cell.partition(" ± ")
    decimals = len(mean.split(".")[1]) if "." in mean else 0
    return (
        float(mean.replace(",", "")),
        (float(half.replace(",", "")) if half else None),
        0.5 * 10**-decimals,
    )


def agg(res, design, workload, cores, metric):
    a = res.aggregate
    row = a[
        (a.design == design)
        & (a.workload == workload)
        & (a["machine.cores"] == cores)
        & (a.metric == metric)
    ]
    assert len(row) == 1, (design, workload, cores, metric)
    return row.iloc[0]


def same(cell: str, mean: float, half: float, scale: float = 1.0) -> None:
    m, h, tol = value(cell)
    assert abs(m - mean * scale) <= tol * 1.0001, (cell, mean * scale)
    if h is not None:
        assert abs(h - half * scale) <= tol * 1.0001, (cell, half * scale)


def cores_of(label: str) -> int:
    return int(label.split()[0])


def test_report_has_every_section(review):
    res, md, page = review
    assert md.startswith("# Design review: small_review\n")
    assert "> Does the report tell OLD from NEW?" in md
    for title in (
        "Set-up",
        "Headline numbers",
        "Where new wins over old",
        "Where old wins over new",
        "Hazards quantified",
    ):
        assert f"## {title}\n" in md, title
    assert "Every cost is at its default" in md
    assert "2 replications per design and point (seed 3); 12 runs finished, 0 failed" in md
    setup = table(section(md, "Set-up"))
    assert {r["workload"]: r["designs"] for r in setup} == {
        "read_hits": "old, new",
        "writeback_readers": "new",
    }


def test_headline_numbers_are_the_aggregate_and_the_paired_differences(review):
    res, md, _ = review
    rows = table(section(md, "Headline numbers"))
    assert {(r["workload"], r["point"]) for r in rows} == {
        (w, f"{c} core{'s' * (c > 1)}") for w in ("read_hits", "writeback_readers") for c in (1, 4)
    }
    d = res.differences
    for r in rows:
        w, cores = r["workload"], cores_of(r["point"])
        for design in ("old", "new"):
            cell = r[f"{design} M ops/s"]
            if design == "old" and w == "writeback_readers":
                assert cell == "-"
                continue
            a = agg(res, design, w, cores, THROUGHPUT)
            same(cell, a["mean"], a["ci95_half"], 1e-6)
            p99 = agg(res, design, w, cores, "ops.read.latency_us.p99")
            same(r[f"{design} p99 µs"], p99["mean"], p99["ci95_half"])
        diff = d[(d.workload == w) & (d["machine.cores"] == cores) & (d.metric == THROUGHPUT)]
        if w == "read_hits":
            same(r["new − old M ops/s"], diff["mean"].iloc[0], diff["ci95_half"].iloc[0], 1e-6)
        else:
            assert diff.empty and r["new − old M ops/s"] == "-"


def test_wins_follow_the_paired_verdicts(review):
    res, md, _ = review
    d = res.differences
    thr = d[(d.workload == "read_hits") & (d.metric == THROUGHPUT)]
    new_wins = section(md, "Where new wins over old")
    old_wins = section(md, "Where old wins over new")
    faster = [int(c) for c in thr.loc[thr.verdict == "higher", "machine.cores"]]
    slower = [int(c) for c in thr.loc[thr.verdict == "lower", "machine.cores"]]

    def points(text):
        return [
            cores_of(m)
            for ln in text.splitlines()
            if (m := re.match(r"- `read_hits` throughput at (\d+ cores?) ", ln)) and (m := m[1])
        ]

    assert points(new_wins) == faster and points(old_wins) == slower
    assert faster, "NEW should beat OLD at 4 cores on read hits"
    line = next(ln for ln in new_wins.splitlines() if "`read_hits` throughput" in ln)
    assert re.search(r"new > old in \d/2 pairs \(sign test p = [0-9.]+\)", line), line
    assert (thr.loc[thr.ci95_low > 0, "verdict"] != "lower").all()


def test_hazard_table_is_the_aggregate(review):
    res, md, _ = review
    text = section(md, "`writeback_readers`")
    rows = table(text)
    assert [(r["design"], cores_of(r["point"])) for r in rows] == [("new", 1), ("new", 4)]
    titles = {f"{t} ({u})" if u else t: (metric, scale) for t, metric, scale, u in HAZARDS}
    checked = 0
    for r in rows:
        for col, cell in r.items():
            if col in titles and cell != "-":
                a = agg(res, "new", "writeback_readers", cores_of(r["point"]), titles[col][0])
                same(cell, a["mean"], a["ci95_half"], titles[col][1])
                checked += 1
    assert checked >= 8
    held = agg(res, "new", "writeback_readers", 4, "locks.pm_qlock.held_by.fsync.hold_us_max")
    assert held["mean"] > 1000, "a writeback pass should hold pm_qlock for milliseconds"
    assert "a writeback pass holds `pm_qlock` for up to" in text
    # the reviewer's sentence: how long misses wait, and whether a pass outlasts the run
    worst = max(
        agg(res, "new", "writeback_readers", c, "ops.miss.latency_us.max")["mean"] for c in (1, 4)
    )
    m = re.search(r"misses wait up to (≥ )?([0-9.,]+)(?: ± [0-9.,]+)? ms behind writeback at", text)
    assert m and abs(float(m[2].replace(",", "")) - worst / 1e3) <= 0.01 * worst / 1e3
    assert "a pass finishes at every point" in text or "a pass outlasts the run" in text


def test_html_has_the_markdown_numbers(review):
    _, md, page = review

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.cells, self.open = [], []

        def handle_starttag(self, tag, attrs):
            if tag not in ("meta", "img", "br"):
                self.open.append(tag)

        def handle_endtag(self, tag):
            assert self.open.pop() == tag, f"</{tag}> closes something else"

        def handle_data(self, data):
            if self.open and self.open[-1] in ("td", "th"):
                self.cells.append(data)

    parser = Cells()
    parser.feed(page)
    assert parser.open == []
    md_cells = [
        c.strip()
        for ln in md.splitlines()
        if ln.startswith("|") and not ln.startswith("|--")
        for c in ln.strip("|").split("|")
    ]
    assert [c for c in md_cells if c.strip("-:")] == [c for c in parser.cells if c.strip("-:")]


def test_non_default_costs_are_listed(tmp_path):
    exp = {
        "name": "costs",
        "designs": ["old"],
        "workload": "read_hits",
        "overrides": {
            "duration": "0.5ms",
            "warmup": "0.1ms",
            "machine.cores": 2,
            "processes.0.threads": 2,
            "cacheline_transfer_ns": "150ns",
        },
        "replications": 1,
    }
    res = pmsim.sweep(exp, tmp_path / "c", workers=1, progress=False)
    md = write_report(res, figures=False)[0].read_text()
    rows = table(section(md, "Set-up").split("Costs that differ")[1])
    assert rows == [
        {
            "cost": "cacheline_transfer_ns",
            "default": rows[0]["default"],
            "used": "150ns",
            "workloads": "read_hits",
        }
    ]
    from pmsim.costs import CostTable

    assert value(rows[0]["default"].split()[0])[0] == pytest.approx(
        CostTable().value("cacheline_transfer_ns")
    )
    assert "## Where" not in md  # one design: nothing to compare


def test_report_command(review, tmp_path, capsys):
    res, _, _ = review
    assert main(["report", str(res.out), "--out", str(tmp_path / "r"), "--no-figures"]) == 0
    assert "report.md" in capsys.readouterr().out
    assert (tmp_path / "r" / "report.md").read_text() == (res.out / "report.md").read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "holds no finished sweep" in capsys.readouterr().err


def test_the_committed_report_is_the_committed_tables(tmp_path):
    """results/design_review/report.md is what pmsim report makes of the committed tables today
    (a model or report change without regenerating the results fails here), and every figure
    it shows is committed."""
    from pathlib import Path

    from pmsim.sweeps.api import SweepResult

    results = Path(__file__).resolve().parents[1] / "results" / "design_review"
    res = SweepResult.load(results)  # the tables digest holds
    assert (res.summary["status"] == "ok").all() and len(res.summary) == 350
    md = write_report(res, tmp_path, figures=False)[0].read_text()
    committed = (results / "report.md").read_text()
    assert committed.split("\n## Figures\n")[0].rstrip() == md.rstrip(), (
        "regenerate: pmsim report results/design_review"
    )
    shown = re.findall(r"!\[[^]]*\]\(([^)]+)\)", committed)
    assert len(shown) >= 40 and all((results / p).is_file() for p in shown)


def _always_fails(design, spec, *unread):
    raise RuntimeError(f"injected failure for {design}")


def test_a_sweep_whose_runs_all_failed_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """Every run fails (each raises; a cost no design reads is now refused before the sweep
    runs, tests/test_sweep_costs.py)."""
    from pmsim.sweeps import api

    exp = {
        "name": "all_fail",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "overrides": {
            "duration": "0.3ms",
            "warmup": "0.1ms",
            "machine.cores": 2,
            "processes.0.threads": 2,
        },
        "replications": 1,
    }
    monkeypatch.setattr(api, "run_task", _always_fails)
    res = pmsim.sweep(exp, tmp_path / "f", workers=1, progress=False)
    assert (res.summary["status"] == "failed").all()
    capsys.readouterr()
    for cmd in ("report", "plot"):
        assert main([cmd, str(res.out)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert "finished ok" in err and "2 failed" in err


def test_where_the_time_went_ranks_the_runs_locks(review):
    res, md, _ = review
    rows = table(section(md, "`read_hits` at 4 cores"))
    old = [r for r in rows if r["design"] == "old"]
    ls = res.table("lockstat")
    ls = ls[(ls["site"] == "*") & (ls["workload"] == "read_hits") & (ls["design"] == "old")]
    ls = ls[ls["machine.cores"] == 4]
    want = ls.groupby("lock")["waittime-total"].sum() / ls["run_id"].nunique()
    assert old[0]["lock"] == want.idxmax()
    m, _, tol = value(old[0]["waittime-total (µs)"])
    assert abs(m - want.max()) <= tol * 1.0001


def test_races_section_says_no_race_occurred_on_benign_presets(review):
    _, md, _ = review
    text = section(md, "Races the timing opens")
    assert "`read_hits`: no race occurred on any design at any point." in text
    assert "No race occurred in this sweep." in text


def test_races_section_rates_lost_dirty_per_design_and_point(tmp_path):
    exp = {
        "name": "races",
        "question": "Does a store escape writeback?",
        "workload": "dirty_race",
        "designs": ["new", "new_sync_shootdown"],
        "grid": {"ipi_latency_ns": [3000]},
        "overrides": {"duration": "4ms"},
        "replications": 2,
        "seed": 1,
    }
    res = pmsim.sweep(exp, tmp_path / "r", workers=1, progress=False)
    md, _ = write_report(res, figures=False)
    races = md.read_text().split("## Races the timing opens", 1)[1]
    rows = table(section(races, "`dirty_race`"))
    by = {r["design"]: r for r in rows if "lost_dirty (/s)" in r}
    assert set(by) == {"new", "new_sync_shootdown"}
    assert value(by["new"]["lost_dirty (/s)"])[0] > 0
    assert by["new_sync_shootdown"]["lost_dirty (/s)"] == "0 ± 0"
    s = res.summary.set_index("design")
    assert (s.loc["new", "hazards.lost_dirty.count"] > 0).all()
    assert (s.loc["new_sync_shootdown", "hazards.lost_dirty.count"] == 0).all()


def test_a_null_factor_reads_none_in_point_labels():
    """``daemons: null`` reads back as NaN; the report calls that point ``daemons=none``."""
    from pmsim.report.review import Review

    label = Review.label(None, {"machine.cores": 4, "daemons": float("nan"), "x": 2})
    assert label == "4 cores, daemons=none, x=2"
