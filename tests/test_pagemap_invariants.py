"""The page-map invariants of akaros-pagemap.md 5.3, asserted while the simulation runs (issue part 5).

Part (a) builds, for each invariant the model checks, a small state that breaks it and
shows that the run stops with an :class:`InvariantViolation` naming the simulated time,
the operation (``Thread.op``, set by the Kernel entry point), the design and the page.
Expected times are sums of cost-table entries, written out per scenario; every
scenario starts its operation at ``T0`` on an idle thread, so the time is ``T0`` plus
the work done up to the check (``env.now`` at the check: work charged but not yet
synced is not included).

Part (b) runs seeded random mixes of every operation on every design and checks that
no invariant fires and that the page-cache state is conserved once the workers stop.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from pmsim import probes
from pmsim.costs import CostTable
from pmsim.designs import designs
from pmsim.errors import InvariantViolation
from pmsim.kernel.system import Kernel
from pmsim.kernel.vm import PROT_READ, PROT_WRITE
from pmsim.machine import Machine
from pmsim.pagecache.page import PG_DIRTY, PG_LOCKED, PG_PAGEMAP, PG_REMOVAL, PG_UPTODATE, Page
from pmsim.pagecache.radix import REFCNT_MAX, RadixTree

COSTS = {
    "syscall_entry_exit_ns": 100,
    "lock_pair_uncontended_ns": 10,
    "cacheline_transfer_ns": 50,
    "cas_remote_ns": 100,
    "cas_uncontended_ns": 5,
    "radix_lookup_ns_per_level": 10,
    "rcu_read_section_ns": 1,
    "page_alloc_ns": 80,
    "slab_alloc_ns": 50,
    "page_copy_4k_ns": 400,
    "page_zero_4k_ns": 250,
    "tmpfs_readpage_sleep_us": 1,
    "radix_walk_ns_per_slot": 2,
    "vmr_scan_ns_per_vmr": 5,
    "nvme_latency_sigma": 0,
}
T0 = 10_000.0  # every scripted operation starts here
UNTIL = 200e6
RW = PROT_READ | PROT_WRITE
OLD_NEW = ["old", "new"]
NEW_DESIGNS = [n for n, cls in designs().items() if "fsync" in cls.entry_points]


# ============================================================================ helpers
def setup(design, nr_pages=64, store="tmpfs", warm=(), cores=2):
    """A kernel of ``design`` with round costs and one file; ``warm`` pages resident."""
    c = CostTable(COSTS)
    m = Machine(cores=cores, costs=c, seed=0)
    k = Kernel(m, design)
    f = k.file("f", nr_pages, store)
    k.warm(f, warm)
    return c, m, k, f


def start(m, gen_fn, at=T0):
    """Run the generator ``gen_fn()`` from simulated time ``at``."""

    def body():
        yield m.env.timeout(at)
        yield from gen_fn()

    m.env.process(body())


def is_old(design) -> bool:
    return "fsync" not in designs()[design].entry_points


def context(msg: str) -> dict:
    """The t, op, design and page fields of a violation message (None where absent)."""
    found = {}
    for key in ("t", "op", "design", "page"):
        hit = re.search(rf"(?<![\w]){key}=([^\s:]+)", msg)
        found[key] = hit.group(1) if hit else None
    return found


def expect_violation(m, *, t, op, design, page, detail, until=UNTIL) -> str:
    """Run; the run must stop with a violation whose message starts with exactly
    ``t=<t>ns op=<op> design=<design> page=<page>:`` and goes on with ``detail``."""
    with pytest.raises(InvariantViolation) as info:
        m.run(until)
    msg = str(info.value)
    head = re.match(r"t=(\S+)ns op=(\S+) design=(\S+) page=(\S+): (.*)$", msg)
    assert head, msg
    assert head.groups()[:4] == (f"{t:.0f}", str(op), design, str(page)), msg
    assert detail in head[5], msg
    return msg


# Times of the points the scenarios break at (ref 2.2, 2.3, 2.5; docstrings of the
# designs' functions say where each one syncs its charged work).
def find_cas_at(c, design):
    """A read() hit on a warm page in a depth-1 tree: when the slot CAS is issued.
    OLD: syscall, pm_lock (uncontended pair), radix walk; NEW: syscall, RCU section, walk."""
    n = c.ns
    lock = n("lock_pair_uncontended_ns") if is_old(design) else n("rcu_read_section_ns")
    return T0 + n("syscall_entry_exit_ns") + lock + n("radix_lookup_ns_per_level")


def find_returned_at(c, design):
    """... when pm_find_page returns: OLD syncs the CAS (a never-touched line: cas_remote)
    at spin_unlock; NEW leaves it charged."""
    return find_cas_at(c, design) + (c.ns("cas_remote_ns") if is_old(design) else 0)


def put_checked_at(c, design):
    """... when a read()'s pm_put_page runs its asserts: it syncs first (the CAS latency NEW
    left charged, then the page copy), so the slot is read when the put runs."""
    cas = 0 if is_old(design) else c.ns("cas_remote_ns")
    return find_returned_at(c, design) + cas + c.ns("page_copy_4k_ns")


def miss_readpage_at(c, design):
    """A read() of a page of an empty tree: when readpage is called. A miss (OLD: one
    pm_lock round trip), half a page allocation, the insert under pm_lock / pm_qlock
    (one level created, one node allocated) and the item store (an RMW on a new line)."""
    n = c.ns
    miss = n("lock_pair_uncontended_ns") if is_old(design) else n("rcu_read_section_ns")
    return (
        T0
        + n("syscall_entry_exit_ns")
        + miss
        + n("page_alloc_ns") / 2
        + n("lock_pair_uncontended_ns")
        + n("radix_lookup_ns_per_level")
        + n("slab_alloc_ns")
        + n("cacheline_transfer_ns")
    )


def punch_entered_at(c):
    """punch_hole: syscall, then write_metadata's uncontended f->qlock round trip."""
    return T0 + c.ns("syscall_entry_exit_ns") + c.ns("lock_pair_uncontended_ns")


