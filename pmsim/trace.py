"""Timelines of a run for Perfetto and ``chrome://tracing``: Chrome trace-event JSON.

Why this format: ui.perfetto.dev, ``chrome://tracing`` and Perfetto's trace processor all open
it, it needs no dependency, and a test can parse it with :mod:`json`. (Perfetto's protobuf
through the ``perfetto`` Python package would add a dependency whose trace processor is a binary
downloaded at first use, which an offline machine cannot fetch.)

:func:`trace_run` runs a workload with probes (:mod:`pmsim.probes`) on the kernel entry points,
the locks, the backing stores, the IPI handler and RCU's grace periods; the untraced run is
untouched (no probe, no cost) and a traced run gives the same numbers (a probe adds no event).
The trace has:

- a track per core (process ``cores``): which thread runs there (``run THREAD``; a gap is
  idle), spinning on a spinlock, IPI handlers (with an arrow from the thread whose TLB
  shootdown sent the IPI);
- a track per thread (process ``threads``): its operations, its contended lock waits, its IO;
- a track per lock name (process ``locks``; further lanes ``NAME #2`` ... where holds of several
  locks of one name overlap): hold slices (one per acquisition), with the holder's operation
  and call site; flow arrows from each releaser to the thread it handed the lock to;
- a track per backing store (process ``devices``): each IO as an async slice;
- RCU grace periods, and counters per simulated millisecond (threads queued on pm_qlock, dirty
  pages) (process ``machine``);
- instant events the model marks through ``Recorder.mark(name, t, track, args)`` (e.g. a hazard
  seen), on the thread or core track named ``track`` (else a ``marks`` track).

Bounded: only what overlaps the time window is kept, and at most ``max_events`` events; when
the cap cuts the trace, :attr:`Trace.cut_at` says where and :meth:`Trace.message` says so.
"""

from __future__ import annotations

import json
from pathlib import Path

from pmsim import probes
from pmsim.errors import ConfigError
from pmsim.operations import BY_NAME

MAX_EVENTS = 1_000_000  # about 150 MB of JSON at most
PIDS = {"cores": 1, "threads": 2, "locks": 3, "devices": 4, "machine": 5}


def _us(ns: float) -> float:
    return ns / 1e3


