"""The hazard oracle: the races the simulated timing lets happen, counted rather than stopped on.

A performance model times every step of both designs, so it can also say which of the races
a reviewer worries about (akaros-pagemap.md 5.2) the real timing opens, how often, and how wide
the window was. Each hazard is detected where the model code sees it (a TLB access, a
writeback pass, a lookup, a free) and reported here with the time, the core and thread, the
window's width and an event trail: the steps, on which cores and when, that made the race.

Hazards (docs/model.md "The hazard oracle"):

- ``lost_dirty``: a store that a writeback pass (or the free of its page) did not see and that
  nothing marks dirty any more: a core stored through a TLB entry that still cached D=1 after
  ``pte_clear_dirty`` cleared the PTE's D (NEW writeback, before the shootdown was handled), or
  a hardware D update that ``__munmap_pte``'s plain read-then-write overwrote (``where``:
  ``writeback``, ``free``, ``munmap``);
- ``stale_read``: readpage returned data older than the last store to that page;
- ``freed_while_mapped``: a page freed while a PTE maps it, or accessed through a TLB entry
  after its free;
- ``publish_race``: NEW, a lock-free ``pm_find_page`` read a slot ``radix_insert`` had published
  before ``pm_insert_page`` set ``page->pg_tree_slot`` (the C asserts: a panic);
- ``aba_dangerous``: NEW ``__remove_or_zero_cb``'s CAS succeeded on a page a fault mapped
  through a VMR that became ready after the VMR scan: the remover frees a mapped page;
- ``aba_find_put``: a find and a put inside ``__remove_or_zero_cb``'s window left the slot word
  as it was read (a read() racing a truncate: benign, as the C comments accept).
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from pmsim.stats import Histogram

HAZARDS = (
    "lost_dirty",
    "stale_read",
    "freed_while_mapped",
    "publish_race",
    "aba_dangerous",
    "aba_find_put",
)
LOG_LIMIT = 10_000  # occurrences kept for a trace to mark (counts are never capped)


class Step(NamedTuple):
    """One step of an event trail: when, on which core, by which thread, what."""

    t: float
    core: int | None
    thread: str | None
    what: str

    def text(self) -> str:
        where = f"core {self.core}" if self.core is not None else "-"
        return f"{self.t:,.1f} ns  {where:>8}  {self.thread or '-':<10} {self.what}"


class Occurrence(NamedTuple):
    """One hazard occurrence, as the recorder keeps it (and a trace would mark it)."""

    name: str
    t: float
    core: int | None
    thread: str | None
    window: float
    where: str | None
    trail: tuple[Step, ...]
    waited: float = 0.0


class HazardStats:
    """One hazard's count, window widths (ns), first occurrence and count by origin."""

    __slots__ = ("name", "count", "window", "waited", "first", "where")

    def __init__(self, name: str):
        self.name = name
        self.count = 0
        self.window = Histogram()  # how long the window was open
        self.waited = Histogram()  # how long the losing side waited until it was caught
        self.first: Occurrence | None = None
        self.where: Counter = Counter()

    def add(self, occ: Occurrence) -> None:
        self.count += 1
        self.window.add(occ.window)
        self.waited.add(occ.waited)
        if occ.where:
            self.where[occ.where] += 1
        if self.first is None:
            self.first = occ

    def summary(self, seconds: float) -> dict:
        h = self.window
        first = self.first
        return {
            "count": self.count,
            "per_s": self.count / seconds if seconds > 0 else 0.0,
            "window_ns_mean": h.mean() if h.count else 0.0,
            "window_ns_p50": h.quantile(0.5) if h.count else 0.0,
            "window_ns_p99": h.quantile(0.99) if h.count else 0.0,
            "window_ns_max": h.max if h.count else 0.0,
            "waited_ns_mean": self.waited.mean() if h.count else 0.0,
            "waited_ns_max": self.waited.max if h.count else 0.0,
            "by_where": dict(sorted(self.where.items())),
            "first": None
            if first is None
            else {
                "t_ns": first.t,
                "core": first.core,
                "thread": first.thread,
                "where": first.where,
                "window_ns": first.window,
                "waited_ns": first.waited,
                "trail": [s.text() for s in first.trail],
            },
        }


def step(th, what: str, t: float | None = None) -> Step:
    """A trail step by thread ``th`` (None: the machine) at ``t`` (default: its own clock)."""
    if th is None:
        return Step(t if t is not None else 0.0, None, None, what)
    return Step(th.now if t is None else t, th.core.index, th.name, what)


def occur(
    machine, name: str, th, window: float, trail, where: str | None = None, waited: float = 0.0
) -> None:
    """Report hazard ``name`` seen by thread ``th`` now: its window was open ``window`` ns, and
    the losing side (a store, a lookup) waited ``waited`` ns until the oracle caught it."""
    t = th.now if th is not None else machine.env.now
    core = th.core.index if th is not None else None
    name_th = th.name if th is not None else None
    machine.recorder.hazard(Occurrence(name, t, core, name_th, window, where, tuple(trail), waited))


def format_trail(occ: dict) -> str:
    """The first occurrence of a hazard summary, as lines a reader can follow."""
    return "\n".join(occ["trail"])
