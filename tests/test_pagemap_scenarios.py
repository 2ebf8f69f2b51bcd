"""Page-map scenarios with exact simulated times, OLD ("old") against NEW ("new").

Every scenario is deterministic: NVMe latencies are constant (``nvme_latency_sigma`` 0),
threads are pinned to cores, start times are fixed, and the TTAS lock's random winner
never matters (the expected times are sorted, or only one spinner waits). Expected times
are formulas over the cost table (``c.ns(...)``), following the code paths of
akaros-pagemap.md section 2 (2.2 find, 2.3 insert, 2.4 put, 2.5 load and its wake
chain, 2.9 pm_remove_contig, 2.11 mark_and_clear_dirty_ptes, 2.13 pm_writeback_pages)
and the primitives of section 3. Times are in ns.

Cost vocabulary used by the formulas (see the helpers below):
- a lookup is ``depth * radix_lookup_ns_per_level`` (every file here is one radix level);
- the slot-word CAS costs ``cas_remote_ns`` unless this core owned the line last
  (``cas_uncontended_ns``); a never-touched line counts as remote;
- a blind RMW on a line (``pm_put_page``'s atomic_add, the insert's store) costs
  ``cacheline_transfer_ns`` from another core or an untouched line, else ``cas_uncontended_ns``;
- every pg_flags atomic costs ``cacheline_transfer_ns``;
- a qlock waker's wakee restarts ``kthread_switch_ns (restart_kthread)`` after the waker's kernel path ends
  (the waker pays ``kmsg_send_ns`` for the routine kernel message).
"""

from __future__ import annotations

import math

import pytest

from pmsim import probes
from pmsim.costs import CostTable
from pmsim.kernel.system import Kernel
from pmsim.kernel.vm import PROT_READ, PROT_WRITE, PT_ENTRIES
from pmsim.machine import Machine
from pmsim.pagecache.page import PG_DIRTY
from pmsim.pagecache.radix import SLOTS_PER_LINE

COSTS = {"nvme_latency_sigma": 0}  # constant device latencies; everything else the defaults
RUN_NS = 5e6  # long enough for every scenario, shorter than the first RCU grace period (25 ms)
NR_PAGES = 64  # one radix level
DEPTH = 1


def approx(x):
    return pytest.approx(x, rel=1e-12, abs=1e-6)


def hold_range(recorder, lock):
    """(min, max) of the recorded holds of ``lock``."""
    h = recorder.locks[lock].hold
    return h.min, h.max


# =========================================================================== set-up helpers
def setup(design, cores=4, store="tmpfs", warm=(), dirty=(), nr_pages=NR_PAGES, seed=1, costs=None):
    """A machine, a kernel of ``design`` and one file with ``warm`` pages resident at t=0."""
    c = CostTable({**COSTS, **(costs or {})})
    m = Machine(cores=cores, costs=c, seed=seed)
    k = Kernel(m, design)
    f = k.file("f", nr_pages, store)
    k.warm(f, warm, dirty=dirty)
    return c, m, k, f


def reader(m, k, th, f, idx, at=0.0, log=None):
    """A thread that sleeps until ``at``, then read()s page ``idx``; logs (start, finish)."""

    def body():
        if at:
            yield m.env.timeout(at)
        t0 = th.now
        yield from k.read(th, f, idx)
        log[th.name] = (t0, th.now)

    return m.env.process(body())


def record_loaded_pages(f):
    """Wrap ``f.pm.pm_load_page`` so each thread's returned Page is kept (by thread name)."""
    pages = {}

    def load(orig, th, idx):
        page = yield from orig(th, idx)
        pages[th.name] = page
        return page

    probes.attach(f.pm, "pm_load_page", load)
    return pages


# =========================================================================== cost helpers
def ns(c, *names):
    return sum(c.ns(n) for n in names)


def lookup(c, depth=DEPTH):
    """radix_lookup_slot: one dependent load per level (akaros-pagemap.md 3.6)."""
    return depth * c.ns("radix_lookup_ns_per_level")


def find_hit(c, design, cas, pm_lock_remote=False):
    """pm_find_page of a resident page (2.2). OLD: pm_lock (a pair, plus a line transfer
    if another core took it last), lookup and CAS under it. NEW: an RCU read section,
    the lookup and the CAS, no lock."""
    if design == "old":
        lock = c.ns("lock_pair_uncontended_ns") + (
            c.ns("cacheline_transfer_ns") if pm_lock_remote else 0
        )
        return lock + lookup(c) + cas
    return c.ns("rcu_read_section_ns") + lookup(c) + cas