class Trace:
    """Trace events of one run, bounded by a time window and an event cap."""

    def __init__(self, start: float = 0.0, end: float = float("inf"), max_events=MAX_EVENTS):
        if end <= start:
            raise ConfigError(f"--trace-window: the end must be after the start, got {start}:{end}")
        if max_events < 1:
            raise ConfigError(f"--trace-max-events: must be >= 1, got {max_events}")
        self.start, self.end, self.max_events = start, end, max_events
        self.events: list[dict] = []
        self.meta: list[dict] = []
        self.tids: dict[tuple[str, object], int] = {}
        self.cut_at: float | None = None  # simulated time (ns) of the first event dropped
        self.dropped = 0
        self._flow = 0

    # --- tracks --------------------------------------------------------------------------
    def track(self, process: str, key, name: str) -> tuple[int, int]:
        """(pid, tid) of the track ``key`` in ``process``, named ``name`` the first time."""
        k = (process, key)
        tid = self.tids.get(k)
        pid = PIDS[process]
        if tid is None:
            tid = self.tids[k] = len(self.tids) + 1
            self.meta.append(
                {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
            )
        return pid, tid

    # --- events ----------------------------------------------------------------------------
    def _keep(self, t0: float, t1: float) -> bool:
        if t1 < self.start or t0 > self.end:
            return False
        if len(self.events) >= self.max_events:
            if self.cut_at is None or t0 < self.cut_at:
                self.cut_at = t0
            self.dropped += 1
            return False
        return True

    def slice(self, track, name: str, t0: float, t1: float, args: dict | None = None) -> None:
        """A complete slice ``t0`` .. ``t1`` (ns) on ``track`` ((pid, tid))."""
        if self._keep(t0, t1):
            pid, tid = track
            ev = {"ph": "X", "name": name, "pid": pid, "tid": tid, "ts": _us(t0)}
            ev["dur"] = _us(t1 - t0)
            if args:
                ev["args"] = args
            self.events.append(ev)

    def instant(self, track, name: str, t: float, args: dict | None = None) -> None:
        """An instant event at ``t`` on ``track`` (a hazard, a mark)."""
        if self._keep(t, t):
            pid, tid = track
            ev = {"ph": "i", "s": "t", "name": name, "pid": pid, "tid": tid, "ts": _us(t)}
            if args:
                ev["args"] = args
            self.events.append(ev)

    def flow(self, src, t0: float, dst, t1: float, name: str) -> None:
        """An arrow from ``src`` at ``t0`` to ``dst`` at ``t1`` (a hand-off)."""
        if self._keep(t0, t1) and len(self.events) + 1 < self.max_events:
            self._flow += 1
            for ph, (pid, tid), t in (("s", src, t0), ("f", dst, t1)):
                ev = {"ph": ph, "name": name, "cat": "handoff", "id": self._flow}
                ev.update(pid=pid, tid=tid, ts=_us(t))
                if ph == "f":
                    ev["bp"] = "e"
                self.events.append(ev)

    def async_slice(self, track, name: str, t0: float, t1: float, args=None) -> None:
        """An async slice (IO on a device: several may overlap on one track)."""
        if self._keep(t0, t1) and len(self.events) + 1 < self.max_events:
            self._flow += 1
            pid, tid = track
            for ph, t in (("b", t0), ("e", t1)):
                ev = {"ph": ph, "name": name, "cat": "io", "id": self._flow, "pid": pid}
                ev.update(tid=tid, ts=_us(t))
                if args and ph == "b":
                    ev["args"] = args
                self.events.append(ev)

    def counter(self, name: str, t: float, value: float) -> None:
        if self._keep(t, t):
            self.events.append(
                {
                    "ph": "C",
                    "name": name,
                    "pid": PIDS["machine"],
                    "ts": _us(t),
                    "args": {name: value},
                }
            )

    # --- output ----------------------------------------------------------------------------
    def message(self) -> str | None:
        """Why the trace is incomplete, or None."""
        if self.cut_at is None:
            return None
        return (
            f"trace: cut at {self.max_events:,} events ({self.dropped:,} more dropped, the first "
            f"at {self.cut_at / 1e6:.3f} ms simulated); narrow --trace-window or raise "
            "--trace-max-events"
        )

    def to_json(self) -> dict:
        names = [
            {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}}
            for name, pid in PIDS.items()
        ]
        other = {"window_ns": [self.start, self.end], "events": len(self.events)}
        if self.cut_at is not None:
            other["cut"] = self.message()
        return {
            "traceEvents": names + self.meta + self.events,
            "displayTimeUnit": "ns",
            "otherData": other,
        }

    def write(self, path) -> Path:
        """Write the trace as JSON (open it in ui.perfetto.dev or chrome://tracing)."""
        path = Path(path)
        try:
            path.write_text(json.dumps(self.to_json(), separators=(",", ":")))
        except OSError as e:
            raise ConfigError(f"--trace: cannot write {str(path)!r} ({e.strerror})") from None
        return path


def parse_window(text: str) -> tuple[float, float]:
    """``A:B`` (``1ms:2ms``; either side may be empty) -> (start, end) in ns."""
    from pmsim.units import parse_time

    a, sep, b = str(text).partition(":")
    if not sep:
        raise ConfigError(f"--trace-window: expected A:B (e.g. 1ms:2ms), got {text!r}")
    start = parse_time(a, "--trace-window start") if a.strip() else 0.0
    end = parse_time(b, "--trace-window end") if b.strip() else float("inf")
    if end <= start:
        raise ConfigError(f"--trace-window: the end must be after the start, got {text!r}")
    return start, end


