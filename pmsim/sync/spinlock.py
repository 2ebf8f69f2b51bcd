"""Kernel spinlocks: Akaros's TTAS lock, and ticket and MCS locks as what-ifs.

Akaros (kern/arch/x86/atomic.h: __spin_lock_raw, __spin_unlock) spins reading the
lock byte with ``pause`` until it is 0, then ``xchgb``; unlock is a plain store. No
ticket, no queue: the winner among spinners is whoever's ``xchg`` lands first, and
every release bounces the line to every spinner. Spinners keep their core.

Hand-off cost, for k = the spinners at the release (the next holder included), with
c = ``ticket_handoff_per_waiter_ns`` (derived from ``cacheline_transfer_ns``):
``ticket`` pays c*k/2 (Boyd-Wickizer et al. 2012: on a release, on average half the
waiters re-read the line before the next holder's read is answered); ``ttas`` pays
c*k*``ttas_handoff_factor`` (every spinner's ``xchgb`` is an RFO of the line: 1.0 by
default, 0.5 the ticket-like optimistic end); ``mcs`` pays one line transfer, whatever k.
No hand-off is cheaper than the one transfer of the line it needs.
``ttas`` picks the winner uniformly at random among the spinners; the others FIFO.
"""

from __future__ import annotations

from collections import deque

from pmsim.engine import Event, trigger_at
from pmsim.errors import violation


class SpinLockCosts:
    """The costs a spinlock reads (each lock kind reads its own hand-off cost)."""

    __slots__ = ("pair", "transfer", "transfer_remote_socket")

    def __init__(self, costs):
        self.pair = costs.ns("lock_pair_uncontended_ns")  # an uncontended lock + unlock
        self.transfer = costs.ns("cacheline_transfer_ns")  # the lock word from another core
        self.transfer_remote_socket = costs.ns("cacheline_transfer_remote_socket_ns")


class SpinLock:
    """A spinlock; subclasses choose the next holder and the hand-off cost."""

    kind = "?"
    __slots__ = (
        "machine",
        "env",
        "name",
        "holder",
        "waiters",
        "line_core",
        "acquired_at",
        "handing_off",
        "stats",
        "cost",
        "site",
        "__weakref__",
    )

    def __init__(self, machine, name: str):
        self.machine = machine
        self.env = machine.env
        self.name = name
        self.holder = None
        self.waiters = deque()  # (thread, event, time of request, site, (holder op, site))
        self.line_core = None  # core whose cache holds the lock word
        self.acquired_at = 0.0
        # (release time, the next holder's request time, releaser's op and site, bounced)
        self.handing_off = None  # ... until the next holder runs
        self.site = "?"  # the holder's call site (the C function that took the lock)
        self.stats = machine.recorder.lock(name, self.kind)
        self.stats.register(self)
        self.cost = machine.costs.view(SpinLockCosts)

    def acquire(self, thread, site: str = "?"):
        """``spin_lock`` at call site ``site`` (the C function taking the lock): take the lock,
        spinning on this core while it is held (a generator)."""
        yield from thread.sync()  # (a thread must hold its core to run or spin)
        now = self.env.now
        if self.holder is None:
            core = thread.core
            cost = self.cost.pair
            lc = self.line_core
            if lc is not None and lc is not core:
                cost += (
                    self.cost.transfer
                    if lc.socket == core.socket
                    else self.cost.transfer_remote_socket
                )
                self.stats.acq_bounces += 1  # (lockstat's acq-bounces: raw, based at warm-up)
                self.stats.site_bounces[site] += 1
            self.line_core = core
            self.holder = thread
            self.site = site
            thread.spinlocks_held += 1
            self.acquired_at = now + cost
            thread.pending += cost
            self.stats.acquired(now, cost, False)
            return
        ev = Event(self.env)
        behind = (self.holder.op, self.site)  # whom this wait waits behind (blame)
        self.waiters.append((thread, ev, now, site, behind))
        self.stats.queued(len(self.waiters))
        core = thread.core
        core.spin_since = now
        yield ev
        now = self.env.now
        core.spin += now - core.spin_since
        core.spin_since = None
        thread.spinlocks_held += 1
        self.acquired_at = now
        self.site = site
        stats = self.stats
        released_at, t_req, by_op, by_site, bounced = self.handing_off
        stats.handed_off(now, now - released_at)
        self.handing_off = None
        stats.acquired(now, now - t_req, True)
        stats.contended_wait(now, now - t_req, thread.op, site, behind, (by_op, by_site), bounced)
        thread.waited("spin", self.name, released_at - t_req)
        thread.waited("handoff", self.name, now - released_at)

    def acquire_private(self, thread, site: str = "?") -> None:
        """``spin_lock`` of a lock no other thread ever takes (the fd table of a single-thread
        process): the uncontended acquire's cost on the thread's own clock, without a sync
        point, since no other thread can observe it (design.md: events only where threads can
        interact). The same cost and statistics as :meth:`acquire` would give."""
        now = thread.env.now + thread.pending + thread.stolen  # thread.now
        core = thread.core
        cost = self.cost.pair
        lc = self.line_core
        if lc is not None and lc is not core:
            cost += (
                self.cost.transfer if lc.socket == core.socket else self.cost.transfer_remote_socket
            )
            self.stats.acq_bounces += 1
            self.stats.site_bounces[site] += 1
        self.line_core = core
        self.holder = thread
        self.site = site
        thread.spinlocks_held += 1
        self.acquired_at = now + cost
        thread.pending += cost
        self.stats.acquired(now, cost, False)

    def release_private(self, thread) -> None:
        """``spin_unlock`` of a lock taken with :meth:`acquire_private`."""
        now = thread.env.now + thread.pending + thread.stolen  # thread.now
        thread.spinlocks_held -= 1
        self.stats.released(now, now - self.acquired_at, thread.op, self.site)
        self.holder = None

    def round_trip_private(self, thread, site: str = "?") -> None:
        """:meth:`acquire_private` and :meth:`release_private` with nothing in between (the
        chan's offset read under ``c->lock``): one call on the hot path."""
        now = thread.env.now + thread.pending + thread.stolen  # thread.now
        core = thread.core
        cost = self.cost.pair
        lc = self.line_core
        stats = self.stats
        if lc is not None and lc is not core:
            cost += (
                self.cost.transfer if lc.socket == core.socket else self.cost.transfer_remote_socket
            )
            stats.acq_bounces += 1
            stats.site_bounces[site] += 1
        self.line_core = core
        thread.pending += cost
        stats.round_trip(now, cost, thread.op, site)

    def release(self, thread):
        """``spin_unlock``: free the lock or hand it to a spinner (a generator)."""
        yield from thread.sync()
        if self.holder is not thread:
            raise violation(
                self.machine,
                thread,
                None,
                f"{self.name}: released by {thread.name}, held by {getattr(self.holder, 'name', None)}",
            )
        now = self.env.now
        thread.spinlocks_held -= 1
        self.stats.released(now, now - self.acquired_at, thread.op, self.site)
        waiters = self.waiters
        if not waiters:
            self.holder = None
            return
        k = len(waiters)
        nxt, ev, t_req, _, _ = self._next(waiters)
        self.holder = nxt
        delay = self._handoff(k, thread.core, nxt.core)
        self.line_core = nxt.core
        self.handing_off = (now, t_req, thread.op, self.site, nxt.core is not thread.core)
        trigger_at(self.env, ev, delay, t_req)

    def in_progress(self, now: float) -> tuple[list[float], float | None]:
        """At the run's end: the ages of the waits still going (spinning, or handed the lock
        but not yet running) and of the hold still going (None if not held)."""
        waits = [now - w[2] for w in self.waiters]
        if self.handing_off is not None:
            waits.append(now - self.handing_off[1])
            return waits, None
        return waits, (max(0.0, now - self.acquired_at) if self.holder is not None else None)

    def waiting(self, now: float) -> list[tuple]:
        """At the run's end, each queued waiter: (its op, its site, whom it waits behind, age)."""
        return [(w[0].op, w[3], w[4], now - w[2]) for w in self.waiters]

    def handoff_age(self, now: float) -> float | None:
        """How long the hand-off going on at the end has lasted (None if none is)."""
        return None if self.handing_off is None else now - self.handing_off[0]

    def _next(self, waiters):
        return waiters.popleft()

    def _handoff(self, k: int, from_core, to_core) -> float:
        raise NotImplementedError


