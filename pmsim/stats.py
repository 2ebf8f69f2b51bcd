"""Streaming statistics with bounded memory, and confidence intervals."""

from __future__ import annotations

import math

import numpy as np

# Log-spaced buckets: 64 per octave, so a percentile is exact to within ~0.55%.
_SUB = 64
_FLUSH = 1 << 15


class Histogram:
    """Counts of non-negative samples in log-spaced buckets, plus exact sum, min and max.

    Samples are buffered and folded into the buckets with numpy every 32 k
    samples, so adding one costs a list append and memory stays bounded.
    """

    __slots__ = ("_count", "_total", "_total_sq", "_max", "_min", "_buf", "_buckets")

    def __init__(self):
        self._count = 0
        self._total = 0.0
        self._total_sq = 0.0
        self._max = 0.0
        self._min = math.inf
        self._buf: list[float] = []
        self._buckets = np.zeros(0, dtype=np.int64)

    def add(self, x: float) -> None:
        buf = self._buf
        buf.append(x)
        if len(buf) >= _FLUSH:
            self._fold()

    def add_many(self, xs) -> None:
        """Add every sample of ``xs`` (a caller that buffers its own samples hands them over)."""
        buf = self._buf
        buf.extend(xs)
        if len(buf) >= _FLUSH:
            self._fold()

    def _fold(self) -> None:
        if not self._buf:
            return
        a = np.asarray(self._buf, dtype=float)
        self._buf.clear()
        self._count += a.size
        self._total += float(a.sum())
        self._total_sq += float((a * a).sum())
        self._max = max(self._max, float(a.max()))
        self._min = min(self._min, float(a.min()))
        idx = (np.log2(a + 1.0) * _SUB).astype(np.int64)
        counts = np.bincount(idx)
        if counts.size > self._buckets.size:
            counts[: self._buckets.size] += self._buckets
            self._buckets = counts
        else:
            self._buckets[: counts.size] += counts

    def merge(self, other: Histogram) -> None:
        self._fold()
        other._fold()
        self._count += other._count
        self._total += other._total
        self._total_sq += other._total_sq
        self._max = max(self._max, other._max)
        self._min = min(self._min, other._min)
        n = max(self._buckets.size, other._buckets.size)
        merged = np.zeros(n, dtype=np.int64)
        merged[: self._buckets.size] += self._buckets
        merged[: other._buckets.size] += other._buckets
        self._buckets = merged

    # Folded on read: buffered samples count as soon as they are added.
    @property
    def count(self) -> int:
        self._fold()
        return self._count

    @property
    def total(self) -> float:
        self._fold()
        return self._total

    @property
    def total_sq(self) -> float:
        self._fold()
        return self._total_sq

    @property
    def max(self) -> float:
        self._fold()
        return self._max

    @property
    def min(self) -> float:
        self._fold()
        return self._min

    @property
    def n(self) -> int:
        return self.count + len(self._buf)

    def sum(self) -> float:
        self._fold()
        return self.total

    def mean(self) -> float:
        self._fold()
        return self.total / self.count if self.count else 0.0

    def std(self) -> float:
        self._fold()
        if self.count < 2:
            return 0.0
        var = (self.total_sq - self.total * self.total / self.count) / (self.count - 1)
        return math.sqrt(max(var, 0.0))

    def quantile(self, q: float) -> float:
        """The q-quantile (0 <= q <= 1), from the bucket midpoints; exact at q=1."""
        self._fold()
        if not self.count:
            return 0.0
        if q >= 1.0:
            return self.max
        cum = np.cumsum(self._buckets)
        b = int(np.searchsorted(cum, q * self.count, side="left"))
        if b == 0:  # [0, 0.011): the smallest sample says more than the bucket's midpoint
            return self.min
        lo, hi = 2.0 ** (b / _SUB) - 1.0, 2.0 ** ((b + 1) / _SUB) - 1.0
        return min(max((lo + hi) / 2, self.min), self.max)

    def fine_counts(self) -> np.ndarray:
        """The count in each 1/64-octave bucket (bucket b holds [2^(b/64) - 1, 2^((b+1)/64) - 1))."""
        self._fold()
        return self._buckets.copy()

    def buckets(self, per_octave: int = 16) -> tuple[np.ndarray, np.ndarray]:
        """Non-empty buckets merged to ``per_octave`` per octave: their upper edges (capped at
        the largest sample, so the last edge is exact) and counts. Enough for a CDF plot."""
        self._fold()
        if per_octave <= 0 or _SUB % per_octave:
            raise ValueError(f"per_octave must divide {_SUB}, not {per_octave}")
        step = _SUB // per_octave
        counts = (
            np.add.reduceat(self._buckets, np.arange(0, self._buckets.size, step))
            if self.count
            else np.zeros(0, dtype=np.int64)
        )
        upper = 2.0 ** ((np.arange(counts.size) + 1) * step / _SUB) - 1.0
        keep = counts > 0
        return np.minimum(upper[keep], self._max), counts[keep]


