"""The qlock: an Akaros semaphore initialised to 1 (kern/include/kthread.h, kern/src/kthread.c).

``qlock`` is ``sem_down``: a fast path of one sem-spinlock round trip when the
count is positive; otherwise ``save_kthread_ctx`` (a context save and stack
switch), then, under the sem's spinlock, decrement and queue FIFO and give the
core up (``smp_idle``). If a ``sem_up`` raced in during the save, the switch is
undone and the caller owns the lock.

``qunlock`` is ``sem_up``: with waiters, the signal goes straight to the first
one (direct hand-off, no barging) and ``kthread_runnable`` sends it a routine
kernel message. Wake policies:

- ``waker_core`` (Akaros): the message goes to the *waker's* core, so the wakee
  restarts only when the waker's current kernel path ends or blocks (its next
  ``smp_idle``), then pays ``restart_kthread``. The lock is effectively held all that
  time.

The waiter's sleep is a kthread sleep (``Thread.sleep``): ``save_kthread_ctx`` before it and
``restart_kthread`` after it, ``kthread_switch_ns`` each, as every other sleep pays.
- ``remote_ipi`` (a Linux-like what-if): the wakee's core is sent an IPI and it
  runs ``qlock_sleep_wake_us`` after the ``qunlock``.
"""

from __future__ import annotations

from collections import deque

from pmsim.engine import Event, trigger_at
from pmsim.errors import violation

# Wake policies: Akaros's first (the default), then the what-if.
WAKE_POLICIES = ("waker_core", "remote_ipi")


class QLockCosts:
    """The costs a qlock reads: the sem's spinlock round trip, its line's transfer, the context
    save before queueing, the kernel message, and for the ``remote_ipi`` what-if the IPI and the
    remote wake-up."""

    __slots__ = ("pair", "transfer", "save", "kmsg", "ipi_send", "remote_wake")

    def __init__(self, costs):
        self.pair = costs.ns("lock_pair_uncontended_ns")
        self.transfer = costs.ns("cacheline_transfer_ns")
        self.save = costs.ns("kthread_switch_ns")  # save_kthread_ctx (Thread.sleep charges it)
        self.kmsg = costs.ns("kmsg_send_ns")
        self.ipi_send = costs.ns("ipi_send_ns")
        self.remote_wake = costs.ns("qlock_sleep_wake_us")