class TicketLock(SpinLock):
    """FIFO; a hand-off costs c*k/2 (Boyd-Wickizer et al. 2012), at least one transfer."""

    kind = "ticket"
    __slots__ = ("per_waiter",)

    def __init__(self, machine, name):
        super().__init__(machine, name)
        self.per_waiter = machine.costs.ns("ticket_handoff_per_waiter_ns") / 2

    def _handoff(self, k, from_core, to_core):
        t = self.per_waiter * k
        floor = (
            self.cost.transfer if from_core.socket == to_core.socket
            else self.cost.transfer_remote_socket
        )  # fmt: skip
        return t if t > floor else floor


class TTASLock(TicketLock):
    """Akaros's lock: c*k*``ttas_handoff_factor`` per hand-off, and a random winner (unfair)."""

    kind = "ttas"
    __slots__ = ("rng",)

    def __init__(self, machine, name):
        super().__init__(machine, name)
        self.rng = machine.rng(f"spinlock.{name}")
        self.per_waiter = machine.costs.ns("ticket_handoff_per_waiter_ns") * machine.costs.value(
            "ttas_handoff_factor"
        )

    def _next(self, waiters):
        i = int(self.rng.integers(len(waiters))) if len(waiters) > 1 else 0
        item = waiters[i]
        del waiters[i]
        return item


class MCSLock(SpinLock):
    """FIFO; the holder writes its successor's own line: one transfer per hand-off."""

    kind = "mcs"
    __slots__ = ("handoff",)

    def __init__(self, machine, name):
        super().__init__(machine, name)
        self.handoff = machine.costs.ns("spinlock_handoff_ns")

    def _handoff(self, k, from_core, to_core):
        if from_core.socket != to_core.socket:
            return self.cost.transfer_remote_socket
        return self.handoff if self.handoff > self.cost.transfer else self.cost.transfer


# The spinlock kinds, by name: Akaros's first (the default), then the what-ifs.
SPINLOCKS = {cls.kind: cls for cls in (TTASLock, TicketLock, MCSLock)}
SPINLOCK_KINDS = tuple(SPINLOCKS)


def make_spinlock(machine, name: str, kind: str) -> SpinLock:
    return SPINLOCKS[kind](machine, name)