def t_quantile(p: float, dof: int) -> float:
    """Student-t quantile (scipy), for confidence intervals over replications or batches."""
    from scipy import stats  # here: importing it costs 0.6 s, and a simulation run never needs it

    return float(stats.t.ppf(p, dof))


def mean_ci(values, level: float = 0.95) -> tuple[float, float]:
    """Mean and confidence half-width (Student t) of independent observations."""
    v = np.asarray(values, dtype=float)
    if v.size < 2:
        return (float(v.mean()) if v.size else 0.0), math.inf
    half = t_quantile(0.5 + level / 2, v.size - 1) * float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(v.mean()), half


def ratio_ci(num, den, level: float = 0.95) -> tuple[float, float]:
    """Ratio estimator sum(num)/sum(den) over batches, with a delta-method t interval.

    Used for per-batch means such as mean wait = total wait / acquisitions.
    """
    y, x = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if x.sum() == 0:
        return 0.0, math.inf
    r = y.sum() / x.sum()
    if y.size < 2:
        return float(r), math.inf
    resid = y - r * x
    se = math.sqrt(float((resid**2).sum()) / (y.size - 1) / y.size) / float(x.mean())
    return float(r), t_quantile(0.5 + level / 2, y.size - 1) * se


def _bucket_value(h: Histogram, b: int) -> float:
    """The value ``quantile`` reports for bucket ``b``: its midpoint, within [min, max]."""
    if b == 0:
        return h.min
    lo, hi = 2.0 ** (b / _SUB) - 1.0, 2.0 ** ((b + 1) / _SUB) - 1.0
    return min(max((lo + hi) / 2, h.min), h.max)


def _aligned(done: Histogram, censored: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """Both histograms' fine bucket counts, as floats, padded to one length."""
    a, b = done.fine_counts(), censored.fine_counts()
    n = max(a.size, b.size)
    d = np.zeros(n, dtype=float)
    c = np.zeros(n, dtype=float)
    d[: a.size] = a
    c[: b.size] = b
    return d, c


def km_cdf(done: Histogram, censored: Histogram) -> np.ndarray:
    """Kaplan-Meier estimate of P(duration <= bucket b) per 1/64-octave bucket, from the
    completed durations ``done`` and the ages of those still in progress at the end
    (``censored``: right-censored, each known only to last at least its age).

    Written here rather than taken from a library because the samples are streaming
    histograms, not arrays (lifelines is not a dependency, scipy's ``ecdf`` wants samples).
    Within a bucket the completions count before the censored ones, as KM does for ties:
    an operation censored at age a was still at risk of ending at a.
    """
    d, c = _aligned(done, censored)
    at_risk = d.sum() + c.sum() - np.concatenate(([0.0], np.cumsum(d + c)[:-1]))
    with np.errstate(invalid="ignore", divide="ignore"):
        hazard = np.where(at_risk > 0, d / np.where(at_risk > 0, at_risk, 1.0), 0.0)
    return 1.0 - np.cumprod(1.0 - hazard)


def censored_quantile(done: Histogram, censored: Histogram, q: float) -> tuple[float, bool]:
    """The q-quantile of durations some of which are right-censored, and whether it is only a
    lower bound.

    With nothing censored it is ``done.quantile(q)`` exactly. Otherwise the Kaplan-Meier
    estimate (:func:`km_cdf`): the first bucket where it reaches q; where it never does (the
    censored mass lies above every completion that could reach q) the quantile is at least
    the oldest censored age, returned with ``True``.
    """
    if not censored.count:
        return done.quantile(q), False
    if not done.count:
        return censored.max, True
    if q >= 1.0:  # the longest: at least the oldest still in progress
        return max(done.max, censored.max), censored.max > done.max
    reached = np.flatnonzero(km_cdf(done, censored) >= q - 1e-12)
    if not reached.size:
        return max(censored.max, done.max), True
    return _bucket_value(done, int(reached[0])), False


def joint_buckets(done: Histogram, censored: Histogram, per_octave: int = 16):
    """Buckets (``per_octave`` per octave) where either histogram has a sample: their upper
    edges (the last capped at the largest sample), completed and censored counts."""
    if per_octave <= 0 or _SUB % per_octave:
        raise ValueError(f"per_octave must divide {_SUB}, not {per_octave}")
    d, c = _aligned(done, censored)
    if not d.size:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    step = _SUB // per_octave
    starts = np.arange(0, d.size, step)
    d, c = np.add.reduceat(d, starts), np.add.reduceat(c, starts)
    upper = 2.0 ** ((np.arange(d.size) + 1) * step / _SUB) - 1.0
    keep = (d + c) > 0
    top = max(done.max if done.count else 0.0, censored.max if censored.count else 0.0)
    return np.minimum(upper[keep], top), d[keep].astype(np.int64), c[keep].astype(np.int64)


def histogram_of(values) -> Histogram:
    """A histogram holding ``values``."""
    h = Histogram()
    h.add_many(values)
    return h
