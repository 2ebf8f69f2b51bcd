"""Per-operation latencies and the per-millisecond completions of a workload run.

Operations are timed on their thread's own clock (``Thread.now``), which is
exact: work charged but not yet turned into simulated time is part of it. An
operation counts when it completes inside the measured window (after warm-up,
before the end); its latency goes into a streaming histogram, so memory stays
bounded however long the run. The time each kind of operation spends in
progress inside the window is kept too (its mean number in progress), which is
what Little's law checks the counts and latencies against; operations still
running at the end are reported as unfinished, so a stall longer than the run
is not hidden by the latencies of the operations that did complete.
"""

from __future__ import annotations

import math

import numpy as np

from pmsim.stats import Histogram

MS = 1e6  # ns per time-series bucket
_HANDOVER = 4096  # latencies buffered per operation before they go to its histogram


class OpStats:
    """One (source, operation): latency histogram, in-progress time, unfinished ages."""

    __slots__ = ("meter", "_latency", "_samples", "_ends", "busy", "unfinished", "warmup", "end", "workload")

    def __init__(self, meter: "OpMeter", source: str):
        self.meter = meter
        self._latency = Histogram()
        self._samples: list[float] = []  # latencies not yet handed to the histogram
        self._ends: list[float] = []  # end times not yet counted into the per-ms completions
        self.busy = 0.0  # ns in progress inside the window
        self.unfinished: list[float] = []  # ages (ns) at the end of those still running
        self.warmup, self.end = meter.warmup, meter.end
        self.workload = source == "workload"  # daemons' operations are not in the time series

    @property
    def latency(self) -> Histogram:
        """The latencies (ns) of the operations that completed in the window."""
        self._hand_over()
        return self._latency

    def done(self, t0: float, t1: float) -> None:
        """One operation ran from ``t0`` to ``t1`` (ns). On every operation's path, so it only
        appends; the histogram and the per-ms counts take the samples in blocks."""
        warmup = self.warmup
        if t1 > self.end:  # ends after the run: only its time inside the window counts
            lo = t0 if t0 > warmup else warmup
            if self.end > lo:
                self.busy += self.end - lo
            return
        if t1 >= warmup:
            self.busy += t1 - (t0 if t0 > warmup else warmup)
            self._samples.append(t1 - t0)
        ends = self._ends
        ends.append(t1)
        if len(ends) >= _HANDOVER:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._samples:
            self._latency.add_many(self._samples)
            self._samples.clear()
        if self._ends:
            if self.workload:
                self.meter.count_completions(self._ends)
            self._ends.clear()

    def running(self, t0: float) -> None:
        """One operation started at ``t0`` is still running at the end."""
        meter = self.meter
        lo = max(t0, meter.warmup)
        if meter.end > lo:
            self.busy += meter.end - lo
        self.unfinished.append(meter.end - t0)


class OpMeter:
    """The :class:`OpStats` of every (source, operation), and completions per millisecond."""

    def __init__(self, warmup: float, end: float):
        self.warmup = warmup
        self.end = end
        self.ops: dict[tuple[str, str], OpStats] = {}
        self._completions = np.zeros(max(1, math.ceil(end / MS)), dtype=np.int64)  # workload ops done per ms

    def count_completions(self, ends: list[float]) -> None:
        """Count end times (ns, at most ``end``) into their millisecond (an end at ``end`` exactly
        goes into the last one)."""
        k = np.minimum(np.floor_divide(np.asarray(ends), MS).astype(np.int64), self._completions.size - 1)
        self._completions += np.bincount(k, minlength=self._completions.size)

    @property
    def completions(self) -> list[int]:
        """Workload operations completed in each simulated millisecond."""
        for st in self.ops.values():
            st._hand_over()
        return self._completions.tolist()

    def stats(self, source: str, op: str) -> OpStats:
        st = self.ops.get((source, op))
        if st is None:
            st = self.ops[source, op] = OpStats(self, source)
        return st

    def seen(self) -> list[tuple[tuple[str, str], OpStats]]:
        """Every (source, operation) that completed in the window or was in progress in it."""
        return sorted(((k, s) for k, s in self.ops.items() if s.latency.count or s.busy > 0 or s.unfinished),
                      key=lambda item: item[0])
