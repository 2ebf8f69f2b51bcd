"""NEW: kern/src/pagemap.c at HEAD. Lock-free RCU lookups; ``pm_qlock`` serialises writers.

Lookups take no lock: an RCU read section (a compiler barrier), the radix walk and
the CAS loop on the slot word. Inserts, ``pm_remove_or_zero_pages``,
``pm_writeback_pages`` and ``pm_free_unused_pages`` hold the sleeping
``pm_qlock``; ``pm_lock`` now guards only the VMR list, and is taken per slot by
``pm_has_vmr_with_page`` and around the PTE walks of writeback. Empty radix
nodes are freed through ``call_rcu``. akaros-pagemap.md 2.2, 2.3, 2.8, 2.11 - 2.14, 6.2.
"""

from __future__ import annotations

from pmsim import hazards
from pmsim.designs.base import ULONG_LIMIT, PageMap
from pmsim.fastpath import fast_path
from pmsim.kernel.vm import PROT_WRITE
from pmsim.pagecache import versions
from pmsim.pagecache.page import PG_DIRTY, PG_UPTODATE
from pmsim.pagecache.radix import REFCNT_MAX, RadixTree
from pmsim.sync.rcu import Rcu

# Steps the lock_order rows below share (see PageMap.lock_order for the notation).
NEW_LOAD_MISS = (
    "rcu",  # pm_find_page misses: rcu_read_lock only (2.2 NEW)
    "*page_lock",  # sem_init(&pg_sem, 0) (2.5 step 2.3)
    "+pm_qlock", "-pm_qlock",  # pm_insert_page: qlock(pm_qlock) (2.3 NEW; 6.2)
    "readpage",  # load_locked_page, outside the PM locks (6.2 "pm_load_page miss")
    "-page_lock",  # unlock_page
)  # fmt: skip
# pm_writeback_pages on the fsync scenario (VMRs vA1, vP, vB, vA2, vR: tests/test_lock_order.py
# _fsync_setup): the part before the page walk.
NEW_WB_MARK_AND_SHOOT = (
    "+pm_qlock",  # pm_writeback_pages: qlock(pm_qlock) (2.13 step 1)
    "+pm_lock",  # mark_and_clear_dirty_ptes: spin_lock(pm_lock) (2.11 step 1)
    "+pte_lock@A", "-pte_lock@A",  # vA1 (PROT_WRITE|MAP_SHARED): whole-VMR walk; vP private: skipped
    "+pte_lock@B", "-pte_lock@B",  # vB
    "+pte_lock@A", "-pte_lock@A",  # vA2; vR read-only: skipped (2.11 step 2)
    "-pm_lock",
    "+pm_lock",  # shootdown_vmrs: spin_lock(pm_lock) (2.12)
    "tlbshootdown", "+proc_lock@A", "-proc_lock@A",  # vA1 flagged: proc_tlbshootdown(A) (3.4)
    "tlbshootdown", "+proc_lock@B", "-proc_lock@B",  # vB
    "tlbshootdown", "+proc_lock@A", "-proc_lock@A",  # vA2: A again, no de-dup by process (2.12)
    "-pm_lock",
)  # fmt: skip
SYNC_METADATA = (
    "+file_qlock", "-file_qlock",  # gtfs writeback_file -> sync_metadata: qlock(&f->qlock) (4.5)
)  # fmt: skip