class QLock:
    """A sleeping FIFO lock with direct hand-off; waiters give their core up."""

    kind = "qlock"
    __slots__ = (
        "machine",
        "env",
        "name",
        "wake",
        "nr_signals",
        "waiters",
        "holder",
        "line_core",
        "acquired_at",
        "handing_off",
        "stats",
        "cost",
        "_queue_area",
        "_queue_since",
        "site",
        "__weakref__",
    )

    def __init__(self, machine, name: str, wake: str = "waker_core", held_by=None, site: str = "?"):
        """``held_by``: a semaphore initialised to 0 and owned by that thread (a page lock
        created locked by its inserter, ``sem_init(&pg_sem, 0)``), at call site ``site``."""
        self.machine = machine
        self.env = machine.env
        self.name = name
        self.wake = wake
        self.nr_signals = 0 if held_by is not None else 1
        # (thread, event, time its context save is done, request time, site, (holder op, site))
        self.waiters = deque()
        self.holder = held_by
        self.line_core = None
        self.acquired_at = machine.env.now
        # (qunlock time, the wakee's request time, the waker's op and site, bounced)
        self.handing_off = None  # ... until the wakee runs
        self.site = site  # the holder's call site (the C function that took the lock)
        self.stats = machine.recorder.lock(name, self.kind)
        self.stats.register(self)
        if held_by is not None:  # born held: an uncontended acquisition (its release is a hold)
            self.stats.acquired(self.acquired_at, 0.0, False)
        self._queue_area = 0.0  # integral of len(waiters) over time (ns), up to _queue_since
        self._queue_since = 0.0
        self.cost = machine.costs.view(QLockCosts)

    def _fast_cost(self, core, site: str) -> float:
        cost = self.cost.pair
        if self.line_core is not None and self.line_core is not core:
            cost += self.cost.transfer
            self.stats.acq_bounces += 1  # (lockstat's acq-bounces: raw, based at warm-up)
            self.stats.site_bounces[site] += 1
        self.line_core = core
        return cost

    def acquire(self, thread, site: str = "?"):
        """``qlock`` / ``sem_down`` at call site ``site`` (the C function taking the lock; a
        generator)."""
        yield from thread.sync()  # (a thread must hold its core to run)
        t_req = self.env.now
        if self.nr_signals > 0:  # sem_trydown succeeds
            self.nr_signals -= 1
            cost = self._fast_cost(thread.core, site)
            self.holder = thread
            self.site = site
            self.acquired_at = t_req + cost
            thread.pending += cost
            self.stats.acquired(t_req, cost, False)
            return
        # Slow path: save_kthread_ctx, then (under the sem's spinlock) decrement and
        # queue. The save is charged now and the thread queued at once, marked ready
        # only when the save is done: a hand-off that comes earlier completes when the
        # save does, which is sem_down's "a sem_up raced in: undo the switch" path.
        ready_at = t_req + self.cost.save + self.cost.pair
        thread.pending += self.cost.pair  # the sem's spinlock (the sleep adds the save)
        self.nr_signals -= 1
        ev = Event(self.env)
        behind = (getattr(self.holder, "op", None), self.site)  # whom it waits behind (blame)
        self._queue_length_changes(t_req)
        self.waiters.append((thread, ev, ready_at, t_req, site, behind))
        self.stats.queued(len(self.waiters))
        yield from thread.sleep(ev)
        now = thread.now  # once restarted (restart_kthread is charged, not yet synced)
        if self.holder is not thread:
            raise violation(
                self.machine, thread, None, f"{self.name}: {thread.name} woke without the lock"
            )
        self.acquired_at = now
        self.site = site
        stats = self.stats
        released_at, _, by_op, by_site, bounced = self.handing_off
        stats.handed_off(now, now - released_at)
        self.handing_off = None
        stats.acquired(now, now - t_req, True)
        stats.contended_wait(now, now - t_req, thread.op, site, behind, (by_op, by_site), bounced)
        thread.waited("sleep", self.name, released_at - t_req)
        thread.waited("handoff", self.name, now - released_at)

    def _queue_length_changes(self, now: float) -> None:
        self._queue_area += len(self.waiters) * (now - self._queue_since)
        self._queue_since = now

    def queue_time(self, now: float) -> float:
        """The integral of the number of waiters over time up to ``now`` (ns): its difference
        over an interval, divided by the interval, is the mean queue length there."""
        return self._queue_area + len(self.waiters) * (now - self._queue_since)

    def in_progress(self, now: float) -> tuple[list[float], float | None]:
        """At the run's end: the ages of the waits still going (queued, or handed the lock
        but not yet running) and of the hold still going (None if not held)."""
        waits = [now - w[3] for w in self.waiters]
        if self.handing_off is not None:
            waits.append(now - self.handing_off[1])
            return waits, None
        return waits, (max(0.0, now - self.acquired_at) if self.holder is not None else None)

    def waiting(self, now: float) -> list[tuple]:
        """At the run's end, each queued waiter: (its op, its site, whom it waits behind, age)."""
        return [(w[0].op, w[4], w[5], now - w[3]) for w in self.waiters]

    def handoff_age(self, now: float) -> float | None:
        """How long the hand-off going on at the end has lasted (None if none is)."""
        return None if self.handing_off is None else now - self.handing_off[0]

    def release(self, thread):
        """``qunlock`` / ``sem_up`` (a generator)."""
        yield from thread.sync()
        if self.holder is not thread:
            raise violation(
                self.machine,
                thread,
                None,
                f"{self.name}: qunlock by {thread.name}, held by {getattr(self.holder, 'name', None)}",
            )
        now = self.env.now
        self.stats.released(now, now - self.acquired_at, thread.op, self.site)
        self.line_core = thread.core
        if self.nr_signals < 0:
            if not self.waiters:
                raise violation(
                    self.machine,
                    thread,
                    None,
                    f"{self.name}: nr_signals {self.nr_signals} < 0 with no waiter",
                )
            self.nr_signals += 1
            self._queue_length_changes(now)
            nxt, ev, ready_at, t_req, _, _ = self.waiters.popleft()
            self.holder = nxt
            self.handing_off = (now, t_req, thread.op, self.site, nxt.core is not thread.core)
            if ready_at > now:
                # The sem_up raced in during the waiter's context save: in Akaros nobody was
                # queued yet, so no kernel message; the waiter undoes its switch when the
                # save is done and goes on.
                trigger_at(self.env, ev, ready_at - now)
            elif self.wake == "waker_core":
                thread.pending += self.cost.kmsg
                thread.deferred_wakes.append((ev, 0.0))  # (the wakee pays restart_kthread)
            else:
                thread.pending += self.cost.kmsg + self.cost.ipi_send
                trigger_at(self.env, ev, self.cost.remote_wake)
        else:
            if self.waiters:
                raise violation(
                    self.machine,
                    thread,
                    None,
                    f"{self.name}: nr_signals {self.nr_signals} >= 0 with waiters",
                )
            self.nr_signals += 1
            self.holder = None