def find_miss(c, design):
    """pm_find_page of an empty slot: no CAS (2.2)."""
    if design == "old":
        return c.ns("lock_pair_uncontended_ns") + lookup(c)
    return c.ns("rcu_read_section_ns") + lookup(c)


def read_hit(c, design, cas, put, pm_lock_remote=False):
    """read() of one up-to-date resident page: syscall, find, copy, put (4.2)."""
    return (
        c.ns("syscall_entry_exit_ns")
        + find_hit(c, design, cas, pm_lock_remote)
        + c.ns("page_copy_4k_ns")
        + put
    )


def insert_uncontended(c, lock_remote):
    """pm_insert_page with the lock free (2.3): the lock pair (plus a transfer if another
    core had the lock's line), the lookup (no node allocation: the leaf exists), and the
    item's store into a slot line nobody touched yet (a transfer)."""
    lock = c.ns("lock_pair_uncontended_ns") + (c.ns("cacheline_transfer_ns") if lock_remote else 0)
    return lock + lookup(c) + c.ns("cacheline_transfer_ns")


# =========================================================================== 1. a read() hit
@pytest.mark.parametrize("design", ["old", "new"])
def test_read_hit_exact_time_first_and_second(design):
    """One thread read()s a warm page twice (2.2, 2.4, 4.2). First time: the slot's line was
    never touched, so the CAS is remote, and the put finds the line local. Second time both
    atomics are local. OLD pays the pm_lock pair each time (same core, no transfer) and
    holds pm_lock for lookup + CAS only; NEW pays an RCU read section and takes no lock."""
    c, m, k, f = setup(design, cores=1, warm=[0])
    th = m.thread("a", 0)
    done = []

    def body():
        for _ in range(2):
            yield from k.read(th, f, 0)
            done.append(th.now)

    m.env.process(body())
    m.run(RUN_NS)
    local, remote = c.ns("cas_uncontended_ns"), c.ns("cas_remote_ns")
    first = read_hit(c, design, cas=remote, put=local)
    second = read_hit(c, design, cas=local, put=local)
    assert done[0] == approx(first)
    assert done[1] - done[0] == approx(second)
    assert first - second == approx(remote - local)
    locks = m.recorder.locks
    if design == "old":
        assert locks["pm_lock"].acquisitions == 2 and locks["pm_lock"].contended == 0
        assert hold_range(m.recorder, "pm_lock")[1] == approx(lookup(c) + remote)
        assert m.rcu is None  # OLD never starts RCU: no read sections
    else:
        assert locks["pm_lock"].acquisitions == 0 and locks["pm_qlock"].acquisitions == 0
        assert m.rcu.read_sections == 2
    assert f.pm.tree.slots[0].refcnt == 0
    assert m.recorder.counters["cas_failures.pm_slot"] == 0


# =========================================================================== 2. two loaders
def loader_until_readpage(c, design):
    """Time from a loader's read() entry to its readpage's IO being issued, when nothing
    contends: syscall, missing find, half of kpage_alloc, uncontended insert (its lock's
    line was last on this core in OLD; untouched in NEW)."""
    return (
        c.ns("syscall_entry_exit_ns")
        + find_miss(c, design)
        + c.ns("page_alloc_ns") / 2
        + insert_uncontended(c, lock_remote=False)
    )


@pytest.mark.parametrize("design", ["old", "new"])
def test_second_loader_waits_on_the_page_lock(design):
    """Loader A misses page 0, inserts it locked and reads it from NVMe (80 us). Loader B
    arrives 10 us later: its find hits the inserted, not yet up-to-date page, so it blocks
    in lock_page (2.5). A's unlock_page hands the page lock to B with a kernel message on
    A's core; B restarts kthread_switch_ns (restart_kthread) after A's read() path ends (the wake chain).
    Exactly one readpage; both get the same Page."""
    c, m, k, f = setup(design, cores=2, store="nvme", warm=[NR_PAGES - 1])  # depth 1; page 0 absent
    pages = record_loaded_pages(f)
    a, b = m.thread("A", 0), m.thread("B", 1)
    log = {}
    t_b = 10_000.0
    reader(m, k, a, f, 0, log=log)
    reader(m, k, b, f, 0, at=t_b, log=log)
    m.run(RUN_NS)
    xfer = c.ns("cacheline_transfer_ns")
    read_ns = c.ns("nvme_read_4k_us")
    issue = loader_until_readpage(c, design)
    assert issue < t_b < issue + read_ns  # B arrives while A's IO is in flight
    # A: readpage, unlock_page (a flags atomic, then the sem_up's kernel message to B),
    # copy, put (B's CAS took the slot line: a transfer).
    sleep = c.ns("kthread_switch_ns")  # restart_kthread after the IO (its save overlaps it)
    a_done = issue + read_ns + sleep + xfer + c.ns("kmsg_send_ns") + c.ns("page_copy_4k_ns") + xfer
    assert log["A"][1] == approx(a_done)
    # B: restarts after A's kernel path; lock_page and unlock_page (two flags atomics),
    # copy, put (A's put took the line back: a transfer).
    b_done = a_done + c.ns("kthread_switch_ns") + 2 * xfer + c.ns("page_copy_4k_ns") + xfer
    assert log["B"][1] == approx(b_done)
    rec = m.recorder
    assert rec.counters["io_reads"] == 1
    assert rec.counters["pm_insert_eexist"] == 0
    pl = rec.locks["page_lock"]
    assert (
        pl.acquisitions == 2 and pl.contended == 1
    )  # A's page is born locked; B's lock_page waits
    assert pages["A"] is pages["B"] is f.pm.tree.slots[0].page
    assert f.pm.tree.slots[0].refcnt == 0
    assert f.pm.num_pages == 2