def test_cost_overrides_are_in_effect():
    c = CostTable(COSTS)
    for name, value in COSTS.items():
        scale = 1000 if name.endswith("_us") else 1
        if name != "nvme_latency_sigma":
            assert c.ns(name) == value * scale


# ============================================= (a) one broken state per 5.3 invariant
# --- row 1: the slot refcount is > 0 after every increment and before every decrement
@pytest.mark.parametrize("design", OLD_NEW)
def test_refcount_overflowing_11_bits_on_find_stops_the_run(design):
    """pm_slot_inc_refcnt: past REFCNT_MAX (2047) the 11-bit field wraps to 0, which the
    C assert catches after the increment; the model stops at the CAS of pm_find_page."""
    c, m, k, f = setup(design, warm=[7])
    f.pm.tree.slots[7].refcnt = REFCNT_MAX
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 7))
    expect_violation(
        m,
        t=find_cas_at(c, design),
        op="read",
        design=design,
        page=7,
        detail=f"slot refcount overflows {REFCNT_MAX}",
    )


@pytest.mark.parametrize("design", OLD_NEW)
def test_refcount_at_the_11_bit_limit_is_allowed(design):
    """The boundary: 2046 users plus one more reach 2047, which fits; the put brings it back."""
    c, m, k, f = setup(design, warm=[7])
    f.pm.tree.slots[7].refcnt = REFCNT_MAX - 1
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 7))
    m.run(UNTIL)
    assert f.pm.tree.slots[7].refcnt == REFCNT_MAX - 1


@pytest.mark.parametrize("design", OLD_NEW)
def test_put_of_a_page_whose_slot_refcount_is_zero_stops_the_run(design):
    """pm_put_page asserts refcnt > 0 before its decrement (rows 1 and 3): the read's own
    reference is lost (refcnt forced to 0) between pm_load_page and pm_put_page."""
    c, m, k, f = setup(design, warm=[3])
    pm = f.pm

    def load_then_lose_ref(load, th, index):
        page = yield from load(th, index)
        page.slot.refcnt = 0
        return page

    probes.attach(pm, "pm_load_page", load_then_lose_ref)
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 3))
    expect_violation(
        m,
        t=put_checked_at(c, design),
        op="read",
        design=design,
        page=3,
        detail="slot refcount would go negative",
    )


# --- row 2: the page in the slot is the page being put or loaded; pg_tree_slot == tree_slot
@pytest.mark.parametrize("design", OLD_NEW)
def test_found_page_with_a_wrong_back_pointer_stops_the_run(design):
    """pm_find_page asserts page->pg_tree_slot == tree_slot after its CAS."""
    c, m, k, f = setup(design, warm=[5, 6])
    f.pm.tree.slots[5].page.slot = f.pm.tree.slots[6]
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 5))
    expect_violation(
        m,
        t=find_cas_at(c, design),
        op="read",
        design=design,
        page=5,
        detail="page->pg_tree_slot != tree_slot after find",
    )


@pytest.mark.parametrize("design", OLD_NEW)
def test_put_of_a_page_its_slot_no_longer_holds_stops_the_run(design):
    """pm_put_page asserts that its slot holds the page being put: here the slot was
    given another page while the read held this one."""
    c, m, k, f = setup(design, warm=[3])
    pm = f.pm

    def load_then_swap(load, th, index):
        page = yield from load(th, index)
        impostor = Page(index)
        impostor.slot = page.slot
        page.slot.page = impostor
        return page

    probes.attach(pm, "pm_load_page", load_then_swap)
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 3))
    expect_violation(
        m,
        t=put_checked_at(c, design),
        op="read",
        design=design,
        page=3,
        detail="the slot does not hold this page",
    )


# --- row 3: a page held by a caller has a slot refcount > 0
@pytest.mark.parametrize("design", OLD_NEW)
def test_load_of_a_found_page_without_a_slot_ref_stops_the_run(design):
    """pm_load_page asserts the found page's slot refcount and page right after the find."""
    c, m, k, f = setup(design, warm=[9])
    pm = f.pm

    def find_then_lose_ref(find, th, index):
        page = yield from find(th, index)
        page.slot.refcnt = 0
        return page

    probes.attach(pm, "pm_find_page", find_then_lose_ref)
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 9))
    expect_violation(
        m,
        t=find_returned_at(c, design),
        op="read",
        design=design,
        page=9,
        detail="found page without a slot ref",
    )


