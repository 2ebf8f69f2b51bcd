"""Two report sections beside the review's own: the scalability fits of the throughput curves
(pmsim.sweeps.usl), and "How robust is each verdict", read from a robustness study's output
(``robustness.json``, written by ``pmsim sensitivity robustness``) when there is one."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from pmsim.report.blocks import Bullets, Heading, Para, Table


def _n(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "none"
    if abs(x) < 1e-9:  # a bound-constrained fit's zero
        return "0"
    return f"{x:.{digits}g}"


def scalability(result) -> list:
    """One row per throughput-vs-cores curve: USL sigma and kappa with 95% intervals, Amdahl's
    sigma, the fitted peak and where efficiency falls below 50%."""
    fits = getattr(result, "usl", None)
    if fits is None or not len(fits):
        return []
    usl = fits[fits["model"] == "usl"]
    amdahl = fits[fits["model"] == "amdahl"].set_index(["workload", "design"])
    top = float(result.summary["machine.cores"].max())
    rows = []
    for _, r in usl.iterrows():
        a = (
            amdahl.loc[(r["workload"], r["design"])]
            if (r["workload"], r["design"]) in amdahl.index
            else None
        )
        if a is not None and getattr(a, "ndim", 1) > 1:
            a = a.iloc[0]
        far = not math.isfinite(r["peak_cores"]) or r["peak_cores"] > 16 * top
        rows.append(
            [
                f"`{r['workload']}`",
                r["design"],
                f"{_n(r['sigma'])} [{_n(r['sigma_low'])}, {_n(r['sigma_high'])}]",
                f"{_n(r['kappa'])} [{_n(r['kappa_low'])}, {_n(r['kappa_high'])}]",
                _n(a["sigma"]) if a is not None else "-",
                "none in range"
                if far
                else f"{_n(r['peak_cores'])} cores, {_n(r['peak_throughput'] / 1e6)} M/s",
                "never"
                if r["half_efficiency_cores"] > 16 * top
                else _n(r["half_efficiency_cores"]),
                f"{r['rel_rmse']:.1%}",
            ]
        )
    return [
        Heading("Scalability fits"),
        Para(
            "Each throughput-vs-cores curve fitted with the Universal Scalability Law, "
            "X(N) = λN / (1 + σ(N−1) + κN(N−1)), over every replication: σ is contention (a "
            "serial fraction; Amdahl's law is κ = 0), κ coherency (a cost every pair of cores "
            "pays: past its peak, throughput falls). 95% intervals from the fit's covariance. "
            "The figures draw the fit dashed over the points."
        ),
        Table(
            [
                "workload",
                "design",
                "σ [95%]",
                "κ [95%]",
                "Amdahl σ",
                "fitted peak",
                "efficiency < 50% from (cores)",
                "fit error (rms, relative)",
            ],
            rows,
            right=2,
        ),
    ]


def _shown(path: Path, result) -> str:
    """The file as seen from the folder holding the results folders (``results/robustness/...``),
    whatever the working folder: the same report wherever it is written from."""
    root = Path(result.out).resolve().parent.parent
    return Path(os.path.relpath(path.resolve(), root)).as_posix()


def find_robustness(result) -> Path | None:
    """``robustness.json`` in the results folder, or in a ``robustness`` folder beside it."""
    out = Path(result.out)
    for p in (out / "robustness.json", out.parent / "robustness" / "robustness.json"):
        if p.is_file():
            return p
    return None


def robustness(result) -> list:
    """How robust is each verdict: per study, each verdict's share of the plausible cost space
    with its interval and the costs it hinges on, and the costs that move each design most."""
    path = find_robustness(result)
    if path is None:
        return []
    info = json.loads(path.read_text())
    blocks = [
        Heading("How robust is each verdict"),
        Para(
            f"From `{_shown(path, result)}` (pmsim sensitivity): every cost a design reads, sampled over its "
            "plausible range (log-uniform where the range spans more than 3x; derived costs "
            "follow their bases), Morris screening then Sobol indices on the costs that matter. "
            "A verdict's share is the fraction of the cost space where it holds, with a Wilson "
            "95% interval; it hinges on the costs with the largest total Sobol index of the "
            "quantity it thresholds."
        ),
    ]
    rows, bullets = [], []
    for s in info.get("studies", []):
        sets = ", ".join(f"{k}={v}" for k, v in s.get("sets", {}).items())
        verdicts, never = _fold_hazards_never_seen(s.get("verdicts", []))
        if never:  # one row for every hazard no sample saw, instead of one per design and hazard
            verdicts.append(never)
        for v in verdicts:
            rows.append(
                [
                    f"`{s['workload']}` ({sets})",
                    v["name"],
                    f"{v['share']:.0%} [{v['ci95_low']:.0%}, {v['ci95_high']:.0%}]",
                    str(v.get("samples", "")),
                    ", ".join(f"`{h}`" for h in v.get("hinges", [])) or "-",
                ]
            )
        for d, metrics in s.get("ranking", {}).items():
            for m, names in metrics.items():
                if names:  # (an empty ranking: no sampled cost moved the metric)
                    bullets.append(
                        f"`{s['workload']}` on {d}, {m}: " + ", ".join(f"`{n}`" for n in names[:3])
                    )
    if rows:
        blocks.append(
            Table(["study", "verdict", "holds in (95%)", "samples", "hinges on"], rows, right=2)
        )
    if bullets:
        blocks += [
            Para("The costs that move each metric most, most influential first:"),
            Bullets(bullets),
        ]
    return blocks


def _fold_hazards_never_seen(verdicts: list[dict]) -> tuple[list[dict], dict | None]:
    """(the verdicts to list one by one, one verdict standing for every "free of" verdict that
    held in every sample and hinges on nothing: hazards the whole cost space never opened)."""
    never = [
        v
        for v in verdicts
        if v.get("metric", "").startswith("hazards.") and v["share"] == 1.0 and not v.get("hinges")
    ]
    if not never:
        return list(verdicts), None
    rest = [v for v in verdicts if v not in never]
    by_design: dict[str, list[str]] = {}
    for v in never:
        by_design.setdefault(v["name"].split(" free of ")[0], []).append(v["metric"].split(".")[1])
    said = "; ".join(f"{d} free of {', '.join(sorted(h))}" for d, h in by_design.items())
    folded = {
        **min(never, key=lambda v: v["ci95_low"]),
        "name": f"{said} (never seen in any sample)",
        "hinges": [],
    }
    return rest, folded
