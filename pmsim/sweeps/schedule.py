"""Which run to start next: the longest first, by what finished runs have shown.

A sweep's wall time is the busiest worker's. Started longest first, the short runs fill
the gaps at the end, so no worker finishes alone (LPT scheduling). A run's length is its
cost estimate (threads x simulated time) times the wall seconds per unit of estimate seen
so far for its design and workload (NEW simulates far more operations per simulated
second than OLD at many cores, so one factor for all would not do).
"""

from __future__ import annotations

from collections import defaultdict


class LongestFirst:
    """Predicts run lengths from finished runs, per (design, workload), then per design."""

    def __init__(self):
        self._seen: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0])  # key -> [sum, n]

    def learn(self, plan, wall_s: float) -> None:
        rate = wall_s / max(plan.cost_estimate, 1e-9)
        for key in ((plan.design, plan.workload), (plan.design,), ()):
            acc = self._seen[key]
            acc[0] += rate
            acc[1] += 1

    def predict(self, plan) -> float:
        for key in ((plan.design, plan.workload), (plan.design,), ()):
            acc = self._seen.get(key)
            if acc is not None and acc[1]:
                return plan.cost_estimate * acc[0] / acc[1]
        return plan.cost_estimate

    def pop_longest(self, pending: list):
        """Remove and return the pending run predicted to take longest."""
        i = max(range(len(pending)), key=lambda k: self.predict(pending[k]))
        return pending.pop(i)
