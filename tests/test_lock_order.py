"""Lock-order conformance: the locks each kernel path takes, in order, against each design's own
declaration.

Every design declares, beside its code, the steps of each kernel path it has (``lock_order``),
which locks are held at some of them (``lock_nesting``) and the lock-order edges the reference
names for its family (``lock_edges``); a variant inherits every row it does not declare again
(pmsim/designs/base.py). The rows were written from the reference akaros-pagemap.md (tables 6.1
OLD and 6.2 NEW, sections 2 and 4) and checked against the C code (kern/src/pagemap.c, mm.c,
process.c, ns/fs_file.c, ns/tree_file.c, drivers/dev/gtfs.c; a4d7239a for OLD, HEAD for NEW).
Every test here takes the designs from the registry, so a new design is checked by all of them
without editing this file (tests/test_designs.py shows it with a throw-away design).

Each path runs a small deterministic scenario (one thread unless the path needs two). The locks
are recorded from *outside* the model, through class probes (pmsim.probes) on
``SpinLock.acquire/release``, ``QLock.acquire/release`` (and ``QLock.__init__`` for a lock
created held), ``BackingStore.readpage/writepage/writepages``, ``TlbShootdown.shootdown``,
``Rcu.read_section`` and ``Thread.block``, which append ``(thread name, event, lock)`` to a list.

Not in the rows (granularity of the model): a semaphore's internal ``sem->lock`` spinlock is
part of each qlock step; ``set_acmtime_noperm``'s hourly ``f->qlock`` in read(), ``merge_me``
and ``MAP_POPULATE`` in mmap, and the ksched lock of ``proc_wakeup`` are not modelled.

The step notation is PageMap.lock_order's. Further checks: no path blocks or takes a qlock while
holding a spinlock; the union of every held -> taken edge over a design family is acyclic
(akaros-pagemap.md 5.2 item 7) and has the edges its root design names.
"""

from __future__ import annotations

import pytest

from pmsim import probes
from pmsim.costs import CostTable
from pmsim.cpu import Thread
from pmsim.designs import designs
from pmsim.designs.base import PageMap
from pmsim.errors import ConfigError
from pmsim.kernel.system import Kernel
from pmsim.kernel.vm import PROT_READ, PROT_WRITE
from pmsim.machine import Machine
from pmsim.storage import BackingStore
from pmsim.sync.qlock import QLock
from pmsim.sync.rcu import Rcu
from pmsim.sync.spinlock import SpinLock
from pmsim.sync.tlb import TlbShootdown

RW = PROT_READ | PROT_WRITE
DESIGNS = designs()


def family(name: str) -> str:
    """The root design a design derives from (its own name for a root)."""
    registered = {cls: n for n, cls in DESIGNS.items()}
    roots = [registered[c] for c in DESIGNS[name].__mro__ if c in registered and c is not PageMap]
    return roots[-1]


# =========================================================================== recording
class LockTrace:
    """Events recorded from outside the model: (thread name, event, lock label or None)."""

    def __init__(self):
        self.events: list[tuple[str, str, str | None]] = []
        self.kinds: dict[str, str] = {}  # lock label -> "spin" | "qlock"
        self._labels: dict[int, str] = {}
        self._keep: list = []  # the labelled objects, so their ids stay unique

    def reset(self) -> None:
        self.events.clear()
        self.kinds.clear()
        self._labels.clear()
        self._keep.clear()

    def name_procs(self, *procs) -> None:
        """Label the per-process locks ``L@P`` (scenarios with more than one process)."""
        for p in procs:
            for attr in ("vmr_lock", "pte_lock", "proc_lock"):
                lock = getattr(p, attr)
                self._labels[id(lock)] = f"{attr}@{p.name}"
                self._keep.append(lock)

    def label(self, lock) -> str:
        return self._labels.get(id(lock), lock.name)

    def record(self, thread, event: str, lock=None, kind: str | None = None) -> None:
        label = None if lock is None else self.label(lock)
        if kind is not None:
            self.kinds[label] = kind
        self.events.append((thread.name, event, label))

    @staticmethod
    def render(event: str, label: str | None) -> str:
        prefix = {"acquire": "+", "release": "-", "init_held": "*"}.get(event)
        return prefix + label if prefix else event

    def walk(self, thread_name: str) -> tuple[list[tuple[str, tuple[str, ...]]], list[str]]:
        """Every event of one thread as (step, locks held just before it), and what it holds at the end."""
        held: list[str] = []
        out = []
        for name, event, label in self.events:
            if name != thread_name:
                continue
            step = self.render(event, label)
            out.append((step, tuple(held)))
            if event in ("acquire", "init_held"):
                held.append(label)
            elif event == "release":
                assert label in held, f"{thread_name} released {label} it did not hold"
                held.remove(label)
        return out, held

    def steps(self, thread_name: str) -> list[str]:
        """The thread's steps in table notation (``block`` events left out)."""
        return [s for s, _ in self.walk(thread_name)[0] if s != "block"]

    def threads(self) -> list[str]:
        return list(dict.fromkeys(name for name, _, _ in self.events))


