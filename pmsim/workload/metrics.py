"""Per-operation latencies and the per-millisecond time series of a workload run.

Operations are timed on their thread's own clock (``Thread.now``), which is
exact: work charged but not yet turned into simulated time is part of it. An
operation counts when it completes inside the measured window (after warm-up,
before the end); its latency goes into a streaming histogram, so memory stays
bounded however long the run. The time each kind of operation spends in
progress inside the window is kept too (its mean number in progress), which is
what Little's law checks the counts and latencies against.
"""

from __future__ import annotations

import math

from pmsim.stats import Histogram

MS = 1e6  # ns per time-series bucket


class OpMeter:
    """Latency histograms and in-progress time per (source, operation)."""

    def __init__(self, warmup: float, end: float):
        self.warmup = warmup
        self.end = end
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.busy: dict[tuple[str, str], float] = {}  # ns of in-progress time inside the window
        self.unfinished: dict[tuple[str, str], list[float]] = {}  # ages (ns) of those still running at the end
        self.completions: list[int] = [0] * max(1, math.ceil(end / MS))  # workload ops done per ms
        self._last = len(self.completions) - 1

    def record(self, source: str, op: str, t0: float, t1: float) -> None:
        """An operation of ``source`` ("workload" or "daemon") ran from ``t0`` to ``t1``."""
        key = (source, op)
        lo = t0 if t0 > self.warmup else self.warmup
        hi = t1 if t1 < self.end else self.end
        if hi > lo:
            self.busy[key] = self.busy.get(key, 0.0) + (hi - lo)
        if t1 > self.end:
            return
        if source == "workload":
            k = int(t1 // MS)
            self.completions[k if k < self._last else self._last] += 1
        if t1 >= self.warmup:
            h = self.latency.get(key)
            if h is None:
                h = self.latency[key] = Histogram()
                self.busy.setdefault(key, 0.0)
            h.add(t1 - t0)

    def in_progress(self, source: str, op: str, t0: float) -> None:
        """An operation still running when the run ended: its time in the window counts, and
        it is reported as unfinished (a stall longer than the run shows up here, not in the
        latencies of the operations that completed)."""
        key = (source, op)
        lo = max(t0, self.warmup)
        if self.end > lo:
            self.busy[key] = self.busy.get(key, 0.0) + (self.end - lo)
        self.unfinished.setdefault(key, []).append(self.end - t0)

    def keys(self) -> list[tuple[str, str]]:
        """Every (source, operation) seen: completed, or running in the window."""
        return sorted(set(self.latency) | set(self.unfinished) | {k for k, v in self.busy.items() if v > 0})
