"""Is a run's measured window steady? Warm-up truncation by MSER-5, and daemon passes.

MSER (White 1997; MSER-5 in Franklin and White 2008) picks the truncation point d of a
series that minimises the standard error of the mean of what is left,
``sum((z_i - mean(z[d:]))^2) / (k - d)^2`` over batch means z of 5 observations, d searched
over the first half (beyond it the statistic rests on a few batches and favours cutting
almost everything). If the best d is the last allowed, half the series, the series had not
settled: the window is not steady.
The series is the per-millisecond throughput of the measured window (the ``timeseries``
table). MSER-5 wants at least 10 batches; a window under 50 ms is read per millisecond
(MSER-1, batches of one), and one under 10 ms is too short to tell and is called unsteady.

A periodic daemon (writeback, reclaim) makes a window steady only if it has finished at least
``MIN_PASSES`` passes in it: one pass, or none finished, is one sample of the hazard, not its
rate.
"""

from __future__ import annotations

import numpy as np

BATCH = 5
MIN_BATCHES = 10
MIN_PASSES = 3


def mser_truncation(series, batch: int = BATCH) -> int | None:
    """The MSER-``batch`` truncation point, in observations (a multiple of ``batch``), or None
    when the series has fewer than ``MIN_BATCHES`` batches."""
    x = np.asarray(series, dtype=float)
    k = x.size // batch
    if k < MIN_BATCHES:
        return None
    z = x[: k * batch].reshape(k, batch).mean(axis=1)
    best, best_d = np.inf, 0
    for d in range(k // 2 + 1):  # past half the series, the statistic rests on too few batches
        rest = z[d:]
        stat = float(((rest - rest.mean()) ** 2).sum()) / (k - d) ** 2
        if stat < best:  # the first minimum: the least truncation among equals
            best, best_d = stat, d
    return best_d * batch


def steadiness(per_ms, daemon_passes: int | None) -> dict:
    """The ``steady`` entry of a run's summary: the truncation MSER asks for (ms) and the batch
    it used, the fewest passes a daemon finished, and ``unsteady`` (1 or 0)."""
    n = len(per_ms)
    batch = BATCH if n >= BATCH * MIN_BATCHES else 1
    d = mser_truncation(per_ms, batch)
    unsteady = d is None or d >= (n // batch) // 2 * batch  # the best cut is the last allowed
    out = {
        "mser_truncation_ms": float(d) if d is not None else float(n),
        "mser_batch_ms": batch,
    }
    if daemon_passes is not None:
        out["daemon_passes"] = daemon_passes
        unsteady = unsteady or daemon_passes < MIN_PASSES
    out["unsteady"] = int(unsteady)
    return out
