"""What a run measures, with warm-up excluded and memory bounded.

Primitives report to the recorder as they run (lock waits and holds, IPIs,
IO, RCU); the recorder keeps streaming histograms and counters, and the
per-core time meters are read at the end of warm-up and at the end of the run.
"""

from __future__ import annotations

import weakref
from collections import Counter

from pmsim.stats import Histogram, censored_quantile, histogram_of


class SiteStats:
    """One call site's share of one lock (lockstat's per-site rows): its contentions and their
    waits, and the holds it made that ended in the window (so its acquisitions are counted at
    release). Only the contended path and the release touch it, with plain arithmetic."""

    __slots__ = (
        "contentions",
        "con_bounces",
        "wait_total",
        "wait_min",
        "wait_max",
        "holds",
        "hold_total",
        "hold_min",
        "hold_max",
    )

    def __init__(self):
        self.contentions = self.con_bounces = self.holds = 0
        self.wait_total = self.hold_total = self.wait_max = self.hold_max = 0.0
        self.wait_min = self.hold_min = float("inf")


class LineStats:
    """Transfers (bounces), first touches and the time they kept the lines busy, for one
    cache-line class (every line of that name), counted from the start of the run on plain
    counters that only a miss touches (a local hit costs its own core alone and is not
    counted: the hot path stays as it was); the recorder snapshots them at the end of warm-up
    (cheaper than a warm-up test on every atomic)."""

    __slots__ = ("name", "transfers", "cold", "busy", "base")

    def __init__(self, name: str):
        self.name = name
        self.transfers = 0  # atomics that took the line from another core's cache (a bounce)
        self.cold = 0  # atomics on a line no core held yet (from memory)
        self.busy = 0.0  # ns the lines were occupied serving those misses
        self.base = (0, 0, 0.0)  # the counters at the end of warm-up

    def snapshot(self) -> None:
        self.base = (self.transfers, self.cold, self.busy)

    def window(self) -> tuple[int, int, float]:
        """(transfers, first touches, busy ns) in the measured window."""
        t, c, b = self.base
        return self.transfers - t, self.cold - c, self.busy - b


