"""Akaros RCU (kern/src/rcu.c at HEAD; kern/include/rcupdate.h).

- Read side: ``rcu_read_lock``/``unlock`` are compiler barriers: cost
  ``rcu_read_section_ns`` (about 0), counted.
- ``call_rcu`` queues a callback on the caller's core, stamped ``gpnum + 1``; more
  than ``rcu_cb_thresh`` queued on that core wakes the grace-period kthread.
- The GP kthread (``rcu_gp_ktask``) sleeps ``rcu_gp_min_period_ms`` or until woken,
  then runs a GP (``rcu_run_gp``): bump ``gpnum``; report a quiescent state (QS) for
  every core seen idle or in user space (``rcu_report_qs_remote_cores``; with the
  debugging switch ``rcu_debug_tardy`` set, odd cores are skipped there, but at HEAD it
  is a static bool that nothing sets, i.e. off, hence ``debug_tardy=False``); then sleep up
  to ``rcu_gp_tardy_period_ms`` at a time, re-checking the tardy cores, until all
  have reported. A core in the kernel reports when it passes ``smp_idle`` (its
  kernel path ends or it blocks). The last reporter wakes the kthread.
- Callbacks of completed GPs run serially on core 0 (``rcu_mgmt_0``), in
  cannot-block context; their time is taken from core 0.
- ``synchronize_rcu`` is ``call_rcu`` of a ``sem_up`` plus ``sem_down``.
"""

from __future__ import annotations

from pmsim.engine import Event, trigger_at
from pmsim.errors import violation