class _Tracer:
    """The probes that feed a :class:`Trace` while a run runs."""

    def __init__(self, trace: Trace):
        self.t = trace
        self.handoffs: dict[int, tuple] = {}  # id(lock) -> (releaser's track, release time)
        self.last_wait = None  # (lock stats, time): the contended acquisition just recorded
        # The thread whose lock acquisition completed last: a shootdown's IPIs go out right
        # after its proc_lock is taken, with no event in between, so it is their initiator.
        self.acquirer = None
        self.running: dict[int, tuple] = {}  # core index -> (thread, since): who runs there
        self.lanes: dict[str, list[float]] = {}  # lock name -> each lane's last hold's end
        self.env = None

    def thread_track(self, th):
        return self.t.track("threads", th.name, th.name)

    def core_track(self, core):
        return self.t.track("cores", core.index, f"core {core.index}")

    def lock_track(self, name: str, t0: float, t1: float):
        """The track of a hold of a lock named ``name`` from ``t0`` to ``t1``: the first lane of
        that name free since ``t0`` (holds of several locks of one name, each process's
        ``pte_lock`` or each page's ``page_lock``, may overlap; holds arrive in the order they
        end, so a lane whose last hold ended by ``t0`` overlaps none of its holds)."""
        lanes = self.lanes.setdefault(name, [])
        i = next((k for k, end in enumerate(lanes) if end <= t0), len(lanes))
        if i == len(lanes):
            lanes.append(t1)
        lanes[i] = t1
        label = name if i == 0 else f"{name} #{i + 1}"
        return self.t.track("locks", (name, i), label)

    def hold(self, lock, site: str, t0: float, t1: float, args: dict) -> None:
        self.t.slice(self.lock_track(lock.name, t0, t1), site, t0, t1, args)

    # --- the probes (wrapper(original, self, ...)) ---------------------------------------------
    def op(self, name):
        def wrapper(original, kernel, th, *args, **kwargs):
            t0 = th.now
            result = yield from original(kernel, th, *args, **kwargs)
            self.t.slice(self.thread_track(th), name, t0, th.now)
            return result

        return wrapper

    def contended_wait(self, original, st, t, wait, *args):
        self.last_wait = (st, t, wait)
        return original(st, t, wait, *args)

    def acquire(self, original, lock, th, site="?"):
        self.last_wait = None
        yield from original(lock, th, site)
        self.acquirer = th
        now = lock.env.now
        last = self.last_wait
        if last is not None and last[0] is lock.stats and last[1] == now:
            t_req = now - last[2]
            track = self.thread_track(th)
            self.t.slice(track, f"wait {lock.name}", t_req, now, {"site": site})
            if lock.kind != "qlock":
                self.t.slice(self.core_track(th.core), f"spin {lock.name}", t_req, now)
            src = self.handoffs.pop(id(lock), None)
            if src is not None:
                self.t.flow(src[0], src[1], track, now, f"{lock.name} hand-off")

    def release(self, original, lock, th):
        t0, site, op = lock.acquired_at, lock.site, th.op
        yield from original(lock, th)
        now = lock.env.now
        self.hold(lock, site, t0, now, {"holder": th.name, "op": op or "other"})
        if lock.holder is not None and lock.holder is not th:  # handed to a waiter
            self.handoffs[id(lock)] = (self.thread_track(th), now)

    def acquire_private(self, original, lock, th, site="?"):
        original(lock, th, site)

    def release_private(self, original, lock, th):
        t0, site, op = lock.acquired_at, lock.site, th.op
        original(lock, th)
        self.hold(lock, site, t0, th.now, {"holder": th.name, "op": op or "other"})

    def round_trip_private(self, original, lock, th, site="?"):
        original(lock, th, site)
        t = th.now
        self.hold(lock, site, t, t, {"holder": th.name, "op": th.op or "other"})

    def io(self, original, store, th, event):
        t0 = th.env.now
        yield from original(store, th, event)
        t1 = th.now
        self.t.slice(self.thread_track(th), f"io {store.kind}", t0, t1)
        dev = self.t.track("devices", store.name, f"{store.name} ({store.kind})")
        self.t.async_slice(dev, "io", t0, t1, {"thread": th.name})

    def steal(self, original, core, env, ns):
        """An IPI handler on ``core`` (a TLB shootdown's): its slice, and an arrow from the
        initiating thread."""
        start = max(env.now, core.ipi_until)
        original(core, env, ns)
        track = self.core_track(core)
        self.t.slice(track, "IPI handler", start, start + ns)
        if self.acquirer is not None:
            self.t.flow(self.thread_track(self.acquirer), env.now, track, start, "shootdown")

    def take(self, original, core, th):
        """``th`` waits for ``core`` and gets it: it runs there from now."""
        yield from original(core, th)
        if core.thread is th and self.running.get(core.index, (None,))[0] is not th:
            self.ran(core, th.env.now)
            self.running[core.index] = (th, th.env.now)

    def give_up(self, original, core):
        """The thread running on ``core`` sleeps or ends: the next queued one runs, or idle
        (once the last charged work, which runs on until ``busy_until``, is done)."""
        original(core)
        now = self.env.now
        if core.thread is None:
            self.ran(core, max(core.busy_until, now))
        else:
            self.ran(core, now)
            self.running[core.index] = (core.thread, now)

    def ran(self, core, until: float) -> None:
        """Close the running slice of ``core``'s thread at ``until``."""
        th, since = self.running.pop(core.index, (None, None))
        if th is not None:
            self.t.slice(self.core_track(core), f"run {th.name}", since, max(since, until))

    def grace_period(self, original, rcu):
        t0 = rcu.env.now
        yield from original(rcu)
        track = self.t.track("machine", "rcu", "RCU grace periods")
        self.t.slice(track, f"grace period {rcu.gpnum}", t0, rcu.env.now)