class LockStats:
    """Acquisitions, contention, wait, hold and hand-off times and the longest queue of one
    lock name (one lock, or every lock of that name: each process's pte_lock).

    A hand-off is the time from the release to the next holder running (a spinlock's line
    transfer, a qlock's kernel message and restart): the lock is neither free nor used then,
    which is what makes a convoy. Waits and holds still going at the run's end are
    right-censored at their age (the lock objects are kept, weakly, to ask them then)."""

    __slots__ = (
        "name",
        "kind",
        "acquisitions",
        "contended",
        "wait",
        "hold_by",
        "handoff",
        "max_queue",
        "recorder",
        "instances",
        "sites",
        "blame",
        "acq_bounces",
        "site_bounces",
        "bounce_base",
        "rt_site",
        "rt_count",
    )

    def __init__(self, recorder: Recorder, name: str, kind: str):
        self.recorder = recorder
        self.name = name
        self.kind = kind
        self.acquisitions = 0
        self.contended = 0
        self.wait = Histogram()
        self.hold_by: dict[str | None, Histogram] = {}  # hold times by the holder's operation
        self.handoff = Histogram()
        self.max_queue = 0
        self.instances = weakref.WeakSet()
        self.sites: dict[str, SiteStats] = {}  # call site -> its contentions and holds
        # (waiter op, waiter site, holder op, holder site, releaser op, releaser site)
        #   -> [waits, total wait ns]: whom each contended wait waited behind, who handed over
        self.blame: dict[tuple, list] = {}
        # Lock-word transfers on uncontended acquisitions, counted from the start on plain
        # counters (the transfer branch only), snapshotted at warm-up: class total and by site.
        self.acq_bounces = 0
        self.site_bounces: Counter = Counter()
        self.bounce_base = (0, Counter())
        self.rt_site: str | None = None  # the call site of the round trips counted in rt_count
        self.rt_count = 0

    def snapshot(self) -> None:
        """The end of warm-up: the raw bounce counters' base."""
        self.bounce_base = (self.acq_bounces, Counter(self.site_bounces))

    def site(self, site: str) -> SiteStats:
        s = self.sites.get(site)
        if s is None:
            s = self.sites[site] = SiteStats()
        return s

    def contended_wait(
        self,
        t: float,
        wait: float,
        op: str | None,
        site: str,
        behind: tuple,
        released_by: tuple,
        bounced: bool,
    ) -> None:
        """A contended acquisition by ``site`` (in operation ``op``) after ``wait`` ns:
        ``behind`` is the (op, site) that held the lock when the wait began, ``released_by``
        the (op, site) that handed it over (for a qlock, the waker); ``bounced``: the lock came
        from another core. Called on the contended path only."""
        if t < self.recorder.warmup:
            return
        s = self.sites.get(site) or self.site(site)
        s.contentions += 1
        s.con_bounces += bounced
        s.wait_total += wait
        if wait > s.wait_max:
            s.wait_max = wait
        if wait < s.wait_min:
            s.wait_min = wait
        key = (op, site, *behind, *released_by)
        b = self.blame.get(key)
        if b is None:
            self.blame[key] = [1, wait]
        else:
            b[0] += 1
            b[1] += wait

    def released(self, t: float, hold: float, op: str | None = None, site: str = "?") -> None:
        """Held for ``hold`` ns by a thread running ``op``, taken at call site ``site`` (kept
        apart: writeback's long holds of pm_qlock are a hazard of their own, hidden in the mean
        over every holder). Per site, the holds that end in the window are its acquisitions."""
        if t >= self.recorder.warmup:
            h = self.hold_by.get(op)
            if h is None:
                h = self.hold_by[op] = Histogram()
            h.add(hold)
            s = self.sites.get(site)
            if s is None:
                s = self.site(site)
            s.holds += 1
            s.hold_total += hold
            if hold > s.hold_max:
                s.hold_max = hold
            if hold < s.hold_min:
                s.hold_min = hold

    def round_trip(self, t: float, cost: float, op: str | None, site: str) -> None:
        """An uncontended acquisition at ``t`` costing ``cost`` and its release at once (hold
        0): :meth:`acquired` then :meth:`released`, in one call on the hot path (a private
        lock's round trip). Its site's count is a plain counter while the site stays the same
        (one call site in practice), folded into the site's stats when it changes or is read."""
        warmup = self.recorder.warmup
        if t >= warmup:
            self.acquisitions += 1
            self.wait.add(cost)
        if t + cost >= warmup:
            h = self.hold_by.get(op)
            if h is None:
                h = self.hold_by[op] = Histogram()
            h.add(0.0)
            if site is not self.rt_site:
                self.fold_round_trips()
                self.rt_site = site
            self.rt_count += 1

    def fold_round_trips(self) -> None:
        """Add the round trips counted for ``rt_site`` to its stats (holds of 0 ns)."""
        if self.rt_count:
            s = self.site(self.rt_site)
            s.holds += self.rt_count
            s.hold_min = 0.0
            self.rt_count = 0

    def register(self, lock) -> None:
        """``lock`` reports here: its waits and hold still going at the end are counted."""
        self.instances.add(lock)

    def handed_off(self, t: float, dt: float) -> None:
        """The lock reached its next holder at ``t``, ``dt`` ns after it was released."""
        if t >= self.recorder.warmup:
            self.handoff.add(dt)

    def acquired(self, t: float, wait: float, contended: bool) -> None:
        if t >= self.recorder.warmup:
            self.acquisitions += 1
            self.contended += contended
            self.wait.add(wait)

    @property
    def hold(self) -> Histogram:
        """Hold times of every holder."""
        total = Histogram()
        for h in self.hold_by.values():
            total.merge(h)
        return total

    def queued(self, length: int) -> None:
        if length > self.max_queue and self.recorder.machine.env.now >= self.recorder.warmup:
            self.max_queue = length

    def in_progress(self, now: float) -> tuple[list[float], list[float], list[float]]:
        """The ages at ``now`` of the waits, holds and hand-offs still going on."""
        waits, holds, handoffs = [], [], []
        for lock in list(self.instances):
            w, h = lock.in_progress(now)
            waits += w
            if h is not None:
                holds.append(h)
            a = lock.handoff_age(now)
            if a is not None:
                handoffs.append(a)
        # (sorted: a WeakSet iterates in memory order, and float sums depend on the order)
        return sorted(waits), sorted(holds), sorted(handoffs)

    def summary(self) -> dict:
        """Means are of the completed waits, holds and hand-offs; p99 and max count those still
        going at the end (each flagged when it is only a lower bound)."""
        n = self.acquisitions
        hold = self.hold
        rec = self.recorder
        end = rec.end_time if rec.end_time is not None else rec.machine.env.now
        waits, holds, handoffs = self.in_progress(end)
        w_cens, h_cens = histogram_of(waits), histogram_of(holds)
        wait_p99, wait_p99_bound = censored_quantile(self.wait, w_cens, 0.99)
        wait_max, wait_max_bound = censored_quantile(self.wait, w_cens, 1.0)
        hold_max, hold_max_bound = censored_quantile(hold, h_cens, 1.0)
        window = rec.window if rec.end_meters is not None and rec.start_meters else 0.0
        busy = hold.total + self.handoff.total + sum(holds) + sum(handoffs)
        return {
            "kind": self.kind,
            "acquisitions": n,
            "contended_fraction": self.contended / n if n else 0.0,
            "wait_us_mean": self.wait.mean() / 1e3,
            "wait_us_p99": wait_p99 / 1e3,
            "wait_us_p99_is_lower_bound": wait_p99_bound,
            "wait_us_max": wait_max / 1e3,
            "wait_us_max_is_lower_bound": wait_max_bound,
            "waiting_at_end": len(waits),
            "hold_us_mean": hold.mean() / 1e3,
            "hold_us_p99": hold.quantile(0.99) / 1e3,
            "hold_us_max": hold_max / 1e3,
            "hold_us_max_is_lower_bound": hold_max_bound,
            "handoff_us_mean": self.handoff.mean() / 1e3,
            "handoff_us_p99": self.handoff.quantile(0.99) / 1e3,
            "utilization": busy / window if window > 0 else 0.0,
            "max_queue": self.max_queue,
        }

    def held_by(self) -> dict:
        """Per holder operation (``other`` for a thread outside any): holds and their times."""
        return {
            op or "other": {
                "count": h.count,
                "hold_us_mean": h.mean() / 1e3,
                "hold_us_p99": h.quantile(0.99) / 1e3,
                "hold_us_max": (h.max if h.count else 0.0) / 1e3,
            }
            for op, h in sorted(self.hold_by.items(), key=lambda kv: kv[0] or "other")
            if h.count
        }