class NewPageMap(PageMap):
    """The RCU + qlock page map of HEAD (1c95ea12 and later)."""

    name = "new"
    summary = "HEAD: RCU lock-free lookups, pm_qlock for insert/remove/writeback"
    locks = ("pm_lock", "pm_qlock", "page_lock")

    def __init__(self, machine, file):
        self.rcu = (
            machine.start_rcu()
        )  # (before PageMap.__init__ installs the fast path reading it)
        super().__init__(machine, file)
        self.pm_qlock = machine.qlock("pm_qlock")

    # --- lookups and inserts ---------------------------------------------------------
    def pm_find_page(self, th, index):
        """pm_find_page (NEW): ``rcu_read_lock``; seqcount read and radix walk; the CAS loop
        (refcount + 1 only); ``rcu_read_unlock``. No lock; retries on a changed word."""
        self.rcu.read_section(th)
        th.pending += self.tree.lookup_ns()
        slot = self.tree.slots.get(index)
        if slot is None:
            if not (th.pending or th.stolen):
                return None
            yield from th.sync()  # a miss reads the slot at its own time (an insert may be on)
            slot = self.tree.slots.get(index)
            if slot is None:
                return None
        return (yield from self._slot_get(th, slot, clear_removal=False))

    @fast_path(
        replaces="load_copy_put",
        inlines={
            "load_copy_put": PageMap.load_copy_put,
            "pm_load_page": PageMap.pm_load_page,
            "pm_find_page": pm_find_page,
            "rcu.read_section": Rcu.read_section,
            "tree.lookup_ns": RadixTree.lookup_ns,
            "_slot_get": PageMap._slot_get,
            "_slot_cas_ref": PageMap._slot_cas_ref,
            "_check_found": PageMap._check_found,
            "pm_put_page": PageMap.pm_put_page,
            "_put_ref": PageMap._put_ref,
        },
    )
    def load_copy_put_hit(self, th, index, copy_ns: float):
        """fs_file_read's step for one page (``load_copy_put``) as one generator: the bodies of
        pm_load_page, pm_find_page (NEW) with its RCU read section and radix lookup, its CAS loop
        (``_slot_get``, ``_slot_cas_ref``) and pm_put_page (``_put_ref``) copied in, with the
        same charges, syncs, CAS, asserts and counts in the same order. Anything but a hit on an
        up-to-date page goes on in pm_load_page's own code (``_load_page_not_hit``)."""
        # pm_find_page (NEW): rcu_read_lock .. unlock, radix lookup
        rcu = self.rcu
        th.pending += rcu.read_ns
        rcu.read_sections += 1
        tree = self.tree
        th.pending += tree.depth * tree.per_level_ns
        slot = tree.slots.get(index)
        page = None
        if slot is None and (th.pending or th.stolen):
            yield from th.sync()  # a miss reads the slot at its own time (an insert may be on)
            slot = tree.slots.get(index)
        if slot is not None:  # _slot_get: sync, then the CAS loop on the word
            yield from th.sync()
            page = slot.page
            if page is not None and slot.backptr_at > self.env.now:
                page = self._in_insert_window(th, slot, page)
            if page is not None:
                line = slot.line
                ok, _ = line.cas(th, slot.word)
                if not ok:  # the failed CAS returned the current value; the retry owns the line
                    page = slot.page
                    if page is not None:
                        line.retry_owned(th, slot.word)
                if page is not None:
                    slot.refcnt += 1
                    if slot.refcnt > REFCNT_MAX:
                        raise self.violation(th, index, f"slot refcount overflows {REFCNT_MAX}")
                    if page.slot is not slot:
                        raise self.violation(
                            th, index, "page->pg_tree_slot != tree_slot after find"
                        )
        # pm_load_page
        if page is not None and page.flags & PG_UPTODATE:
            if slot.refcnt <= 0 or slot.page is not page:  # _check_found
                raise self.violation(th, index, "pm_load_page: found page without a slot ref")
        else:
            page = yield from self._load_page_not_hit(th, index, page)
        th.pending += copy_ns  # memcpy_to_safe
        # pm_put_page: sync, the asserts, the atomic_add
        yield from th.sync()
        slot = page.slot
        if slot is None or slot.page is not page:
            raise self.violation(th, page.index, "pm_put_page: the slot does not hold this page")
        if slot.refcnt <= 0:
            raise self.violation(th, page.index, "pm_put_page: slot refcount would go negative")
        slot.line.rmw(th, slot.word)
        slot.refcnt -= 1

    def _free_radix_nodes(self, th, n: int) -> None:
        for _ in range(n):  # __radix_remove_slot: call_rcu(__rnode_free_rcu)
            self.rcu.call_rcu(th, None, self.cost.slab, self.tree.node_bytes)

    # --- pm_remove_or_zero_pages (2.8) ------------------------------------------------------
    def radix_writers_lock(self, index: int):
        """NEW: ``pm_qlock`` serialises radix writers (its comment: "for the radix tree nr_pgs")."""
        return self.pm_qlock

    def _remove_or_zero_cb(self, th, idx: int):
        """__remove_or_zero_cb (NEW): read the word, scan the VMRs (``pm_lock``), then CAS
        against the value read. A find/put pair inside that window leaves the word equal
        to the value read, and the CAS succeeds anyway (the ABA window, ref 5.2 item 2)."""
        slot = self.tree.slots[idx]
        page = slot.page
        if page is None:
            raise self.violation(th, idx, "radix item without a page while the qlock is held")
        yield from th.sync()
        read_at = self.env.now
        old = slot.value()
        mapped = yield from self.pm_has_vmr_with_page(th, idx)
        if mapped or old.refcnt:
            return self._keep_zeroed(th)
        yield from th.sync()
        line = slot.line
        equal = slot.value() == old
        aba = equal and line.changed_since(slot.word, read_at)
        ok, _ = line.cas(th, slot.word, equal=equal)
        if aba:
            self._aba_window(th, idx, page, read_at, ok)
        return self._free_yanked(th, slot, page) if ok else self._keep_zeroed(th)

    def _aba_window(self, th, idx: int, page, read_at: float, freed: bool) -> None:
        """Finds and puts changed the slot word inside the window and put it back. If a PTE
        now maps the page (a fault through a VMR that became ready after the scan) and the
        CAS frees it: ``aba_dangerous``; else ``aba_find_put`` (a read racing a truncate, which
        the C comments accept)."""
        trail = (
            hazards.step(None, f"__remove_or_zero_cb reads slot {idx} (refcount 0)", read_at),
            hazards.step(th, "pm_has_vmr_with_page found no ready VMR; the CAS succeeds on the"
                             " word a find and a put restored"),
        )  # fmt: skip
        if freed and page.mapcount:
            trail += (hazards.step(th, f"frees page {idx}, which {page.mapcount} PTE(s) map"),)
            hazards.occur(self.machine, "aba_dangerous", th, th.now - read_at, trail)
        else:
            hazards.occur(self.machine, "aba_find_put", th, th.now - read_at, trail)

    # --- writeback (2.11 - 2.13) -------------------------------------------------------------
    def mark_and_clear_dirty_ptes(self, th):
        """mark_and_clear_dirty_ptes: under ``pm_lock``, every PTE of every writable shared VMR
        (each under its proc's ``pte_lock``): a dirty PTE dirties its page and flags the VMR
        for a shootdown. The walk costs the VMR's size, not its dirty count. Its time, from the
        call to the return, is the ``pte_walk`` timing."""
        t0 = th.now
        yield from self.pm_lock.acquire(th, "mark_and_clear_dirty_ptes")
        th.pending += len(self.vmrs) * self.cost.vmr_scan
        for vmr in list(self.vmrs):
            if not (vmr.prot & PROT_WRITE and vmr.shared):
                continue
            yield from vmr.proc.pte_lock.acquire(th, "mark_and_clear_dirty_ptes")
            self.vmr_for_each(th, vmr, 0, ULONG_LIMIT, self._pm_mark_and_clear_dirty)
            yield from vmr.proc.pte_lock.release(th)
        yield from self.pm_lock.release(th)
        self.recorder.sample("pte_walk", th.now - t0)

    def _pm_mark_and_clear_dirty(self, th, vmr, off, pte) -> None:
        """__pm_mark_and_clear_dirty: a present dirty PTE dirties its page (a plain read of
        pg_flags first, then ``atomic_or``), loses its dirty bit, and flags its VMR for a
        shootdown."""
        if pte.present and pte.dirty:
            page = pte.page
            if not page.flags & PG_DIRTY:
                page.flags |= PG_DIRTY
                th.pending += self.cost.flags_rmw
            # pte_clear_dirty: a plain read-then-write of the PTE. The MMU only ever sets D and
            # D is already set, so no hardware update falls in between; the window that matters
            # is the remote TLBs still caching D until the shootdown is handled.
            pte.dirty = False
            pte.cleared = hazards.step(
                th, f"pte_clear_dirty on page {page.index} ({vmr.proc.name})"
            )
            vmr.shootdown_needed = True

    def shootdown_vmrs(self, th):
        """shootdown_vmrs: under ``pm_lock``, proc_tlbshootdown for every flagged VMR, with no
        de-duplication by process and no waiting for the IPIs. Timed as ``shootdown_vmrs``."""
        t0 = th.now
        yield from self.pm_lock.acquire(th, "shootdown_vmrs")
        th.pending += len(self.vmrs) * self.cost.vmr_scan
        for vmr in list(self.vmrs):
            if vmr.shootdown_needed:
                vmr.shootdown_needed = False
                yield from self.tlb.shootdown(th, vmr.proc)
        yield from self.pm_lock.release(th)
        self.recorder.sample("shootdown_vmrs", th.now - t0)

    def pm_writeback_pages(self, th):
        """pm_writeback_pages: ``qlock``; mark_and_clear_dirty_ptes; shootdown_vmrs; walk every
        resident page, writing each dirty one synchronously; flush (an empty TODO); ``qunlock``."""
        yield from self.pm_qlock.acquire(th, "pm_writeback_pages")
        yield from self.mark_and_clear_dirty_ptes(th)
        yield from self.shootdown_vmrs(th)
        queue: list = []
        for idx in self._walk(th, 0, self.file.nr_pages):
            yield from self._writeback_cb(th, idx, queue)
        yield from self.flush_queued_writebacks(th, queue)
        yield from self.pm_qlock.release(th)

    def _writeback_cb(self, th, idx: int, queue: list):
        """__writeback_cb: clear PG_DIRTY *before* writing, then queue_writeback."""
        page = self.tree.slots[idx].page
        if page is None:
            raise self.violation(th, idx, "radix item without a page while the qlock is held")
        if page.flags & PG_DIRTY:
            page.flags &= ~PG_DIRTY
            th.pending += self.cost.flags_rmw
            yield from self.queue_writeback(th, page, queue)
        elif page.uncovered is not None:
            versions.check_unseen(th, self.file, page, "writeback")

    def queue_writeback(self, th, page, queue: list):
        """queue_writeback: calls writepage synchronously (return value ignored)."""
        yield from self.file.writepage(th, page)

    def flush_queued_writebacks(self, th, queue: list):
        """flush_queued_writebacks: an empty ``TODO (WB)``."""
        return
        yield

    # --- pm_free_unused_pages (2.14) ------------------------------------------------------
    def pm_free_unused_pages(self, th):
        """pm_free_unused_pages: ``qlock``; ``__flush_unused_cb`` on every resident page; ``qunlock``."""
        yield from self.pm_qlock.acquire(th, "pm_free_unused_pages")
        for idx in self._walk(th, 0, self.file.nr_pages):
            removed = yield from self._flush_unused_cb(th, idx)
            if removed:
                self._radix_remove(th, idx)
        yield from self.pm_qlock.release(th)

    def _flush_unused_cb(self, th, idx: int):
        """__flush_unused_cb: skip pages in use; CAS the page out *before* the VMR check; put it
        back if a VMR covers it; else write it back if dirty (qlock held) and free it. While the
        page is out, lock-free readers miss and convoy on the qlock (ref 5.2 item 6)."""
        slot = self.tree.slots[idx]
        page = slot.page
        if page is None:
            raise self.violation(th, idx, "radix item without a page while the qlock is held")
        yield from th.sync()  # read the word now, and CAS against what was read
        if slot.refcnt:
            return False
        ok, _ = slot.line.cas(th, slot.word)
        if not ok:
            return False
        slot.page = None
        mapped = yield from self.pm_has_vmr_with_page(th, idx)
        if mapped:
            yield from th.sync()
            slot.line.rmw(th, slot.word)  # WRITE_ONCE(*slot, page | flags)
            slot.page = page
            return False
        if page.flags & PG_DIRTY:
            yield from self.file.writepage(th, page)
        elif page.uncovered is not None:
            versions.check_unseen(th, self.file, page, "free")
        page.flags = 0
        self.page_decref(th, page)
        self.recorder.count("pages_reclaimed")
        return True

    # --- lock order per kernel path (tests/test_lock_order.py runs each path and compares) ---
    # From akaros-pagemap.md (table 6.2, sections 2 and 4), checked against the C code at HEAD
    # (kern/src/pagemap.c, mm.c, process.c, ns/fs_file.c, ns/tree_file.c, drivers/dev/gtfs.c).
    lock_order = {
        "read_hit": ("rcu",),  # pm_find_page: RCU read side, no lock (2.2 NEW; 6.2 "hit: none")
        "read_miss": NEW_LOAD_MISS,
        "read_miss_gtfs": (  # gtfs exists only at HEAD (99d1ef50 is after a4d7239a)
            "rcu", "*page_lock", "+pm_qlock", "-pm_qlock",
            "+file_qlock", "readpage", "-file_qlock",  # gtfs_pm_readpage: qlock(&f->qlock) (3.8)
            "-page_lock",
        ),
        "read_wait": ("rcu", "+page_lock", "-page_lock"),
        "write_miss": NEW_LOAD_MISS + ("+file_qlock", "-file_qlock"),
        "fault_hit": ("+vmr_lock", "rcu", "+pte_lock", "-pte_lock", "-vmr_lock"),
        "fault_miss_scp": (  # 6.2 "page fault (miss, SCP)"; proc_wakeup from 4.1 and the C code
            "+vmr_lock", "rcu", "-vmr_lock",
            "+proc_lock", "-proc_lock",
            *NEW_LOAD_MISS,
            "+proc_lock", "-proc_lock",  # proc_wakeup(p)
            "+vmr_lock", "rcu", "+pte_lock", "-pte_lock", "-vmr_lock",
        ),
        "fault_miss_mcp": (
            "+vmr_lock", "rcu", "-vmr_lock",
            "+proc_lock", "-proc_lock",
            "+vmr_lock", "rcu", "-vmr_lock",
            *NEW_LOAD_MISS,
            "+vmr_lock", "+pte_lock", "-pte_lock", "-vmr_lock",
        ),
        # truncate / hole punch of whole pages 0..11 (4.3)
        "punch_hole": (
            "+file_qlock", "-file_qlock",
            "+pm_qlock",  # pm_remove_or_zero_pages: qlock(pm_qlock) (2.8 NEW)
            # __remove_or_zero_cb -> pm_has_vmr_with_page per resident page (2.7; 6.2)
            *("+pm_lock", "-pm_lock") * 12,
            "-pm_qlock",
        ),
        # writeback (4.5): pm_writeback_pages (2.13), and fsync = gtfs writeback_file
        "pm_writeback_pages": NEW_WB_MARK_AND_SHOOT + (
            # __writeback_cb per dirty page (0, 1, 2 from PTEs, 5 from write()): queue_writeback
            # -> gtfs_pm_writepage: qlock(&f->qlock) around the RPC (2.13 step 4; 3.8)
            *("+file_qlock", "writepage", "-file_qlock") * 4,
            "-pm_qlock",  # flush_queued_writebacks (empty TODO), qunlock (2.13 steps 5, 6)
        ),
        # memory pressure: pm_free_unused_pages (2.14; 6.2) on pages 0..3 (_reclaim's scenario)
        "reclaim": (
            "+pm_qlock",  # qlock (2.14 step 1)
            "+pm_lock", "-pm_lock",  # page 0: CAS page -> NULL, pm_has_vmr_with_page: freed
            # page 1: slot refcount 1 (a reader between load and put): skipped before any lock
            "+pm_lock", "-pm_lock",  # page 2: a VMR covers it -> WRITE_ONCE restores it
            "+pm_lock", "-pm_lock",  # page 3: no VMR, PG_DIRTY ->
            "+file_qlock", "writepage", "-file_qlock",  # writepage, the qlock held (2.14 step 5)
            "-pm_qlock",
        ),
        "mmap_shared_rw": ("+file_qlock", "-file_qlock", "+pm_lock", "-pm_lock", "+vmr_lock", "-vmr_lock"),
        "mmap_private_ro": ("+file_qlock", "-file_qlock", "+pm_lock", "-pm_lock", "+vmr_lock", "-vmr_lock"),
        "munmap": (
            "+vmr_lock", "+pte_lock", "-pte_lock", "tlbshootdown", "+proc_lock", "-proc_lock",
            "+pte_lock", "-pte_lock", "+pm_lock", "-pm_lock", "-vmr_lock",
        ),
    }  # fmt: skip
    lock_order["fsync"] = SYNC_METADATA + lock_order["pm_writeback_pages"]
    lock_nesting = {
        "fault_hit": {"rcu": ("vmr_lock",), "+pte_lock": ("vmr_lock",)},
        "read_miss": {"+pm_qlock": ("page_lock",), "readpage": ("page_lock",)},
        "read_miss_gtfs": {
            "+file_qlock": ("page_lock",),
            "readpage": ("page_lock", "file_qlock"),
        },
        "read_wait": {"+page_lock": ()},
        "fault_miss_scp": {
            "+proc_lock": (),
            "+pm_qlock": ("page_lock",),
            "readpage": ("page_lock",),
        },
        "fault_miss_mcp": {
            "+pm_qlock": ("page_lock",),
            "readpage": ("page_lock",),
            "+pte_lock": ("vmr_lock",),
        },
        # 2.8: the per-page pm_lock round trips sit inside the qlock
        "punch_hole": {"+pm_lock": ("pm_qlock",)},
        # 2.11 - 2.13: pm_qlock -> pm_lock -> pte_lock / proc_lock; writepage under pm_qlock
        "pm_writeback_pages": {
            "+pm_lock": ("pm_qlock",),
            "+pte_lock@A": ("pm_qlock", "pm_lock"),
            "+pte_lock@B": ("pm_qlock", "pm_lock"),
            "+proc_lock@A": ("pm_qlock", "pm_lock"),
            "+proc_lock@B": ("pm_qlock", "pm_lock"),
            "+file_qlock": ("pm_qlock",),
            "writepage": ("pm_qlock", "file_qlock"),
        },
        # 2.14: pm_lock per page and the dirty page's writepage inside the qlock
        "reclaim": {"+pm_lock": ("pm_qlock",), "writepage": ("pm_qlock", "file_qlock")},
        "munmap": {
            "+pte_lock": ("vmr_lock",),
            "+proc_lock": ("vmr_lock",),
            "+pm_lock": ("vmr_lock",),
        },
    }
    # The held -> taken edges the reference names (5.2 item 7; 6.2; 3.8).
    lock_edges = frozenset(
        {
            ("vmr_lock", "pte_lock"),
            ("pm_qlock", "pm_lock"),
            ("pm_lock", "pte_lock"),
            ("pm_lock", "proc_lock"),
            ("pm_qlock", "file_qlock"),
        }
    )


DESIGN = NewPageMap