def two_loaders_at_once(design, store, costs=None):
    """Threads A (core 0) and B (core 1) read() absent page 0 at t=0; run to the end.
    Returns (costs, machine, file, the Page each loaded, their (start, finish) log)."""
    c, m, k, f = setup(design, cores=2, store=store, warm=[NR_PAGES - 1], costs=costs)
    pages = record_loaded_pages(f)
    log = {}
    reader(m, k, m.thread("A", 0), f, 0, log=log)
    reader(m, k, m.thread("B", 1), f, 0, log=log)
    m.run(RUN_NS)
    return c, m, f, pages, log


def test_second_loader_takes_the_eexist_path_new():
    """NEW, tmpfs: A and B miss page 0 at the same instant. A takes pm_qlock first; B blocks
    on it (its context save takes kthread_switch_ns (restart_kthread) + a pair). A's qunlock comes while B is
    still saving, so B owns the qlock when its save ends (sem_down's undo path, 3.2) and its
    radix_insert returns -EEXIST (2.5): B frees its page and finds A's, by now up to date
    (tmpfs readpage is short), so B never touches the page lock."""
    # A context save (kthread_switch_ns) longer than A's insert, so the qunlock races it.
    c, m, f, pages, log = two_loaders_at_once("new", "tmpfs", costs={"kthread_switch_ns": 2000})
    pair, xfer = c.ns("lock_pair_uncontended_ns"), c.ns("cacheline_transfer_ns")
    switch = c.ns("kthread_switch_ns")
    local, remote = c.ns("cas_uncontended_ns"), c.ns("cas_remote_ns")
    half_alloc = c.ns("page_alloc_ns") / 2
    t_qlock = c.ns("syscall_entry_exit_ns") + find_miss(c, "new") + half_alloc  # both reach qlock
    # A: uncontended insert, tmpfs readpage (zero, then a 1 us sleep: context save, restart),
    # unlock (no waiter), copy, put.
    a_done = (
        t_qlock
        + insert_uncontended(c, lock_remote=False)
        + c.ns("page_zero_4k_ns")
        + max(switch, c.ns("tmpfs_readpage_sleep_us"))  # the save overlaps the 1 us sleep
        + switch  # restart_kthread
        + xfer
        + c.ns("page_copy_4k_ns")
        + xfer  # put: B's find took the slot line meanwhile (a remote atomic_add)
    )
    assert log["A"][1] == approx(a_done)
    b_owns_qlock = t_qlock + c.ns("kthread_switch_ns") + pair
    assert (
        t_qlock + insert_uncontended(c, lock_remote=False) < b_owns_qlock
    )  # qunlock during B's save
    a_uptodate = (
        t_qlock
        + insert_uncontended(c, lock_remote=False)
        + c.ns("page_zero_4k_ns")
        + max(switch, c.ns("tmpfs_readpage_sleep_us"))
    )
    assert a_uptodate < b_owns_qlock + switch + lookup(c)  # up to date before B looks again
    # B: the lookup finds the slot taken (-EEXIST), qunlock, free its page, find A's page
    # (A's put left the line on core 0: remote CAS), copy, put (now local).
    b_done = (
        b_owns_qlock
        + switch  # restart_kthread
        + lookup(c)
        + half_alloc
        + find_hit(c, "new", remote)
        + c.ns("page_copy_4k_ns")
        + local
    )
    assert log["B"][1] == approx(b_done)
    rec = m.recorder
    assert rec.counters["pm_insert_eexist"] == 1
    assert rec.counters["io_reads"] == 1
    assert rec.locks["pm_qlock"].acquisitions == 2 and rec.locks["pm_qlock"].contended == 1
    assert (
        rec.locks["page_lock"].acquisitions == 2
    )  # both pages born locked (B's freed after -EEXIST)
    assert rec.locks["page_lock"].contended == 0
    assert pages["A"] is pages["B"] is f.pm.tree.slots[0].page
    assert f.pm.num_pages == 2 and f.pm.tree.slots[0].refcnt == 0