# --- row 4: readpage succeeds and sets PG_UPTODATE
@pytest.mark.parametrize("design", OLD_NEW)
def test_readpage_that_does_not_set_uptodate_stops_the_run(design):
    """load_locked_page asserts PG_UPTODATE after readpage: a readpage that sleeps like
    tmpfs's (zero the page, kthread_usleep) but forgets the flag."""
    c, m, k, f = setup(design)

    def readpage_without_uptodate(_readpage, th, page):
        yield from f.store.readpage(th)

    probes.attach(f, "readpage", readpage_without_uptodate)
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 11))
    t = miss_readpage_at(c, design) + c.ns("page_zero_4k_ns") + c.ns("tmpfs_readpage_sleep_us")
    expect_violation(
        m, t=t, op="read", design=design, page=11, detail="readpage returned without PG_UPTODATE"
    )


# --- row 5: PG_LOCKED is clear when sem_down(pg_sem) returns
@pytest.mark.parametrize("design", OLD_NEW)
def test_page_lock_taken_while_pg_locked_is_set_stops_the_run(design):
    """lock_page asserts PG_LOCKED is clear once it owns pg_sem: a resident page that is
    not up to date, whose semaphore is free but whose PG_LOCKED was left set (an
    unlock_page that did not clear it). The reader takes pg_sem on the fast path."""
    c, m, k, f = setup(design, warm=[4])
    page = f.pm.tree.slots[4].page
    page.flags = PG_PAGEMAP | PG_LOCKED
    page.sem = m.qlock("page_lock")
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 4))
    # NEW syncs its find's CAS when sem_down starts; OLD synced it at spin_unlock.
    t = find_cas_at(c, design) + c.ns("cas_remote_ns")
    expect_violation(
        m,
        t=t,
        op="read",
        design=design,
        page=4,
        detail="PG_LOCKED set when sem_down(pg_sem) returned",
    )


# --- row 6: a PM page has PG_PAGEMAP cleared before it is freed
@pytest.mark.parametrize("design", OLD_NEW)
def test_freeing_a_page_that_still_has_pg_pagemap_stops_the_run(design):
    """page_decref asserts !PG_PAGEMAP: a hole punch whose removal frees the page with
    the flag still set (page_decref wrapped to set it back first)."""
    c, m, k, f = setup(design, warm=[6])
    pm = f.pm

    def decref_with_pagemap(decref, th, page):
        page.flags |= PG_PAGEMAP
        return decref(th, page)

    probes.attach(pm, "page_decref", decref_with_pagemap)
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 6, 1))
    n = c.ns
    # the removal lock (pm_lock / pm_qlock), a one-slot walk reading one struct page, and
    # NEW's pm_lock round trip in pm_has_vmr_with_page; the CAS is still charged when
    # page_decref runs.
    locks = 1 if is_old(design) else 2
    walk = n("radix_walk_ns_per_slot") + n("page_struct_read_ns")
    t = punch_entered_at(c) + locks * n("lock_pair_uncontended_ns") + walk
    expect_violation(
        m,
        t=t,
        op="punch_hole",
        design=design,
        page=6,
        detail="page_decref of a page with PG_PAGEMAP set",
    )


# --- row 7: while the qlock (OLD: pm_lock) is held, every radix item has a non-NULL page
@pytest.mark.parametrize("design", OLD_NEW)
def test_radix_item_without_a_page_in_remove_or_zero_stops_the_run(design):
    """__remove_or_zero_cb asserts the item has a page (OLD under pm_lock, NEW under
    pm_qlock): the slot of page 2 has lost its page but is still in the tree."""
    c, m, k, f = setup(design, warm=[2])
    f.pm.tree.slots[2].page = None
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 0, 8))
    lock = "pm_lock" if is_old(design) else "qlock"
    expect_violation(
        m,
        t=punch_entered_at(c),
        op="punch_hole",
        design=design,
        page=2,
        detail=f"radix item without a page {'under' if is_old(design) else 'while the'} {lock}",
    )


@pytest.mark.parametrize("design", NEW_DESIGNS)
def test_radix_item_without_a_page_in_writeback_stops_the_run(design):
    """__writeback_cb asserts every item has a page (pm_qlock held). fsync of a dirty
    nvme file: sync_metadata's f->qlock round trip, pm_qlock, then mark_and_clear_dirty_ptes
    and shootdown_vmrs (one pm_lock round trip each, no VMRs), then the walk reaches the
    page-less slot."""
    c, m, k, f = setup(design, store="nvme", warm=[3])
    f.dirty = True
    f.pm.tree.slots[3].page = None
    th = m.thread("a", 0)
    start(m, lambda: k.fsync(th, f))
    t = T0 + c.ns("syscall_entry_exit_ns") + 4 * c.ns("lock_pair_uncontended_ns")
    expect_violation(
        m,
        t=t,
        op="fsync",
        design=design,
        page=3,
        detail="radix item without a page while the qlock is held",
    )


@pytest.mark.parametrize("design", NEW_DESIGNS)
def test_radix_item_without_a_page_in_free_unused_stops_the_run(design):
    """__flush_unused_cb asserts every item has a page (pm_qlock held): reclaim."""
    c, m, k, f = setup(design, warm=[12])
    f.pm.tree.slots[12].page = None
    th = m.thread("a", 0)
    start(m, lambda: k.reclaim(th))
    expect_violation(
        m,
        t=T0 + c.ns("syscall_entry_exit_ns"),
        op="reclaim",
        design=design,
        page=12,
        detail="radix item without a page while the qlock is held",
    )


