"""The effects the code implies, with the default costs (issue: "expectations a reviewer will check").

read() hits on a warm file, closed loop, no think time: OLD stops scaling (every lookup takes
``pm_lock``), NEW scales close to linearly on pages spread over many slot lines and flattens
when every thread hits one page (that slot's cache line). A NEW miss stalls while a writeback
holds the qlock; a NEW hit does not.
"""

from __future__ import annotations

import pytest

from pmsim.costs import CostTable
from pmsim.kernel.system import Kernel
from pmsim.machine import Machine

PAGES = 4096
RUN_NS = 1e6


def read_hits_per_s(design: str, cores: int, hot: bool = False) -> float:
    """Throughput of read() hits: each thread reads one page per call, uniform or all page 0."""
    m = Machine(cores=cores, seed=5)
    k = Kernel(m, design)
    f = k.file("f", PAGES)
    k.warm(f, range(PAGES))
    done = [0]

    def worker(i):
        th = m.thread(f"t{i}", i)
        pages = m.rng(f"pages.{i}").integers(PAGES, size=1 << 16).tolist()
        for idx in pages:
            yield from k.read(th, f, 0 if hot else idx)
            done[0] += 1

    for i in range(cores):
        m.env.process(worker(i))
    m.run(RUN_NS)
    return done[0] / (RUN_NS / 1e9)


@pytest.fixture(scope="module")
def curves():
    cores = (1, 4, 16, 32)
    return {
        (d, hot): {n: read_hits_per_s(d, n, hot) for n in cores}
        for d in ("old", "new")
        for hot in (False, True)
    }


def test_old_read_hits_stop_scaling(curves):
    old = curves[("old", False)]
    assert old[16] < 4 * old[1]  # 16 cores give less than 4 cores' worth
    assert old[16] <= old[4] * 1.05 and old[32] <= old[4] * 1.05  # and no more than 4 cores do


def test_new_read_hits_scale_close_to_linearly_on_spread_pages(curves):
    new = curves[("new", False)]
    assert new[16] > 12 * new[1]
    assert new[16] > 4 * curves[("old", False)][16]


def test_new_hits_on_one_page_flatten_on_the_slot_line(curves):
    hot, spread = curves[("new", True)], curves[("new", False)]
    assert hot[32] < 1.1 * hot[16]  # flat past the line's capacity
    assert hot[32] < 0.6 * spread[32]  # while spread pages keep scaling
    line = CostTable().ns("contended_atomic_per_contender_ns")
    # Each hit takes the line for a CAS (plus a local retry under contention) and a put:
    # at most one hit per 2 line occupancies.
    assert hot[16] <= 1e9 / (2 * line) * 1.01
    assert hot[16] > 0.5 * 1e9 / (2 * line + CostTable().ns("cas_uncontended_ns"))  # near it


def test_a_new_miss_stalls_behind_writeback_and_a_hit_does_not():
    """NVMe file, 64 dirty pages: fsync holds pm_qlock for ~64 writes; a miss that arrives
    meanwhile waits for the qunlock, a hit on a resident page does not."""
    m = Machine(cores=3, seed=2)
    k = Kernel(m, "new")
    f = k.file("f", PAGES, "nvme")
    k.warm(f, range(65), dirty=range(64))
    times = {}

    def timed(name, th, gen, at=0.0):
        def body():
            yield m.env.timeout(at)
            t0 = th.now
            yield from gen
            times[name] = (t0, th.now)

        m.env.process(body())

    a, b, c = m.thread("wb", 0), m.thread("miss", 1), m.thread("hit", 2)
    timed("fsync", a, k.fsync(a, f))
    timed("miss", b, k.read(b, f, 1000), at=50_000)
    timed("hit", c, k.read(c, f, 64), at=50_000)
    m.run(50e6)
    write = CostTable().ns("nvme_write_4k_us")
    assert times["fsync"][1] > 50 * write  # the writeback lasts about 64 writes
    assert times["miss"][1] >= times["fsync"][1]  # the miss got the qlock only after it
    assert times["hit"][1] - times["hit"][0] < 2_000  # the hit: lock-free, ~1 us
