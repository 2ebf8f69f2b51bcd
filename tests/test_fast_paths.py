"""The flattened read step of NEW (``NewPageMap.load_copy_put``) against the general path.

The flattened step is pm_load_page -> pm_find_page (NEW) -> the slot CAS loop, memcpy_to_safe
and pm_put_page in one generator, for speed. It must be invisible: the same simulated times,
the same state, the same measurements as the general path (``PageMap.load_copy_put``, the
functions one by one). Each run below is made twice, once with ``_flat_read`` off, and every
operation's start and end time, every thread's clock, every slot word and cache line, the
core meters, the counters and the lock statistics must be equal.
"""

from __future__ import annotations

import numpy as np
import pytest

from pmsim.costs import CostTable
from pmsim.designs import designs
from pmsim.designs.base import PageMap
from pmsim.kernel.system import Kernel
from pmsim.machine import Machine

NEW_DESIGNS = [n for n, cls in designs().items() if "reclaim" in cls.entry_points]


def _run(design: str, seed: int, flat: bool, cores: int, per_core: int, monkeypatch) -> dict:
    """Readers (mostly hits, some misses and multi-page reads) on a partly warm tmpfs file
    and an nvme file, threads sharing cores, with writes, hole punches and reclaims that
    empty slots under the readers."""
    calls = [0]
    general = PageMap.load_copy_put

    def counting(self, th, index, copy_ns):
        calls[0] += 1
        return (yield from general(self, th, index, copy_ns))

    monkeypatch.setattr(PageMap, "load_copy_put", counting)
    shape = np.random.default_rng(seed)
    m = Machine(cores=cores, costs=CostTable({}), seed=seed)
    k = Kernel(m, design)
    files = [k.file("tmp", 256, "tmpfs"), k.file("disk", 64, "nvme")]
    k.warm(files[0], sorted(shape.choice(256, 200, replace=False).tolist()))
    k.warm(files[1], range(0, 64, 2))
    for f in files:
        assert f.pm._flat_read  # on by default for NEW and its variants
        if not flat:
            f.pm._flat_read = False
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
    m.run(2e6)
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
        "general_steps": calls[0],
    }


@pytest.mark.parametrize("design", NEW_DESIGNS)
@pytest.mark.parametrize("seed, cores, per_core", [(1, 4, 1), (2, 4, 2), (3, 2, 3), (4, 8, 1)])
def test_flattened_read_step_is_the_general_path(design, seed, cores, per_core, monkeypatch):
    flat = _run(design, seed, True, cores, per_core, monkeypatch)
    general = _run(design, seed, False, cores, per_core, monkeypatch)
    assert len(flat["trace"]) > 200
    assert flat["trace"] == general["trace"]
    assert flat["state"] == general["state"]
    assert flat["meters"] == general["meters"]
    assert flat["counters"] == general["counters"]
    assert flat["locks"] == general["locks"]
    c = dict(flat["counters"])
    assert c.get("io_reads", 0) > 0 and c.get("pages_removed", 0) > 0  # misses and removals ran
    # The flattened step ran for every page read (the general run took the general step).
    assert flat["general_steps"] == 0 and general["general_steps"] > len(flat["trace"]) / 2


def test_replacing_a_flattened_function_turns_the_step_off():
    """A probe put on one page map (as the invariant tests do) is called: no flattening."""
    m = Machine(cores=1, costs=CostTable({}), seed=0)
    k = Kernel(m, "new")
    f, g = k.file("f", 8, "tmpfs"), k.file("g", 8, "tmpfs")
    f.pm.pm_put_page = f.pm.pm_put_page
    assert not f.pm._flat_read and g.pm._flat_read
