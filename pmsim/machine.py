"""The simulated machine: SimPy environment, cores, threads, random streams, recorder, costs.

Modelling rules (design.md): a thread's uncontended work is arithmetic on a cost
accumulator (``Thread.charge``) that becomes one SimPy timeout just before the
next point where another thread could matter (``Thread.sync``). A running or
spinning thread holds its core; a sleeping thread gives it up. Every core's
time is split into useful, spinning, IPI handling and idle.
"""

from __future__ import annotations

from collections import deque
from heapq import heappush

import simpy
from simpy.events import NORMAL

from pmsim.costs import CostTable
from pmsim.errors import ConfigError, violation
from pmsim.recorder import Recorder
from pmsim.rng import RandomStreams


def trigger_at(env: simpy.Environment, event: simpy.Event, delay: float, value=None) -> None:
    """Succeed ``event`` after ``delay`` ns with one scheduled event (no extra Timeout)."""
    event._ok = True
    event._value = value
    env.schedule(event, NORMAL, delay)


def _spent_event(env: simpy.Environment) -> simpy.Event:
    """An event that has fired (``callbacks`` is None, as after SimPy processed it), with a
    timeout's outcome (ok, value None). :meth:`Thread.flush` re-arms it by giving it a new
    callback list and scheduling it, which is all a Timeout does on creation."""
    ev = simpy.Event(env)
    ev._ok = True
    ev._value = None
    ev.callbacks = None
    return ev


class Core:
    """One CPU core: which thread runs on it, who waits for it, and where its time went."""

    __slots__ = (
        "index",
        "socket",
        "thread",
        "queue",
        "useful",
        "spin",
        "ipi",
        "busy_until",
        "ipi_until",
        "spin_since",
    )

    def __init__(self, index: int, socket: int):
        self.index = index
        self.socket = socket
        self.thread: Thread | None = None  # running or spinning here; None = idle
        self.queue: deque = deque()  # (thread, event) waiting to run here, FIFO
        self.useful = 0.0  # ns of work charged (pre-charged when a timeout is scheduled)
        self.spin = 0.0  # ns spent spinning on spinlocks
        self.ipi = 0.0  # ns spent in IPI handlers
        self.busy_until = 0.0  # end of the work timeout in progress
        self.ipi_until = 0.0
        self.spin_since: float | None = None

    def take(self, thread: Thread):
        """Run ``thread`` here, waiting FIFO behind earlier claimants (a generator)."""
        if self.thread is None:
            self.thread = thread
            lag = self.busy_until - thread.env.now
            if lag > 0:  # the last thread's final work (e.g. its context save) still runs
                yield thread.env.timeout(lag)
            return
        ev = simpy.Event(thread.env)
        self.queue.append((thread, ev))
        yield ev

    def give_up(self) -> None:
        """The running thread sleeps or leaves: the next queued thread gets the core."""
        if self.queue:
            thread, ev = self.queue.popleft()
            self.thread = thread
            ev.succeed()
        else:
            self.thread = None

    def steal(self, env: simpy.Environment, ns: float) -> None:
        """An interrupt handler runs here for ``ns``: the running thread loses that time."""
        self.ipi += ns
        start = max(env.now, self.ipi_until)
        self.ipi_until = start + ns
        if self.thread is not None:
            self.thread.stolen += ns

    def meter(self, now: float) -> tuple[float, float, float]:
        """(useful, spin, ipi) ns up to ``now``, excluding pre-charged time after ``now``."""
        spin = self.spin + (now - self.spin_since if self.spin_since is not None else 0.0)
        return (
            self.useful - max(0.0, self.busy_until - now),
            spin,
            self.ipi - max(0.0, self.ipi_until - now),
        )


