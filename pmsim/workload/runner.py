"""Run one workload on one design: ``(spec, design) -> RunResult``, a pure function of the spec.

Set-up (at simulated time 0, at no cost): the machine and kernel; each file
with a random ``resident`` fraction of its pages in the page cache, a
``dirty`` fraction of them dirty; each process with its mappings (ready VMRs,
no PTEs: first touches fault). Thread ``g`` of all the processes' threads runs
on core ``g % cores``; daemons are kernel threads (on the last core unless
told), created after the workers so a worker owns its core at the start.

A worker loops: pick an operation by weight, pick its pages by the access
pattern, run the kernel entry point, record its latency on the thread's own
clock; then think (closed loop: user-space work that holds the core) or wait
for its next arrival (open loop: a request that arrives while the previous one
runs waits, and its latency includes the wait). An operation that creates no
event (a touch whose PTE is present, an fsync on tmpfs) is followed by one
sync, so a thread's clock never runs more than one operation ahead of the
simulated time, and a touch syncs before it reads its PTE.
"""

from __future__ import annotations

import time

import numpy as np

from pmsim.costs import CostTable
from pmsim.designs import get_design
from pmsim.kernel.system import Kernel
from pmsim.kernel.vm import PROT_READ, PROT_WRITE
from pmsim.machine import Machine
from pmsim.operations import BY_NAME, DAEMONS, MIX_OPERATIONS
from pmsim.pagecache.page import PG_DIRTY
from pmsim.workload.breakdown import Breakdown
from pmsim.workload.metrics import MS, OpMeter
from pmsim.workload.patterns import chooser, op_chooser
from pmsim.workload.result import RunResult, build_result
from pmsim.workload.spec import FILE_PAGE_OPS, WorkloadSpec

PROTS = {"r": PROT_READ, "rw": PROT_READ | PROT_WRITE}


class Worker:
    """One simulated user thread: its process, mappings, random choices and current operation."""

    __slots__ = (
        "th",
        "proc",
        "vmrs",
        "g",
        "next_op",
        "pick_file",
        "file_pages",
        "vmr_pages",
        "pick_vmr",
        "is_store",
        "think",
        "arrivals",
        "churn_at",
        "rng",
        "current",
        "arrival",
    )

    def __init__(self, th, proc, vmrs, g):
        self.th, self.proc, self.vmrs, self.g = th, proc, vmrs, g
        self.current = None  # (op, start) of the operation in progress
        self.arrival = None  # open loop: when the request being served arrived