class Rcu:
    """Grace periods, callbacks and their accounting for one machine."""

    def __init__(self, machine, debug_tardy: bool = False):
        c = machine.costs
        self.machine = machine
        self.env = machine.env
        self.gpnum = 0
        self.completed = 0
        self.cbs = [[] for _ in machine.cores]  # per core: [gpnum stamp, fn, cost_ns, nbytes]
        self.tardy: set = set()  # cores that owe a QS for the GP in progress
        self.debug_tardy = debug_tardy
        self.read_ns = c.ns("rcu_read_section_ns")
        self.call_ns = c.ns("call_rcu_ns")
        self.period = c.ns("rcu_gp_min_period_ms")
        self.tardy_period = c.ns("rcu_gp_tardy_period_ms")
        self.thresh = int(c.value("rcu_cb_thresh"))
        self.pending_bytes = 0
        self.read_sections = 0  # rcu_read_lock/unlock pairs (a plain int: it is on every lookup)
        self.max_pending_bytes = 0
        self._wake_ctl = False
        self._sleep_ev: Event | None = None
        self._gp_ev: Event | None = None
        self.gp_started_at = 0.0
        self.env.process(self._gp_ktask())

    # --- read side -----------------------------------------------------
    def read_section(self, thread) -> None:
        """One ``rcu_read_lock`` ... ``rcu_read_unlock`` pair's own cost (the section's work is the caller's)."""
        thread.pending += self.read_ns
        self.read_sections += 1

    # --- update side -----------------------------------------------------
    def call_rcu(self, thread, fn=None, cost_ns: float = 0.0, nbytes: int = 0) -> None:
        """Queue ``fn`` (run after a grace period, on core 0, taking ``cost_ns`` plus the ns
        ``fn`` returns, if it returns a number)."""
        thread.pending += self.call_ns
        lst = self.cbs[thread.core.index]
        lst.append((self.gpnum + 1, fn, cost_ns, nbytes))
        self.pending_bytes += nbytes
        self.max_pending_bytes = max(self.max_pending_bytes, self.pending_bytes)
        self.machine.recorder.count("rcu_callbacks")
        if len(lst) > self.thresh and self.gpnum == self.completed:
            self._wake_gp_ktask()

    def synchronize_rcu(self, thread):
        """Block the caller for a full grace period (a generator)."""
        ev = Event(self.env)
        t = thread.now
        self.call_rcu(thread, ev.succeed)
        yield from thread.sleep(ev)  # sem_down on the completion
        thread.waited("rcu", "synchronize_rcu", thread.now - t)

    def _wake_gp_ktask(self) -> None:
        self._wake_ctl = True
        if self._sleep_ev is not None and not self._sleep_ev.triggered:
            self._sleep_ev.succeed()

    # --- quiescent states ----------------------------------------------
    def quiescent(self, core) -> None:
        """``rcu_report_qs``: ``core`` passed ``smp_idle``."""
        if core in self.tardy:
            self.tardy.discard(core)
            if not self.tardy and self._gp_ev is not None and not self._gp_ev.triggered:
                self._gp_ev.succeed()

    def _in_qs(self, core) -> bool:
        """CPU_STATE_IDLE or CPU_STATE_USER, now (a kernel path that ended on its thread's
        clock but not yet in simulated time, ``Thread.idle_at``, still counts as kernel)."""
        th = core.thread
        if th is None:
            return core.busy_until <= self.env.now  # a blocking thread's last work is done
        return not th.in_kernel and th.idle_at <= self.env.now

    def _report_when_idle(self, core) -> None:
        """A tardy core that passes smp_idle at a known future time (its thread's kernel path
        lags, ``Thread.idle_at``, or a blocking thread's last work runs on) reports its QS then."""
        th = core.thread
        at = core.busy_until if th is None else th.idle_at
        delay = at - self.env.now
        if delay > 0:
            ev = Event(self.env)
            gp = self.gpnum
            ev.callbacks.append(lambda _ev: self.gpnum == gp and self.quiescent(core))
            trigger_at(self.env, ev, delay)

    # --- kthreads --------------------------------------------------------
    def _gp_ktask(self):
        env = self.env
        while True:
            if not self._wake_ctl:
                self._sleep_ev = Event(env)
                yield self._sleep_ev | env.timeout(self.period)
                self._sleep_ev = None
            self._wake_ctl = False
            yield from self._run_gp()
            yield from self._run_callbacks()

    def _run_gp(self):
        env = self.env
        if self.gpnum != self.completed:
            raise violation(
                self.machine,
                None,
                None,
                f"RCU: GP started with gpnum {self.gpnum} != completed {self.completed}",
            )
        self.gpnum += 1
        self.gp_started_at = env.now
        cores = self.machine.cores
        self.tardy = {
            c for c in cores if not (self._in_qs(c) and not (self.debug_tardy and c.index % 2))
        }
        for c in self.tardy:
            self._report_when_idle(c)
        while self.tardy:
            self._gp_ev = Event(env)
            yield self._gp_ev | env.timeout(self.tardy_period)
            self._gp_ev = None
            self.tardy = {c for c in self.tardy if not self._in_qs(c)}
        if self.gpnum - self.completed != 1:
            raise violation(
                self.machine,
                None,
                None,
                f"RCU: gpnum {self.gpnum} - completed {self.completed} > 1",
            )
        self.completed = self.gpnum
        rec = self.machine.recorder
        rec.count("rcu_grace_periods")
        rec.sample("rcu_grace_period", env.now - self.gp_started_at)

    def _run_callbacks(self):
        """``rcu_mgmt_ktask`` on core 0: every core's callbacks whose GP completed."""
        core0 = self.machine.cores[0]
        for lst in self.cbs:
            n = 0
            for stamp, *_ in lst:
                if stamp > self.completed:
                    break
                n += 1
            work, lst[:n] = lst[:n], []
            for _, fn, cost, nbytes in work:
                if cost:
                    yield from self._on_core0(core0, cost)
                if fn is not None:
                    took = fn()  # a callback whose work depends on the data returns its ns
                    if type(took) in (int, float) and took > 0:
                        yield from self._on_core0(core0, took)
                self.pending_bytes -= nbytes

    def _on_core0(self, core0, ns: float):
        """Callback work: taken from whatever core 0 runs, like an interrupt."""
        core0.useful += ns
        if core0.thread is not None:
            core0.thread.stolen += ns
            core0.thread.waited("rcu", "callbacks", ns)
        yield self.env.timeout(ns)