def test_second_loader_takes_the_eexist_path_old():
    """OLD, NVMe: A and B miss page 0 at the same instant. Their finds serialise on pm_lock
    (both miss), A inserts first, B's insert gets -EEXIST (2.5); B then finds A's page still
    loading and sleeps in lock_page until A's unlock_page, restarting kthread_switch_ns (restart_kthread) after
    A's read() path ends. Exactly one readpage; both get the same Page."""
    c, m, f, pages, log = two_loaders_at_once("old", "nvme")
    xfer = c.ns("cacheline_transfer_ns")
    rec = m.recorder
    assert rec.counters["pm_insert_eexist"] == 1
    assert rec.counters["io_reads"] == 1
    pl = rec.locks["page_lock"]
    assert pl.acquisitions == 3 and pl.contended == 1  # two pages born locked; B's lock_page waits
    assert rec.locks["pm_lock"].acquisitions == 5  # 2 finds, 2 inserts, B's find after -EEXIST
    assert pages["A"] is pages["B"] is f.pm.tree.slots[0].page
    # A's readpage starts at least one uncontended load path in, and A's read() ends with
    # unlock (sem_up to B: a kernel message), copy and a put on B's line.
    a_done = log["A"][1]
    assert a_done >= loader_until_readpage(c, "old") + c.ns("nvme_read_4k_us") + xfer + c.ns(
        "kmsg_send_ns"
    )
    b_done = a_done + c.ns("kthread_switch_ns") + 2 * xfer + c.ns("page_copy_4k_ns") + xfer
    assert log["B"][1] == approx(b_done)


# =========================================================================== 3. writeback vs a miss
WB_HIT_PAGE = 56  # a clean warm page (line 7)
WB_MISS_PAGE = 48  # not resident (line 6)


def writeback_scenario(design, d, t_other=5_000.0):
    """Pages 0..d-1 warm and dirty, page WB_HIT_PAGE warm and clean, FSF_DIRTY set. W fsyncs
    at t=0 (core 0); at ``t_other`` M read()s the absent page WB_MISS_PAGE (core 1) and H
    read()s the warm page (core 2). Returns (costs, machine, log, fsync's qlock release)."""
    c, m, k, f = setup(
        design, cores=3, store="nvme", warm=list(range(d)) + [WB_HIT_PAGE], dirty=range(d)
    )
    f.dirty = True
    w, mth, h = m.thread("W", 0), m.thread("M", 1), m.thread("H", 2)
    log = {}
    released = []

    def wb(orig, th):
        yield from orig(th)
        released.append(th.now)  # batched variants: the writes end after the qunlock

    probes.attach(f.pm, "pm_writeback_pages", wb)

    def fsync():
        yield from k.fsync(w, f)
        log["W"] = (0.0, w.now)

    m.env.process(fsync())
    reader(m, k, mth, f, WB_MISS_PAGE, at=t_other, log=log)
    reader(m, k, h, f, WB_HIT_PAGE, at=t_other, log=log)
    m.run(RUN_NS)
    assert m.recorder.counters["io_writes"] == d
    assert m.recorder.counters["io_reads"] == 1
    assert not any(f.pm.tree.slots[i].page.flags & PG_DIRTY for i in range(d))
    return c, m, log, f


def writeback_qlock_held_until(c, d):
    """pm_writeback_pages's qunlock time with no VMRs (2.13): syscall, sync_metadata's
    f->qlock pair (4.5), the pm_qlock pair, the pm_lock pairs of mark_and_clear_dirty_ptes
    and shootdown_vmrs, the radix walk (one leaf:
    every slot up to the last resident one), then per dirty page a flags atomic and one
    synchronous NVMe write."""
    walk = (WB_HIT_PAGE + 1) * c.ns("radix_walk_ns_per_slot")
    return (
        c.ns("syscall_entry_exit_ns")
        + 4 * c.ns("lock_pair_uncontended_ns")
        + walk
        + (d + 1) * c.ns("page_struct_read_ns")  # the walk reads each resident struct page
        + d * (c.ns("cacheline_transfer_ns") + c.ns("nvme_write_4k_us") + c.ns("kthread_switch_ns"))
    )  # (each write's sleep: the context save overlaps the IO, the restart follows it)