@pytest.fixture
def trace() -> LockTrace:
    """Probe the lock, IO, shootdown, RCU and block primitives with recording wrappers."""
    tr = LockTrace()

    def lock_step(event, kind):
        def wrapper(original, lock, thread, *site):  # (acquire's call site, if given)
            result = yield from original(lock, thread, *site)
            tr.record(thread, event, lock, kind)
            return result

        return wrapper

    def init(original, lock, machine, name, wake="waker_core", held_by=None, site="?"):
        original(lock, machine, name, wake, held_by, site)
        if held_by is not None:
            tr.record(held_by, "init_held", lock, "qlock")

    def io_step(method):
        def wrapper(original, store, thread, *args):
            tr.record(thread, method)
            return (yield from original(store, thread, *args))

        return wrapper

    def shootdown(original, tlb, thread, proc):
        tr.record(thread, "tlbshootdown")
        return (yield from original(tlb, thread, proc))

    def read_section(original, rcu, thread):
        tr.record(thread, "rcu")
        return original(rcu, thread)

    def block(original, thread, event):
        tr.record(thread, "block")
        return (yield from original(thread, event))

    attached = [
        probes.attach(cls, method, lock_step(event, kind))
        for cls, kind in ((SpinLock, "spin"), (QLock, "qlock"))
        for method, event in (("acquire", "acquire"), ("release", "release"))
    ]
    attached += [probes.attach(QLock, "__init__", init)]
    attached += [
        probes.attach(BackingStore, m, io_step(m)) for m in ("readpage", "writepage", "writepages")
    ]
    attached += [
        probes.attach(TlbShootdown, "shootdown", shootdown),
        probes.attach(Rcu, "read_section", read_section),
        probes.attach(Thread, "block", block),
    ]
    yield tr
    for probe in reversed(attached):
        probe.remove()


# =========================================================================== scenarios
# Constant IO latencies; the runs end long before the first RCU grace period matters.
COSTS = {"nvme_latency_sigma": 0, "gtfs_latency_sigma": 0}
RUN_NS = 2 * 10**7


def _machine(design: str):
    m = Machine(cores=4, costs=CostTable(COSTS), seed=7)
    return m, Kernel(m, design)


def _run(m, *bodies) -> list:
    """Run the bodies as SimPy processes; every one must finish. Returns their results."""
    results = []

    def finish(body):
        results.append((yield from body))

    for body in bodies:
        m.env.process(finish(body))
    m.run(RUN_NS)
    assert len(results) == len(bodies), "a scenario thread did not finish"
    return results


def _after(m, delay, body):
    yield m.env.timeout(delay)
    return (yield from body)


def _kernel_path(th, gen):
    """A page-map function run as a kernel path of its own (entry and smp_idle on exit)."""
    th.kernel_enter()
    result = yield from gen
    yield from th.kernel_exit()
    return result


def _read(design, tr, store="tmpfs", warm=(0,), write=False):
    m, k = _machine(design)
    f = k.file("f", 8, store)
    k.warm(f, warm)
    th = m.thread("t", 0)
    _run(m, (k.write if write else k.read)(th, f, 0))
    return "t"


def _sysread(design, tr):
    """read() of a warm page by a thread of a user process: the syscall layer around it."""
    m, k = _machine(design)
    f = k.file("f", 8, "tmpfs")
    k.warm(f, (0,))
    th = m.thread("t", 0, k.process("P", cores=[0]))
    _run(m, k.read(th, f, 0))
    return "t"