class WorkloadRun:
    """Builds the simulated system a spec describes, runs it, and gathers the result."""

    def __init__(self, spec: WorkloadSpec, design: str):
        self.spec = spec
        self.design = get_design(design)
        for op in sorted(spec.operations()):
            self.design.require(op)
        ms = spec.machine
        self.costs = CostTable(ms.costs)
        self.machine = Machine(
            cores=ms.cores,
            sockets=ms.sockets,
            costs=self.costs,
            seed=spec.seed,
            warmup=spec.warmup,
            spinlock_kind=ms.spinlock,
            qlock_wake=ms.qlock_wake,
        )
        self.kernel = Kernel(self.machine, self.design)
        self.meter = OpMeter(spec.warmup, spec.duration)
        self.breakdown = Breakdown(spec.warmup, spec.duration)  # where each op's latency went
        self.machine.op_done = self._kernel_op_done
        self.files = {fs.name: self._file(fs) for fs in spec.files}
        self.file_list = list(self.files.values())
        self.file_weights = np.array([fs.weight for fs in spec.files], dtype=float)
        self.workers = self._workers()
        self.daemons = self._daemons()
        self.daemons_running: dict = {}  # daemon thread -> (op, start) in progress
        self.intervals: list = []  # (op, start, end) of each daemon pass that finished
        self.rcu_sections_at_warmup = 0
        self.series = {"pm_qlock_queue": [], "dirty_pages": []}
        self._queue_time = 0.0  # the pm_qlocks' queue-time integral at the last sample
        self.ops = self._operations()
        self.inline_ops = {  # the page-range file operations, run inline by the closed loop
            name: (self._entry(name), self.meter.stats("workload", name)) for name in FILE_PAGE_OPS
        }

    # --- set-up ---------------------------------------------------------------------
    def _file(self, fs):
        f = self.kernel.file(fs.name, fs.pages, fs.store)
        order = self.machine.rng(f"setup.file.{fs.name}").permutation(fs.pages)
        resident = order[: round(fs.resident * fs.pages)]
        dirty = order[: round(fs.dirty * fs.pages)]
        self.kernel.warm(f, sorted(resident.tolist()), dirty.tolist())
        return f

    def _workers(self) -> list[Worker]:
        spec, machine, kernel = self.spec, self.machine, self.kernel
        cores = len(machine.cores)
        workers, g = [], 0
        for ps in spec.processes:
            for c in range(ps.count):
                pname = f"{ps.name}{c}" if ps.count > 1 else ps.name
                thread_cores = [(g + t) % cores for t in range(ps.threads)]
                proc = kernel.process(
                    pname,
                    sorted(set(thread_cores)),
                    "RUNNING_M" if ps.kind == "mcp" else "RUNNING_S",
                    ps.fd,
                )
                vmrs = [
                    kernel.map_now(
                        proc,
                        self.files[spec.file_spec(ms.file).name],
                        ms.offset,
                        spec.mapping_length(ms),
                        PROTS[ms.prot],
                        ms.shared,
                    )
                    for ms in ps.mappings
                ]
                for t, core in enumerate(thread_cores):
                    th = machine.thread(f"{pname}.t{t}", core, proc)
                    workers.append(self._worker(Worker(th, proc, vmrs, g)))
                    g += 1
                if ps.threads == 1:  # its fd table and chans are private to that thread
                    proc.fdt.make_private(th)
        return workers

    def _worker(self, w: Worker) -> Worker:
        spec = self.spec
        rng = w.rng = self.machine.rng(f"workload.{w.th.name}")
        n = spec.total_threads
        w.next_op = op_chooser(spec.mix.weights(), rng)
        files = self.file_list
        w.file_pages = [
            chooser(
                spec.pattern, f.nr_pages - spec.request_pages + 1, spec.request_pages, w.g, n, rng
            )
            for f in files
        ]
        if len(files) == 1:
            w.pick_file = lambda: 0
        else:
            p = self.file_weights / self.file_weights.sum()
            w.pick_file = lambda: int(rng.choice(len(files), p=p))
        w.vmr_pages = [chooser(spec.pattern, v.npages, 1, w.g, n, rng) for v in w.vmrs]
        nv = len(w.vmrs)
        w.pick_vmr = (lambda: 0) if nv <= 1 else (lambda: int(rng.integers(nv)))
        stores = spec.touch_stores
        w.is_store = (
            (lambda: stores >= 1.0) if stores in (0.0, 1.0) else (lambda: rng.random() < stores)
        )
        churn_file = self.files[spec.file_spec(spec.churn.file).name]
        w.churn_at = chooser(
            spec.pattern, churn_file.nr_pages - spec.churn.pages + 1, spec.churn.pages, w.g, n, rng
        )
        loop = spec.loop
        if loop.kind == "closed":
            no_think = loop.think.kind == "const" and loop.think.params[0] == 0
            w.think, w.arrivals = (None if no_think else loop.think.sampler(rng)), None
        else:
            w.think, w.arrivals = None, loop.arrivals.sampler(rng)
        return w

    def _daemons(self) -> list:
        spec, machine = self.spec, self.machine
        out = []
        for name in DAEMONS:
            d = getattr(spec.daemons, name)
            if d is not None:
                core = d.core if d.core is not None else len(machine.cores) - 1
                out.append((name, d.period, machine.thread(f"{name}_daemon", core)))
        return out

    # --- the operations ---------------------------------------------------------------
    def _entry(self, name: str):
        """The kernel entry point that runs operation ``name``."""
        return getattr(self.kernel, BY_NAME[name].entry)

    def _operations(self) -> dict:
        """Mix name -> a generator function running one such operation for a worker, by the
        operation's scope (pmsim.operations)."""
        n = self.spec.request_pages
        by_scope = {
            "file_pages": lambda name: self._file_op(name, self._entry(name), n),
            "file": lambda name: self._file_op(name, self._entry(name), None),
            "global": self._global_op,
            "mapping": self._mapping_op,
            "churn": lambda name: self._churn,
        }
        return {name: by_scope[BY_NAME[name].scope](name) for name in MIX_OPERATIONS}

    def _file_op(self, name: str, entry, npages):
        """A page-range file operation (read, write, punch_hole) of ``npages`` pages, or a whole
        file one (``npages`` None: fsync), on a file picked by weight."""
        stats, files = self.meter.stats("workload", name), self.file_list

        def op(w: Worker):
            th = w.th
            i = w.pick_file()
            t0 = self._start(w, name)
            if npages is None:
                yield from entry(th, files[i])
            else:
                yield from entry(th, files[i], w.file_pages[i](), npages)
            t1 = th.now
            stats.done(t0, t1)
            if th.waits:
                self.breakdown.add("workload", name, t0, t1, th.waits)
                th.waits = None
            w.current = None

        return op

    def _global_op(self, name: str):
        """An operation on every file at once (reclaim)."""
        entry = self._entry(name)

        def op(w: Worker):
            t0 = self._start(w, name)
            yield from entry(w.th)
            self._done(w, name, t0)

        return op

    def _mapping_op(self, name: str):
        """A load or store of one page of one of the process's mappings (touch)."""

        def op(w: Worker):
            i = w.pick_vmr()
            yield from self._touch(w, w.vmrs[i], w.vmr_pages[i](), w.is_store(), name)

        return op

    def _touch(self, w: Worker, vmr, off: int, store: bool, name: str = "touch"):
        th = w.th
        if th.pending or th.stolen:  # a user access reads its PTE at its own time
            yield from th.sync()
        t0 = self._start(w, name)
        yield from self._entry(name)(th, vmr, off, store)
        self._done(w, name, t0)

    def _churn(self, w: Worker):
        """mmap a fresh range, touch ``churn.touches`` distinct pages of it, munmap it."""
        c, kernel, th = self.spec.churn, self.kernel, w.th
        f = self.files[self.spec.file_spec(c.file).name]
        t0 = self._start(w, "mmap")
        vmr = yield from kernel.mmap(th, w.proc, f, w.churn_at(), c.pages, PROTS[c.prot], c.shared)
        self._done(w, "mmap", t0)
        stores = self.spec.touch_stores
        for off in w.rng.choice(c.pages, c.touches, replace=False).tolist():
            yield from self._touch(
                w, vmr, off, c.prot == "rw" and (stores >= 1.0 or w.rng.random() < stores)
            )
        t0 = self._start(w, "munmap")
        yield from kernel.munmap(th, vmr)
        self._done(w, "munmap", t0)

    @staticmethod
    def _start(w: Worker, op: str) -> float:
        """An operation starts now, or (the first of an open-loop request) at its arrival."""
        t0 = w.th.now
        if w.arrival is not None:
            t0, w.arrival = w.arrival, None
        w.current = (op, t0)
        return t0

    def _done(self, w: Worker, op: str, t0: float) -> None:
        th = w.th
        t1 = th.now
        self.meter.stats("workload", op).done(t0, t1)
        if th.waits:
            self.breakdown.add("workload", op, t0, t1, th.waits)
            th.waits = None
        w.current = None

    def _kernel_op_done(self, th, op: str, t0: float) -> None:
        """The kernel reports operations nested in others (a touch's faults)."""
        self.meter.stats("daemon" if th.proc is None else "workload", op).done(t0, th.now)

    # --- threads --------------------------------------------------------------------------
    def _closed(self, w: Worker):
        """Operations back to back, with think time between them (user work on the core).

        read / write / punch_hole are run inline (one generator level less on the hot path);
        the rest through :meth:`_operations`."""
        th, env, end = w.th, self.machine.env, self.spec.duration
        next_op, think, ops = w.next_op, w.think, self.ops
        inline, files, pick_file, pages = self.inline_ops, self.file_list, w.pick_file, w.file_pages
        one_file = len(files) == 1
        weights = self.spec.mix.weights()
        only = (
            next(iter(weights)) if len(weights) == 1 else None
        )  # a one-operation mix draws nothing
        n = self.spec.request_pages
        while True:
            before = env.now
            t0 = before + th.pending + th.stolen  # th.now, inlined
            if t0 >= end:
                break
            name = only or next_op()
            fast = inline.get(name)
            if fast is not None:
                entry, stats = fast
                i = 0 if one_file else pick_file()
                w.current = (name, t0)
                yield from entry(th, files[i], pages[i](), n)
                after = env.now
                t1 = after + th.pending + th.stolen
                stats.done(t0, t1)
                if th.waits:  # (only a waiting path fills it: a hit costs one test)
                    self.breakdown.add("workload", name, t0, t1, th.waits)
                    th.waits = None
                w.current = None
            else:
                yield from ops[name](w)
                after = env.now
            if after == before and (th.pending or th.stolen):
                yield from th.sync()
            if think is not None:
                th.pending += think()
        yield from th.exit()

    def _open(self, w: Worker):
        th, env, end = w.th, self.machine.env, self.spec.duration
        next_op, interarrival = w.next_op, w.arrivals
        arrival = interarrival()
        while arrival < end:
            if arrival > th.now:  # idle until the request arrives
                yield from th.block(env.timeout(arrival - env.now))
            before = env.now
            w.arrival = arrival
            yield from self.ops[next_op()](w)
            if env.now == before and (th.pending or th.stolen):
                yield from th.sync()
            arrival += interarrival()
        yield from th.exit()

    def _daemon(self, name: str, period: float, th):
        """A kernel daemon: each period, its operation on every file (a file-scoped operation,
        e.g. writeback's fsync) or once (a global one, e.g. reclaim)."""
        op = BY_NAME[DAEMONS[name]]
        entry, env, running = self._entry(op.name), self.machine.env, self.daemons_running
        while True:
            yield from th.sleep(env.timeout(period))  # kthread_usleep
            for args in [(f,) for f in self.kernel.files] if op.scope == "file" else [()]:
                running[th] = current = (op.name, th.now)
                yield from entry(th, *args)
                self._daemon_done(current, th.now)
                if th.waits:
                    self.breakdown.add("daemon", op.name, current[1], th.now, th.waits)
                    th.waits = None
            del running[th]

    def _daemon_done(self, op: tuple, end: float) -> None:
        self.meter.stats("daemon", op[0]).done(op[1], end)
        self.intervals.append((op[0], op[1], end))

    def _sampler(self):
        """Each simulated millisecond: the mean number of threads waiting on the pm_qlocks over
        it, and the dirty pages at its end."""
        env = self.machine.env
        while True:
            yield env.timeout(MS)
            self._sample()

    def _sample(self) -> None:
        """Close the time series' current millisecond (or the last, partial one) now."""
        now = self.machine.env.now
        q = sum(f.pm.pm_qlock.queue_time(now) for f in self.file_list if hasattr(f.pm, "pm_qlock"))
        start = len(self.series["pm_qlock_queue"]) * MS
        self.series["pm_qlock_queue"].append(
            (q - self._queue_time) / (now - start) if now > start else 0.0
        )
        self._queue_time = q
        self.series["dirty_pages"].append(
            sum(
                1
                for f in self.file_list
                for s in f.pm.tree.slots.values()
                if s.page is not None and s.page.flags & PG_DIRTY
            )
        )

    # --- run ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        env = self.machine.env
        loop = self._closed if self.spec.loop.kind == "closed" else self._open
        for w in self.workers:
            env.process(loop(w))
        for name, period, th in self.daemons:
            env.process(self._daemon(name, period, th))
        env.process(self._sampler())
        if self.spec.warmup > 0:
            env.process(self._reset_rcu_peak())
        t0 = time.perf_counter()
        self.machine.run(self.spec.duration)
        wall = time.perf_counter() - t0
        if len(self.series["dirty_pages"]) < self.meter.buckets:
            self._sample()  # the last millisecond (its sample falls at the very end of the run)
        for w in self.workers:
            if w.current is not None:
                self.meter.stats("workload", w.current[0]).running(w.current[1])
        for op, t0 in self.daemons_running.values():
            self.meter.stats("daemon", op).running(t0)
        for (
            th,
            op,
        ), t0 in self.machine.nested.items():  # a miss or fault the run's end interrupted
            self.meter.stats("daemon" if th.proc is None else "workload", op).running(t0)
        rcu = self.machine.rcu
        if rcu is not None and rcu.read_sections:  # counted as a plain int on the lookup path
            self.machine.recorder.counters["rcu_read_sections"] = (
                rcu.read_sections - self.rcu_sections_at_warmup
            )
        self.costs.check_all_read(self.spec.machine.costs, "this workload")
        return build_result(self, wall)

    def _reset_rcu_peak(self):
        yield self.machine.env.timeout(self.spec.warmup)
        rcu = self.machine.rcu
        if rcu is not None:
            rcu.max_pending_bytes = rcu.pending_bytes
            self.rcu_sections_at_warmup = rcu.read_sections


def run_workload(spec: WorkloadSpec, design: str) -> RunResult:
    """Simulate ``spec`` on ``design``; the same spec and design always give the same tables."""
    return WorkloadRun(spec, design).run()