def miss_after_qlock(c):
    """A miss from the moment it owns pm_qlock: lookup, the item's store (untouched line),
    qunlock, NVMe readpage, unlock_page (flags atomic), copy, put (own line)."""
    return (
        lookup(c)
        + c.ns("cacheline_transfer_ns")
        + c.ns("nvme_read_4k_us")
        + c.ns("kthread_switch_ns")  # restart_kthread after the IO
        + c.ns("cacheline_transfer_ns")
        + c.ns("page_copy_4k_ns")
        + c.ns("cas_uncontended_ns")
    )


def miss_uncontended(c):
    """A whole read() miss on NVMe when pm_qlock is free but was last released on another core."""
    return (
        c.ns("syscall_entry_exit_ns")
        + find_miss(c, "new")
        + c.ns("page_alloc_ns") / 2
        + c.ns("lock_pair_uncontended_ns")
        + c.ns("cacheline_transfer_ns")
        + miss_after_qlock(c)
    )


@pytest.mark.parametrize("d", [2, 4, 8])
def test_new_writeback_delays_a_miss_by_d_writes_but_not_a_hit(d):
    """NEW (2.13): pm_writeback_pages writes the D dirty pages one at a time, synchronously,
    holding pm_qlock. A miss that arrives during the first write blocks in pm_insert_page
    until the qunlock, then restarts kthread_switch_ns (restart_kthread) after fsync's kernel path ends (the
    waker-core wake). A hit at the same instant is lock-free and takes exactly the
    uncontended hit time."""
    c, m, log, f = writeback_scenario("new", d)
    t_m = log["M"][0]
    release = writeback_qlock_held_until(c, d)
    assert release - d * c.ns("nvme_write_4k_us") < t_m  # M arrives during the first write
    w_done = release + c.ns("kmsg_send_ns")  # qunlock sends M's kernel message
    assert log["W"][1] == approx(w_done)
    m_done = w_done + c.ns("kthread_switch_ns") + miss_after_qlock(c)
    assert log["M"][1] == approx(m_done)
    assert log["M"][1] > release
    ql = m.recorder.locks["pm_qlock"]
    assert ql.acquisitions == 2 and ql.contended == 1
    w_acquired = c.ns("syscall_entry_exit_ns") + 2 * c.ns("lock_pair_uncontended_ns")
    assert hold_range(m.recorder, "pm_qlock")[1] == approx(release - w_acquired)
    # The hit: the uncontended time, done long before the writeback ends.
    h_start, h_done = log["H"]
    assert h_done - h_start == approx(
        read_hit(c, "new", cas=c.ns("cas_remote_ns"), put=c.ns("cas_uncontended_ns"))
    )
    assert h_done < release


def test_new_writeback_miss_latency_grows_linearly_with_dirty_pages():
    """The miss latency of the scenario above is affine in D with slope one NVMe write plus
    one pg_flags atomic (the PG_DIRTY clear): exactly, since every cost is constant. The
    slope is within 2% of nvme_write_4k_us: the atomic and the restart are small against a 20 us write."""
    lat = {}
    for d in (2, 4, 8):
        _, _, log, _ = writeback_scenario("new", d)
        lat[d] = log["M"][1] - log["M"][0]
    c = CostTable(COSTS)
    w = c.ns("nvme_write_4k_us")
    slope = (
        w + c.ns("cacheline_transfer_ns") + c.ns("kthread_switch_ns") + c.ns("page_struct_read_ns")
    )
    assert lat[4] - lat[2] == approx(2 * slope)
    assert lat[8] - lat[4] == approx(4 * slope)
    assert abs(slope / w - 1) < 0.02
    for d in (2, 4, 8):
        assert lat[d] > d * w * 0.75  # most of the D writes are waited out (M came 5 us in)


@pytest.mark.parametrize("d", [2, 8])
def test_batched_writeback_does_not_delay_the_miss(d):
    """Contrast, variant new_batched_wb: the dirty pages are queued under the qlock and
    written in one batch after qunlock, so the qlock is long free when the miss comes and
    it takes exactly the uncontended miss time, whatever D. The writes still run in
    parallel (queue depth 32): fsync ends one write after its qunlock."""
    c, m, log, f = writeback_scenario("new_batched_wb", d)
    m_start, m_done = log["M"]
    assert m_done - m_start == approx(miss_uncontended(c))
    assert m_done - m_start < d * c.ns("nvme_write_4k_us") + c.ns("nvme_read_4k_us")
    walk = (WB_HIT_PAGE + 1) * c.ns("radix_walk_ns_per_slot")
    qunlock = (
        c.ns("syscall_entry_exit_ns")
        + 4 * c.ns("lock_pair_uncontended_ns")
        + walk
        + (d + 1) * c.ns("page_struct_read_ns")
        + d * c.ns("cacheline_transfer_ns")
    )
    # (the batch's sleep: its context save overlaps the writes, the restart follows them)
    assert log["W"][1] == approx(qunlock + c.ns("nvme_write_4k_us") + c.ns("kthread_switch_ns"))
    assert m.recorder.locks["pm_qlock"].contended == 0


