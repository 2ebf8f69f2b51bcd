"""Cores and the simulated threads that run on them.

Modelling rules (design.md): a thread's uncontended work is arithmetic: it is *charged*,
``th.pending += ns`` (the one way to charge work, on hot paths too), and becomes one SimPy
timeout just before the next point where another thread could matter: ``yield from th.sync()``
(the one sync-point idiom). A running or spinning thread holds its core; a sleeping thread gives
it up. Every core's time is split into useful, spinning, IPI handling and idle.

``sync()`` builds no generator on the hot path: when the thread holds its core it returns a
tuple of the event to wait for (or an empty one), which ``yield from`` walks like a generator.
"""

from __future__ import annotations

from collections import deque

from pmsim.engine import Environment, Event, spent_event, trigger_at
from pmsim.errors import violation


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
        "tlb",
        "tlb_flushes",
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
        self.tlb: dict = {}  # virtual page -> pmsim.sync.tlb.TlbEntry (user mappings)
        self.tlb_flushes: list = []  # (when, Step) of shootdown flushes sent, not yet applied

    def take(self, thread: Thread):
        """Run ``thread`` here, waiting FIFO behind earlier claimants (a generator)."""
        if self.thread is None:
            self.thread = thread
            lag = self.busy_until - thread.env.now
            if lag > 0:  # the last thread's final work (e.g. its context save) still runs
                yield thread.env.timeout(lag)
            return
        ev = Event(thread.env)
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

    def steal(self, env: Environment, ns: float) -> None:
        """An interrupt handler runs here for ``ns``: the running thread loses that time."""
        self.ipi += ns
        start = max(env.now, self.ipi_until)
        self.ipi_until = start + ns
        if self.thread is not None:
            self.thread.stolen += ns
            self.thread.waited("ipi", "handler", ns)

    def meter(self, now: float) -> tuple[float, float, float]:
        """(useful, spin, ipi) ns up to ``now``, excluding pre-charged time after ``now``."""
        spin = self.spin + (now - self.spin_since if self.spin_since is not None else 0.0)
        # Handler time overlapping the work in progress is not useful: stolen before the work
        # was scheduled, it is inside busy_until (folded); stolen during it, the thread pays it
        # at its next sync (pending_steal). Either way it must not count as useful and ipi.
        rem_work = max(0.0, self.busy_until - now)
        rem_ipi = max(0.0, self.ipi_until - now)
        pending_steal = self.thread.stolen if self.thread is not None else 0.0
        folded = min(max(0.0, rem_ipi - pending_steal), rem_work)
        return (
            self.useful - rem_work + folded - max(0.0, min(pending_steal, rem_work) - rem_ipi),
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
        "waits",
        "_work_done",
        "_work_step",
    )

    def __init__(self, machine, name: str, core: Core, proc=None):
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
        # (kind, what) -> ns this operation spent not running its own work: spinning or sleeping
        # on a lock, a hand-off, IO, IPI handlers, RCU (None until the first; the runner reads
        # and clears it when the operation ends: pmsim.workload.breakdown)
        self.waits: dict | None = None
        self._work_done = spent_event(self.env)  # re-armed by sync: one event per thread ...
        self._work_step = (self._work_done,)  # ... and what sync() returns to wait for it

    def waited(self, kind: str, what: str, ns: float) -> None:
        """This thread's operation spent ``ns`` on ``kind`` (``spin``, ``sleep``, ``handoff``,
        ``io``, ``ipi``, ``rcu``) of ``what`` (a lock, a store kind): called on the paths that
        wait, never on a thread's own work."""
        w = self.waits
        if w is None:
            w = self.waits = {}
        key = (kind, what)
        w[key] = w.get(key, 0.0) + ns

    @property
    def now(self) -> float:
        """This thread's own clock: simulated time plus work charged but not yet synced."""
        return self.env.now + self.pending + self.stolen

    def sync(self):
        """Turn charged work into simulated time, before an interaction point:
        ``yield from th.sync()``. Work needs the core: a thread whose core another thread holds
        waits for it first (a generator then). Otherwise no generator is built: the result is
        a tuple of the event to wait for (the thread's own, re-armed: ``Environment.rearm``),
        or an empty one if nothing is charged."""
        if self.core.thread is not self:
            return self._take_core_then_sync()
        t = self.pending + self.stolen
        if not t:
            return ()
        core = self.core
        core.useful += self.pending
        core.busy_until = self.env.now + t
        self.pending = self.stolen = 0.0
        ev = self._work_done
        if ev.callbacks is not None:  # still waited on (never in a well-formed model): a fresh one
            ev = self._work_done = spent_event(self.env)
            self._work_step = (ev,)
        self.env.rearm(ev, t)
        return self._work_step

    def _take_core_then_sync(self):
        yield from self.core.take(self)
        yield from self.sync()

    def _settle(self) -> float:
        """Account charged work as done at its end; return how long it lasts (the thread's lag)."""
        t = self.pending + self.stolen
        if t:
            core = self.core
            core.useful += self.pending
            core.busy_until = self.env.now + t
            self.pending = self.stolen = 0.0
        return t

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
        rcu = self.machine.rcu
        return bool(self.core.queue) or (rcu is not None and bool(rcu.tardy))

    def kernel_exit(self):
        """The syscall or fault path ends (Akaros: back through smp_idle): ``yield from
        th.kernel_exit()``.

        Deferred qlock wakeups are scheduled on the thread's own clock, so no timeout (and no
        generator) is needed unless an RCU grace period or another thread waits on this core."""
        rcu = self.machine.rcu
        if self.core.queue or (rcu is not None and rcu.tardy):  # (_must_sync_at_idle, inlined)
            return self._kernel_exit_synced()
        self.in_kernel = False
        lag = self.pending + self.stolen
        self.idle_at = self.env.now + lag  # RCU counts the core in the kernel until then
        if self.deferred_wakes:
            self._smp_idle(lag)
        return ()

    def _kernel_exit_synced(self):
        yield from self.sync()
        self.in_kernel = False  # (only now: RCU sees the core in the kernel until here)
        self._smp_idle(0.0)
        core = self.core
        if core.queue and core.thread is self:  # time-share the core with threads waiting for it
            core.give_up()
            yield from core.take(self)

    def _pre_block_check(self) -> None:
        """Akaros's pre_block_check: never sleep holding a spinlock."""
        if self.spinlocks_held:
            raise violation(
                self.machine,
                self,
                None,
                f"{self.name} blocks holding {self.spinlocks_held} spinlock(s) (pre_block_check)",
            )

    def block(self, event: Event):
        """Sleep until ``event``: the core goes to other threads or idles (a generator).

        Work charged before blocking (e.g. the context save) is done before the
        thread can resume.
        """
        self._pre_block_check()
        env = self.env
        core = self.core
        if (self.pending or self.stolen) and self._must_sync_at_idle():
            yield from self.sync()
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

    def sleep(self, event: Event):
        """A kthread sleeps until ``event`` and restarts (a generator): what every sleep in the
        kernel does (``sem_down`` on a qlock, a page lock, IO, ``kthread_usleep``).

        ``save_kthread_ctx`` (register save, switch to a fresh stack) is charged before the
        core is given up, ``restart_kthread`` (switch back, ``longjmp``) after the wake-up,
        each ``kthread_switch_ns``: the same block/restart cost for every kind of sleep."""
        self._pre_block_check()  # (sem_down checks before it saves anything)
        switch = self.machine.costs.ns("kthread_switch_ns")
        self.pending += switch  # save_kthread_ctx
        yield from self.sync()  # (the save runs on this core before it is given up)
        value = yield from self.block(event)
        self.pending += switch  # restart_kthread
        return value

    def _smp_idle(self, lag: float) -> None:
        """What passing smp_idle (``lag`` ns from now) does: deferred qlock wakeups, an RCU QS."""
        if self.deferred_wakes:
            env = self.env
            for ev, delay in self.deferred_wakes:
                trigger_at(env, ev, delay + lag)
            self.deferred_wakes.clear()
        if lag == 0.0:
            rcu = self.machine.rcu
            if rcu is not None and rcu.tardy:
                rcu.quiescent(self.core)