class Recorder:
    """Collects a run's measurements after ``warmup`` ns of simulated time."""

    def __init__(self, machine, warmup: float = 0.0):
        self.machine = machine
        self.warmup = float(warmup)
        self.locks: dict[str, LockStats] = {}
        self.lines: dict[str, LineStats] = {}
        self.marks: list | None = None  # (name, time, track, args) for a trace, once one asks
        self.counters: Counter = Counter()
        self.histograms: dict[str, Histogram] = {}
        self.hazards: dict = {}  # name -> pmsim.hazards.HazardStats
        self.hazard_log: list = []  # pmsim.hazards.Occurrence, the first LOG_LIMIT (for traces)
        self.start_meters = None
        self.end_meters = None
        self.end_time = None

    def lock(self, name: str, kind: str) -> LockStats:
        """The stats of lock ``name`` (several lock objects may share one name, e.g. pte_lock)."""
        st = self.locks.get(name)
        if st is None:
            st = self.locks[name] = LockStats(self, name, kind)
        return st

    def line(self, name: str) -> LineStats:
        """The stats of cache-line class ``name`` (every line of that name: pm_slot, pg_flags)."""
        st = self.lines.get(name)
        if st is None:
            st = self.lines[name] = LineStats(name)
        return st

    def mark(self, name: str, t: float, track: str, args: dict | None = None) -> None:
        """An instant event (a hazard seen, a phase change) that a trace shows at ``t`` on
        ``track`` (a thread or core name); nothing else reads it. Only where a trace is wanted:
        ``marks`` is None unless a trace writer asked for them."""
        if self.marks is not None:
            self.marks.append((name, t, track, args or {}))

    def count(self, name: str, n: float = 1) -> None:
        if self.machine.env.now >= self.warmup:
            self.counters[name] += n

    def sample(self, name: str, value: float) -> None:
        if self.machine.env.now >= self.warmup:
            h = self.histograms.get(name)
            if h is None:
                h = self.histograms[name] = Histogram()
            h.add(value)

    def hazard(self, occ) -> None:
        """A hazard occurrence (pmsim.hazards.Occurrence): its name, time, core, thread,
        window and event trail; counted (also as the counter ``hazard_<name>``) and kept for
        a trace to mark."""
        if self.machine.env.now < self.warmup:
            return
        from pmsim.hazards import LOG_LIMIT, HazardStats

        st = self.hazards.get(occ.name)
        if st is None:
            st = self.hazards[occ.name] = HazardStats(occ.name)
        st.add(occ)
        self.counters[f"hazard_{occ.name}"] += 1
        if len(self.hazard_log) < LOG_LIMIT:
            self.hazard_log.append(occ)
        if self.marks is not None:  # a trace is being written: mark it where it happened
            self.mark(
                f"hazard {occ.name}",
                occ.t,
                occ.thread or (f"core {occ.core}" if occ.core is not None else "hazards"),
                {
                    "window_ns": occ.window,
                    "waited_ns": occ.waited,
                    "origin": occ.where,
                    "trail": [step.text() for step in occ.trail],
                },
            )

    def start(self) -> None:
        env = self.machine.env
        if self.warmup > env.now:
            env.process(self._snapshot_at_warmup())
        else:
            self._mark_start()

    def _snapshot_at_warmup(self):
        yield self.machine.env.timeout(self.warmup - self.machine.env.now)
        self._mark_start()

    def _mark_start(self) -> None:
        """The measured window starts: the core meters and the raw bounce counters' bases."""
        self.start_meters = self._meters()
        for st in self.locks.values():
            st.snapshot()
        for st in self.lines.values():
            st.snapshot()

    def stop(self) -> None:
        self.end_meters = self._meters()
        self.end_time = self.machine.env.now

    def _meters(self):
        now = self.machine.env.now
        return now, [c.meter(now) for c in self.machine.cores]

    @property
    def window(self) -> float:
        """Measured simulated time (ns): from the end of warm-up to the end of the run."""
        return self.end_meters[0] - self.start_meters[0]

    def cpu(self) -> dict:
        """Fractions of all cores' time: useful, spin, ipi, idle (they sum to 1)."""
        t0, m0 = self.start_meters
        t1, m1 = self.end_meters
        total = (t1 - t0) * len(m0)
        if total <= 0:
            return {"useful": 0.0, "spin": 0.0, "ipi": 0.0, "idle": 1.0}
        useful = sum(b[0] - a[0] for a, b in zip(m0, m1)) / total
        spin = sum(b[1] - a[1] for a, b in zip(m0, m1)) / total
        ipi = sum(b[2] - a[2] for a, b in zip(m0, m1)) / total
        return {
            "useful": useful,
            "spin": spin,
            "ipi": ipi,
            "idle": max(0.0, 1.0 - useful - spin - ipi),
        }

    def per_core(self) -> list[dict]:
        t0, m0 = self.start_meters
        t1, m1 = self.end_meters
        w = t1 - t0
        out = []
        for i, (a, b) in enumerate(zip(m0, m1)):
            u, s, p = ((b[k] - a[k]) / w if w > 0 else 0.0 for k in range(3))
            out.append(
                {"core": i, "useful": u, "spin": s, "ipi": p, "idle": max(0.0, 1 - u - s - p)}
            )
        return out
