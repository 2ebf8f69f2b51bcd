"""Per-operation latencies and the per-millisecond completions of a workload run.

Operations are timed on their thread's own clock (``Thread.now``), which is
exact: work charged but not yet turned into simulated time is part of it. An
operation counts when it completes inside the measured window (after warm-up,
before the end); its latency goes into a streaming histogram, so memory stays
bounded however long the run. The time each kind of operation spends in
progress inside the window is kept too (its mean number in progress), which is
what Little's law checks the counts and latencies against; operations still
running at the end are right-censored observations at their age: the percentiles
(pmsim.stats.censored_quantile) count them, so a stall longer than the run is
not hidden by the latencies of the operations that did complete.
"""

from __future__ import annotations

import math

import numpy as np

from pmsim.stats import Histogram, histogram_of

MS = 1e6  # ns per time-series bucket
_HANDOVER = 4096  # latencies buffered per operation before they go to its histogram


class OpStats:
    """One (source, operation): latency histogram, in-progress time, unfinished ages, and its
    completions per simulated millisecond (count, latency sum and maximum)."""

    __slots__ = (
        "meter",
        "_latency",
        "_samples",
        "_starts",
        "_ends",
        "busy",
        "unfinished",
        "warmup",
        "end",
        "per_ms",
    )

    def __init__(self, meter: OpMeter, source: str):
        self.meter = meter
        self._latency = Histogram()
        self._samples: list[float] = []  # latencies not yet handed to the histogram
        self._starts: list[float] = []  # start and end times not yet counted into the per-ms series
        self._ends: list[float] = []
        self.busy = 0.0  # ns in progress inside the window
        self.unfinished: list[float] = []  # ages (ns) at the end of those still running
        self.warmup, self.end = meter.warmup, meter.end
        n = meter.buckets
        self.per_ms = (
            np.zeros(n, dtype=np.int64),
            np.zeros(n),
            np.zeros(n),
        )  # count, latency sum, max (ns)

    @property
    def latency(self) -> Histogram:
        """The latencies (ns) of the operations that completed in the window."""
        self._hand_over()
        return self._latency

    @property
    def censored(self) -> Histogram:
        """The ages (ns) at the end of the operations still running then: right-censored
        latencies, each known only to be at least its age."""
        return histogram_of(self.unfinished)

    def done(self, t0: float, t1: float) -> None:
        """One operation ran from ``t0`` to ``t1`` (ns). On every operation's path, so it only
        appends; the histogram and the per-ms series take the samples in blocks."""
        warmup = self.warmup
        if t1 > self.end:  # ends after the run: only its time inside the window counts
            lo = t0 if t0 > warmup else warmup
            if self.end > lo:
                self.busy += self.end - lo
            return
        if t1 >= warmup:
            self.busy += t1 - (t0 if t0 > warmup else warmup)
            self._samples.append(t1 - t0)
        self._starts.append(t0)
        ends = self._ends
        ends.append(t1)
        if len(ends) >= _HANDOVER:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._samples:
            self._latency.add_many(self._samples)
            self._samples.clear()
        if self._ends:
            ends = np.asarray(self._ends)
            lat = ends - np.asarray(self._starts)
            # an end at ``end`` exactly goes into the last millisecond
            k = np.minimum(np.floor_divide(ends, MS).astype(np.int64), self.per_ms[0].size - 1)
            count, total, longest = self.per_ms
            count += np.bincount(k, minlength=count.size)
            total += np.bincount(k, weights=lat, minlength=count.size)
            np.maximum.at(longest, k, lat)
            self._starts.clear()
            self._ends.clear()

    def series(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per simulated millisecond: completions, their latency sum and maximum (ns)."""
        self._hand_over()
        return self.per_ms

    def running(self, t0: float) -> None:
        """One operation started at ``t0`` is still running at the end (one that starts after
        it, on its thread's clock with work charged past the end, was not in the run)."""
        meter = self.meter
        if t0 > meter.end:
            return
        lo = max(t0, meter.warmup)
        if meter.end > lo:
            self.busy += meter.end - lo
        self.unfinished.append(meter.end - t0)


class OpMeter:
    """The :class:`OpStats` of every (source, operation)."""

    def __init__(self, warmup: float, end: float):
        self.warmup = warmup
        self.end = end
        self.buckets = max(
            1, math.ceil(end / MS)
        )  # simulated milliseconds (the last may be partial)
        self.ops: dict[tuple[str, str], OpStats] = {}

    def completions(self, ops) -> list[int]:
        """Operations named in ``ops`` the workload completed in each simulated millisecond
        (nested ones, a touch's faults or a read's misses, are left out by the caller)."""
        total = np.zeros(self.buckets, dtype=np.int64)
        for (source, op), st in self.ops.items():
            if source == "workload" and op in ops:
                total += st.series()[0]
        return total.tolist()

    def stats(self, source: str, op: str) -> OpStats:
        st = self.ops.get((source, op))
        if st is None:
            st = self.ops[source, op] = OpStats(self, source)
        return st

    def seen(self) -> list[tuple[tuple[str, str], OpStats]]:
        """Every (source, operation) that completed in the window or was in progress in it."""
        return sorted(
            ((k, s) for k, s in self.ops.items() if s.latency.count or s.busy > 0 or s.unfinished),
            key=lambda item: item[0],
        )