# =========================================================================== 4. PTE walk cost
def mark_and_clear_elapsed(npages, ndirty):
    """NEW: one writable shared VMR mapping pages 0..npages-1, all prefaulted, the first
    ``ndirty`` PTEs dirty; one thread calls mark_and_clear_dirty_ptes. Returns (costs,
    elapsed, pm_lock hold, file, vmr)."""
    c, m, k, f = setup("new", cores=1, nr_pages=npages, warm=range(npages))
    proc = k.process("p", cores=[0])
    vmr = k.map_now(proc, f, 0, npages, PROT_READ | PROT_WRITE, True)
    k.prefault(vmr, range(npages), dirty=range(ndirty))
    th = m.thread("t", 0)
    out = []

    def body():
        t0 = th.now
        yield from f.pm.mark_and_clear_dirty_ptes(th)
        out.append(th.now - t0)

    m.env.process(body())
    m.run(RUN_NS)
    return c, out[0], hold_range(m.recorder, "pm_lock")[1], f, vmr


def pte_walk(c, npages):
    """vm.walk_ns over a whole VMR whose page tables all exist, starting on a table boundary:
    every level-1 entry, plus one level-2 entry per last-level table and two upper entries."""
    tables = -(-npages // PT_ENTRIES)
    return npages * c.ns("pte_walk_ns_per_entry") + (tables + 2) * c.ns("pte_walk_ns_per_level")


@pytest.mark.parametrize("npages", [PT_ENTRIES, 4 * PT_ENTRIES, 16 * PT_ENTRIES])
def test_mark_and_clear_dirty_ptes_costs_the_mapped_size(npages):
    """NEW (2.11): under pm_lock and the proc's pte_lock, the walk visits every PTE of the
    VMR; each dirty PTE adds one pg_flags atomic. The pm_lock hold is the VMR-list scan, the
    pte_lock pair, the walk and the atomics."""
    ndirty = 16
    c, elapsed, hold, f, vmr = mark_and_clear_elapsed(npages, ndirty)
    pair, xfer = c.ns("lock_pair_uncontended_ns"), c.ns("cacheline_transfer_ns")
    inside = c.ns("vmr_scan_ns_per_vmr") + pair + pte_walk(c, npages) + ndirty * xfer
    assert elapsed == approx(pair + inside)
    assert hold == approx(inside)
    assert vmr.shootdown_needed
    assert not any(p.dirty for p in vmr.ptes.values())
    dirty = [i for i in range(npages) if f.pm.tree.slots[i].page.flags & PG_DIRTY]
    assert dirty == list(range(ndirty))


def test_mark_and_clear_dirty_ptes_scales_with_size_not_dirty_count():
    """Sixteen times the mapped size with the same dirty count multiplies the walk; sixteen
    times the dirty count at a fixed size adds only one flags atomic per extra dirty page."""
    c = CostTable(COSTS)
    entry, level, xfer = (
        c.ns("pte_walk_ns_per_entry"),
        c.ns("pte_walk_ns_per_level"),
        c.ns("cacheline_transfer_ns"),
    )
    _, small, _, _, _ = mark_and_clear_elapsed(PT_ENTRIES, 16)
    _, big, _, _, _ = mark_and_clear_elapsed(16 * PT_ENTRIES, 16)
    assert big - small == approx(15 * PT_ENTRIES * entry + 15 * level)
    _, few, _, _, _ = mark_and_clear_elapsed(4 * PT_ENTRIES, 16)
    _, many, _, _, _ = mark_and_clear_elapsed(4 * PT_ENTRIES, 256)
    _, none, _, _, vmr = mark_and_clear_elapsed(4 * PT_ENTRIES, 0)
    assert many - few == approx(240 * xfer)
    assert few - none == approx(16 * xfer)
    assert not vmr.shootdown_needed
    assert (big - small) / (many - few) > 1  # the size term dominates the dirty term here


# =========================================================================== 5. pm_remove_contig
def test_old_remove_contig_second_remover_gives_up():
    """OLD (2.9): A removes pages 0..9 (3 of them dirty, NVMe) with pm_remove_contig. In pass 4
    it drops pm_lock to write the dirty pages back; B calls pm_remove_contig meanwhile: the
    atomic_swap on pm_removal finds it set and B returns 0 at once (the single-remover rule),
    having paid only that atomic. A removes all 10 pages; a later remover is not refused."""
    n, nd = 10, 3
    c, m, k, f = setup("old", cores=2, store="nvme", warm=range(n), dirty=range(nd))
    pm = f.pm
    a, b = m.thread("A", 0), m.thread("B", 1)
    res = {}
    t_b = 30_000.0

    def remover_a():
        res["A"] = yield from pm.pm_remove_contig(a, 0, n)
        res["A_done"] = a.now

    def remover_b():
        yield m.env.timeout(t_b)
        res["B_state"] = (pm.pm_removal, pm.pm_lock.holder)
        t0 = b.now
        res["B"] = yield from pm.pm_remove_contig(b, 0, n)
        res["B_took"] = b.now - t0
        yield m.env.timeout(200_000)  # after A: the rule no longer refuses
        res["C"] = yield from pm.pm_remove_contig(b, 0, n)

    m.env.process(remover_a())
    m.env.process(remover_b())
    m.run(RUN_NS)
    xfer, pair = c.ns("cacheline_transfer_ns"), c.ns("lock_pair_uncontended_ns")
    local, remote = c.ns("cas_uncontended_ns"), c.ns("cas_remote_ns")
    assert res["B_state"] == (1, None)  # A is inside its passes, with pm_lock dropped
    assert res["B"] == 0 and res["B_took"] == approx(xfer)
    assert res["A"] == n
    lines = -(-n // SLOTS_PER_LINE)  # the first CAS on each slot line is remote
    pass1 = (
        n * lookup(c) + lines * remote + (n - lines) * local + n * xfer
    )  # mark: CAS + PG_REMOVAL
    write = c.ns("nvme_write_4k_us") + c.ns("kthread_switch_ns")  # each write's sleep: + restart
    pass4 = n * lookup(c) + nd * xfer + nd * write + pair  # batch, write, relock
    pass5 = n * (
        lookup(c) + local + c.ns("page_alloc_ns") / 2 + lookup(c)
    )  # CAS, free, radix_delete
    a_done = xfer + pair + pass1 + pass4 + pass5
    assert res["A_done"] == approx(a_done)
    assert t_b < a_done
    rec = m.recorder
    assert rec.counters["remove_contig_gave_up"] == 1
    assert rec.counters["pages_removed"] == n
    assert rec.counters["io_writes"] == nd
    assert res["C"] == 0 and pm.pm_removal == 0
    assert len(pm.tree) == 0 and pm.num_pages == 0


# =========================================================================== 6. lookups serialise in OLD
N_READERS = 4


def concurrent_readers(design, pages):
    c, m, k, f = setup(design, cores=len(pages), warm=sorted(set(pages)))
    log = {}
    for i, idx in enumerate(pages):
        reader(m, k, m.thread(f"r{i}", i), f, idx, log=log)
    m.run(RUN_NS)
    return c, m, sorted(t for _, t in log.values())


def test_old_hits_on_distinct_pages_serialise_on_pm_lock():
    """OLD (2.2, 3.1): N threads read distinct warm pages (on distinct slot lines) at the same
    instant. All but one spin on pm_lock; each hold is lookup + a remote CAS, and each
    TTAS hand-off costs ticket_handoff_per_waiter_ns x spinners x ttas_handoff_factor (at least
    one line transfer). The completion
    times are staggered by hold + hand-off whoever wins each hand-off."""
    pages = [i * SLOTS_PER_LINE for i in range(N_READERS)]
    c, m, done = concurrent_readers("old", pages)
    remote, local = c.ns("cas_remote_ns"), c.ns("cas_uncontended_ns")
    hold = lookup(c) + remote
    first = read_hit(c, "old", cas=remote, put=local)
    expected = [first]
    for spinners in range(N_READERS - 1, 0, -1):
        per = c.ns("ticket_handoff_per_waiter_ns") * c.value("ttas_handoff_factor") * spinners
        expected.append(expected[-1] + max(c.ns("cacheline_transfer_ns"), per) + hold)
    assert done == [approx(t) for t in expected]
    assert done[-1] - done[0] >= (N_READERS - 1) * hold
    st = m.recorder.locks["pm_lock"]
    assert st.acquisitions == N_READERS and st.contended == N_READERS - 1
    assert hold_range(m.recorder, "pm_lock") == (approx(hold), approx(hold))
    assert m.recorder.counters["cas_failures.pm_slot"] == 0


def test_new_hits_on_distinct_lines_finish_together():
    """NEW: the same N reads take no lock and touch different slot lines (8 slots a line),
    so they all finish at the uncontended hit time."""
    pages = [i * SLOTS_PER_LINE for i in range(N_READERS)]
    c, m, done = concurrent_readers("new", pages)
    t = read_hit(c, "new", cas=c.ns("cas_remote_ns"), put=c.ns("cas_uncontended_ns"))
    assert done == [approx(t)] * N_READERS
    assert m.recorder.locks["pm_lock"].acquisitions == 0
    assert m.recorder.locks["pm_qlock"].acquisitions == 0
    assert m.recorder.counters["cas_failures.pm_slot"] == 0


# =========================================================================== 7. NEW hits on one page
def test_new_hits_on_one_page_contend_on_its_slot_line():
    """NEW (2.2 analysis): N threads read page 0 at the same instant. No lock is taken; their
    CASes queue on the slot's line, which is busy contended_atomic_per_contender_ns per
    transfer. Each later CAS fails (the word changed since it was read) and retries at once
    on the line it now owns (cas_uncontended_ns). So completion k is k x (occupancy + local
    retry) after the first, far less than OLD's lock hold + hand-off; each put then moves
    the line again (cacheline_transfer_ns), unqueued because the CASes are long done."""
    c, m, done = concurrent_readers("new", [0] * N_READERS)
    occ, local = c.ns("contended_atomic_per_contender_ns"), c.ns("cas_uncontended_ns")
    remote, xfer = c.ns("cas_remote_ns"), c.ns("cacheline_transfer_ns")
    t_cas = c.ns("syscall_entry_exit_ns") + find_hit(
        c, "new", cas=0.0
    )  # when all N CASes are issued
    assert (N_READERS - 1) * (occ + local) + occ < remote + c.ns(
        "page_copy_4k_ns"
    )  # puts do not queue
    expected = [
        t_cas + remote + j * (occ + local) + c.ns("page_copy_4k_ns") + xfer
        for j in range(N_READERS)
    ]
    assert done == [approx(t) for t in expected]
    rec = m.recorder
    assert rec.locks["pm_lock"].acquisitions == 0 and rec.locks["pm_qlock"].acquisitions == 0
    assert rec.counters["cas_failures.pm_slot"] == N_READERS - 1
    old_gap = c.ns("ticket_handoff_per_waiter_ns") / 2 + lookup(c) + remote  # OLD's smallest step
    assert done[1] - done[0] < old_gap
    assert math.isclose(done[-1] - done[-2], occ + local)


# =========================================================================== 8. big mappings
def test_a_million_page_mapping_costs_memory_for_what_was_faulted_but_walks_cost_its_tables():
    """Issue part 1: PTE objects exist only for faulted pages, so mapping 1M pages and touching
    10 (in 10 different 2 MiB chunks) allocates next to nothing; mark_and_clear_dirty_ptes
    still pays for every level-1 entry of the 10 page tables and every level-2 entry of the
    range (ref 3.5), as env_user_mem_walk does."""
    import tracemalloc

    npages = 1 << 20
    c = CostTable(COSTS)
    m = Machine(cores=1, costs=c, seed=1)
    k = Kernel(m, "new")
    f = k.file("big", npages)
    proc = k.process("p", [0])
    touched = [i * 100_003 for i in range(10)]  # 10 pages in 10 different page tables
    k.warm(f, touched)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    vmr = k.map_now(proc, f, 0, npages, PROT_READ | PROT_WRITE, True)
    th = m.thread("t", 0, proc)

    def body():
        for off in touched:
            yield from k.touch(th, vmr, off, write=True)
        t0 = th.now
        yield from f.pm.mark_and_clear_dirty_ptes(th)
        body.elapsed = th.now - t0

    m.env.process(body())
    m.run(RUN_NS)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(vmr.ptes) == 10 and len(proc.pt_chunks) == 10
    assert grown < 200_000  # bytes: 10 PTEs, not a million
    walk = 10 * PT_ENTRIES * c.ns("pte_walk_ns_per_entry") + (npages // PT_ENTRIES + 2) * c.ns(
        "pte_walk_ns_per_level"
    )
    expected = (
        2 * c.ns("lock_pair_uncontended_ns")
        + c.ns("vmr_scan_ns_per_vmr")
        + walk
        + 10 * c.ns("cacheline_transfer_ns")
    )
    assert body.elapsed == approx(expected)
