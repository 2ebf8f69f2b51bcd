"""One sensitivity study: a workload (with ``--set`` keys), the designs to compare, the cost
space their models read; Morris screening, then Sobol on the costs that matter, then verdicts.

Each stage is an experiment run by the sweep engine (:func:`pmsim.sweeps.api.sweep`): its
points are the sampled cost vectors, zipped; cost factors do not enter a run's seed, so every
sample and every design sees the same random numbers (common random numbers: the indices
measure the costs, not sampling noise), and a design that does not read a cost runs once per
distinct value of the costs it does read. The stages write into ``OUT/morris`` and
``OUT/sobol``, so a killed study resumes where it stopped; the samples are fixed by the seed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pmsim.errors import ConfigError
from pmsim.sensitivity import analysis
from pmsim.sensitivity.space import cost_space
from pmsim.sweeps.reads import cost_name, probe
from pmsim.workload.load import _scalar, apply_overrides, read_workload, validate_spec

THROUGHPUT = "total_ops_per_s"


def parse_sets(sets) -> dict:
    """``KEY=VALUE`` strings -> {key: value} (values as YAML scalars, as ``pmsim run --set``)."""
    from pmsim.costs import parse_assignment

    out = {}
    for text in sets:
        key, value = parse_assignment(text)
        out[key] = _scalar(value)
    return out


def base_spec(workload: str, sets: dict):
    raw, _ = read_workload(workload)
    raw = apply_overrides(raw, [f"{k}={v}" for k, v in sets.items()])
    return validate_spec(raw)


def run_study(
    workload: str,
    designs: list[str],
    sets: dict | None = None,
    samples: int = 8,
    out=None,
    *,
    sobol_samples: int | None = None,
    seed: int = 1,
    keep: int = 6,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    progress: bool = True,
    name: str | None = None,
) -> dict:
    """Run (or resume) the study and return its result (also written to OUT/sensitivity.json)."""
    from pmsim.designs import designs as known

    sets = dict(sets or {})
    if samples < 2:
        raise ConfigError(f"--samples: at least 2, got {samples}")
    for d in designs:
        if d not in known():
            raise ConfigError(f"--designs: unknown design {d!r} (pmsim designs lists them)")
    if len(set(designs)) != len(designs):
        raise ConfigError(f"--designs: a design is listed twice: {designs}")
    spec = base_spec(workload, sets)
    from pmsim.designs import get_design

    for d in designs:
        for op in sorted(spec.operations()):
            try:
                get_design(d).require(op)
            except ConfigError as e:
                raise ConfigError(f"--designs: workload {workload} on {e}") from None
    name = name or f"sensitivity_{Path(workload).stem}"
    out = Path(out) if out is not None else Path("sensitivity") / name
    read = set().union(*(probe(d, spec) for d in designs))
    fixed = {cost_name(k) for k in sets} - {None}
    dims, skipped = cost_space(read, fixed)
    if len(dims) < 2:
        raise ConfigError(f"sensitivity: only {len(dims)} cost to vary on {workload}; need 2")
    run = dict(
        workers=workers, scheduler=scheduler, scheduler_file=scheduler_file, progress=progress
    )
    # Stage 1: Morris screening over every cost.
    xm = analysis.morris_sample(dims, samples, seed)
    morris_res = _sweep(
        f"{name}_morris", workload, designs, sets, dims, xm, seed, out / "morris", run
    )
    outputs = _outputs(morris_res, designs)
    ym = {key: _values(morris_res, d, m, len(xm), xm, dims) for key, (d, m) in outputs.items()}
    morris = {
        key: analysis.morris_indices(dims, xm, y, seed)
        for key, y in ym.items()
        if np.isfinite(y).all()
    }
    chosen = analysis.screened(list(morris.values()), keep)
    sdims = [x for x in dims if x.name in chosen]
    sdims.sort(key=lambda x: chosen.index(x.name))
    # Stage 2: Sobol on the costs that passed the screen (the others at their defaults).
    if sobol_samples is not None and sobol_samples < 2:
        raise ConfigError(f"--sobol-samples: at least 2, got {sobol_samples}")
    n = 1 << max(1, math.ceil(math.log2(sobol_samples or samples)))
    xs = analysis.sobol_sample(sdims, n, seed)
    sobol_res = _sweep(
        f"{name}_sobol", workload, designs, sets, sdims, xs, seed, out / "sobol", run
    )
    ys = {key: _values(sobol_res, d, m, len(xs), xs, sdims) for key, (d, m) in outputs.items()}
    sobol = {key: analysis.sobol_indices(sdims, y, seed) for key, y in ys.items()}
    ranking: dict = {}
    for key, (d, metric) in outputs.items():
        # a metric no sampled cost moves (a hazard that never occurs) has no ranking
        ranked = sorted(sobol[key], key=lambda c: -sobol[key][c]["ST"]) if _varies(ys[key]) else []
        rest = sorted(
            (c for c in morris.get(key, {}) if c not in ranked and morris[key][c]["mu_star"] > 0),
            key=lambda c: -morris[key][c]["mu_star"],
        )
        ranking.setdefault(d, {})[metric] = ranked + rest
    verdicts = _verdicts(designs, outputs, ys, sdims, xs, n, seed)
    result = {
        "workload": workload,
        "designs": designs,
        "sets": {k: v for k, v in sets.items()},
        "samples": samples,
        "sobol_samples": n,
        "seed": seed,
        "costs": [
            {"name": x.name, "low": x.low, "high": x.high, "log": x.log, "default": x.default}
            for x in dims
        ],
        "skipped": skipped,
        "screened": chosen,
        "runs": {"morris": int(len(morris_res.summary)), "sobol": int(len(sobol_res.summary))},
        "ranking": ranking,
        "verdicts": verdicts,
        "indices": _indices_rows(outputs, morris, sobol, chosen),
    }
    (out).mkdir(parents=True, exist_ok=True)
    pd.DataFrame(result["indices"]).to_parquet(out / "indices.parquet", index=False)
    samples_df = pd.DataFrame(
        [{x.name: x.value(u) for x, u in zip(sdims, row)} for row in xs]
    ).assign(**{f"y:{k}": v for k, v in ys.items()})
    samples_df.to_parquet(out / "sobol_samples.parquet", index=False)
    from pmsim.sweeps.store import write_text

    write_text(json.dumps(result, indent=1, default=_json), out / "sensitivity.json")
    from pmsim.sensitivity.figures import write_figures

    result["figures"] = [str(p) for p in write_figures(result, samples_df, sdims, out / "figures")]
    write_text(json.dumps(result, indent=1, default=_json), out / "sensitivity.json")
    return result


def _json(v):
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return str(v)


def _sweep(name, workload, designs, sets, dims, x, seed, out, run):
    """Run the sampled points ``x`` (unit cube) of ``dims`` as one experiment; distinct rows
    only (a Morris design can repeat a point); returns its SweepResult."""
    from pmsim.sweeps.api import sweep

    rows, seen = [], set()
    for r in x:
        vals = tuple(d.value(u) for d, u in zip(dims, r))
        if vals not in seen:
            seen.add(vals)
            rows.append(vals)
    exp = {
        "name": name,
        "question": f"How much does each cost move {', '.join(designs)} on {workload}?",
        "workload": workload,
        "designs": list(designs),
        "overrides": dict(sets),
        "zip": {d.name: [r[i] for r in rows] for i, d in enumerate(dims)},
        "replications": 1,
        "seed": seed,
    }
    res = sweep(exp, out, **run)
    if len(res.failures):
        raise RuntimeError(
            f"{len(res.failures)} of {len(res.summary)} runs of {name} failed (their errors are in "
            f"{out}/runs/failed/); run the same command again to retry them"
        )
    return res


def _outputs(res, designs) -> dict:
    """The outputs analysed: each design's throughput, the p99 latency of each operation of the
    workload that every run completes (the most frequent first), and any hazard counts
    (``hazards.<name>.count``, where the summary has them)."""
    s = res.summary
    counts = [c for c in s.columns if c.startswith("ops.") and c.endswith(".count")]
    ops = sorted(counts, key=lambda c: -s[c].fillna(0).sum())
    metrics = [THROUGHPUT]
    for c in ops:
        p99 = f"ops.{c.split('.')[1]}.latency_us.p99"
        if p99 in s and s[p99].notna().all():
            metrics.append(p99)
    metrics += sorted(c for c in s.columns if c.startswith("hazards.") and c.endswith(".count"))
    return {f"{d}|{m}": (d, m) for d in designs for m in metrics}


def _values(res, design, metric, n, x, dims) -> np.ndarray:
    """``metric`` of ``design`` at each sampled row of ``x`` (rows repeated share a run)."""
    s = res.summary[res.summary["design"] == design]
    names = [d.name for d in dims]
    table = {tuple(float(v) for v in r[names]): r.get(metric, math.nan) for _, r in s.iterrows()}
    out = np.empty(n)
    for i, r in enumerate(x):
        v = table.get(tuple(d.value(u) for d, u in zip(dims, r)), math.nan)
        out[i] = math.nan if v is None else float(v)
    return out


def _varies(y) -> bool:
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    return y.size > 1 and bool(np.ptp(y) > 0)


def _verdicts(designs, outputs, ys, sdims, xs, n, seed) -> list[dict]:
    """Each other design against the first: faster (throughput), lower p99 (per operation);
    and each design free of each hazard; their shares over the base samples with Wilson
    intervals, and hinges."""
    a, rows = designs[0], analysis.base_rows(n, len(sdims))
    found = []
    metrics = sorted({m for _, m in outputs.values()})
    pairs = [(b, m) for b in designs[1:] for m in metrics if not m.startswith("hazards.")]
    pairs += [(b, m) for m in metrics if m.startswith("hazards.") for b in designs]
    for b, m in pairs:
        ya, yb = ys.get(f"{a}|{m}"), ys.get(f"{b}|{m}")
        if yb is None or (ya is None and not m.startswith("hazards.")):
            continue  # a hazard verdict is about one design; the others compare two
        if m == THROUGHPUT:
            name = f"{b} faster than {a} (throughput)"
            with np.errstate(divide="ignore", invalid="ignore"):
                q = np.log(yb / ya)
            holds = q > 0
            what = "log throughput ratio"
        elif m.startswith("ops."):
            op = m.split(".")[1]
            q, what = yb - ya, "p99 difference (us)"
            holds = q < 0
            name = f"{b} p99 below {a}'s ({op})"
        else:
            hz = m.split(".")[1]
            q, what = yb, f"{hz} hazard count"
            holds = q == 0
            name = f"{b} free of {hz} hazards"
        base = holds[rows]
        ok = np.isfinite(q[rows])
        k, total = int(base[ok].sum()), int(ok.sum())
        lo, hi = analysis.wilson(k, total)
        idx = analysis.sobol_indices(sdims, np.nan_to_num(q), seed)
        # a quantity no cost moves (a hazard never seen) hinges on nothing
        hinges = sorted(idx, key=lambda c: -idx[c]["ST"])[:2] if _varies(q) else []
        found.append(
            {
                "name": name,
                "share": k / total if total else math.nan,
                "ci95_low": lo,
                "ci95_high": hi,
                "samples": total,
                "metric": m,
                "quantity": what,
                "median": float(np.nanmedian(q[rows])) if total else math.nan,
                "hinges": hinges,
                "hinges_ST": [idx[c]["ST"] for c in hinges],
            }
        )
    return found


def _indices_rows(outputs, morris, sobol, chosen) -> list[dict]:
    rows = []
    for key, (d, m) in outputs.items():
        for c, v in morris.get(key, {}).items():
            s = sobol.get(key, {}).get(c, {})
            rows.append(
                {
                    "design": d,
                    "metric": m,
                    "cost": c,
                    **v,
                    "screened_in": c in chosen,
                    **{k: s.get(k, math.nan) for k in ("S1", "S1_conf", "ST", "ST_conf")},
                }
            )
    return rows
