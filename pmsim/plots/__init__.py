"""Figures of a sweep (:class:`~pmsim.sweeps.api.SweepResult`), each a
:class:`matplotlib.figure.Figure` on its own Agg canvas: nothing goes through pyplot, so a
notebook shows them (``display(fig)``) and a batch job writes them without leaking.

    figs = standard_figures(result)            # {"throughput_vs_cores-read_hits": Figure, ...}
    write_figures(result, "sweeps/quick/figures")

Every figure gives each design the same colour (:data:`style.DESIGN_COLORS`), names the
workload (and the point) in its title, and keeps its legend below the axes.
"""

from __future__ import annotations

from pathlib import Path

from pmsim.plots import data, style
from pmsim.plots.bars import (
    cpu_breakdown,
    lock_breakdown,
    lock_holds_by_op,
    locks_used,
    timings,
)
from pmsim.plots.breakdown import latency_breakdown
from pmsim.plots.latency import latency_cdf
from pmsim.plots.scaling import (
    latency_vs_cores,
    latency_vs_load,
    shootdowns_per_op,
    shootdowns_per_pass,
    speedup_vs_cores,
    throughput_vs_cores,
)
from pmsim.plots.style import DESIGN_COLORS, design_colors
from pmsim.plots.timeline import (
    designs_with_intervals,
    finished_pass_run,
    has_intervals,
    writeback_timeline,
)

__all__ = [
    "DESIGN_COLORS",
    "cpu_breakdown",
    "design_colors",
    "latency_breakdown",
    "latency_cdf",
    "latency_vs_cores",
    "latency_vs_load",
    "lock_breakdown",
    "lock_holds_by_op",
    "shootdowns_per_op",
    "shootdowns_per_pass",
    "speedup_vs_cores",
    "standard_figures",
    "throughput_vs_cores",
    "timings",
    "write_figures",
    "writeback_timeline",
]


# A timed kernel step shorter than this everywhere (NEW's PTE walk with no mapping: 0.015 us)
# makes a chart with nothing in it.
MIN_TIMING_US = 1.0


def _any_above(result, workload, pattern: str, floor: float) -> bool:
    a = data.metric_prefix(result, workload, "")
    return bool(((a["metric"].str.match(pattern)) & (a["mean"] >= floor)).any())


def _any_positive(result, workload, pattern: str) -> bool:
    a = data.metric_prefix(result, workload, "")
    return bool(((a["metric"].str.match(pattern)) & (a["mean"] > 0)).any())


def standard_figures(result) -> dict:
    """The figures that apply to ``result``, per workload, keyed by a file stem such as
    ``throughput_vs_cores-read_hits`` (``_vs_<factor>`` names the x factor; ``_vs_point``
    when no numeric factor varies). Figures whose data is absent are left out: no CDF
    without the ``latency`` table, no timeline without daemon intervals, no shootdowns
    figure where no run shot a TLB down (per writeback pass where a daemon did), no timings
    chart whose steps all took under a microsecond."""
    figs = {}
    for w in data.workloads(result):
        lay = data.layout(result, w)
        xs = style.factor_slug(lay.x)
        figs[f"throughput_vs_{xs}-{w}"] = throughput_vs_cores(result, w)
        if lay.x == "machine.cores" and lay.points["machine.cores"].nunique() > 1:
            figs[f"speedup_vs_cores-{w}"] = speedup_vs_cores(result, w)
        if data.workload_ops(result, w):
            figs[f"latency_vs_{xs}-{w}"] = latency_vs_cores(result, w)
            # A load curve needs load that varies with a number (or an offered rate), not
            # points side by side whose carried load happens to differ.
            if len(lay.points) > 1 and (
                lay.x is not None or data.has_metric(result, w, "offered_ops_per_s")
            ):
                figs[f"latency_vs_load-{w}"] = latency_vs_load(result, w)
        if not data.run_table(result, "latency", w).empty:
            figs[f"latency_cdf-{w}"] = latency_cdf(result, w)
        if locks_used(result, w, lay.default_point()):
            figs[f"lock_breakdown-{w}"] = lock_breakdown(result, w)
        if _any_positive(result, w, r"locks\.[^.]+\.held_by\..+\.count$"):
            figs[f"lock_holds_by_op-{w}"] = lock_holds_by_op(result, w)
        if _any_above(result, w, r"timings\.[^.]+\.us_max$", MIN_TIMING_US):
            figs[f"timings-{w}"] = timings(result, w)
        figs[f"cpu_breakdown-{w}"] = cpu_breakdown(result, w)
        if _any_positive(result, w, r"tlb\.(shootdowns|ipis)$"):
            if _any_positive(result, w, r"daemons\.fsync\.count$"):
                figs[f"shootdowns_per_pass-{w}"] = shootdowns_per_pass(result, w)
            else:
                figs[f"shootdowns_per_op-{w}"] = shootdowns_per_op(result, w)
        if has_intervals(result, w) and not data.run_table(result, "op_timeseries", w).empty:
            for d in designs_with_intervals(result, w):
                figs[f"writeback_timeline-{w}-{d}"] = writeback_timeline(result, w, design=d)
                whole = finished_pass_run(result, w, d)  # and where a whole pass fits in the run
                if whole is not None and whole[0] != lay.default_point():
                    slug = "_".join(
                        style.format_value(k, v).replace(" ", "_") for k, v in whole[0].items()
                    )
                    figs[f"writeback_timeline-{w}-{d}-{slug}"] = writeback_timeline(
                        result, w, design=d, point=whole[0], replication=whole[1]
                    )
    return figs


def write_figures(
    result, out_dir, formats=("png", "svg"), dpi: int = 150, figures: dict | None = None
) -> list[Path]:
    """Write ``figures`` (default: :func:`standard_figures` of ``result``) into ``out_dir`` as
    ``<stem>.<format>``; the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in (standard_figures(result) if figures is None else figures).items():
        engine = fig.get_layout_engine()
        try:
            for i, fmt in enumerate(formats):
                path = out / f"{stem}.{fmt}"
                fig.savefig(path, dpi=dpi, format=fmt)
                paths.append(path)
                if i == 0 and engine is not None:  # laid out once: the other formats reuse it
                    fig.set_layout_engine("none")
        finally:
            fig.set_layout_engine(engine)
    return paths