def _read_wait(design, tr):
    """Loader A misses page 0 (nvme read); B reads it halfway through A's readpage."""
    m, k = _machine(design)
    f = k.file("f", 8, "nvme")
    a, b = m.thread("A", 0), m.thread("B", 1)
    _run(m, k.read(a, f, 0), _after(m, m.costs.ns("nvme_read_4k_us") / 2, k.read(b, f, 0)))
    return "B"


def _fault(design, tr, state, warm):
    """A process on core 0 faults (a load) on page 0 of a shared read-only mapping."""
    m, k = _machine(design)
    f = k.file("f", 8, "tmpfs")
    k.warm(f, warm)
    p = k.process("P", cores=[0], state=state)
    vmr = k.map_now(p, f, 0, 8, PROT_READ, shared=True)
    th = m.thread("t", 0, p)
    assert _run(m, k.fault(th, p, vmr.base, False)) == [0]
    assert 0 in vmr.ptes
    return "t"


def _punch_hole(design, tr):
    """Pages 0..11 resident and dirty, mapped shared by A (vA1 RW, vA2 RO) and B (vB RW), some PTEs
    present; punch [0, 12)."""
    m, k = _machine(design)
    f = k.file("f", 16, "nvme")
    k.warm(f, range(12), dirty=range(12))
    a = k.process("A", cores=[1])
    b = k.process("B", cores=[2])
    tr.name_procs(a, b)
    va1 = k.map_now(a, f, 0, 16, RW, shared=True)
    vb = k.map_now(b, f, 0, 16, RW, shared=True)
    va2 = k.map_now(a, f, 0, 16, PROT_READ, shared=True)
    k.prefault(va1, [0, 1], dirty=[0])
    k.prefault(vb, [2])
    k.prefault(va2, [3])
    th = m.thread("t", 0)
    _run(m, k.punch_hole(th, f, 0, 12))
    return "t"


def _fsync_setup(design, tr):
    """Network (gtfs-like) file; pages 0..5 resident, page 5 dirty from a write(). VMRs in list order:
    vA1 (A, shared RW, dirty PTE on page 0), vP (A, private RW), vB (B, shared RW, dirty PTE on 1),
    vA2 (A, shared RW, dirty PTE on 2), vR (B, shared RO, clean PTE on 3)."""
    m, k = _machine(design)
    f = k.file("f", 8, "gtfs")
    k.warm(f, range(6), dirty=[5])
    f.dirty = True  # FSF_DIRTY, set by that write()
    a = k.process("A", cores=[1])
    b = k.process("B", cores=[2])
    tr.name_procs(a, b)
    va1 = k.map_now(a, f, 0, 8, RW, shared=True)
    k.map_now(a, f, 0, 8, RW, shared=False)
    vb = k.map_now(b, f, 0, 8, RW, shared=True)
    va2 = k.map_now(a, f, 0, 8, RW, shared=True)
    vr = k.map_now(b, f, 0, 8, PROT_READ, shared=True)
    k.prefault(va1, [0], dirty=[0])
    k.prefault(vb, [1], dirty=[1])
    k.prefault(va2, [2], dirty=[2])
    k.prefault(vr, [3])
    return m, k, f, m.thread("t", 0)


def _fsync(design, tr):
    m, k, f, th = _fsync_setup(design, tr)
    _run(m, k.fsync(th, f))
    return "t"


def _writeback(design, tr):
    m, k, f, th = _fsync_setup(design, tr)
    _run(m, _kernel_path(th, f.pm.pm_writeback_pages(th)))
    return "t"


def _reclaim(design, tr):
    """Pages 0..3 resident: 0 unused; 1 in use (slot refcount 1, a reader between load and put);
    2 mapped by a VMR; 3 dirty and unmapped."""
    m, k = _machine(design)
    f = k.file("f", 8, "gtfs")
    k.warm(f, range(4), dirty=[3])
    f.pm.tree.slots[1].refcnt = 1
    a = k.process("A", cores=[1])
    k.map_now(a, f, 2, 1, PROT_READ, shared=True)
    th = m.thread("t", 0)
    _run(m, k.reclaim(th))
    return "t"