@pytest.mark.parametrize("design", NEW_DESIGNS)
def test_reclaim_does_not_free_a_page_whose_refcount_rose_after_its_check(design):
    """__flush_unused_cb reads the slot word once, skips it if its refcount is not 0, and
    CASes against the value it read: a reader whose find lands between that read and the
    CAS makes the CAS fail, and the page stays (rows 1 and 3: a page held by a caller keeps
    a slot ref, so it is never freed). Reclaim of one warm page reads the word at
    T0 + syscall and CASes once its pm_qlock pair and the walk are synced; a reader started
    at T0 on another core issues its find CAS inside that window."""
    c, m, k, f = setup(design, warm=[5])
    n = c.ns
    read_at = T0 + n("syscall_entry_exit_ns")
    cas_at = read_at + n("lock_pair_uncontended_ns") + 6 * n("radix_walk_ns_per_slot")  # slots 0-5
    assert read_at < find_cas_at(c, design) < cas_at
    freed = []

    def decref_spy(decref, th, page):
        freed.append((page.index, page.slot.refcnt))
        return decref(th, page)

    probes.attach(f.pm, "page_decref", decref_spy)
    reclaimer, reader = m.thread("reclaimer", 0), m.thread("reader", 1)
    start(m, lambda: k.reclaim(reclaimer))
    start(m, lambda: k.read(reader, f, 5))
    m.run(UNTIL)
    assert freed == []
    assert m.recorder.counters["pages_reclaimed"] == 0
    slot = f.pm.tree.slots[5]
    assert slot.page is not None and not slot.page.freed and slot.refcnt == 0


# --- row 8: refcount 0 at destroy; the tree is empty before radix_tree_destroy
def _release_at_t0(m, k, f):
    """The file's last reference goes at T0; pm_destroy runs from the first grace period's
    callbacks, at rcu_gp_min_period_ms (every core idle or in user space: the GP ends at once)."""
    m.start_rcu()  # at t=0 in OLD too, which has no other RCU user
    th = m.thread("a", 0)

    def release():
        k.release(th, f)
        return
        yield

    start(m, release)


@pytest.mark.parametrize("design", OLD_NEW)
def test_destroy_of_a_page_map_with_a_slot_still_in_use_stops_the_run(design):
    """__destroy_cb asserts refcnt == 0. The callback runs in no thread: op is None."""
    c, m, k, f = setup(design, warm=[2, 5])
    f.pm.tree.slots[5].refcnt = 1  # a leaked reference
    _release_at_t0(m, k, f)
    expect_violation(
        m,
        t=c.ns("rcu_gp_min_period_ms"),
        op=None,
        design=design,
        page=5,
        detail="pm_destroy: slot refcount 1 != 0",
    )
    assert 5 in f.pm.tree.slots and 2 not in f.pm.tree.slots  # page 2 went first


@pytest.mark.parametrize("design", OLD_NEW)
def test_destroy_that_leaves_an_item_in_the_tree_stops_the_run(design):
    """radix_tree_destroy panics on a non-empty tree: an item the walk cannot see
    (its resident bit cleared) survives __destroy_cb."""
    c, m, k, f = setup(design, warm=[2, 5])
    f.pm.tree.resident[5] = False
    _release_at_t0(m, k, f)
    expect_violation(
        m,
        t=c.ns("rcu_gp_min_period_ms"),
        op=None,
        design=design,
        page="-",
        detail="radix_tree_destroy: tree not empty",
    )


# --- row 9: the page index range does not wrap
@pytest.mark.parametrize("nr", [0, -1])
@pytest.mark.parametrize("design", OLD_NEW)
def test_empty_or_backwards_range_in_remove_or_zero_stops_the_run(design, nr):
    """pm_remove_or_zero_pages asserts end > start (so an empty range fails too) before
    taking its lock."""
    c, m, k, f = setup(design, warm=[20])
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 20, nr))
    expect_violation(
        m,
        t=punch_entered_at(c),
        op="punch_hole",
        design=design,
        page=20,
        detail="pages wraps or is empty",
    )


@pytest.mark.parametrize("design", OLD_NEW)
def test_range_that_wraps_as_unsigned_long_in_remove_or_zero_stops_the_run(design):
    """In C, start + nr is unsigned long arithmetic: nr = ULONG_MAX makes end = start - 1,
    and the assert fires. Nothing may be removed."""
    c, m, k, f = setup(design, warm=[20, 30])
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 20, 2**64 - 1))
    expect_violation(
        m,
        t=punch_entered_at(c),
        op="punch_hole",
        design=design,
        page=20,
        detail="pages wraps or is empty",
    )
    assert {20, 30} <= set(f.pm.tree.slots)


def test_backwards_range_in_remove_contig_stops_the_run_under_pm_lock():
    """pm_remove_contig (a4d7239a) asserts index + nr > index after atomic_swap(pm_removal)
    (a flags-word RMW) and spin_lock(pm_lock)."""
    design = "old_remove_contig"
    c, m, k, f = setup(design, warm=[20])
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 20, -1))
    t = punch_entered_at(c) + c.ns("cacheline_transfer_ns")
    expect_violation(
        m,
        t=t,
        op="punch_hole",
        design=design,
        page=20,
        detail="pm_remove_contig: range of -1 pages wraps",
    )


