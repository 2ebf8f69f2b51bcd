"""Scalability fits: the Universal Scalability Law over a throughput-vs-cores curve.

Gunther's USL, ``X(N) = lam N / (1 + sigma (N - 1) + kappa N (N - 1))``, says why a curve bends:
``sigma`` is contention (a serial fraction: Amdahl's law is the special case ``kappa = 0``),
``kappa`` coherency (crosstalk: every pair of cores pays, so past its peak throughput falls).
A reviewer reads one number per curve instead of seven points: OLD's ``pm_lock`` shows as a
large ``sigma`` or ``kappa``, NEW's lock-free lookups as both near 0.

Fitted by least squares on every replication's throughput (scipy ``curve_fit``, relative
residuals so that the 1-core points weigh as much as the 64-core ones; ``sigma, kappa >= 0``),
with 95% intervals from the fit's covariance (Student t on the residual degrees of freedom,
clipped at 0). Reported with it: the fitted peak (``N* = sqrt((1 - sigma) / kappa)`` and
``X(N*)``; none when ``kappa = 0``) and the cores from which the parallel efficiency
``X(N) / (N lam)`` falls below 50%.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

CORES = "machine.cores"
METRIC = "total_ops_per_s"


def usl(n, lam: float, sigma: float, kappa: float):
    """The USL's throughput at ``n`` cores."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


@dataclass(frozen=True)
class UslFit:
    """One curve's fit. ``model`` is ``usl`` or ``amdahl`` (``kappa`` fixed at 0)."""

    model: str
    lam: float
    sigma: float
    sigma_low: float
    sigma_high: float
    kappa: float
    kappa_low: float
    kappa_high: float
    peak_cores: float  # inf: no peak (kappa = 0, or the curve rises at every N)
    peak_throughput: float
    half_efficiency_cores: float  # inf: efficiency never falls below 50%
    points: int
    rel_rmse: float  # root mean square of the relative residuals

    def predict(self, n):
        return usl(n, self.lam, self.sigma, self.kappa)

    def as_row(self) -> dict:
        return asdict(self)


def peak(sigma: float, kappa: float) -> float:
    """The cores where the USL peaks: ``sqrt((1 - sigma) / kappa)`` (inf for ``kappa = 0``)."""
    if kappa <= 0:
        return math.inf
    return math.sqrt(max(1 - sigma, 0.0) / kappa) if sigma < 1 else 1.0


def half_efficiency(sigma: float, kappa: float) -> float:
    """The cores where efficiency ``1 / (1 + sigma (N-1) + kappa N (N-1))`` reaches 50%:
    the root of ``kappa N^2 + (sigma - kappa) N - (1 + sigma) = 0`` (``1 + 1/sigma`` for
    Amdahl)."""
    b = sigma - kappa
    den = b + math.sqrt(b * b + 4 * kappa * (1 + sigma))  # the stable form of the root
    return 2 * (1 + sigma) / den if den > 0 else math.inf


def fit(cores, throughput, model: str = "usl") -> UslFit | None:
    """Fit ``model`` (``usl`` or ``amdahl``) to points (every replication a point); None when
    the curve has too few distinct core counts (3 for the USL, 2 for Amdahl), no positive
    throughput, or the fit does not converge (a sweep's tables are written all the same)."""
    n = np.asarray(cores, dtype=float)
    x = np.asarray(throughput, dtype=float)
    ok = np.isfinite(n) & np.isfinite(x) & (x > 0) & (n > 0)
    n, x = n[ok], x[ok]
    params = 3 if model == "usl" else 2
    if len(np.unique(n)) < params or len(n) <= params - 1:
        return None
    lam0 = float(np.mean(x[n == n.min()] / n.min()))
    if model == "usl":

        def f(nn, lam, sigma, kappa):
            return usl(nn, lam, sigma, kappa)

        p0, lo, hi = [lam0, 0.05, 1e-4], [0, 0, 0], [np.inf, 10, 10]
    else:

        def f(nn, lam, sigma):
            return usl(nn, lam, sigma, 0.0)

        p0, lo, hi = [lam0, 0.05], [0, 0], [np.inf, 10]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a singular covariance gives inf intervals, said below
        try:
            p, cov = optimize.curve_fit(
                f, n, x, p0=p0, sigma=x, bounds=(lo, hi), maxfev=20000, method="trf"
            )
        except (RuntimeError, ValueError):  # no convergence: a curve the law cannot describe
            return None
    resid = (x - f(n, *p)) / x
    dof = max(len(n) - params, 1)
    t = stats.t.ppf(0.975, dof)
    se = np.sqrt(np.clip(np.diag(cov), 0, np.inf)) if np.all(np.isfinite(cov)) else [np.inf] * 3
    lam, sigma = float(p[0]), float(p[1])
    kappa = float(p[2]) if model == "usl" else 0.0
    k_se = float(se[2]) if model == "usl" else 0.0
    n_peak = peak(sigma, kappa)
    return UslFit(
        model,
        lam,
        sigma,
        max(sigma - t * float(se[1]), 0.0),
        sigma + t * float(se[1]),
        kappa,
        max(kappa - t * k_se, 0.0),
        kappa + t * k_se,
        n_peak,
        float(usl(n_peak, lam, sigma, kappa)) if math.isfinite(n_peak) else math.nan,
        half_efficiency(sigma, kappa),
        int(len(n)),
        float(np.sqrt(np.mean(resid**2))),
    )


def curves(summary: pd.DataFrame, factors: list[str]) -> list[tuple[dict, pd.DataFrame]]:
    """The throughput-vs-cores curves of a sweep's summary: per workload, design and value of
    the factors that vary independently of the cores (those zipped with the cores, such as
    the threads, move along the curve), the ok runs' rows."""
    if CORES not in factors or CORES not in summary or METRIC not in summary:
        return []
    s = summary[summary["status"] == "ok"] if "status" in summary else summary
    out = []
    others = [f for f in factors if f not in (CORES, "workload") and f in s]
    for (workload, design), g in s.groupby(["workload", "design"], sort=False):
        if g[CORES].nunique() < 2:
            continue
        variants = [f for f in others if g.groupby(CORES)[f].nunique(dropna=False).max() > 1]
        groups = g.groupby(variants, sort=False, dropna=False) if variants else [((), g)]
        for key, sub in groups:
            key = key if isinstance(key, tuple) else (key,)
            out.append(({"workload": workload, "design": design, **dict(zip(variants, key))}, sub))
    return out


def fit_table(summary: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """One row per curve and model (``usl``, ``amdahl``): the curve's identity columns and the
    fit's (:class:`UslFit`). Empty when the cores are not a factor."""
    rows = []
    for ident, sub in curves(summary, factors):
        for model in ("usl", "amdahl"):
            f = fit(sub[CORES].astype(float), sub[METRIC].astype(float), model)
            if f is not None:
                rows.append({**ident, "metric": METRIC, **f.as_row()})
    return pd.DataFrame(rows)