def _mmap(design, tr, prot, shared):
    m, k = _machine(design)
    f = k.file("f", 8, "tmpfs")
    p = k.process("P", cores=[0])
    th = m.thread("t", 0, p)
    (vmr,) = _run(m, k.mmap(th, p, f, 0, 8, prot, shared))
    assert vmr in p.vmrs and vmr in f.pm.vmrs
    return "t"


def _munmap(design, tr):
    m, k = _machine(design)
    f = k.file("f", 8, "tmpfs")
    k.warm(f, [0, 1])
    p = k.process("P", cores=[0])
    vmr = k.map_now(p, f, 0, 8, RW, shared=True)
    k.prefault(vmr, [0, 1], dirty=[0])
    th = m.thread("t", 0, p)
    _run(m, k.munmap(th, vmr))
    assert vmr not in f.pm.vmrs
    return "t"


SCENARIOS = {
    "read_hit": lambda d, tr: _read(d, tr),
    "sysread_hit": _sysread,
    "read_miss": lambda d, tr: _read(d, tr, warm=()),
    "read_miss_gtfs": lambda d, tr: _read(d, tr, store="gtfs", warm=()),
    "read_wait": _read_wait,
    "write_miss": lambda d, tr: _read(d, tr, warm=(), write=True),
    "fault_hit": lambda d, tr: _fault(d, tr, "RUNNING_M", warm=[0]),
    "fault_miss_scp": lambda d, tr: _fault(d, tr, "RUNNING_S", warm=[]),
    "fault_miss_mcp": lambda d, tr: _fault(d, tr, "RUNNING_M", warm=[]),
    "punch_hole": _punch_hole,
    "pm_writeback_pages": _writeback,
    "fsync": _fsync,
    "reclaim": _reclaim,
    "mmap_shared_rw": lambda d, tr: _mmap(d, tr, RW, True),
    "mmap_private_ro": lambda d, tr: _mmap(d, tr, PROT_READ, False),
    "munmap": _munmap,
}


def run_scenario(tr: LockTrace, design: str, path: str) -> str:
    """Run one scenario on a fresh machine with an empty trace; returns the thread the row is about."""
    tr.reset()
    return SCENARIOS[path](design, tr)


def expected(design: str, path: str) -> list[str]:
    return list(DESIGNS[design].lock_order[path])


def _ids(keys):
    return [f"{d}-{p}" for d, p in keys]


def _base(label: str) -> str:
    return label.split("@")[0]


KEYS = [(d, p) for d, cls in DESIGNS.items() for p in sorted(cls.lock_order)]
NEST_KEYS = [(d, p) for d, cls in DESIGNS.items() for p in sorted(cls.lock_nesting)]
FAMILIES = sorted({family(d) for d in DESIGNS})


# =========================================================================== tests
def test_every_row_has_a_scenario_and_every_design_has_rows():
    """The rows only name scenarios that exist, and every design has a row for each path its
    entry points reach (a design cannot leave itself unchecked)."""
    for design, cls in DESIGNS.items():
        assert set(cls.lock_order) <= set(SCENARIOS), design
        assert set(cls.lock_nesting) <= set(cls.lock_order), design
        assert {"read_hit", "sysread_hit", "read_miss", "fault_hit", "punch_hole", "munmap"} <= set(
            cls.lock_order
        )
        if "fsync" in cls.entry_points:
            assert {"fsync", "pm_writeback_pages", "reclaim"} <= set(cls.lock_order), design
        else:
            assert not {"fsync", "pm_writeback_pages", "reclaim"} & set(cls.lock_order), design


@pytest.mark.parametrize("key", KEYS, ids=_ids(KEYS))
def test_lock_sequence_matches_reference(trace, key):
    """Each design's row for each path (its own, or inherited from the design it varies): the
    thread's lock / IO / shootdown steps, in order."""
    design, path = key
    name = run_scenario(trace, design, path)
    assert trace.steps(name) == expected(design, path)