def test_empty_range_in_remove_contig_returns_at_once():
    """pm_remove_contig returns 0 for nr == 0 before its assert: no violation, nothing removed."""
    c, m, k, f = setup("old_remove_contig", warm=[20])
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 20, 0))
    m.run(UNTIL)
    assert 20 in f.pm.tree.slots and m.recorder.counters["pages_removed"] == 0
    assert f.pm.pm_removal == 0 and f.pm.pm_lock.holder is None


# --- row 10: OLD, refcount 0 when a page is finally removed (warn only)
def test_remove_contig_warns_but_removes_a_page_with_an_unexpected_ref():
    """pm_remove_contig's last pass only warns about a slot refcount != 0 and removes the
    page anyway. The ref appears while pm_lock is dropped for the dirty page's writeback."""
    c, m, k, f = setup("old_remove_contig", warm=[4])
    slot = f.pm.tree.slots[4]
    slot.page.flags |= PG_DIRTY

    def writepage_then_ref(write, th, page):
        slot.refcnt = 1
        yield from write(th, page)

    probes.attach(f, "writepage", writepage_then_ref)
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 4, 1))
    m.run(UNTIL)
    counters = m.recorder.counters
    assert counters["warn_remove_contig_refcnt"] == 1
    assert counters["pages_removed"] == 1 and counters["io_writes"] == 1
    assert 4 not in f.pm.tree.slots and f.pm.num_pages == 0


# --- row 11: insert never overwrites (-EEXIST); deleting an empty slot
@pytest.mark.parametrize("design", OLD_NEW)
def test_concurrent_misses_insert_once_and_the_loser_gets_eexist(design):
    """Two readers miss page 7 at the same time: one insert wins, the other's radix_insert
    returns -EEXIST; it frees its page and finds the winner's. One readpage."""
    c, m, k, f = setup(design)
    got = {}

    def load_and_record(load, th, index):
        page = yield from load(th, index)
        got[th.name] = page
        return page

    probes.attach(f.pm, "pm_load_page", load_and_record)
    for i in range(2):
        th = m.thread(f"r{i}", i)
        start(m, lambda th=th: k.read(th, f, 7))
    m.run(UNTIL)
    assert m.recorder.counters["pm_insert_eexist"] == 1
    assert m.recorder.counters["io_reads"] == 1
    assert got["r0"] is got["r1"] is f.pm.tree.slots[7].page
    assert f.pm.num_pages == 1 and f.pm.tree.slots[7].refcnt == 0


def test_radix_insert_never_overwrites_and_delete_of_an_empty_slot_is_refused():
    """radix_insert of a present key is -EEXIST and leaves the item. radix_delete of an
    absent key: the C code warns; the model is stricter and stops (no model path does it)."""
    c, m, k, f = setup("new")
    tree = RadixTree(m, 64)
    first = object()
    slot, allocs = tree.insert(9, first)
    assert allocs == 1
    assert tree.insert(9, object()) == (None, 0)
    assert tree.slots[9] is slot and slot.page is first and len(tree) == 1
    tree.delete(9)
    with pytest.raises(InvariantViolation, match="page=9: radix_delete of an empty slot"):
        tree.delete(9)


# --- row 12: sem_up: nr_signals < 0 has a waiter, otherwise the waiter list is empty
def _punch_with_corrupt_qlock(design, corrupt):
    """NEW punch_hole of a non-resident page (an empty walk); ``corrupt(pm)`` runs at
    the walk, while pm_qlock is held."""
    c, m, k, f = setup(design)
    pm = f.pm

    def walk_then_corrupt(walk, th, start_, end):
        corrupt(pm)
        return walk(th, start_, end)

    probes.attach(pm, "_walk", walk_then_corrupt)
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 30, 1))
    # pm_qlock's uncontended acquisition is synced at its release
    return m, punch_entered_at(c) + c.ns("lock_pair_uncontended_ns")


def _lose_a_waiter(pm):
    pm.pm_qlock.nr_signals -= 1  # a sem_down that counted itself but never queued


def test_qunlock_with_negative_count_and_no_waiter_stops_the_run():
    m, _ = _punch_with_corrupt_qlock("new", _lose_a_waiter)
    with pytest.raises(InvariantViolation, match="pm_qlock: nr_signals -1 < 0 with no waiter"):
        m.run(UNTIL)


def test_qunlock_with_a_waiter_but_a_nonnegative_count_stops_the_run():
    """A reader blocks on pm_qlock during a long writeback (an nvme writepage under the
    qlock); its decrement is then lost, so sem_up sees waiters with nr_signals == 0."""
    c, m, k, f = setup("new", store="nvme", warm=[3])
    f.dirty = True
    f.pm.tree.slots[3].page.flags |= PG_DIRTY
    a, b = m.thread("a", 0), m.thread("b", 1)
    start(m, lambda: k.fsync(a, f))
    start(m, lambda: k.read(b, f, 40), at=T0 + 1000)

    def corrupt():
        yield m.env.timeout(T0 + 10_000)
        assert len(f.pm.pm_qlock.waiters) == 1
        f.pm.pm_qlock.nr_signals += 1

    m.env.process(corrupt())
    with pytest.raises(InvariantViolation, match="pm_qlock: nr_signals 0 >= 0 with waiters"):
        m.run(UNTIL)


