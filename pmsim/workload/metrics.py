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

from pmsim.stats import Histogram

MS = 1e6  # ns per time-series bucket


class OpStats:
    """One (source, operation): latency histogram, in-progress time, unfinished ages."""

    __slots__ = ("meter", "latency", "busy", "unfinished", "workload")

    def __init__(self, meter: "OpMeter", source: str):
        self.meter = meter
        self.latency = Histogram()
        self.busy = 0.0  # ns in progress inside the window
        self.unfinished: list[float] = []  # ages (ns) at the end of those still running
        self.workload = source == "workload"

    def done(self, t0: float, t1: float) -> None:
        """One operation ran from ``t0`` to ``t1`` (ns)."""
        meter = self.meter
        warmup, end = meter.warmup, meter.end
        lo = t0 if t0 > warmup else warmup
        if t1 > end:
            if end > lo:
                self.busy += end - lo
            return
        if t1 > lo:
            self.busy += t1 - lo
        if self.workload:
            k = int(t1 // MS)
            meter.completions[k if k < meter.last else meter.last] += 1
        if t1 >= warmup:
            self.latency.add(t1 - t0)

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
        self.completions: list[int] = [0] * max(1, math.ceil(end / MS))  # workload ops done per ms
        self.last = len(self.completions) - 1

    def stats(self, source: str, op: str) -> OpStats:
        st = self.ops.get((source, op))
        if st is None:
            st = self.ops[source, op] = OpStats(self, source)
        return st

    def seen(self) -> list[tuple[tuple[str, str], OpStats]]:
        """Every (source, operation) that completed in the window or was in progress in it."""
        return sorted(((k, s) for k, s in self.ops.items() if s.latency.count or s.busy > 0 or s.unfinished),
                      key=lambda item: item[0])