@pytest.mark.parametrize("key", NEST_KEYS, ids=_ids(NEST_KEYS))
def test_nesting(trace, key):
    """Which locks are held when each listed lock is taken (or IO starts), per lock_nesting."""
    design, path = key
    name = run_scenario(trace, design, path)
    events, _ = trace.walk(name)
    for step, want in DESIGNS[design].lock_nesting[path].items():
        got = [held for s, held in events if s == step]
        assert got, f"{step} never happens"
        if isinstance(want, list):
            assert got == want, step
        else:
            assert all(h == want for h in got), (step, got)


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_no_spinlock_held_while_blocking(trace, design):
    """Akaros's pre_block_check (3.2): no thread sleeps, takes a qlock or starts IO while it holds
    a spinlock; and every thread ends its path holding nothing."""
    for path in sorted(DESIGNS[design].lock_order):
        run_scenario(trace, design, path)
        for name in trace.threads():
            events, left = trace.walk(name)
            assert left == [], (path, name, left)
            for step, held in events:
                blocking = step in ("block", "readpage", "writepage", "writepages") or (
                    step[0] == "+" and trace.kinds.get(step[1:]) == "qlock"
                )  # sem_down may sleep; sem_init(, 0) does not
                if blocking:
                    spins = [h for h in held if trace.kinds[h] == "spin"]
                    assert spins == [], f"{path}: {name} does {step} holding {spins}"


def _edges(trace, names) -> tuple[set[tuple[str, str]], dict[str, str]]:
    """Every held -> taken edge over every path of the designs ``names`` (per-process locks
    merged), and each lock's kind."""
    edges: set[tuple[str, str]] = set()
    kinds: dict[str, str] = {}
    for design in sorted(names):
        for path in sorted(DESIGNS[design].lock_order):
            run_scenario(trace, design, path)
            kinds.update({_base(k): v for k, v in trace.kinds.items()})
            for name in trace.threads():
                for step, held in trace.walk(name)[0]:
                    if step[0] == "+":  # (a lock created held is invisible to others: no edge)
                        edges |= {(_base(h), _base(step[1:])) for h in held}
    return edges, kinds


def _cycles(edges) -> list[tuple[str, str]]:
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(src, dst, seen):
        for nxt in graph.get(src, ()):
            if nxt == dst or (nxt not in seen and not seen.add(nxt) and reaches(nxt, dst, seen)):
                return True
        return False

    return sorted((a, b) for a, b in edges if reaches(b, a, set()))


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_lock_order_graph_is_acyclic_per_design(trace, design):
    """The held -> taken edges of every path of one design have no cycle (no two paths take
    two locks in opposite orders, 5.2 item 7) and no spinlock -> qlock edge."""
    edges, kinds = _edges(trace, [design])
    assert not [(a, b) for a, b in edges if kinds[a] == "spin" and kinds[b] == "qlock"]
    assert _cycles(edges) == [], "edges on a cycle"


@pytest.mark.parametrize("root", FAMILIES)
def test_lock_order_graph_is_acyclic(trace, root):
    """The same over a whole design family (its root design and the variants of it), which
    also has the edges the root design names."""
    edges, _ = _edges(trace, [d for d in DESIGNS if family(d) == root])
    assert DESIGNS[root].lock_edges and DESIGNS[root].lock_edges <= edges
    assert _cycles(edges) == [], "edges on a cycle"


@pytest.mark.parametrize("design", ["old", "new"])
def test_second_reader_sleeps_until_the_loader_unlocks(trace, design):
    """The read_wait row is the wait path (2.5 step 3): B's lookup comes after A's readpage
    started, B blocks in lock_page, and takes the page lock only after A's unlock_page."""
    run_scenario(trace, design, "read_wait")
    ev = [(n, trace.render(e, lbl)) for n, e, lbl in trace.events]
    a_readpage = ev.index(("A", "readpage"))
    b_first = next(i for i, (n, _) in enumerate(ev) if n == "B")
    assert a_readpage < b_first
    b_take = ev.index(("B", "+page_lock"))
    assert ev.index(("A", "-page_lock")) < b_take
    assert ("B", "block") in ev[b_first:b_take]
    assert trace.steps("A") == expected(design, "read_miss")


@pytest.mark.parametrize("op", ["fsync", "reclaim"])
def test_old_has_no_writeback_or_reclaim_entry_point(op):
    """OLD (a4d7239a) has no writeback or memory-pressure path (4.5, 4.6, 4.8): no rows, a
    ConfigError."""
    assert not {op, "pm_writeback_pages"} & set(DESIGNS["old"].lock_order)
    m, k = _machine("old")
    f = k.file("f", 8, "gtfs")
    th = m.thread("t", 0)
    gen = k.fsync(th, f) if op == "fsync" else k.reclaim(th)
    with pytest.raises(ConfigError):
        next(gen)