class Thread:
    """A simulated kernel thread (a process's thread making syscalls and faults)."""

    __slots__ = (
        "machine",
        "env",
        "name",
        "core",
        "proc",
        "pending",
        "stolen",
        "in_kernel",
        "idle_at",
        "deferred_wakes",
        "spinlocks_held",
        "op",
        "_work_done",
    )

    def __init__(self, machine: Machine, name: str, core: Core, proc=None):
        self.machine = machine
        self.env = machine.env
        self.name = name
        self.core = core
        self.proc = proc
        self.pending = 0.0  # charged work not yet turned into simulated time
        self.stolen = 0.0  # IPI handler time taken from this thread, to be paid at the next sync
        self.in_kernel = False
        self.idle_at = 0.0  # when the last kernel path reached smp_idle (later than now if it lags)
        self.deferred_wakes: list = []  # (event, delay): qlock wakees restart at our next smp_idle
        self.spinlocks_held = 0
        self.op = None  # the operation in progress (named in invariant violations)
        self._work_done = _spent_event(self.env)  # re-armed by flush: one event object per thread

    def charge(self, ns: float) -> None:
        """Add uncontended work; it becomes simulated time at the next ``sync``."""
        self.pending += ns

    @property
    def now(self) -> float:
        """This thread's own clock: simulated time plus work charged but not yet synced."""
        return self.env.now + self.pending + self.stolen

    def _settle(self) -> float:
        """Account charged work as done at its end; return how long it lasts (the thread's lag)."""
        t = self.pending + self.stolen
        if t:
            core = self.core
            core.useful += self.pending
            core.busy_until = self.env.now + t
            self.pending = self.stolen = 0.0
        return t

    def flush(self):
        """Turn charged work into one timeout event to yield, or None if nothing is charged.

        The hot-path form of :meth:`sync` for a thread that holds its core:
        ``ev = th.flush(); if ev: yield ev``. The event is the thread's own, re-armed each
        time (see :func:`_spent_event`): the same schedule entry as ``env.timeout(t)``
        (time, priority and sequence number), without building a new Timeout.
        """
        t = self.pending + self.stolen
        if not t:
            return None
        env = self.env
        core = self.core
        core.useful += self.pending
        done = env._now + t  # (SimPy's ``now`` property, read without the call)
        core.busy_until = done
        self.pending = self.stolen = 0.0
        ev = self._work_done
        if ev.callbacks is not None:  # still waited on (never in a well-formed model): a fresh one
            ev = self._work_done = _spent_event(env)
        ev.callbacks = []
        heappush(env._queue, (done, NORMAL, next(env._eid), ev))  # env.schedule(ev, NORMAL, t)
        return ev

    def sync(self):
        """Turn charged work into one timeout, before an interaction point (a generator).

        Work needs the core: a thread whose core another thread holds waits for it first.
        """
        if self.core.thread is not self:
            yield from self.core.take(self)
        ev = self.flush()
        if ev is not None:
            yield ev

    def exit(self):
        """The thread ends (a generator): its charged work is done, and its core goes to the
        next thread waiting for it."""
        yield from self.sync()
        if self.core.thread is self:
            self.core.give_up()

    def kernel_enter(self) -> None:
        self.in_kernel = True

    def _must_sync_at_idle(self) -> bool:
        """Passing smp_idle needs the exact time if a grace period or another thread waits on it."""
        rcu = self.machine._rcu
        return bool(self.core.queue) or (rcu is not None and bool(rcu.tardy))

    def kernel_exit(self):
        """The syscall or fault path ends (Akaros: back through smp_idle) (a generator).

        Deferred qlock wakeups are scheduled on the thread's own clock, so no
        timeout is needed unless an RCU grace period or another thread waits.
        """
        if self.kernel_exit_nowait():
            return
        ev = self.flush()
        if ev is not None:
            yield ev
        self.in_kernel = False  # (only now: RCU sees the core in the kernel until here)
        self._smp_idle(0.0)
        core = self.core
        if core.queue and core.thread is self:  # time-share the core with threads waiting for it
            core.give_up()
            yield from core.take(self)

    def kernel_exit_nowait(self) -> bool:
        """:meth:`kernel_exit` when it needs no event (no grace period or thread waits on this
        smp_idle): do it and return True. Otherwise change nothing and return False; the caller
        then runs ``yield from kernel_exit()``."""
        rcu = self.machine._rcu
        if self.core.queue or (rcu is not None and rcu.tardy):  # _must_sync_at_idle
            return False
        self.in_kernel = False
        lag = self.pending + self.stolen
        self.idle_at = self.env._now + lag  # RCU counts the core in the kernel until then
        if self.deferred_wakes:
            self._smp_idle(lag)
        return True

    def block(self, event: simpy.Event):
        """Sleep until ``event``: the core goes to other threads or idles (a generator).

        Work charged before blocking (e.g. the context save) is done before the
        thread can resume.
        """
        if self.spinlocks_held:  # Akaros pre_block_check: never sleep holding a spinlock
            raise violation(
                self.machine,
                self,
                None,
                f"{self.name} blocks holding {self.spinlocks_held} spinlock(s) (pre_block_check)",
            )
        env = self.env
        core = self.core
        if (self.pending or self.stolen) and self._must_sync_at_idle():
            yield self.flush()
            lag = 0.0
        else:  # settle the charged work without a timeout: nobody waits on it
            lag = self._settle()
        resume_floor = env.now + lag
        if self.deferred_wakes or lag == 0.0:
            self._smp_idle(lag)
        if core.thread is self:  # (a thread still waiting for its core has none to give)
            core.give_up()
        value = yield event
        if env.now < resume_floor:
            yield env.timeout(resume_floor - env.now)
        if core.thread is not self:
            yield from core.take(self)
        return value

    def _smp_idle(self, lag: float) -> None:
        """What passing smp_idle (``lag`` ns from now) does: deferred qlock wakeups, an RCU QS."""
        if self.deferred_wakes:
            env = self.env
            for ev, delay in self.deferred_wakes:
                trigger_at(env, ev, delay + lag)
            self.deferred_wakes.clear()
        if lag == 0.0:
            rcu = self.machine._rcu
            if rcu is not None and rcu.tardy:
                rcu.quiescent(self.core)


