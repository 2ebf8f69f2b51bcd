"""What ``pmsim sweep`` prints when it ends: throughput per point and design, with 95% CIs."""

from __future__ import annotations

import math

from pmsim.sweeps.tables import group_keys


def _cell(row, sign: bool = False) -> str:
    if row is None:
        return "-"
    half = row["ci95_half"]
    ci = f" ±{half / 1e6:.3f}" if not math.isnan(half) else ""
    return f"{row['mean'] / 1e6:{'+' if sign else ''}.3f}{ci}"


def format_sweep(res, metric: str = "total_ops_per_s") -> str:
    """One line per workload and factor point; one column per design (M ops/s, ±95% CI),
    then each design's paired difference from the first."""
    exp, agg, summary = res.experiment, res.aggregate, res.summary
    base, others = exp.designs[0], exp.designs[1:]
    keys = group_keys(exp.factors)
    point_keys = keys[1:]
    rows = agg[agg["metric"] == metric]
    status = summary["status"].value_counts() if len(summary) else {}
    missing = int(status.get("missing", 0))
    lines = [
        f"{exp.name}: {int(status.get('ok', 0))} runs written, {int(status.get('failed', 0))} "
        f"failed{f', {missing} missing' if missing else ''}; {metric} in M/s "
        f"(mean ±95% CI over {exp.replications} replications; the differences are paired by seed)"
    ]
    widths = [max([len(k), 10, *(len(str(v)) for v in rows[k])]) for k in point_keys]
    lines.append(
        "  "
        + " ".join(f"{k:>{w}}" for k, w in zip(point_keys, widths))
        + "".join(f" {d:>22}" for d in exp.designs)
        + "".join(f" {d + ' - ' + base:>22}" for d in others)
    )
    by_point: dict[tuple, dict] = {}
    for _, r in rows.iterrows():
        by_point.setdefault(tuple(r[k] for k in point_keys), {})[r["design"]] = r
    diffs: dict[tuple, dict] = {}
    for _, r in res.differences[res.differences["metric"] == metric].iterrows():
        diffs.setdefault(tuple(r[k] for k in point_keys), {})[r["design"]] = r
    for point, designs in by_point.items():
        lines.append(
            "  "
            + " ".join(f"{str(v):>{w}}" for v, w in zip(point, widths))
            + "".join(f" {_cell(designs.get(d)):>22}" for d in exp.designs)
            + "".join(f" {_cell(diffs.get(point, {}).get(d), sign=True):>22}" for d in others)
        )
    if "unread_costs" in summary:
        unread = summary[summary["unread_costs"].fillna("") != ""]
        for design, g in unread.groupby("design", sort=False):
            names = sorted({c for v in g["unread_costs"] for c in v.split(",")})
            lines.append(
                f"  {design} does not read {', '.join(names)}: it ran once per point and "
                "replication, reused across the values of that cost (column unread_costs)"
            )
    for _, f in res.failures.iterrows():
        lines.append(
            f"  {f['status']}: run {f['run_id']} ({f['design']}, {f['workload']}, replication "
            f"{f['replication']}): {f['error'][:160]}"
        )
    lines.append(f"  tables in {res.out}/ (summary.parquet, aggregate.parquet, runs/)")
    return "\n".join(lines)
