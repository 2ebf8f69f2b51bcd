"""The figures of pmsim.plots, checked on small real sweeps: what each draws equals the
sweep's tables, each design keeps its colour, labels carry units, legends stay off the data."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

import pmsim
from pmsim import plots
from pmsim.plots import data, style
from pmsim.plots.latency import cdf_table as latency_cdf_table

SHORT = {"duration": "1.5ms", "warmup": "0.3ms"}
SCALING = {
    "name": "plots_scaling",
    "designs": ["old", "new"],
    "grid": {"workload": ["cold_misses", "mmap_churn"]},
    "zip": {"machine.cores": [1, 4], "processes.0.threads": [1, 4]},
    "overrides": SHORT,
    "replications": 2,
    "seed": 1,
}
# Longer than the 5 ms writeback period; a cost grid gives the figures a second factor.
WRITEBACK = {
    "name": "plots_writeback",
    "workload": "writeback_readers",
    "designs": ["new", "new_batched_wb"],
    "grid": {"nvme_write_4k_us": [10, 80]},
    "zip": {"machine.cores": [4, 8], "processes.0.threads": [3, 7]},
    # (the what-if NVMe store: its write latency is the cost factor these figures need)
    "overrides": {"duration": "12ms", "warmup": "1ms", "files.0.store": "nvme"},
    "replications": 2,
    "seed": 1,
}
# No numeric factor: the points stand side by side.
POINTS = {
    "name": "plots_points",
    "workload": "read_hits",
    "designs": ["old", "new"],
    "grid": {"machine.spinlock": ["ttas", "ticket"]},
    "overrides": {
        "duration": "1ms",
        "warmup": "0.2ms",
        "machine.cores": 2,
        "processes.0.threads": 2,
    },
    "replications": 2,
    "seed": 1,
}


def _sweep(spec, tmp_path_factory):
    return pmsim.sweep(spec, out=tmp_path_factory.mktemp(spec["name"]), workers=1, progress=False)


@pytest.fixture(scope="session")
def scaling(tmp_path_factory):
    return _sweep(SCALING, tmp_path_factory)


@pytest.fixture(scope="session")
def writeback(tmp_path_factory):
    return _sweep(WRITEBACK, tmp_path_factory)


@pytest.fixture(scope="session")
def points(tmp_path_factory):
    return _sweep(POINTS, tmp_path_factory)


@pytest.fixture(scope="session")
def figures(scaling, writeback):
    """standard_figures of both sweeps, built once."""
    return {
        "scaling": plots.standard_figures(scaling),
        "writeback": plots.standard_figures(writeback),
    }


def needs(result, *tables):
    """The sweep has these per-run tables, with rows (a figure drawn from nothing proves nothing)."""
    missing = [t for t in tables if data.run_table(result, t).empty]
    assert not missing, f"no rows in the per-run tables {', '.join(missing)}"


def lines(ax, label):
    return [ln for ln in ax.get_lines() if ln.get_label() == label]


def agg(result, workload, metric, design):
    a = result.aggregate
    a = a[(a["workload"] == workload) & (a["metric"] == metric) & (a["design"] == design)]
    return a.sort_values("machine.cores")


def hexc(c):
    return to_hex(c, keep_alpha=False)


# -- colours -----------------------------------------------------------------------------


def test_design_colours_are_fixed_and_unknown_ones_deterministic():
    c = style.design_colors(["new", "old", "zeta", "alpha"])
    assert c["old"] == style.DESIGN_COLORS["old"] and c["new"] == style.DESIGN_COLORS["new"]
    assert len(set(c.values())) == 4
    assert style.design_colors(["alpha", "zeta", "old", "new"]) == c
    every = style.design_colors([*style.DESIGN_COLORS, *(f"x{i}" for i in range(5))])
    assert len(set(every.values())) == len(every)


# -- figures against the tables ------------------------------------------------------------


def test_throughput_vs_cores_draws_the_aggregate_means(scaling):
    fig = plots.throughput_vs_cores(scaling, "cold_misses")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    for design in ("old", "new"):
        (ln,) = lines(ax, design)
        a = agg(scaling, "cold_misses", "total_ops_per_s", design)
        np.testing.assert_allclose(ln.get_xdata(), a["machine.cores"])
        np.testing.assert_allclose(ln.get_ydata(), a["mean"] / 1e6)
        assert hexc(ln.get_color()) == style.DESIGN_COLORS[design].lower()
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert {hexc(b.get_facecolor()[0]) for b in bands} == {
        style.DESIGN_COLORS[d].lower() for d in ("old", "new")
    }
    assert "M ops/s" in ax.get_ylabel() and ax.get_xlabel() == "cores"
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [1, 4]
    assert "cold_misses" in fig._suptitle.get_text()


def test_latency_vs_cores_has_a_row_per_op_and_p50_p99_columns(scaling):
    fig = plots.latency_vs_cores(scaling, "cold_misses")
    ops = data.workload_ops(scaling, "cold_misses")
    assert len(fig.axes) == 2 * len(ops)
    for r, op in enumerate(ops):
        for c, q in enumerate(("p50", "p99")):
            ax = fig.axes[2 * r + c]
            assert ax.get_yscale() == "log"
            (ln,) = lines(ax, "new")
            np.testing.assert_allclose(
                ln.get_ydata(),
                agg(scaling, "cold_misses", f"ops.{op}.latency_us.{q}", "new")["mean"],
            )
    assert "µs" in fig.axes[0].get_ylabel()


def test_latency_vs_cores_marks_stalls_as_lower_bounds(writeback):
    """At 80 us a page, NEW's writeback pass outlasts the run: misses still waiting at the end
    reach the p99, which is then at least their age, and an upward marker says it is a bound."""
    fig = plots.latency_vs_cores(writeback, "writeback_readers")
    ops = data.workload_ops(writeback, "writeback_readers")
    ax = fig.axes[2 * ops.index("miss") + 1]  # miss p99
    a = writeback.aggregate
    pick = (a.workload == "writeback_readers") & (a.design == "new") & (a.nvme_write_4k_us == 80)
    age = a[pick & (a.metric == "ops.miss.unfinished_age_us_max")].sort_values("machine.cores")
    p99 = a[pick & (a.metric == "ops.miss.latency_us.p99")].sort_values("machine.cores")
    bound = p99["lower_bound"].to_numpy() > 0
    assert bound.any(), "the fixture should stall NEW's misses at 80 us a page"
    # where every replication's p99 is a bound, each is at least that run's oldest age
    every = (p99["lower_bound"] == p99["n"]).to_numpy()
    assert (p99["mean"].to_numpy()[every] >= age["mean"].to_numpy()[every] * (1 - 1e-9)).all()
    marks = lines(ax, "_bound new")
    assert len(marks) == 1 and hexc(marks[0].get_color()) == style.DESIGN_COLORS["new"].lower()
    drawn = sorted(marks[0].get_ydata())
    assert all(any(np.isclose(y, d) for d in drawn) for y in p99["mean"].to_numpy()[bound])
    assert any("lower bound" in t.get_text() for leg in fig.legends for t in leg.get_texts())


def test_latency_vs_load_plots_latency_against_carried_throughput(scaling):
    fig = plots.latency_vs_load(scaling, "cold_misses")
    ax = fig.axes[1]  # read p99
    (ln,) = lines(ax, "old")
    np.testing.assert_allclose(
        ln.get_xdata(), agg(scaling, "cold_misses", "total_ops_per_s", "old")["mean"] / 1e6
    )
    np.testing.assert_allclose(
        ln.get_ydata(), agg(scaling, "cold_misses", "ops.read.latency_us.p99", "old")["mean"]
    )
    assert fig.axes[-1].get_xlabel() == "throughput (M ops/s)"  # the bottom row's
    assert sorted(
        t.get_text() for t in ax.texts if t.get_color() == style.DESIGN_COLORS["old"]
    ) == ["1", "4"]


def test_lock_breakdown_bars_are_the_mean_waits_and_holds(scaling):
    fig = plots.lock_breakdown(scaling, "cold_misses")
    wait, hold = fig.axes
    assert "µs" in wait.get_ylabel() and "µs" in hold.get_ylabel()
    assert "4 cores" in fig._suptitle.get_text()
    (bar,) = [p for p in wait.patches if p.get_label() == "old pm_lock"]
    a = agg(scaling, "cold_misses", "locks.pm_lock.wait_us_mean", "old")
    assert bar.get_height() == pytest.approx(a["mean"].iloc[-1])
    assert hexc(bar.get_facecolor()) == style.DESIGN_COLORS["old"].lower()
    assert not [
        p for p in wait.patches if p.get_label() == "new pm_lock"
    ]  # NEW never takes pm_lock here
    assert any("not" in t.get_text() for t in wait.texts)


def test_cpu_breakdown_stacks_to_all_the_time(scaling):
    fig = plots.cpu_breakdown(scaling, "cold_misses")
    ax = fig.axes[0]
    bars = [
        p
        for p in ax.patches
        if isinstance(p, Rectangle) and p.get_label().split()[0] in ("old", "new")
    ]
    assert len(bars) >= 4
    by_x = {}
    for b in bars:
        by_x.setdefault(round(b.get_x(), 6), []).append(b)
        assert hexc(b.get_edgecolor()) == style.DESIGN_COLORS[b.get_label().split()[0]].lower()
    for stack in by_x.values():
        assert sum(b.get_height() for b in stack) == pytest.approx(1.0, abs=1e-6)
    assert "fraction" in ax.get_ylabel()


def test_shootdowns_per_op_divides_by_the_operations(scaling):
    fig = plots.shootdowns_per_op(scaling, "mmap_churn")
    s = data.ok_summary(scaling, "mmap_churn")
    s = s.assign(
        per=s["tlb.shootdowns"] / (s["total_ops_per_s"] * (s["duration_ms"] - s["warmup_ms"]) / 1e3)
    )
    want = s[s["design"] == "new"].groupby("machine.cores")["per"].mean()
    (ln,) = lines(fig.axes[0], "new")
    np.testing.assert_allclose(ln.get_ydata(), want.to_numpy())
    assert "per operation" in fig.axes[0].get_ylabel()


def test_other_factors_become_linestyles(writeback):
    fig = plots.throughput_vs_cores(writeback, "writeback_readers")
    ax = fig.axes[0]
    drawn = [ln for ln in ax.get_lines() if ln.get_label().startswith("new")]
    assert len(drawn) == 4  # 2 designs x 2 device latencies
    assert {ln.get_linestyle() for ln in drawn} == {"-", "--"}
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "nvme_write_4k_us=10" in legend and "nvme_write_4k_us=80" in legend
    (ln,) = lines(ax, "new_batched_wb, nvme_write_4k_us=80")
    a = agg(writeback, "writeback_readers", "total_ops_per_s", "new_batched_wb")
    np.testing.assert_allclose(ln.get_ydata(), a[a["nvme_write_4k_us"] == 80]["mean"] / 1e6)


def test_points_without_a_numeric_factor_stand_side_by_side(points):
    lay = data.layout(points, "read_hits")
    assert lay.x is None and lay.varying == ["machine.spinlock"]
    fig = plots.throughput_vs_cores(points, "read_hits")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ttas", "ticket"]
    (ln,) = lines(ax, "old")
    a = points.aggregate.query("metric == 'total_ops_per_s' and design == 'old'").set_index(
        "machine.spinlock"
    )
    np.testing.assert_allclose(ln.get_ydata(), a.loc[["ttas", "ticket"], "mean"] / 1e6)
    assert "throughput_vs_point-read_hits" in plots.standard_figures(points)


# -- figures from the per-run latency, op_timeseries and intervals tables ---------------------


def test_latency_cdf_per_op_from_the_histograms(scaling):
    needs(scaling, "latency")
    fig = plots.latency_cdf(scaling, "cold_misses")
    ops = [ax.get_title() for ax in fig.axes[: len(fig.axes) // 2]]
    assert "read" in ops and ops[-1] == "miss"
    top = fig.axes[0]
    for design in ("old", "new"):
        (ln,) = lines(top, design)
        y = ln.get_ydata()
        assert np.all(np.diff(y) >= 0) and y[-1] == pytest.approx(1.0)
        assert hexc(ln.get_color()) == style.DESIGN_COLORS[design].lower()
    t = data.run_table(scaling, "latency", "cold_misses")
    t = t[
        (t["machine.cores"] == 4)
        & (t["design"] == "new")
        & (t["op"] == "read")
        & (t["source"] == "workload")
    ]
    g = t.groupby("latency_us")[["count", "censored"]].sum()
    # Kaplan-Meier by hand: at each bucket, S *= 1 - completions / still at risk
    at_risk, s, want = g.to_numpy().sum(), 1.0, []
    for done, cens in g.to_numpy():
        s *= 1 - done / at_risk
        at_risk -= done + cens
        if done:
            want.append(1 - s)
    np.testing.assert_allclose(lines(top, "new")[0].get_ydata(), want)
    assert top.get_xscale() == "log" and "µs" in fig.axes[len(ops)].get_xlabel()
    assert fig.axes[len(ops)].get_yscale() == "log"


def test_writeback_timeline_shades_the_fsyncs(writeback):
    needs(writeback, "intervals", "op_timeseries")
    fig = plots.writeback_timeline(writeback)
    top, bottom = fig.axes
    assert "writeback_readers" in fig._suptitle.get_text() and "new " in fig._suptitle.get_text()
    run = data.ok_summary(writeback, "writeback_readers")
    run = run[
        (run["design"] == "new")
        & (run["machine.cores"] == 8)
        & (run["nvme_write_4k_us"] == 80)
        & (run["replication"] == 0)
    ]
    (rid,) = run["run_id"]
    iv = data.run_table(writeback, "intervals")
    fsyncs = iv[(iv["run_id"] == rid) & (iv["op"] == "fsync")]
    assert len(fsyncs) >= 1
    shaded = [p for p in top.patches if p.get_label() == "_fsync"]
    assert sorted(round(p.get_x(), 9) for p in shaded) == sorted(
        round(x, 9) for x in fsyncs["start_ms"]
    )
    ts = data.run_table(writeback, "timeseries")
    ts = ts[ts["run_id"] == rid].sort_values("time_ms")
    (queue,) = lines(bottom, "pm_qlock queue")
    np.testing.assert_allclose(queue.get_ydata()[:-1], ts["pm_qlock_queue"])
    assert top.get_yscale() == "log" and "µs" in top.get_ylabel() and "ms" in bottom.get_xlabel()
    (mean,) = [ln for ln in top.get_lines() if ln.get_label().endswith(" mean")]
    assert mean.get_label().split()[0] in ("miss", "read")


def test_writeback_timeline_of_another_design_and_replication(writeback):
    needs(writeback, "intervals", "op_timeseries")
    fig = plots.writeback_timeline(
        writeback,
        "writeback_readers",
        design="new_batched_wb",
        replication=1,
        point={"nvme_write_4k_us": 10, "machine.cores": 4, "processes.0.threads": 3},
    )
    assert (
        "new_batched_wb" in fig._suptitle.get_text() and "replication 1" in fig._suptitle.get_text()
    )
    (q,) = lines(fig.axes[1], "pm_qlock queue")
    assert hexc(q.get_color()) == style.DESIGN_COLORS["new_batched_wb"].lower()


def test_lock_holds_by_op_and_timings_draw_the_summary_means(writeback):
    metric = "locks.pm_qlock.held_by.fsync.hold_us_mean"
    assert data.has_metric(writeback, "writeback_readers", metric)
    point = {"nvme_write_4k_us": 10, "machine.cores": 8, "processes.0.threads": 7}
    fig = plots.lock_holds_by_op(writeback, "writeback_readers", point)
    (bar,) = [p for p in fig.axes[0].patches if p.get_label() == "new_batched_wb pm_qlock\nfsync"]
    want = data.select_point(data.metric(writeback, "writeback_readers", metric), point)
    assert bar.get_height() == pytest.approx(
        float(want.loc[want["design"] == "new_batched_wb", "mean"].iloc[0])
    )
    assert "µs" in fig.axes[0].get_ylabel() and "8 cores" in fig._suptitle.get_text()
    fig = plots.timings(writeback, "writeback_readers", point)
    names = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert "pte_walk" in names and "µs" in fig.axes[0].get_ylabel()


# -- the set of figures, their layout, files --------------------------------------------------


def test_standard_figures_are_the_ones_that_apply(writeback, figures):
    figs = figures["scaling"]
    for w in ("cold_misses", "mmap_churn"):
        for stem in (
            "throughput_vs_cores",
            "latency_vs_cores",
            "latency_vs_load",
            "lock_breakdown",
            "cpu_breakdown",
        ):
            assert f"{stem}-{w}" in figs
    assert "shootdowns_per_op-mmap_churn" in figs and "shootdowns_per_op-cold_misses" not in figs
    assert not [k for k in figs if k.startswith("writeback_timeline")]
    wb = figures["writeback"]
    assert {
        "writeback_timeline-writeback_readers-new",
        "writeback_timeline-writeback_readers-new_batched_wb",
    } <= set(wb)
    assert all(isinstance(f, Figure) for f in [*figs.values(), *wb.values()])


def test_a_whole_writeback_pass_gets_its_own_timeline(writeback, figures):
    """Besides the largest point (where a pass may outlast the run), the timeline of the run
    with the most cores in which a pass finished: the stall and its end both show."""
    from pmsim.plots.timeline import finished_pass_run

    iv = data.run_table(writeback, "intervals", "writeback_readers")
    s = data.ok_summary(writeback, "writeback_readers")
    for d in ("new", "new_batched_wb"):
        point, rep = finished_pass_run(writeback, "writeback_readers", d)
        run = data.select_point(s, point)
        run = run[(run.design == d) & (run.replication == rep)]
        assert len(run) == 1
        mine = iv[iv.run_id == run.run_id.iloc[0]]
        assert (mine.finished & (mine.op == "fsync")).any()
        extra = [
            k
            for k in figures["writeback"]
            if k.startswith(f"writeback_timeline-writeback_readers-{d}-")
        ]
        if point != data.layout(writeback, "writeback_readers").default_point():
            assert (
                len(extra) == 1
                and style.point_text(point) in figures["writeback"][extra[0]]._suptitle.get_text()
            )
        else:
            assert extra == []


def _overlaps(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_every_figure_titles_its_workload_keeps_colours_and_legend_off_the_axes(
    scaling, writeback, figures
):
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []  # building them went around pyplot
    for result, figs in ((scaling, figures["scaling"]), (writeback, figures["writeback"])):
        colors = style.design_colors(result.experiment.designs)
        for stem, fig in figs.items():
            workload = stem.split("-")[1]
            assert workload in fig._suptitle.get_text(), stem
            fig.draw_without_rendering()  # lays the figure out (constrained layout) without pixels
            renderer = fig.canvas.get_renderer()
            page = fig.bbox
            for leg in fig.legends:
                box = leg.get_window_extent(renderer)
                assert page.x0 - 1 <= box.x0 and box.x1 <= page.x1 + 1 and box.y0 >= page.y0 - 1, (
                    stem
                )
                for ax in fig.axes:
                    assert not _overlaps(box, ax.get_window_extent(renderer)), stem
            for ax in fig.axes:
                for art in [*ax.get_lines(), *ax.patches]:
                    first = art.get_label().split(",")[0].split(" ")[0]
                    if first in colors:
                        got = (
                            [art.get_color()]
                            if isinstance(art, Line2D)
                            else [art.get_facecolor(), art.get_edgecolor()]
                        )
                        assert colors[first].lower() in map(hexc, got), (stem, art.get_label())
                if ax.get_ylabel():
                    assert any(
                        u in ax.get_ylabel()
                        for u in (
                            "(µs)",
                            "(M ops/s)",
                            "fraction",
                            "per operation",
                            "per writeback pass",
                            "waiters",
                            "speedup",
                            "efficiency",
                        )
                    ), (stem, ax.get_ylabel())


def test_failed_runs_are_left_out(writeback):
    s = writeback.summary.copy()
    first = data.ok_summary(writeback, "writeback_readers").sort_values("replication")
    first = first[
        (first["design"] == "new")
        & (first["machine.cores"] == 8)
        & (first["nvme_write_4k_us"] == 80)
    ]
    s.loc[s["run_id"] == first["run_id"].iloc[0], "status"] = "failed"
    broken = dataclasses.replace(writeback, summary=s)
    assert (
        len(data.ok_summary(broken, "writeback_readers"))
        == len(data.ok_summary(writeback, "writeback_readers")) - 1
    )
    ops = data.ok_summary(broken, "writeback_readers")["total_ops_per_s"]
    n = data.derived(broken, "writeback_readers", "x", ops).query(
        "design == 'new' and `machine.cores` == 8 and nvme_write_4k_us == 80"
    )["n"]
    assert list(n) == [1]
    needs(writeback, "op_timeseries", "intervals")
    assert "replication 1" in plots.writeback_timeline(broken)._suptitle.get_text()


def test_write_figures_writes_png_and_svg(points, tmp_path):
    figs = plots.standard_figures(points)
    some = {k: figs[k] for k in ("throughput_vs_point-read_hits", "cpu_breakdown-read_hits")}
    paths = plots.write_figures(points, tmp_path / "figs", figures=some)
    assert sorted(p.name for p in paths) == sorted(f"{k}.{f}" for k in some for f in ("png", "svg"))
    for p in paths:
        body = p.read_bytes()
        assert len(body) > 1000
        assert body.startswith(b"\x89PNG") if p.suffix == ".png" else b"<svg" in body[:2000]
    (only,) = plots.write_figures(
        points, tmp_path / "one", formats=("png",), figures={"x": figs["cpu_breakdown-read_hits"]}
    )
    assert only.name == "x.png"


def test_throughput_and_latency_show_each_replication(scaling):
    """A hollow dot per replication beside the mean line: a split is seen, not averaged away."""
    s = data.ok_summary(scaling, "cold_misses")
    fig = plots.throughput_vs_cores(scaling, "cold_misses")
    (dots,) = lines(fig.axes[0], "_replications new")
    want = s.loc[s.design == "new", "total_ops_per_s"].to_numpy() / 1e6
    np.testing.assert_allclose(sorted(dots.get_ydata()), sorted(want))
    fig = plots.latency_vs_cores(scaling, "cold_misses")
    assert lines(fig.axes[1], "_replications old")


def test_timings_and_shootdowns_figures_only_with_content(writeback, figures):
    wb = figures["writeback"]
    a = writeback.aggregate
    longest = a[a.metric.str.match(r"timings\.[^.]+\.us_max$")]["mean"]
    assert ("timings-writeback_readers" in wb) == bool((longest >= plots.MIN_TIMING_US).any())
    assert not [k for k in wb if k.startswith("shootdowns_per_op-writeback")]


def test_speedup_and_efficiency_against_the_ideal(scaling, figures):
    fig = plots.speedup_vs_cores(scaling, "cold_misses")
    speed, eff = fig.axes[:2]
    s = data.ok_summary(scaling, "cold_misses")
    old = s[s.design == "old"]
    cores = sorted(set(old["machine.cores"]))
    by = old.groupby("machine.cores")["total_ops_per_s"].mean()
    (ln,) = lines(speed, "old")
    np.testing.assert_allclose(ln.get_ydata(), (by / by[cores[0]]).to_numpy())
    (ln,) = lines(eff, "old")
    ratio = np.array(cores, dtype=float) / cores[0]
    np.testing.assert_allclose(ln.get_ydata(), (by / by[cores[0]]).to_numpy() / ratio)
    (ideal,) = lines(speed, "_ideal")
    np.testing.assert_allclose(ideal.get_ydata(), ratio)
    assert "speedup_vs_cores-cold_misses" in figures["scaling"]
    assert plots.speedup_vs_cores(scaling, "cold_misses", log=True).axes[0].get_yscale() == "log"


def test_latency_cdf_of_a_lone_design_and_operation(tmp_path):
    """One design with one operation is one group: its CDF is still a column (pandas' apply
    widened a lone group into a frame, which crashed ``pmsim report`` on such a sweep)."""
    spec = {**POINTS, "name": "plots_lone", "designs": ["new"], "grid": {}}
    res = pmsim.sweep(spec, out=tmp_path / "lone", workers=1, progress=False)
    g = latency_cdf_table(res, "read_hits", {})
    assert set(g["design"]) == {"new"} and set(g["op"]) == {"read"}
    assert np.all(np.diff(g["cdf"].to_numpy()) >= 0) and g["cdf"].iloc[-1] == pytest.approx(1.0)
    assert plots.latency_cdf(res, "read_hits").axes


def test_a_point_whose_factor_is_null_selects_its_rows():
    """``daemons: null`` as a factor value reads back as NaN: select_point still finds it (the
    hazards sweep's report crashed on the writeback timeline of such a point)."""
    df = pd.DataFrame({"daemons": ['{"writeback": 1}', np.nan, np.nan], "x": [1, 2, 3]})
    assert list(data.select_point(df, {"daemons": np.nan})["x"]) == [2, 3]
    assert list(data.select_point(df, {"daemons": None})["x"]) == [2, 3]
    assert list(data.select_point(df, {"daemons": '{"writeback": 1}'})["x"]) == [1]