class Machine:
    """Owns the SimPy environment, the cores, the random streams, the recorder and the costs."""

    def __init__(
        self,
        cores: int = 1,
        sockets: int = 1,
        costs: CostTable | None = None,
        seed: int = 0,
        warmup: float = 0.0,
        spinlock_kind: str = "ttas",
        qlock_wake: str = "waker_core",
    ):
        if cores < 1:
            raise ConfigError(f"machine.cores: must be >= 1, got {cores!r}")
        if sockets < 1 or sockets > cores:
            raise ConfigError(
                f"machine.sockets: must be between 1 and cores ({cores}), got {sockets!r}"
            )
        from pmsim.sync.qlock import WAKE_POLICIES
        from pmsim.sync.spinlock import SPINLOCK_KINDS

        if spinlock_kind not in SPINLOCK_KINDS:
            raise ConfigError(
                f"machine.spinlock: unknown kind {spinlock_kind!r} (one of {', '.join(SPINLOCK_KINDS)})"
            )
        if qlock_wake not in WAKE_POLICIES:
            raise ConfigError(
                f"machine.qlock_wake: unknown policy {qlock_wake!r} (one of {', '.join(WAKE_POLICIES)})"
            )
        self.env = simpy.Environment()
        self.costs = costs if costs is not None else CostTable()
        self.cores = [Core(i, i * sockets // cores) for i in range(cores)]
        self.streams = RandomStreams(seed)
        self.recorder = Recorder(self, warmup)
        self.spinlock_kind = spinlock_kind
        self.qlock_wake = qlock_wake
        self._rcu = None
        self.design = None  # the page-map design simulated (named in invariant violations)
        self.op_done = None  # callback(th, op, start): operations nested in others (faults, misses)
        self.nested: dict = {}  # (thread, op) -> start of a nested operation in progress

    def rng(self, name: str):
        """The numpy Generator of the named stream."""
        return self.streams.get(name)

    def nested_start(self, th, op: str) -> None:
        """A nested operation (a touch's fault, a read's miss) starts on ``th``: one still in
        progress at the end is reported unfinished, like the operation around it."""
        self.nested[th, op] = th.now

    def nested_done(self, th, op: str) -> None:
        t0 = self.nested.pop((th, op))
        if self.op_done is not None:
            self.op_done(th, op, t0)

    def thread(self, name: str, core: int, proc=None) -> Thread:
        if not 0 <= core < len(self.cores):
            raise ConfigError(f"thread {name}: core {core} out of range 0..{len(self.cores) - 1}")
        th = Thread(self, name, self.cores[core], proc)
        if th.core.thread is None:  # the first thread of a core runs there from the start
            th.core.thread = th
        return th

    def spinlock(self, name: str, kind: str | None = None):
        from pmsim.sync.spinlock import make_spinlock

        return make_spinlock(self, name, kind or self.spinlock_kind)

    def qlock(self, name: str, wake: str | None = None):
        from pmsim.sync.qlock import QLock

        return QLock(self, name, wake or self.qlock_wake)

    def cacheline(self, name: str):
        from pmsim.sync.cacheline import CacheLine

        return CacheLine(self, name)

    @property
    def rcu(self):
        """Akaros RCU for this machine, started on first use."""
        if self._rcu is None:
            from pmsim.sync.rcu import Rcu

            self._rcu = Rcu(self)
        return self._rcu

    def run(self, until: float) -> None:
        self.recorder.start()
        self.env.run(until=until)
        self.recorder.stop()
