"""A sensitivity study's figures: a tornado chart per design (each cost's total Sobol index of
throughput and of each operation's p99, with its 95% interval, largest on top) and, per
verdict, a 2-D map over the two costs it hinges on (each sample a dot, coloured by whether the
verdict holds there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmsim.plots import style


def tornado(result: dict, design: str):
    rows = [r for r in result["indices"] if r["design"] == design and r["screened_in"]]
    metrics = sorted({r["metric"] for r in rows}, key=lambda m: (m != "total_ops_per_s", m))
    fig, axes = style.new_figure(
        1, max(len(metrics), 1), width=4.2 * max(len(metrics), 1), height=3.4
    )
    for ax, m in zip(axes[0], metrics):
        mine = sorted((r for r in rows if r["metric"] == m), key=lambda r: r["ST"])
        y = np.arange(len(mine))
        st = np.array([r["ST"] for r in mine])
        conf = np.array([r["ST_conf"] for r in mine])
        ax.barh(y, st, xerr=conf, color="#0072B2", alpha=0.8, capsize=2)
        ax.set_yticks(y, [r["cost"] for r in mine], fontsize=7)
        ax.set_xlabel("total Sobol index (share of variance)")
        ax.set_title(m, fontsize=8)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3, axis="x")
    style.suptitle(fig, f"{result['workload']}: what moves {design} (95% bootstrap intervals)")
    return fig


def verdict_map(result: dict, verdict: dict, samples, dims):
    """The verdict's base samples over its two hinge costs: holds (filled) or not (hollow)."""
    names = verdict["hinges"]
    by = {d.name: d for d in dims}
    fig, axes = style.new_figure(1, 1, width=5, height=4)
    ax = axes[0, 0]
    key = f"y:{verdict['name'].split(' ')[0]}|{verdict['metric']}"
    base = f"y:{result['designs'][0]}|{verdict['metric']}"
    hazard = verdict["metric"].startswith("hazards.")
    if key not in samples or (base not in samples and not hazard) or len(names) < 2:
        return None
    yb = samples[key].to_numpy()
    ya = yb if hazard else samples[base].to_numpy()
    if verdict["metric"] == "total_ops_per_s":
        holds = yb > ya
    elif verdict["metric"].startswith("ops."):
        holds = yb < ya
    else:
        holds = yb == 0
    x, y = samples[names[0]].to_numpy(), samples[names[1]].to_numpy()
    ax.scatter(x[holds], y[holds], s=14, color="#009E73", label="holds")
    ax.scatter(
        x[~holds], y[~holds], s=14, facecolors="none", edgecolors="#D55E00", label="does not"
    )
    for setter, n in ((ax.set_xscale, names[0]), (ax.set_yscale, names[1])):
        if by[n].log:
            setter("log")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    style.suptitle(
        fig,
        f"{verdict['name']}: holds in {verdict['share']:.0%} "
        f"[{verdict['ci95_low']:.0%}, {verdict['ci95_high']:.0%}] of the cost space",
    )
    return fig


def write_figures(result: dict, samples, dims, out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in result["designs"]:
        p = out / f"tornado-{d}.png"
        tornado(result, d).savefig(p, dpi=110)
        paths.append(p)
    for i, v in enumerate(result["verdicts"]):
        fig = verdict_map(result, v, samples, dims)
        if fig is not None:
            p = out / f"verdict_map-{i}.png"
            fig.savefig(p, dpi=110)
            paths.append(p)
    return paths