def trace_run(spec, design: str, window=(0.0, float("inf")), max_events: int = MAX_EVENTS):
    """Run ``spec`` on ``design`` with tracing: (its RunResult, its :class:`Trace`). The numbers
    are those of the untraced run."""
    from pmsim.cpu import Core
    from pmsim.kernel.system import Kernel
    from pmsim.recorder import LockStats
    from pmsim.storage import BackingStore
    from pmsim.sync.qlock import QLock
    from pmsim.sync.rcu import Rcu
    from pmsim.sync.spinlock import SpinLock
    from pmsim.workload.runner import WorkloadRun

    trace = Trace(window[0], window[1], max_events)
    tr = _Tracer(trace)
    attached = []
    try:
        entries = {op.entry: op.name for op in BY_NAME.values() if op.entry}
        for entry, name in sorted(entries.items()):
            if hasattr(Kernel, entry):
                attached.append(probes.attach(Kernel, entry, tr.op(name)))
        for cls in (SpinLock, QLock):
            attached.append(probes.attach(cls, "acquire", tr.acquire))
            attached.append(probes.attach(cls, "release", tr.release))
        for name in ("acquire_private", "release_private", "round_trip_private"):
            attached.append(probes.attach(SpinLock, name, getattr(tr, name)))
        attached.append(probes.attach(LockStats, "contended_wait", tr.contended_wait))
        attached.append(probes.attach(BackingStore, "_sleep", tr.io))
        attached.append(probes.attach(Core, "steal", tr.steal))
        attached.append(probes.attach(Core, "take", tr.take))
        attached.append(probes.attach(Core, "give_up", tr.give_up))
        attached.append(probes.attach(Rcu, "_run_gp", tr.grace_period))
        run = WorkloadRun(spec, design)
        machine = run.machine
        machine.recorder.marks = []  # Recorder.mark: instant events for the trace
        tr.env = machine.env
        for core in machine.cores:
            tr.core_track(core)
            if core.thread is not None:  # the first thread of a core runs there from the start
                tr.running[core.index] = (core.thread, 0.0)
        for w in run.workers:
            tr.thread_track(w.th)
        for _, _, th in run.daemons:
            tr.thread_track(th)
        res = run.run()
    finally:
        for p in reversed(attached):
            p.remove()
    _finish(trace, tr, run, res)
    return res, trace


def _finish(trace: Trace, tr: _Tracer, run, res) -> None:
    """After the run: holds still going at the end, the per-ms counters and the marks."""
    machine = run.machine
    rec = machine.recorder
    end = rec.end_time
    for core in machine.cores:  # the threads still running at the end
        tr.ran(core, end)
    for st in rec.locks.values():
        held = sorted(
            (lock.acquired_at, lock.site, getattr(lock.holder, "name", "?"))
            for lock in list(st.instances)
            if lock.holder is not None and lock.handing_off is None
        )
        for t0, site, holder in held:
            trace.slice(
                tr.lock_track(st.name, t0, end),
                site,
                t0,
                end,
                {"holder": holder, "unfinished": True},
            )
    ts = res.tables["timeseries"]
    for row in ts.itertuples():
        t = row.time_ms * 1e6
        trace.counter("pm_qlock queue", t, float(row.pm_qlock_queue))
        trace.counter("dirty pages", t, float(row.dirty_pages))
    threads = {w.th.name: w.th for w in run.workers}
    threads.update({th.name: th for _, _, th in run.daemons})
    for name, t, where, args in rec.marks or ():
        if where in threads:
            track = tr.thread_track(threads[where])
        else:
            track = trace.track("machine", f"marks:{where}", where or "marks")
        trace.instant(track, name, t, args)