# --- row 13: RCU grace-period counters differ by at most 1
def _rcu_gp_overtaken():
    """A core stays in the kernel across the first grace period (2 x the min period);
    halfway through, gpnum is bumped. The GP ends when that core passes smp_idle."""
    c = CostTable(COSTS)
    m = Machine(cores=1, costs=c, seed=0)
    rcu = m.start_rcu()
    period = c.ns("rcu_gp_min_period_ms")
    th = m.thread("a", 0)

    def long_kernel_path():
        th.kernel_enter()
        th.pending += 2 * period
        yield from th.sync()
        yield from th.kernel_exit()

    def corrupt():
        yield m.env.timeout(1.5 * period)
        assert rcu.tardy  # the GP is waiting for core 0
        rcu.gpnum += 1

    m.env.process(long_kernel_path())
    m.env.process(corrupt())
    return m, 2 * period


def test_grace_period_counters_more_than_one_apart_stop_the_run():
    """rcu.c: gp_in_progress asserts gpnum - completed <= 1; the model checks it as a GP ends."""
    m, _ = _rcu_gp_overtaken()
    with pytest.raises(InvariantViolation, match=r"RCU: gpnum 2 - completed 0 > 1"):
        m.run(UNTIL)


# --- not a 5.3 row: Akaros's pre_block_check (a kthread never sleeps holding a spinlock)
def _readpage_under_pm_lock(design):
    """A readpage that runs with pm_lock held: the store's sleep is a block with a spinlock."""
    c, m, k, f = setup(design)

    def readpage_holding_pm_lock(_readpage, th, page):
        yield from f.pm.pm_lock.acquire(th)
        yield from f.store.readpage(th)

    probes.attach(f, "readpage", readpage_holding_pm_lock)
    th = m.thread("a", 0)
    start(m, lambda: k.read(th, f, 11))
    t = miss_readpage_at(c, design) + c.ns("lock_pair_uncontended_ns") + c.ns("page_zero_4k_ns")
    return m, t


@pytest.mark.parametrize("design", OLD_NEW)
def test_blocking_while_holding_a_spinlock_stops_the_run(design):
    """Thread.block refuses to sleep with a spinlock held (kthread.c: pre_block_check)."""
    m, _ = _readpage_under_pm_lock(design)
    with pytest.raises(InvariantViolation, match=r"blocks holding 1 spinlock"):
        m.run(UNTIL)


# --- issue part 5: every violation names the time, the operation, the design, the page
CONTEXT_CASES = {
    # case: (scenario -> (machine, expected t), the fields the message must carry)
    "block_holding_spinlock": (
        lambda: _readpage_under_pm_lock("new"),
        {"op": "read", "design": "new", "page": "-"},
    ),  # Thread.block knows no page
    "qunlock_no_waiter": (
        lambda: _punch_with_corrupt_qlock("new", _lose_a_waiter),
        {"op": "punch_hole", "design": "new"},
    ),
    "rcu_gp_counters": (_rcu_gp_overtaken, {}),  # a kthread's check: no operation, design or page
}


@pytest.mark.parametrize("case", list(CONTEXT_CASES))
def test_violations_below_the_page_map_also_name_time_operation_design_page(case):
    """Issue part 5 asks every violation to stop the run with the simulated time, the
    operation, the design and the page. Checks raised by the primitives (the sleep
    check of Thread.block, sem_up's, RCU's) must carry the fields that exist at that
    point: always t; op and design inside a kernel operation; the page where one is known."""
    scenario, fields = CONTEXT_CASES[case]
    m, t = scenario()
    with pytest.raises(InvariantViolation) as info:
        m.run(UNTIL)
    found = context(str(info.value))
    expected = {"t": f"{t:.0f}ns", **fields}
    assert {key: found[key] for key in expected} == expected, str(info.value)


# ============================== 5.1 item 7 / 5.2 item 2: a mapped PTE to a freed page
@pytest.mark.parametrize("vmr_foff", [0, 8])
@pytest.mark.parametrize("design", sorted(designs()))
def test_hole_punch_next_to_a_shared_mapping(design, vmr_foff):
    """Pages 0-15 resident; a shared mapping of file pages [vmr_foff, 16), every page
    faulted in; punch [4, 12). pm_remove_or_zero_pages (a4d7239a and NEW) zeroes
    every page a VMR covers and removes the rest. OLD pm_remove_contig unmaps only VMRs
    that map the first index (4): with the VMR at 8 it frees pages 8-11 under live PTEs,
    which hazard_freed_while_mapped counts (ref 5.1 item 7)."""
    c, m, k, f = setup(design, warm=range(16), cores=3)
    proc = k.process("p", cores=[1, 2])
    npages = 16 - vmr_foff
    vmr = k.map_now(proc, f, vmr_foff, npages, RW, True)
    k.prefault(vmr, range(npages))
    th = m.thread("a", 0)
    start(m, lambda: k.punch_hole(th, f, 4, 8))
    m.run(UNTIL)

    punched = set(range(4, 12))
    covered = punched & set(range(vmr_foff, 16))
    contig = designs()[design].punch_hole_fn == "pm_remove_contig"
    unmapped = covered if contig and vmr_foff <= 4 else set()
    if contig:
        removed, zeroed = punched, set()
        hazard = covered - unmapped
    else:
        removed, zeroed = punched - covered, covered
        hazard = set()
    counters = m.recorder.counters
    assert set(f.pm.tree.slots) == set(range(16)) - removed
    assert counters["pages_removed"] == len(removed)
    assert counters["pages_zeroed"] == len(zeroed)
    assert counters["hazard_freed_while_mapped"] == len(hazard)
    stale = {vmr_foff + off for off, pte in vmr.ptes.items() if pte.page.freed}
    assert stale == hazard
    assert {vmr_foff + off for off in vmr.ptes} == set(range(vmr_foff, 16)) - unmapped


