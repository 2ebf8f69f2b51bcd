"""Latency distributions from the per-run ``latency`` histograms (the upper edge of each
log-spaced bucket, its completions and the operations still running at the end by age),
replications merged by adding their counts. The distribution is the Kaplan-Meier estimate
(as the summary's percentiles are): an operation still running at the end is censored at its
age. Where the censored mass lies beyond every completion the curve stops short of 1, and the
oldest such operation is shown as a marker at its age: without it a design whose operations
stall would look fast."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmsim.plots import data, style


def cdf_table(result, workload: str, point: dict, source: str = "workload"):
    """Per design, operation and bucket edge: count, the CDF (fraction at or below the edge)
    and the tail (fraction above it) over every replication at ``point``; and per design and
    operation the operations unfinished at the end (``unfinished``; ``age_us``, the oldest's age)."""
    t = data.run_table(result, "latency", workload)
    if t.empty:
        raise ValueError(f"latency_cdf: the sweep has no 'latency' table for workload {workload!r}")
    t = data.select_point(t[t["source"] == source], point)
    if "censored" not in t:  # tables written before censoring was counted
        t = t.assign(censored=0)
    g = t.groupby(["design", "op", "latency_us"], as_index=False)[["count", "censored"]].sum()
    g = g.sort_values(["design", "op", "latency_us"])
    ops = data.run_table(result, "ops", workload)
    cens = pd.DataFrame(columns=["design", "op", "unfinished", "age_us"])
    if not ops.empty and "unfinished" in ops:
        ops = data.select_point(ops[ops["source"] == source], point)
        cens = ops.groupby(["design", "op"], as_index=False).agg(
            unfinished=("unfinished", "sum"), age_us=("unfinished_age_us_max", "max")
        )
    g = g.merge(cens, on=["design", "op"], how="left").fillna({"unfinished": 0, "age_us": 0.0})
    g["cdf"] = 0.0
    for rows in g.groupby(["design", "op"]).indices.values():  # (apply() widens a lone group)
        g.iloc[rows, g.columns.get_loc("cdf")] = km_cdf(
            g["count"].to_numpy()[rows], g["censored"].to_numpy()[rows]
        )
    g["total"] = g.groupby(["design", "op"])["count"].transform("sum")
    g = g[g["count"] > 0].copy()  # the estimate steps only where operations completed
    g["tail"] = 1.0 - g["cdf"]
    return g


def km_cdf(done, censored) -> np.ndarray:
    """Kaplan-Meier P(latency <= edge) from per-bucket completions and censored counts (the
    completions of a bucket count before its censored ones, as pmsim.stats.km_cdf)."""
    d, c = np.asarray(done, dtype=float), np.asarray(censored, dtype=float)
    at_risk = d.sum() + c.sum() - np.concatenate(([0.0], np.cumsum(d + c)[:-1]))
    hazard = np.divide(d, at_risk, out=np.zeros_like(d), where=at_risk > 0)
    return 1.0 - np.cumprod(1.0 - hazard)


def latency_cdf(result, workload: str, point: dict | None = None, ops=None):
    """The latency distribution of each operation (a column each, ``miss`` included) per
    design at one point (default: the most cores). Top row the CDF (linear 0..1, where the
    body of the distribution reads), bottom row 1-CDF on a log scale, where the tail
    (p99 at 10^-2, p99.9 at 10^-3) is read: the review's question is mostly about tails.
    Where an operation still unfinished at the end is older than every completed one, a
    marker in the tail panel sits at its age and 1/(completed + unfinished): at least that
    fraction took at least that long."""
    lay = data.layout(result, workload)
    point = lay.default_point() if point is None else point
    colors = style.design_colors(data.designs(result, workload))
    g = cdf_table(result, workload, point)
    have = list(dict.fromkeys(g["op"]))
    known = data.workload_ops(result, workload)
    order = [o for o in known if o in have] + [o for o in have if o not in known]
    ops = [o for o in (ops or sorted(order, key=lambda o: o == "miss")) if o in have]
    n = max(len(ops), 1)
    fig, axes = style.new_figure(2, n, sharex="col", width=max(6.0, 3.6 * n + 1), height=6.2)
    censored = False
    for c, op in enumerate(ops):
        top, bottom = axes[0, c], axes[1, c]
        floor, span = 1.0, [float("inf"), 0.0]
        for design, color in colors.items():
            d = g[(g["design"] == design) & (g["op"] == op)]
            if d.empty:
                continue
            x = d["latency_us"].to_numpy()
            span = [min(span[0], x.min()), max(span[1], x.max())]
            top.plot(x, d["cdf"].to_numpy(), color=color, drawstyle="steps-pre", label=design)
            tail = d["tail"].to_numpy()
            keep = tail > 1e-12
            bottom.plot(x[keep], tail[keep], color=color, drawstyle="steps-pre", label=design)
            floor = min(floor, 0.5 / d["total"].iloc[0])
            age, left = float(d["age_us"].iloc[0]), d["unfinished"].iloc[0]
            if left > 0 and age > x[-1]:  # a stall the completed operations do not show
                at = 1.0 / (d["total"].iloc[0] + left)
                bottom.plot(
                    [age],
                    [at],
                    color=color,
                    marker=">",
                    ms=7,
                    ls="none",
                    label=f"_unfinished {design}",
                )
                span[1] = max(span[1], age)
                floor = min(floor, at / 2)
                censored = True
        top.set_title(op)
        top.set_ylim(0, 1.02)
        bottom.set_yscale("log")
        bottom.set_ylim(floor, 1.5)
        bottom.yaxis.set_minor_locator(style.NullLocator())  # decades are what the tail is read in
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.grid(alpha=0.3, which="major", lw=0.4)
        style.plain_log_ticks(top.xaxis, span[1] / span[0] if span[0] < span[1] else 1.0)
        bottom.set_xlabel(f"{op} latency (µs)")
        if c == 0:
            top.set_ylabel("fraction ≤ latency (CDF)")
            bottom.set_ylabel("fraction > latency (1 − CDF)")
        for q in (1e-2, 1e-3):
            bottom.axhline(q, color="0.6", lw=0.6, ls=":")
    style.suptitle(
        fig,
        f"{workload} at {style.point_text(point) or 'its one point'}: latency distribution "
        f"(replications merged)",
    )
    handles = style.design_handles(colors, marker=None)
    if censored:
        handles.append(
            style.Line2D(
                [],
                [],
                color="0.4",
                ls="none",
                marker=">",
                ms=7,
                label="oldest operation unfinished at the end (its age)",
            )
        )
    style.legend_below(fig, handles)
    return fig
