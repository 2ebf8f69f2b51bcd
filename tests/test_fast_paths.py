"""Fast paths (pmsim.fastpath) against their general paths, and when they may run.

A fast path (NEW's ``load_copy_put_hit``: pm_load_page -> pm_find_page (NEW) -> the slot CAS
loop, memcpy_to_safe and pm_put_page in one generator) must be invisible: the same simulated
times, the same state, the same measurements as the general path (``PageMap.load_copy_put``,
the functions one by one). Each run below is made twice, once with the page maps' fast paths
turned off, and every operation's start and end time, every thread's clock, every slot word and
cache line, the core meters, the counters and the lock statistics must be equal. A design that
overrides any function a fast path copies, or a probe, gets the general path.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter

import numpy as np
import pytest

from pmsim import fastpath, probes
from pmsim.costs import CostTable
from pmsim.designs import designs
from pmsim.kernel.system import Kernel
from pmsim.machine import Machine
from pmsim.pagecache.radix import RadixTree
from pmsim.sync.rcu import Rcu

# Every design with a fast path, and each fast path it declares.
FAST = {n: fastpath.declared(cls) for n, cls in designs().items() if fastpath.declared(cls)}
INLINED = [(n, p.replaces, name) for n, paths in FAST.items() for p in paths for name in p.inlines]


def _calls(names: dict, fn) -> Counter:
    """Run ``fn()``, counting Python-level entries (and generator resumes) into each code object
    of ``names`` (code -> name), by identity (equal code objects compare equal)."""
    by_id = {id(code): name for code, name in names.items()}
    counts = Counter()
    gc.collect()  # (an earlier run's suspended generators, closed now, not while counting)

    def profile(frame, event, arg):
        if event == "call" and id(frame.f_code) in by_id:
            counts[by_id[id(frame.f_code)]] += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return counts


def _run(design: str, seed: int, flat: bool, cores: int, per_core: int) -> dict:
    """Readers (mostly hits, some misses and multi-page reads) on a partly warm tmpfs file
    and an nvme file, threads sharing cores, with writes, hole punches and reclaims that
    empty slots under the readers."""
    shape = np.random.default_rng(seed)
    m = Machine(cores=cores, costs=CostTable({}), seed=seed)
    k = Kernel(m, design)
    files = [k.file("tmp", 256, "tmpfs"), k.file("disk", 64, "nvme")]
    k.warm(files[0], sorted(shape.choice(256, 200, replace=False).tolist()))
    k.warm(files[1], range(0, 64, 2))
    for f in files:
        assert fastpath.active(f.pm) == [p.replaces for p in FAST[design]]  # on by default
        if not flat:
            fastpath.disable(f.pm)
            assert fastpath.active(f.pm) == []
    trace = []

    def worker(th, i):
        r = m.rng(f"fast.{th.name}")
        while m.env.now < 1e6:
            f = files[int(r.random() < 0.1)]
            op = r.random()
            t0 = m.env.now
            if op < 0.85:
                idx = int(r.integers(f.nr_pages))
                n = 1 if r.random() < 0.9 else int(r.integers(2, 5))
                yield from k.read(th, f, idx, n)
                what = ("read", f.name, idx, n)
            elif op < 0.92:
                idx = int(r.integers(f.nr_pages))
                yield from k.write(th, f, idx)
                what = ("write", f.name, idx)
            elif op < 0.98:
                idx = int(r.integers(f.nr_pages))
                yield from k.punch_hole(th, f, idx, 3)
                what = ("punch", f.name, idx)
            else:
                yield from k.reclaim(th)
                what = ("reclaim",)
            trace.append((th.name, what, t0, m.env.now, th.pending, th.stolen, th.idle_at))
            if r.random() < 0.3:
                yield m.env.timeout(float(r.integers(1, 500)))  # user time

    for i in range(cores * per_core):
        th = m.thread(f"t{i}", i % cores)
        m.env.process(worker(th, i))
    codes = {p.fn.__code__: "fast" for p in FAST[design]}
    codes.update({getattr(type(files[0].pm), p.replaces).__code__: "general" for p in FAST[design]})
    counts = _calls(codes, lambda: m.run(2e6))
    state = []
    for f in files:
        for idx, slot in sorted(f.pm.tree.slots.items()):
            page = slot.page
            state.append(
                (
                    f.name,
                    idx,
                    slot.refcnt,
                    slot.removal,
                    None if page is None else (page.index, page.flags, page.freed),
                )
            )
        for key, line in sorted(f.pm.tree.lines.items()):
            state.append(
                (f.name, key, line.free_at, getattr(line.owner, "index", None), list(line.written))
            )
    rec = m.recorder
    locks = {
        name: (
            st.acquisitions,
            st.contended,
            st.wait.count,
            st.wait.mean(),
            st.hold.mean(),
            st.max_queue,
        )
        for name, st in rec.locks.items()
    }
    return {
        "trace": trace,
        "state": state,
        "meters": [c.meter(m.env.now) for c in m.cores],
        "counters": sorted(rec.counters.items()),
        "locks": sorted(locks.items()),
        "steps": counts,
    }


@pytest.mark.parametrize("design", sorted(FAST))
@pytest.mark.parametrize("seed, cores, per_core", [(1, 4, 1), (2, 4, 2), (3, 2, 3), (4, 8, 1)])
def test_fast_path_is_the_general_path(design, seed, cores, per_core):
    flat = _run(design, seed, True, cores, per_core)
    general = _run(design, seed, False, cores, per_core)
    assert len(flat["trace"]) > 200
    assert flat["trace"] == general["trace"]
    assert flat["state"] == general["state"]
    assert flat["meters"] == general["meters"]
    assert flat["counters"] == general["counters"]
    assert flat["locks"] == general["locks"]
    c = dict(flat["counters"])
    assert c.get("io_reads", 0) > 0 and c.get("pages_removed", 0) > 0  # misses and removals ran
    # The fast path ran for every page read in the first run, the general one in the second.
    assert "general" not in flat["steps"] and flat["steps"]["fast"] > len(flat["trace"]) / 2
    assert "fast" not in general["steps"] and general["steps"]["general"] > len(flat["trace"]) / 2


def _delegate(fn):
    """An override of ``fn`` that does what ``fn`` does."""
    return lambda self, *args: fn(self, *args)


def _pm(design_cls, **machine):
    m = Machine(cores=1, costs=CostTable({}), seed=0, **machine)
    return Kernel(m, design_cls).file("f", 8, "tmpfs").pm


@pytest.mark.parametrize("design, replaces, inlined", INLINED, ids=["-".join(k) for k in INLINED])
def test_a_design_that_overrides_an_inlined_function_gets_the_general_path(
    design, replaces, inlined
):
    """A subclass that overrides any function a fast path copies (on the page map, or on the
    object it reaches: the radix tree's lookup cost, the RCU read section) runs the general path;
    the design itself runs the fast one."""
    cls = designs()[design]
    assert replaces in fastpath.active(_pm(cls))
    *owners, name = inlined.split(".")
    if not owners:  # a page-map method: override it in a subclass that only delegates
        variant = type("Variant", (cls,), {name: _delegate(getattr(cls, name))})
        assert fastpath.active(_pm(variant)) == []
    elif owners == ["tree"]:  # the radix tree: a design with another tree class
        tree = type(
            "Tree", (RadixTree,), {name: lambda self, *a: getattr(RadixTree, name)(self, *a)}
        )
        assert fastpath.active(_pm(type("Variant", (cls,), {"tree_class": tree}))) == []
    else:  # the machine's RCU: a class probe, seen by every page map built after it
        assert owners == ["rcu"]
        with probes.attach(Rcu, name, lambda original, *a: original(*a)):
            assert fastpath.active(_pm(cls)) == []
        assert replaces in fastpath.active(_pm(cls))


def test_a_probe_turns_the_fast_paths_of_its_object_off():
    """A probe on one page map (as the invariant tests use) is called: no fast path there; the
    other page map keeps its fast path."""
    m = Machine(cores=1, costs=CostTable({}), seed=0)
    k = Kernel(m, "new")
    f, g = k.file("f", 8, "tmpfs"), k.file("g", 8, "tmpfs")
    k.warm(f, [1])
    seen = []

    def spy(original, th, index):
        seen.append(index)
        return (yield from original(th, index))

    probes.attach(f.pm, "pm_find_page", spy)
    assert fastpath.active(f.pm) == [] and fastpath.active(g.pm) == ["load_copy_put"]
    th = m.thread("t", 0)
    m.env.process(k.read(th, f, 1))
    m.run(1e6)
    assert seen == [1]
