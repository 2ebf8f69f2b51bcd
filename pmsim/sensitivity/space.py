"""The cost space a sensitivity study samples: every input cost some design reads, over its
plausible range (pmsim/data/costs.yaml).

A range spanning more than :data:`LOG_SPAN` (high / low) is sampled log-uniformly, so that
``kthread_switch_ns`` in 50-2000 ns is not 90% "above 250": each factor of the range gets
equal weight. A derived cost (``cas_remote_ns = 2 x cacheline_transfer_ns``) is not sampled: it
follows its base, as in every run. Whole-number costs (queue depths, the radix fan-out) are
left at their defaults: they are structure, not uncertainty in a measured time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pmsim.costs import cost_params

LOG_SPAN = 3.0  # ranges wider than this factor are sampled on a log scale


@dataclass(frozen=True)
class Dimension:
    """One sampled cost: its name, range (in its own unit) and scale."""

    name: str
    low: float
    high: float
    log: bool
    default: float

    def value(self, u: float) -> float:
        """The cost at position ``u`` in [0, 1] of its range (log or linear), 6 digits."""
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        return float(f"{v:.6g}")

    def position(self, v: float) -> float:
        """Where ``v`` lies in the range, 0 to 1, on the sampling scale."""
        if self.log:
            return (math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (v - self.low) / (self.high - self.low)


def dimension(name: str) -> Dimension:
    p = cost_params()[name]
    lo, hi = p.range
    return Dimension(name, lo, hi, lo > 0 and hi / lo > LOG_SPAN, p.default)


def cost_space(read: set[str], fixed: set[str]) -> tuple[list[Dimension], dict[str, str]]:
    """The dimensions to sample among the costs ``read`` (by some design), less those ``fixed``
    (set by the user), and why each other read cost is left out."""
    dims, skipped = [], {}
    for name in sorted(read):
        p = cost_params().get(name)
        if p is None or p.role != "input":
            continue
        if name in fixed:
            skipped[name] = "set with --set"
        elif p.derived_from is not None:
            skipped[name] = f"derived: follows {p.derived_from}"
        elif p.unit == "count":
            skipped[name] = "a whole number (structure): at its default"
        elif not p.range[1] > p.range[0]:
            skipped[name] = "no range"
        else:
            dims.append(dimension(name))
    return dims, skipped
