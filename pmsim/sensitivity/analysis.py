"""Sensitivity indices and verdict shares from the sampled runs, through SALib.

Two stages, as the literature does it for costly models (Saltelli et al., *Global Sensitivity
Analysis: The Primer*, 2008): Morris elementary effects screen every cost cheaply
(``r (k + 1)`` runs per design), then Sobol variance-based indices (Saltelli/Jansen estimators,
``N (k + 2)`` runs) on the few that matter, with bootstrap confidence intervals. SALib implements
both, tested against the published test functions; writing them by hand would be a second,
untested copy.

A *verdict* is a yes/no statement per point of the cost space ("new faster than old
(throughput)"); its *share* is the fraction of the space where it holds, estimated on the Sobol
stage's base samples (the A and B matrices: ``2N`` independent quasi-random points; the other rows
reuse their coordinates) with a Wilson 95% interval. The costs it *hinges on* are those with the
largest total Sobol index of the quantity the verdict thresholds (the log throughput ratio, the
p99 difference).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

MORRIS_LEVELS = 4
SCREEN_FRACTION = 0.05  # a cost passes the screen if its mu* reaches 5% of the largest


def problem(dims) -> dict:
    """SALib's problem: every dimension on the unit interval (its scale is applied after)."""
    return {"num_vars": len(dims), "names": [d.name for d in dims], "bounds": [[0, 1]] * len(dims)}


def morris_sample(dims, trajectories: int, seed: int) -> np.ndarray:
    from SALib.sample import morris

    return morris.sample(problem(dims), trajectories, num_levels=MORRIS_LEVELS, seed=seed)


def sobol_sample(dims, n: int, seed: int) -> np.ndarray:
    """``n (k + 2)`` rows: per base sample i, A_i, the k mixed rows AB_ij, B_i."""
    from SALib.sample import sobol

    with warnings.catch_warnings():  # n not a power of 2: SALib warns, we round n up before
        warnings.simplefilter("ignore")
        return sobol.sample(problem(dims), n, calc_second_order=False, scramble=True, seed=seed)


def base_rows(n: int, k: int) -> np.ndarray:
    """Indices of the A and B rows of a Sobol sample of ``n`` base samples and ``k`` costs."""
    return np.array([i * (k + 2) + j for i in range(n) for j in (0, k + 1)])


def morris_indices(dims, x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """Per cost: mu* (mean absolute elementary effect) and its 95% bootstrap half-width, and
    sigma (their spread: interactions or non-linearity)."""
    from SALib.analyze import morris

    r = morris.analyze(problem(dims), x, y, num_levels=MORRIS_LEVELS, seed=seed)
    return {
        d.name: {
            "mu_star": float(r["mu_star"][i]),
            "mu_star_conf": float(r["mu_star_conf"][i]),
            "sigma": float(r["sigma"][i]),
        }
        for i, d in enumerate(dims)
    }


def sobol_indices(dims, y: np.ndarray, seed: int) -> dict:
    """Per cost: first-order S1 and total ST Sobol indices with 95% bootstrap half-widths.
    A constant output (no cost moves it) gives zeros."""
    from SALib.analyze import sobol

    if not np.isfinite(y).all() or np.ptp(y) == 0:
        return {d.name: {"S1": 0.0, "S1_conf": 0.0, "ST": 0.0, "ST_conf": 0.0} for d in dims}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sobol.analyze(problem(dims), y, calc_second_order=False, seed=seed)
    return {
        d.name: {k: _finite(r[k][i]) for k in ("S1", "S1_conf", "ST", "ST_conf")}
        for i, d in enumerate(dims)
    }


def _finite(v) -> float:
    v = float(v)
    return v if math.isfinite(v) else 0.0


def screened(morris_by_output: list[dict], keep: int) -> list[str]:
    """The costs whose mu* reaches :data:`SCREEN_FRACTION` of the largest in some output, best
    first by that relative size, at most ``keep`` (and at least 2, for the verdict map)."""
    best: dict[str, float] = {}
    for m in morris_by_output:
        top = max((v["mu_star"] for v in m.values()), default=0.0)
        if top <= 0:
            continue
        for name, v in m.items():
            best[name] = max(best.get(name, 0.0), v["mu_star"] / top)
    ranked = sorted(best, key=lambda n: -best[n])
    chosen = [n for n in ranked if best[n] >= SCREEN_FRACTION][:keep]
    for n in ranked:
        if len(chosen) >= 2:
            break
        if n not in chosen:
            chosen.append(n)
    return chosen


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion ``k / n`` (good at 0 and 1, unlike Wald)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo, hi = max(0.0, mid - half), min(1.0, mid + half)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)  # exact at the ends
