"""Bars at one factor point (lock waits and holds, holds by holder, named timings) and per
point (where the CPU time goes). Bars keep each design's colour; what a bar segment or
marker means is told by hatching and marker shape, explained in the legend."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from pmsim.plots import data, style

# cpu.* fractions, stacked bottom up: solid for useful work, hatched for spinning and IPIs.
CPU_PARTS = (
    ("useful", 1.0, None),
    ("spin", 0.5, "////"),
    ("ipi", 0.3, "xxx"),
    ("idle", 0.08, None),
)
MARKS = {
    "p99": {"marker": "o", "mfc": "white", "ms": 5, "mew": 1.3},
    "max": {"marker": "x", "ms": 5, "mew": 1.3},
}


def _point(result, workload, point) -> dict:
    return data.layout(result, workload).default_point() if point is None else point


def _at(result, workload, point, name) -> pd.DataFrame:
    return data.select_point(data.metric(result, workload, name), point)


def _value(df, design, col="mean"):
    row = df[df["design"] == design]
    return float(row[col].iloc[0]) if len(row) else np.nan


def grouped_bars(ax, groups: list[str], colors: dict, get, absent=None) -> None:
    """Bars per group and design: ``get(group, design)`` gives ``(frame of the mean metric,
    {mark: frame})``; the bar is the mean with its 95% CI, marks are drawn as markers.
    Log y when the values span more than two decades; a zero bar is labelled 0, and one
    where ``absent(group, design)`` gives a text (e.g. a lock the design never took) that text."""
    width = 0.8 / max(len(colors), 1)
    values, bars, zeros = [], [], []
    for i, (design, color) in enumerate(colors.items()):
        xs = np.arange(len(groups)) + (i - (len(colors) - 1) / 2) * width
        for x, g in zip(xs, groups):
            if absent is not None and (text := absent(g, design)):
                zeros.append((x, text))
                continue
            mean_df, marks = get(g, design)
            m = _value(mean_df, design)
            if np.isnan(m):
                zeros.append((x, "n/a"))
                continue
            lo, hi = _value(mean_df, design, "ci95_low"), _value(mean_df, design, "ci95_high")
            err = None if np.isnan(lo) else [[max(m - max(lo, 0), 0)], [max(hi - m, 0)]]
            bar = ax.bar(x, m, width * 0.92, color=color, yerr=err, ecolor="0.25", capsize=2)
            bar.patches[0].set_label(f"{design} {g}")  # the patch names its design, as lines do
            values.append(m)
            bars.append(m)
            if m <= 0:
                zeros.append((x, "0"))
            for name, df in marks.items():
                v = _value(df, design)
                if np.isfinite(v):
                    ax.plot(
                        [x],
                        [v],
                        ls="none",
                        color=color,
                        label=f"_{name} {design} {g}",
                        **MARKS[name],
                    )
                    values.append(v)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    if style.log_if_wide(ax, values):
        low = min(v for v in values if v > 0) / 3
        low = max(
            low, min((b for b in bars if b > 0), default=low) / 30
        )  # not for a stray marker far below
        ax.set_ylim(bottom=low)
    else:
        low = 0
        ax.set_ylim(bottom=0)
    for x, text in zeros:
        ax.text(x, low, text, ha="center", va="bottom", fontsize=7, color="0.3")
    ax.grid(axis="y", alpha=0.3, which="both", lw=0.4)


def _mark_handles(names) -> list:
    return [style.Line2D([], [], color="0.3", ls="none", label=n, **MARKS[n]) for n in names]


def locks_used(result, workload, point) -> list[str]:
    """Locks with acquisitions or holds at ``point`` (a lock's holds can be recorded where its
    acquisitions are not: see the report)."""
    a = data.select_point(data.metric_prefix(result, workload, "locks."), point)
    used = a[a["metric"].str.match(r"locks\.[^.]+\.(acquisitions|hold_us_mean)$") & (a["mean"] > 0)]
    return list(dict.fromkeys(used["metric"].str.split(".").str[1]))


def lock_breakdown(result, workload: str, point: dict | None = None):
    """Mean wait and mean hold (µs, bars with 95% CI; p99 as a marker) of every lock acquired
    at one point (default: the most cores): which lock costs what, in each design."""
    point = _point(result, workload, point)
    colors = style.design_colors(data.designs(result, workload))
    locks = locks_used(result, workload, point)
    fig, axes = style.new_figure(2, 1, sharex=True, width=max(5.5, 1.3 * len(locks) + 2), height=6)

    def taken(lk, d):
        return any(
            _value(_at(result, workload, point, f"locks.{lk}.{m}"), d) > 0
            for m in ("acquisitions", "hold_us_mean", "wait_us_mean")
        )

    for ax, what in zip(axes[:, 0], ("wait", "hold")):
        grouped_bars(
            ax,
            locks,
            colors,
            lambda g, d, w=what: (
                _at(result, workload, point, f"locks.{g}.{w}_us_mean"),
                {"p99": _at(result, workload, point, f"locks.{g}.{w}_us_p99")},
            ),
            absent=lambda g, d: None if taken(g, d) else "not\ntaken",
        )
        ax.set_ylabel(f"{what} (µs)")
        ax.set_title(
            f"time {'waiting for' if what == 'wait' else 'holding'} the lock, per acquisition",
            fontsize=9,
        )
    axes[-1, 0].set_xlabel("lock")
    style.suptitle(
        fig, f"{workload} at {style.point_text(point) or 'its one point'}: lock waits and holds"
    )
    style.legend_below(
        fig,
        [
            *style.design_patches(colors),
            *_mark_handles(["p99"]),
            style.Line2D(
                [],
                [],
                color="0.25",
                marker="|",
                ms=10,
                mew=1.2,
                ls="none",
                label="95% CI of the mean",
            ),
        ],
    )
    return fig


def lock_holds_by_op(result, workload: str, point: dict | None = None):
    """Mean lock hold (µs) by the operation holding the lock, with p99 and max as markers:
    writeback's long pm_qlock holds hide in the mean over every holder."""
    point = _point(result, workload, point)
    colors = style.design_colors(data.designs(result, workload))
    a = data.select_point(data.metric_prefix(result, workload, "locks."), point)
    held = a[a["metric"].str.match(r"locks\.[^.]+\.held_by\..+\.count$") & (a["mean"] > 0)]
    pairs = list(
        dict.fromkeys(
            re.match(r"locks\.([^.]+)\.held_by\.(.+)\.count$", m).groups() for m in held["metric"]
        )
    )
    fig, axes = style.new_figure(1, 1, width=max(6, 0.9 * len(pairs) + 2), height=4.2)
    ax = axes[0, 0]
    groups = [f"{lk}\n{op}" for lk, op in pairs]
    base = {f"{lk}\n{op}": f"locks.{lk}.held_by.{op}" for lk, op in pairs}
    counts = {g: _at(result, workload, point, f"{base[g]}.count") for g in groups}
    grouped_bars(
        ax,
        groups,
        colors,
        lambda g, d: (
            _at(result, workload, point, f"{base[g]}.hold_us_mean"),
            {m: _at(result, workload, point, f"{base[g]}.hold_us_{m}") for m in ("p99", "max")},
        ),
        absent=lambda g, d: None if _value(counts[g], d) > 0 else "none",
    )
    ax.set_ylabel("hold (µs)")
    ax.set_xlabel("lock / operation holding it")
    style.suptitle(
        fig, f"{workload} at {style.point_text(point) or 'its one point'}: lock holds by holder"
    )
    style.legend_below(fig, [*style.design_patches(colors), *_mark_handles(["p99", "max"])])
    return fig


