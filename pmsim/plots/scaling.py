"""Metrics against a factor (cores by default): throughput, latency percentiles, latency
against load, TLB shootdowns per operation. One line per design (its fixed colour) and per
variant of the other factors (linestyle), the 95% CI over replications shaded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmsim.plots import data, style


def draw_lines(
    ax, lay: data.Layout, df, colors: dict, scale: float = 1.0, log: bool = False
) -> list[float]:
    """Mean per design and variant against x with its CI as a band (numeric x) or as error
    bars side by side (points). Each line's label is its design (and variant). On a log
    axis a CI reaching 0 or below runs off the bottom (see :func:`log_limits`).
    Returns the plotted means."""
    df = lay.place(df)
    means = []
    variants = lay.variant_values()
    width = 0.5 / max(len(colors), 1)
    crowded = len(colors) * len(variants) > 3  # overlapping bands turn to mud: error bars instead
    k = 0
    for i, (design, color) in enumerate(colors.items()):
        for v, sub in df[df["design"] == design].groupby("_v", sort=True):
            k += 1
            y = sub["mean"].to_numpy() / scale
            lo, hi = sub["ci95_low"].to_numpy() / scale, sub["ci95_high"].to_numpy() / scale
            means.extend(y)
            if log:
                floor = np.nanmin(y[y > 0]) / 1e3 if (y > 0).any() else 1e-9
                lo, hi = style.positive(lo, floor), style.positive(hi, floor)
            ls, mk = (
                style.LINESTYLES[v % len(style.LINESTYLES)],
                style.MARKERS[v % len(style.MARKERS)],
            )
            label = design if len(variants) < 2 else f"{design}, {style.point_text(variants[v])}"
            x = sub["_x"].to_numpy()
            if lay.numeric and crowded:  # each line nudged sideways so its error bars stand apart
                step = 0.012 * (k - (len(colors) * len(variants) + 1) / 2)
                x = x * 2**step if x.min() > 0 else x + step * np.ptp(x)
                ax.plot(
                    x,
                    y,
                    color=color,
                    ls=ls,
                    marker=mk,
                    label=label,
                    **style.layered(i, len(colors)),
                )
                ax.errorbar(
                    x,
                    y,
                    yerr=np.nan_to_num(np.vstack([y - lo, hi - y])),
                    color=color,
                    ls="none",
                    capsize=2,
                    elinewidth=0.9,
                    alpha=0.8,
                )
            elif lay.numeric:
                ax.plot(
                    x,
                    y,
                    color=color,
                    ls=ls,
                    marker=mk,
                    label=label,
                    **style.layered(i, len(colors)),
                )
                if np.isfinite(lo).any():
                    ax.fill_between(
                        x, lo, hi, color=color, alpha=style.CI_ALPHA, lw=0, label=f"_ci {label}"
                    )
            else:
                x = x + (i - (len(colors) - 1) / 2) * width
                yerr = np.vstack([y - lo, hi - y])
                eb = ax.errorbar(
                    x,
                    y,
                    yerr=np.nan_to_num(yerr),
                    color=color,
                    ls="none",
                    marker=mk,
                    ms=5,
                    capsize=3,
                )
                eb.lines[0].set_label(
                    label
                )  # the data line carries the design, as plotted lines do
    return means


def log_limits(ax, means, pad: float = 4.0) -> None:
    """y limits of a log axis from the means (a factor ``pad`` either side), so a wide or
    unbounded CI leaves the axes instead of setting its scale."""
    v = np.asarray([m for m in means if np.isfinite(m) and m > 0])
    if len(v):
        ax.set_ylim(v.min() / pad, v.max() * pad)
        style.plain_log_ticks(ax.yaxis, v.max() / v.min() * pad * pad)


def _setup_x(ax, lay: data.Layout, label: bool = True) -> None:
    ticks, labels = lay.xticks()
    style.x_axis(ax, ticks, numeric=lay.numeric, labels=labels)
    if label:
        ax.set_xlabel(lay.xlabel())


def _legend(fig, lay, colors, plotted, bars: bool = False, extra=()) -> None:
    """Designs, variants and what the CI means (with the replications n of ``plotted``)."""
    n = sorted(set(plotted["n"]))
    n_text = f", n={n[0]}" if len(n) == 1 else (f", n={n[0]}..{n[-1]}" if n else "")
    handles = style.design_handles(colors) + style.variant_handles(lay.variant_values())
    bars = bars or len(colors) * len(lay.variant_values()) > 3  # as draw_lines decides
    if len(plotted):
        handles.append(
            style.ci_handle(n_text)
            if lay.numeric and not bars
            else style.Line2D(
                [], [], color="0.3", marker="|", ms=10, mew=1.2, ls="none", label=f"95% CI{n_text}"
            )
        )
    style.legend_below(fig, handles + list(extra))


def _title(fig, workload: str, what: str, lay: data.Layout) -> None:
    style.suptitle(fig, f"{workload}: {what} vs {lay.xlabel()}")


def throughput_vs_cores(result, workload: str, x: str | None = None):
    """Total operations per second (M ops/s) against cores, per design: does it scale?"""
    lay = data.layout(result, workload, x)
    colors = style.design_colors(data.designs(result, workload))
    fig, axes = style.new_figure(1, 1, width=6, height=4)
    ax = axes[0, 0]
    tput = data.metric(result, workload, "total_ops_per_s")
    draw_lines(ax, lay, tput, colors, scale=1e6)
    draw_replications(ax, lay, result, workload, "total_ops_per_s", colors, scale=1e6)
    fitted = draw_usl(ax, lay, result, workload, colors) if lay.x == "machine.cores" else False
    _setup_x(ax, lay)
    ax.set_ylabel("throughput (M ops/s)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    _title(fig, workload, "throughput", lay)
    extra = (
        [style.Line2D([], [], color="0.3", ls="--", lw=1, label="USL fit (sigma, kappa)")]
        if fitted
        else []
    )
    _legend(fig, lay, colors, tput, extra=extra)
    return fig


def draw_usl(ax, lay: data.Layout, result, workload: str, colors: dict) -> bool:
    """Each design's Universal Scalability Law fit (pmsim.sweeps.usl), dashed over its points,
    from its fewest to its most cores; returns whether one was drawn."""
    usl_fits = getattr(result, "usl", None)
    if usl_fits is None or not len(usl_fits):
        return False
    from pmsim.sweeps.usl import usl

    rows = usl_fits[(usl_fits["workload"] == workload) & (usl_fits["model"] == "usl")]
    xs = lay.points["machine.cores"].astype(float)
    n = np.geomspace(max(xs.min(), 1e-9), xs.max(), 96)
    drawn = False
    for _, r in rows.iterrows():
        if r["design"] not in colors:
            continue
        ax.plot(
            n,
            usl(n, r["lam"], r["sigma"], r["kappa"]) / 1e6,
            color=colors[r["design"]],
            ls="--",
            lw=1,
            alpha=0.8,
            label=f"_usl {r['design']}",
        )
        drawn = True
    return drawn


def speedup_vs_cores(result, workload: str, log: bool = False):
    """Speedup (throughput over the design's own at the fewest cores, per replication) and
    parallel efficiency (speedup over the core ratio) against cores, with the ideal line: a
    collapse that a linear throughput axis against log2 cores hides (OLD's pm_lock at 64
    cores) is plain here. ``log`` puts the speedup on a log axis."""
    lay = data.layout(result, workload, "machine.cores")
    colors = style.design_colors(data.designs(result, workload))
    s = data.ok_summary(result, workload)
    cores = s["machine.cores"].astype(float)
    group = ["design", *[v for v in lay.variants if v in s]]
    first = cores == cores.groupby([s[g] for g in group]).transform("min")
    base = s["total_ops_per_s"].where(first).groupby([s[g] for g in group]).transform("mean")
    c0 = cores.where(first).groupby([s[g] for g in group]).transform("min")
    speedup = s["total_ops_per_s"] / base.where(base > 0)
    efficiency = speedup / (cores / c0)
    fig, axes = style.new_figure(1, 2, sharex=True, width=9, height=3.9)
    plotted = []
    xs = np.array(sorted(set(cores)))
    for ax, (name, values, ideal) in zip(
        axes[0], (("speedup", speedup, xs / xs.min()), ("efficiency", efficiency, xs * 0 + 1))
    ):
        plotted.append(data.derived(result, workload, name, values))
        draw_lines(ax, lay, plotted[-1], colors, log=log and name == "speedup")
        ax.plot(xs, ideal, color="0.5", ls=":", lw=1, label="_ideal")
        _setup_x(ax, lay)
        ax.grid(alpha=0.3, which="both", lw=0.4)
    axes[0, 0].set_ylabel(f"speedup over {xs.min():g} core{'s' if xs.min() != 1 else ''}")
    axes[0, 1].set_ylabel("parallel efficiency (speedup / cores)")
    if log:
        axes[0, 0].set_yscale("log")
    else:
        axes[0, 0].set_ylim(bottom=0)
    axes[0, 1].set_ylim(bottom=0)
    _title(fig, workload, "speedup and efficiency (dotted: ideal)", lay)
    _legend(fig, lay, colors, pd.concat(plotted))
    return fig


def latency_vs_cores(
    result, workload: str, ops=None, quantiles=("p50", "p99"), x: str | None = None
):
    """Latency percentiles (µs, log) of each operation against cores: a row per operation,
    a column per percentile, rows sharing y so p50 and p99 compare at a glance."""
    lay = data.layout(result, workload, x)
    colors = style.design_colors(data.designs(result, workload))
    ops = list(ops or data.workload_ops(result, workload))
    fig, axes = style.new_figure(
        len(ops),
        len(quantiles),
        sharex=True,
        sharey="row",
        width=3.4 * len(quantiles) + 1,
        height=2.3 * len(ops) + 1.3,
    )
    plotted, stalled, bounded = [], False, False
    for r, op in enumerate(ops):
        row_means = []
        for c, q in enumerate(quantiles):
            ax = axes[r, c]
            ax.set_yscale("log")
            plotted.append(data.metric(result, workload, f"ops.{op}.latency_us.{q}"))
            row_means += draw_lines(ax, lay, plotted[-1], colors, log=True)
            draw_replications(ax, lay, result, workload, f"ops.{op}.latency_us.{q}", colors)
            bounded = draw_bounds(ax, lay, plotted[-1], colors) or bounded
            if c == len(quantiles) - 1:
                ages = _unfinished(ax, lay, result, workload, op, colors, plotted[-1])
                row_means += ages
                stalled = stalled or bool(ages)
            _setup_x(ax, lay, label=r == len(ops) - 1)
            ax.grid(alpha=0.3, which="both", lw=0.4)
            if c == 0:
                ax.set_ylabel(f"{op} latency (µs)")
            if r == 0:
                ax.set_title(q)
        log_limits(axes[r, 0], row_means)
    _title(fig, workload, "latency", lay)
    extra = ([UNFINISHED] if stalled else []) + ([LOWER_BOUND] if bounded else [])
    _legend(fig, lay, colors, pd.concat(plotted), extra=extra)
    return fig


LOWER_BOUND = style.Line2D(
    [],
    [],
    color="0.3",
    marker="^",
    ms=8,
    ls="none",
    label="≥: a lower bound (operations still running at the end reach this percentile)",
)


def draw_replications(ax, lay, result, workload: str, metric: str, colors: dict, scale=1.0):
    """Each replication's value as a small hollow dot beside the mean: a split between
    replications (two clusters, a mean no run produced) shows instead of hiding in the band."""
    s = data.ok_summary(result, workload)
    if metric not in s:
        return
    df = lay.place(s.dropna(subset=[metric]))
    for design, color in colors.items():
        sub = df[df["design"] == design]
        if len(sub):
            ax.plot(
                sub["_x"],
                sub[metric] / scale,
                color=color,
                marker="o",
                mfc="none",
                ms=3.5,
                mew=0.7,
                alpha=0.7,
                ls="none",
                label=f"_replications {design}",
            )


def draw_bounds(ax, lay, df, colors: dict) -> bool:
    """An upward marker on each point whose value is only a lower bound in some replication
    (the aggregate's ``lower_bound``): the true percentile lies at or above it. True if any."""
    if "lower_bound" not in df:
        return False
    df = lay.place(df[df["lower_bound"] > 0])
    for design, color in colors.items():
        sub = df[df["design"] == design]
        if len(sub):
            ax.plot(
                sub["_x"],
                sub["mean"],
                color=color,
                marker="^",
                ms=8,
                ls="none",
                label=f"_bound {design}",
                zorder=5,
            )
    return bool(len(df))


UNFINISHED = style.Line2D(
    [],
    [],
    color="0.3",
    marker=">",
    mfc="none",
    ls="none",
    label="oldest unfinished at the end (mean age)",
)


def _unfinished(ax, lay, result, workload: str, op: str, colors: dict, beside) -> list[float]:
    """Where operations were still running at the end, and the oldest had run longer than the
    percentile ``beside`` it: its age (mean over the replications). A stall longer than the
    run, which the completed operations' percentiles do not show. Returns the ages drawn."""
    name = f"ops.{op}.unfinished_age_us_max"
    if not data.has_metric(result, workload, name):
        return []
    keys = ["design", "_x", "_v"]
    df = lay.place(data.metric(result, workload, name))
    df = df.merge(lay.place(beside)[keys + ["mean"]], on=keys, suffixes=("", "_q"))
    df = df[df["mean"] > df["mean_q"]]
    for design, color in colors.items():
        sub = df[df["design"] == design]
        if len(sub):
            ax.plot(
                sub["_x"],
                sub["mean"],
                color=color,
                marker=">",
                mfc="none",
                ms=7,
                ls="none",
                label=f"_unfinished {design}",
            )
    return list(df["mean"])


def latency_vs_load(
    result, workload: str, ops=None, quantiles=("p50", "p99"), x: str | None = None
):
    """Latency percentiles (µs) against load, the classic latency-load curve. The load is
    the offered rate (``offered_ops_per_s``) of an open-loop workload, else the carried
    throughput; each point is one factor value (the numbers beside the markers), with
    95% CIs both ways."""
    lay = data.layout(result, workload, x)
    colors = style.design_colors(data.designs(result, workload))
    ops = list(ops or data.workload_ops(result, workload))
    offered = data.has_metric(result, workload, "offered_ops_per_s")
    load = data.metric(result, workload, "offered_ops_per_s" if offered else "total_ops_per_s")
    keys = ["design", *lay.varying]
    load = load[keys + ["n", "mean", "ci95_low", "ci95_high"]]
    fig, axes = style.new_figure(
        len(ops),
        len(quantiles),
        sharex=True,
        sharey="row",
        width=3.6 * len(quantiles) + 1,
        height=2.4 * len(ops) + 1.3,
    )
    allx = load["mean"].to_numpy() / 1e6
    plotted = [load]
    for r, op in enumerate(ops):
        row_means = []
        for c, q in enumerate(quantiles):
            ax = axes[r, c]
            lat = data.metric(result, workload, f"ops.{op}.latency_us.{q}")
            plotted.append(lat)
            row_means += list(lat["mean"])
            lat = lat.merge(load, on=keys, suffixes=("", "_x"))
            _load_curves(ax, lay, lat, colors)
            ax.set_yscale("log")
            if style.log_if_wide(
                ax, allx, axis="x", decades=1.0
            ):  # x from the means: a CI reaching 0 runs off
                pos = allx[np.isfinite(allx) & (allx > 0)]
                ax.set_xlim(pos.min() / 1.6, pos.max() * 1.6)
                style.plain_log_ticks(ax.xaxis, pos.max() / pos.min() * 2.56)
            ax.grid(alpha=0.3, which="both", lw=0.4)
            if c == 0:
                ax.set_ylabel(f"{op} latency (µs)")
            if r == 0:
                ax.set_title(q)
            if r == len(ops) - 1:
                ax.set_xlabel("offered load (M ops/s)" if offered else "throughput (M ops/s)")
        log_limits(axes[r, 0], row_means)
    labels = lay.xlabel()
    style.suptitle(
        fig,
        f"{workload}: latency vs {'offered' if offered else 'carried'} load (marker labels: {labels})",
    )
    _legend(fig, lay, colors, pd.concat(plotted), bars=True)
    return fig


def _load_curves(ax, lay, df, colors) -> None:
    df = lay.place(df)
    variants = lay.variant_values()
    for i, (design, color) in enumerate(colors.items()):
        offset = [(4, 3), (4, -10), (-12, 3), (-12, -10)][
            i % 4
        ]  # designs' labels on different sides
        for v, sub in df[df["design"] == design].groupby("_v", sort=True):
            x, y = sub["mean_x"].to_numpy() / 1e6, sub["mean"].to_numpy()
            xerr = np.nan_to_num(
                np.vstack([x - sub["ci95_low_x"] / 1e6, sub["ci95_high_x"] / 1e6 - x])
            )
            yerr = np.nan_to_num(np.vstack([y - sub["ci95_low"], sub["ci95_high"] - y]))
            yerr[0] = np.minimum(yerr[0], y * 0.999)  # the low end stays positive on the log axis
            label = design if len(variants) < 2 else f"{design}, {style.point_text(variants[v])}"
            eb = ax.errorbar(
                x,
                y,
                xerr=xerr,
                yerr=yerr,
                color=color,
                ls=style.LINESTYLES[v % len(style.LINESTYLES)],
                marker=style.MARKERS[v % len(style.MARKERS)],
                capsize=2,
                elinewidth=0.8,
                **style.layered(i, len(colors)),
            )
            eb.lines[0].set_label(label)
            names = sub[lay.x] if lay.x else sub["_x"].astype(int).map(lambda i: lay.xticks()[1][i])
            for xi, yi, t in zip(x, y, names):
                ax.annotate(
                    f"{t:g}" if isinstance(t, (int, float, np.number)) else str(t),
                    (xi, yi),
                    xytext=offset,
                    textcoords="offset points",
                    fontsize=7,
                    color=color,
                )


def shootdowns_per_pass(result, workload: str, x: str | None = None):
    """TLB shootdowns and IPIs per writeback pass against cores, where a daemon does the
    shooting down: the passes are those that finished in the window plus the one still
    running at the end (both shot down inside it). Per operation, a pass's shootdowns divided
    by the throughput say nothing about either."""
    s = data.ok_summary(result, workload)
    passes = s["daemons.fsync.count"].fillna(0) + s.get("daemons.fsync.unfinished", 0)
    return _shootdowns_per(result, workload, x, s, passes, "pass", "writeback pass")


def shootdowns_per_op(result, workload: str, x: str | None = None):
    """TLB shootdowns and IPIs per completed operation against cores: what each operation
    pays the other cores. Operations are total_ops_per_s times the measured seconds (a sum
    of the per-operation counts would also count nested operations such as ``miss``)."""
    s = data.ok_summary(result, workload)
    ops = s["total_ops_per_s"] * data.measured_seconds(s)
    return _shootdowns_per(result, workload, x, s, ops, "op", "operation")


def _shootdowns_per(result, workload, x, s, per_what, key: str, label: str):
    """Shootdowns and IPIs of each run ``s`` divided by ``per_what`` (a count per run)."""
    lay = data.layout(result, workload, x)
    colors = style.design_colors(data.designs(result, workload))
    fig, axes = style.new_figure(1, 2, sharex=True, width=8, height=3.8)
    plotted = []
    for ax, (col, what) in zip(axes[0], (("tlb.shootdowns", "shootdowns"), ("tlb.ipis", "IPIs"))):
        per = (s[col] / per_what.where(per_what > 0)) if col in s else per_what * np.nan
        plotted.append(data.derived(result, workload, f"{what}_per_{key}", per))
        draw_lines(ax, lay, plotted[-1], colors)
        _setup_x(ax, lay)
        ax.set_ylabel(f"TLB {what} per {label}")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    _title(fig, workload, f"TLB shootdowns per {label}", lay)
    _legend(fig, lay, colors, pd.concat(plotted))
    return fig
