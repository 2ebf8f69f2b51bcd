"""Where an operation's latency went, as stacked bars: one bar per design and statistic (the
mean operation, and the operations at or above the p99 latency), one segment per part (on-CPU,
spinning or sleeping on each lock, hand-offs, IO, IPI handlers, RCU), from the ``breakdown``
table of one or more runs (``RunResult.tables["breakdown"]``, concatenated; or a sweep's
``result.table("breakdown")`` at one point, replications averaged). The question it answers:
"where did NEW's slow reads go?"."""

from __future__ import annotations

import pandas as pd

from pmsim.plots import style

# A colour per kind of part; the locks of one kind are told apart by hatching.
KIND_COLORS = {
    "on_cpu": "#999999",
    "spin": "#D55E00",
    "sleep": "#0072B2",
    "handoff": "#E69F00",
    "io": "#009E73",
    "ipi": "#CC79A7",
    "rcu": "#56B4E9",
}
HATCHES = ["", "//", "\\\\", "xx", "..", "oo"]


def latency_breakdown(table: pd.DataFrame, op: str = "read", source: str = "workload"):
    """The stacked bars of ``op``'s latency parts (µs), per design and statistic."""
    t = table[(table["op"] == op) & (table["source"] == source)]
    if t.empty:
        raise ValueError(f"latency_breakdown: no breakdown of {source} operation {op!r}")
    keys = ["design", "stat", "kind", "what"]
    runs = t.groupby(["design", "stat"])["seed"].nunique() if "seed" in t else None
    g = t.groupby(keys, as_index=False)["us"].sum()
    if runs is not None:  # the mean over the runs (replications) of each design
        g["us"] = g["us"] / g.set_index(["design", "stat"]).index.map(runs).to_numpy()
    bars = list(dict.fromkeys(zip(g["design"], g["stat"])))
    parts = sorted(
        set(zip(g["kind"], g["what"])), key=lambda k: (list(KIND_COLORS).index(k[0]), k[1])
    )
    hatch = {}
    for kind, what in parts:
        n = sum(1 for k, _ in hatch if k == kind)
        hatch[kind, what] = HATCHES[n % len(HATCHES)]
    fig, axes = style.new_figure(1, 1, width=8, height=1.2 + 0.5 * len(bars))
    ax = axes[0, 0]
    for y, (design, stat) in enumerate(bars):
        left = 0.0
        rows = g[(g["design"] == design) & (g["stat"] == stat)].set_index(["kind", "what"])["us"]
        for part in parts:
            v = float(rows.get(part, 0.0))
            if v <= 0:
                continue
            kind, what = part
            ax.barh(
                y,
                v,
                left=left,
                color=KIND_COLORS[kind],
                hatch=hatch[part],
                edgecolor="white",
                lw=0.5,
                label=f"{kind} {what}".strip(),
            )
            left += v
    ax.set_yticks(range(len(bars)), [f"{d} {s}" for d, s in bars])
    ax.invert_yaxis()
    ax.set_xlabel(f"{op} latency (µs)")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    style.legend_below(fig, list(unique.values()))
    style.suptitle(fig, f"where {op}'s latency went (mean operation, and those at or above p99)")
    return fig