# ===================================================================== (b) random soak
SOAK_STOP = 3e6  # workers issue no operation after 3 ms
SOAK_MARGIN = 100e6  # ... and the run goes on long enough for the last ones to finish
SOAK_SEEDS = list(range(16))


def soak(design: str, seed: int) -> dict:
    """Random operations by 4-8 threads of one or two processes (RUNNING_M, and maybe a
    RUNNING_S with one core that its 1-2 threads share), on a tmpfs file (and for NEW an
    nvme file too), until SOAK_STOP. Returns the pieces the checks need."""
    shape = np.random.default_rng(seed)
    m = Machine(cores=8, costs=CostTable({}), seed=seed)
    k = Kernel(m, design)
    new = "fsync" in k.design.entry_points
    files = [k.file("tmp", 40, "tmpfs")]
    warm = sorted(shape.choice(40, 20, replace=False).tolist())
    k.warm(files[0], warm)
    nwarm = len(warm)
    if new:
        files.append(k.file("disk", 24, "nvme"))
        warm = sorted(shape.choice(24, 12, replace=False).tolist())
        k.warm(files[1], warm, dirty=warm[::2])
        for idx in warm[::2]:
            assert files[1].pm.tree.slots[idx].page.flags & PG_DIRTY
        files[1].dirty = True
        nwarm += len(warm)
    nthreads = int(shape.integers(4, 9))
    nb = int(shape.integers(1, 3)) if shape.integers(2) else 0  # threads of the SCP
    na = nthreads - nb
    procs = [k.process("A", list(range(na)), "RUNNING_M")]
    if nb:
        procs.append(k.process("B", [na], "RUNNING_S"))
    vmrs = {}
    for p in procs:  # long-lived mappings: a shared one of part of each file, a private one
        vmrs[p] = []
        for f in files:
            lo = int(shape.integers(0, f.nr_pages // 2))
            n = int(shape.integers(4, f.nr_pages // 2))
            v = k.map_now(p, f, lo, n, RW, True)
            resident = [o for o in range(n) if f.pm.tree.resident[lo + o]]
            k.prefault(v, resident[::2], dirty=resident[::4])
            vmrs[p].append(v)
        lo = int(shape.integers(0, files[0].nr_pages - 8))
        vmrs[p].append(k.map_now(p, files[0], lo, 8, RW, False))
    freed_in_use = []  # (file, index, slot refcount) of PM pages freed while in use
    for f in files:

        def decref_spy(decref, th, page, f=f):
            if page.slot is not None and page.slot.refcnt:
                freed_in_use.append((f.name, page.index, page.slot.refcnt))
            return decref(th, page)

        probes.attach(f.pm, "page_decref", decref_spy)
    ops = ["read", "read", "write", "touch", "touch", "touch", "punch", "mmap"]
    if new:
        ops += ["fsync", "reclaim"]
    ran: Counter = Counter()
    done = []

    def worker(th, proc):
        r = m.rng(f"soak.{th.name}")
        while m.env.now < SOAK_STOP:
            op = ops[int(r.integers(len(ops)))]
            f = files[int(r.integers(len(files)))]
            if op == "read":
                yield from k.read(th, f, int(r.integers(f.nr_pages)), int(r.integers(1, 4)))
            elif op == "write":
                yield from k.write(th, f, int(r.integers(f.nr_pages)), int(r.integers(1, 3)))
            elif op == "touch":
                v = vmrs[proc][int(r.integers(len(vmrs[proc])))]
                yield from k.touch(th, v, int(r.integers(v.npages)), bool(r.integers(2)))
            elif op == "punch":
                yield from k.punch_hole(th, f, int(r.integers(f.nr_pages)), int(r.integers(1, 7)))
            elif op == "mmap":
                lo = int(r.integers(f.nr_pages))
                n = int(r.integers(1, min(8, f.nr_pages - lo) + 1))
                v = yield from k.mmap(th, proc, f, lo, n, RW, bool(r.integers(2)))
                for _ in range(int(r.integers(1, 4))):
                    yield from k.touch(th, v, int(r.integers(n)), bool(r.integers(2)))
                yield from k.munmap(th, v)
            elif op == "fsync":
                yield from k.fsync(th, files[1])
            else:
                yield from k.reclaim(th)
            ran[op] += 1
            yield m.env.timeout(float(r.integers(100, 3000)))  # user time
        done.append(th.name)
        if th.core.thread is th:  # the thread exits: its core goes to whoever waits for it
            th.core.give_up()

    threads = [(m.thread(f"a{i}", i, procs[0]), procs[0]) for i in range(na)]
    threads += [(m.thread(f"b{i}", na, procs[1]), procs[1]) for i in range(nb)]
    for th, p in threads:
        m.env.process(worker(th, p))
    m.run(SOAK_STOP + SOAK_MARGIN)
    return {
        "m": m,
        "k": k,
        "files": files,
        "procs": procs,
        "ran": ran,
        "ops": set(ops),
        "nthreads": len(threads),
        "done": done,
        "nwarm": nwarm,
        "freed_in_use": freed_in_use,
    }


def fingerprint(run: dict) -> tuple:
    """Everything a run measured: counters, every lock's statistics, the final page maps."""
    rec = run["m"].recorder
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
    pms = [(sorted(f.pm.tree.slots), f.pm.num_pages) for f in run["files"]]
    return tuple(sorted(rec.counters.items())), tuple(sorted(locks.items())), tuple(map(str, pms))


def _shared_ptes(procs, f):
    for p in procs:
        for v in p.vmrs:
            if v.shared and v.file is f:
                for off, pte in v.ptes.items():
                    yield v, off, pte


@pytest.mark.parametrize("seed", SOAK_SEEDS)
@pytest.mark.parametrize("design", sorted(designs()))
def test_random_operation_mix_keeps_the_page_cache_consistent(design, seed):
    """No invariant fires (m.run would raise), every worker stops, and once they are idle:
    the radix tree and its resident bitmap agree; every item has a live page with
    PG_PAGEMAP | PG_UPTODATE only among the checked flags, a back pointer to its slot and
    refcount 0; every lock is free; a page's mapcount is the number of shared PTEs to it;
    a shared PTE points at the resident page of its index, unless that page was freed
    under it (counted by hazard_freed_while_mapped); no page was freed with a slot ref
    (but in pm_remove_contig's warn-only case); each insert read its page once; and
    pm_num_pages is the inserts minus pm_remove_contig's removals only (ref 5.2 item 4;
    a4d7239a's pm_remove_or_zero_pages does not decrement it either)."""
    run = soak(design, seed)
    m, procs, files = run["m"], run["procs"], run["files"]
    counters = m.recorder.counters
    assert sorted(run["done"]) == sorted(set(run["done"])) and len(run["done"]) == run["nthreads"]
    assert set(run["ran"]) == run["ops"], run["ran"]  # every kind of operation ran

    stale_pages = set()
    for f in files:
        pm, tree = f.pm, f.pm.tree
        assert len(tree.slots) == int(tree.resident.sum())
        assert set(np.flatnonzero(tree.resident).tolist()) == set(tree.slots)
        for idx, slot in tree.slots.items():
            page = slot.page
            assert slot.refcnt == 0, (f.name, idx)
            assert page is not None and not page.freed and page.index == idx and page.slot is slot
            checked = page.flags & (PG_PAGEMAP | PG_UPTODATE | PG_LOCKED | PG_REMOVAL)
            assert checked == PG_PAGEMAP | PG_UPTODATE, (f.name, idx, page)
            assert page.sem is None or (page.sem.holder is None and not page.sem.waiters)
            mapped = sum(1 for _, _, pte in _shared_ptes(procs, f) if pte.page is page)
            assert page.mapcount == mapped, (f.name, idx)
        for v, off, pte in _shared_ptes(procs, f):
            assert pte.present
            slot = tree.slots.get(v.foff + off)
            if slot is None or slot.page is not pte.page:
                assert pte.page.freed, (f.name, v, off)
                stale_pages.add(id(pte.page))
        for lock in [pm.pm_lock, f.qlock] + ([pm.pm_qlock] if hasattr(pm, "pm_qlock") else []):
            assert lock.holder is None and not lock.waiters, lock.name
        assert set(pm.vmrs) == {v for p in procs for v in p.vmrs if v.file is f}
    for p in procs:
        for lock in (p.proc_lock, p.vmr_lock, p.pte_lock):
            assert lock.holder is None and not lock.waiters
    assert len(stale_pages) <= counters["hazard_freed_while_mapped"]
    # A PM page is freed with slot refcount 0, except pm_remove_contig's warn-only case.
    assert len(run["freed_in_use"]) == counters["warn_remove_contig_refcnt"], run["freed_in_use"]

    contig = designs()[design].punch_hole_fn == "pm_remove_contig"
    resident = sum(len(f.pm.tree.slots) for f in files)
    num_pages = sum(f.pm.num_pages for f in files)
    if contig:  # the only removal that decrements pm_num_pages
        assert num_pages == resident
        inserts = num_pages - run["nwarm"] + counters["pages_removed"]
    else:  # pm_remove_or_zero_pages (OLD a4d7239a and NEW) and free_unused do not
        assert num_pages == resident + counters["pages_removed"] + counters["pages_reclaimed"]
        inserts = num_pages - run["nwarm"]
    assert num_pages >= resident
    assert counters["io_reads"] == inserts  # every insert, and nothing else, reads its page


@pytest.mark.parametrize("design", ["old_remove_contig", "new"])
def test_soak_is_deterministic(design):
    """Same seed, same counters, lock statistics and page maps; another seed differs."""
    a, b = fingerprint(soak(design, 5)), fingerprint(soak(design, 5))
    assert a == b
    assert fingerprint(soak(design, 6)) != a