def timings(result, workload: str, point: dict | None = None):
    """Named internal durations (``timings.<name>``: PTE walks, shootdowns of a file's
    mappings, RCU grace periods) in µs, mean bars with p99 and max markers."""
    point = _point(result, workload, point)
    colors = style.design_colors(data.designs(result, workload))
    a = data.select_point(data.metric_prefix(result, workload, "timings."), point)
    names = list(
        dict.fromkeys(
            a.loc[a["metric"].str.endswith(".count") & (a["mean"] > 0), "metric"]
            .str.split(".")
            .str[1]
        )
    )
    fig, axes = style.new_figure(1, 1, width=max(5.5, 1.3 * len(names) + 2), height=4.2)
    ax = axes[0, 0]
    grouped_bars(
        ax,
        names,
        colors,
        lambda g, d: (
            _at(result, workload, point, f"timings.{g}.us_mean"),
            {m: _at(result, workload, point, f"timings.{g}.us_{m}") for m in ("p99", "max")},
        ),
    )
    ax.set_ylabel("duration (µs)")
    style.suptitle(
        fig, f"{workload} at {style.point_text(point) or 'its one point'}: internal timings"
    )
    style.legend_below(fig, [*style.design_patches(colors), *_mark_handles(["p99", "max"])])
    return fig


def cpu_breakdown(result, workload: str, x: str | None = None):
    """Where all cores' time goes (fractions: useful work, spinning, IPI handling, idle),
    stacked per design and point: OLD's lost throughput shows up as spin."""
    lay = data.layout(result, workload, x)
    colors = style.design_colors(data.designs(result, workload))
    pts = lay.place(lay.points).sort_values(["_x", "_v"], kind="stable")
    fig, axes = style.new_figure(1, 1, width=max(6, 0.45 * len(colors) * len(pts) + 2), height=4.4)
    ax = axes[0, 0]
    width = 0.8 / max(len(colors), 1)
    parts = {p: data.metric(result, workload, f"cpu.{p}") for p, _, _ in CPU_PARTS}
    for i, (design, color) in enumerate(colors.items()):
        for gx, (_, pt) in enumerate(pts.iterrows()):
            point = {k: pt[k] for k in lay.varying}
            bottom = 0.0
            for part, amount, hatch in CPU_PARTS:
                v = _value(data.select_point(parts[part], point), design)
                if not np.isfinite(v) or v <= 0:
                    continue
                bar = ax.bar(
                    gx + (i - (len(colors) - 1) / 2) * width,
                    v,
                    width * 0.92,
                    bottom=bottom,
                    color=style.tint(color, amount),
                    edgecolor=color,
                    hatch=hatch,
                    lw=0.6,
                )
                bar.patches[0].set_label(f"{design} {part}")
                bottom += v
    labels = [_group_label(lay, pt) for _, pt in pts.iterrows()]
    ax.set_xticks(range(len(pts)), labels)
    ax.set_xlabel(
        lay.xlabel()
        if not lay.variants
        else " / ".join(style.factor_label(k) for k in [lay.x, *lay.variants])
    )
    ax.set_ylabel("fraction of all cores' time")
    ax.set_ylim(0, 1)
    style.suptitle(fig, f"{workload}: where the CPU time goes")
    parts_h = [
        style.Patch(facecolor=style.tint("#555555", a), edgecolor="#555555", hatch=h, label=p)
        for p, a, h in CPU_PARTS
    ]
    style.legend_below(
        fig, [*style.design_patches(colors), *parts_h], ncols=len(colors) + len(parts_h)
    )
    return fig


def _group_label(lay, pt) -> str:
    if lay.x is None:
        return lay.xticks()[1][int(pt["_x"])]
    vals = [pt[lay.x], *(pt[v] for v in lay.variants)]
    return "\n".join(f"{v:g}" if isinstance(v, (int, float, np.number)) else str(v) for v in vals)
