"""OLD: kern/src/pagemap.c at a4d7239a. ``pm_lock`` (a spinlock) around every radix access.

Lookups, inserts and removals all take ``pm_lock``; ``pm_put_page`` is lock-free.
Removal is ``pm_remove_or_zero_pages`` under the spinlock (what a4d7239a's
``fs_file_punch_hole`` calls) and the multi-pass ``pm_remove_contig`` (no caller
at a4d7239a; the ``old_remove_contig`` variant restores the earlier caller).
There is no writeback or reclaim entry point. akaros-pagemap.md 2.2, 2.3, 2.8,
2.9, 6.1.
"""

from __future__ import annotations

from pmsim.designs.base import ULONG_LIMIT, PageMap
from pmsim.kernel.vm import PROT_WRITE
from pmsim.pagecache import versions
from pmsim.pagecache.page import PG_DIRTY, PG_REMOVAL

PTR_ARR_LEN = 10  # pm_remove_contig's ptr_store: procs to shoot down, then pages to write back

# The steps of a pm_load_page miss (lock_order rows below reuse them).
OLD_LOAD_MISS = (
    "+pm_lock", "-pm_lock",  # pm_find_page misses: spin_lock(pm_lock) (2.2 OLD; 2.5 step 1)
    "*page_lock",  # kpage_alloc; sem_init(&pg_sem, 0): locked before it is visible (2.5 step 2.3)
    "+pm_lock", "-pm_lock",  # pm_insert_page: radix_insert under pm_lock (2.3 OLD)
    "readpage",  # load_locked_page: pm_op->readpage, no PM lock held (2.5 step 4.1; 6.1)
    "-page_lock",  # unlock_page: sem_up(pg_sem) (2.5 step 4.4)
)  # fmt: skip


class OldPageMap(PageMap):
    """The spinlocked page map of a4d7239a."""

    name = "old"
    summary = "a4d7239a: pm_lock spinlock on every lookup, insert and removal"
    # No writeback or memory-pressure entry point at a4d7239a (ref 4.5, 4.6, 4.8).
    lacks = frozenset({"fsync", "reclaim"})

    def __init__(self, machine, file):
        super().__init__(machine, file)
        self.pm_removal = 0  # atomic_t single-remover flag

    # --- lookups and inserts ---------------------------------------------------------
    def pm_find_page(self, th, index):
        """pm_find_page (OLD): under ``pm_lock``, radix lookup, then the CAS loop that takes a
        slot ref and clears PM_REMOVAL (a reader aborts a concurrent pm_remove_contig)."""
        lock = self.radix_writers_lock(index)
        yield from lock.acquire(th, "pm_find_page")
        th.pending += self.tree.lookup_ns()
        slot = self.tree.slots.get(index)
        page = None
        if slot is not None:
            page = yield from self._slot_get(th, slot, clear_removal=True)
        yield from lock.release(th)
        return page

    def _free_radix_nodes(self, th, n: int) -> None:
        th.pending += n * self.cost.slab  # kmem_cache_free at once

    # --- pm_remove_or_zero_pages (2.8), a4d7239a: all under the spinlock ---------------
    def radix_writers_lock(self, index: int):
        """OLD: ``pm_lock`` guards the radix tree (and the VMR list); lookups take it too."""
        return self.pm_lock

    def pm_has_vmr_with_page(self, th, idx: int):
        """OLD: the caller of the scan holds ``pm_lock`` (it guards the VMR list too)."""
        return self._has_vmr_with_page(th, idx)
        yield

    def _remove_or_zero_cb(self, th, idx: int):
        """__remove_or_zero_cb (OLD): the caller holds ``pm_lock``; the VMR scan needs no lock."""
        slot = self.tree.slots[idx]
        page = slot.page
        if page is None:
            raise self.violation(th, idx, "radix item without a page under pm_lock")
        yield from th.sync()  # read the word now
        old = slot.value()
        mapped = yield from self.pm_has_vmr_with_page(th, idx)
        if mapped or old.refcnt:
            return self._keep_zeroed(th)
        yield from th.sync()
        ok, _ = slot.line.cas(th, slot.word, equal=slot.value() == old)
        return self._free_yanked(th, slot, page) if ok else self._keep_zeroed(th)

    # --- pm_remove_contig (2.9) -------------------------------------------------------
    def pm_remove_contig(self, th, index: int, nr: int):
        """pm_remove_contig (a4d7239a): every pass. Returns the number of pages removed; a
        second concurrent remover returns 0 at once (the single-remover rule)."""
        if nr == 0:
            return 0
        th.pending += self.cost.flags_rmw  # atomic_swap(&pm_removal, 1)
        if self.pm_removal:
            self.recorder.count("remove_contig_gave_up")
            return 0
        self.pm_removal = 1
        end = index + nr
        tree = self.tree
        yield from self.pm_lock.acquire(th, "pm_remove_contig")
        if not index < end < ULONG_LIMIT:  # assert(index + nr_pgs > index), unsigned
            raise self.violation(th, index, f"pm_remove_contig: range of {nr} pages wraps")
        # Pinned scan: MAP_LOCKED is never stored on the 2018 kernel (ref 1.4), so none are.
        th.pending += len(self.vmrs) * self.cost.vmr_scan
        # Pass 1, mark: every index in range, resident or not (no radix_next_slot).
        for i in range(index, end):
            th.pending += tree.lookup_ns()
            slot = tree.slots.get(i)
            if slot is None:
                continue
            yield from th.sync()  # read the word now, and CAS against what was read
            if slot.page is None or slot.refcnt:
                continue
            ok, _ = slot.line.cas(th, slot.word)  # set PM_REMOVAL; a failed CAS skips the page
            if not ok:
                continue
            slot.removal = True
            slot.page.flags |= PG_REMOVAL
            th.pending += self.cost.flags_rmw
        # Pass 2, revoke mappings: VMRs that map the *first* index (ref 5.1 item 7); procs
        # batched for shootdowns in a 10-entry store, flushed when full and at the end.
        ptr_store: list = []
        th.pending += len(self.vmrs) * self.cost.vmr_scan
        for vmr in list(self.vmrs):
            if not vmr.has_page_idx(index):
                continue
            proc = vmr.proc
            yield from proc.pte_lock.acquire(th, "pm_remove_contig")
            self.vmr_for_each(th, vmr, index, nr, self._pm_mark_not_present)
            yield from proc.pte_lock.release(th)
            if proc in ptr_store:
                continue
            if len(ptr_store) == PTR_ARR_LEN:
                yield from self._shootdown_and_reset(th, ptr_store)
            ptr_store.append(proc)
        yield from self._shootdown_and_reset(th, ptr_store)
        # Pass 3: collect dirty bits and finish the unmap (assumes the shootdowns are done).
        for vmr in list(self.vmrs):
            if not vmr.has_page_idx(index):
                continue
            yield from vmr.proc.pte_lock.acquire(th, "pm_remove_contig")
            unmap = self._pm_mark_dirty_pgs_unmap if vmr.prot & PROT_WRITE else self._pm_mark_unmap
            self.vmr_for_each(th, vmr, index, nr, unmap)
            yield from vmr.proc.pte_lock.release(th)
        # Pass 4, handle_dirty: batches of at most 10 written back with pm_lock dropped.
        i = index
        while True:
            batch = []
            while i < end:
                page = self._still_marked(th, i)
                if page is None:
                    i += 1
                    continue
                if page.flags & PG_DIRTY:
                    if len(batch) == PTR_ARR_LEN:
                        break
                    batch.append(page)
                    page.flags &= ~PG_DIRTY
                    th.pending += self.cost.flags_rmw
                i += 1
            yield from self.pm_lock.release(th)
            for page in batch:
                yield from self.file.writepage(th, page)
            yield from self.pm_lock.acquire(th, "pm_remove_contig")
            if i >= end:
                break
        # Pass 5, remove what is still marked.
        nr_removed = 0
        for i in range(index, end):
            page = self._still_marked(th, i)
            if page is None:
                continue
            slot = page.slot
            if slot.refcnt:
                self.recorder.count(
                    "warn_remove_contig_refcnt"
                )  # warn("Unexpected refcnt in PM remove!")
            old = slot.value()
            yield from th.sync()
            ok, _ = slot.line.cas(th, slot.word, equal=slot.value() == old)
            if not ok:
                page.flags &= ~PG_REMOVAL
                th.pending += self.cost.flags_rmw
                continue
            slot.page = None  # PM_REMOVAL stays set: the radix still sees an item
            if page.uncovered is not None:  # a store nothing marked: written by no pass
                versions.check_unseen(th, self.file, page, "free")
            page.flags = 0
            self.page_decref(th, page)
            nr_removed += 1
            th.pending += tree.lookup_ns()  # radix_delete
            self._radix_remove(th, i)
        self.num_pages -= nr_removed
        yield from self.pm_lock.release(th)
        self.pm_removal = 0
        self.recorder.count("pages_removed", nr_removed)
        return nr_removed

    def _still_marked(self, th, i: int):
        """Passes 4 and 5: look slot ``i`` up; its page if pass 1 marked it and no reader has
        since taken a ref (which clears the slot's PM_REMOVAL: then clear PG_REMOVAL, ours)."""
        th.pending += self.tree.lookup_ns()
        slot = self.tree.slots.get(i)
        page = slot.page if slot is not None else None
        if page is None or not page.flags & PG_REMOVAL:
            return None
        if not slot.removal:
            page.flags &= ~PG_REMOVAL
            th.pending += self.cost.flags_rmw
            return None
        return page

    # vmr_for_each callbacks (a4d7239a): they act only on pages pass 1 marked.
    def _pm_mark_not_present(self, th, vmr, off, pte) -> None:
        """__pm_mark_not_present: revoke access, keep the mapping."""
        if pte.page.flags & PG_REMOVAL:
            pte.present = False

    def _pm_mark_unmap(self, th, vmr, off, pte) -> None:
        """__pm_mark_unmap: clear the PTE."""
        if pte.page.flags & PG_REMOVAL:
            del vmr.ptes[off]
            pte.page.mapcount -= 1

    def _pm_mark_dirty_pgs_unmap(self, th, vmr, off, pte) -> None:
        """__pm_mark_dirty_pgs_unmap: a dirty PTE dirties its page; clear the PTE."""
        if pte.page.flags & PG_REMOVAL and pte.dirty:
            pte.page.flags |= PG_DIRTY
            th.pending += self.cost.flags_rmw
        self._pm_mark_unmap(th, vmr, off, pte)

    def _shootdown_and_reset(self, th, ptr_store: list):
        """shootdown_and_reset_ptrstore: proc_tlbshootdown for each stored proc, pm_lock held."""
        for proc in ptr_store:
            yield from self.tlb.shootdown(th, proc)
        ptr_store.clear()

    # --- lock order per kernel path (tests/test_lock_order.py runs each path and compares) ---
    # From akaros-pagemap.md (table 6.1, sections 2 and 4), checked against the C code at
    # a4d7239a (kern/src/pagemap.c, mm.c, process.c, ns/fs_file.c, ns/tree_file.c); where table
    # 6.1 and the C code differ, the row follows the C code and says so.
    lock_order = {
        # read() of a resident page: fs_file_read -> pm_load_page hit -> pm_put_page (4.2)
        "read_hit": ("+pm_lock", "-pm_lock"),  # pm_find_page under pm_lock (6.1); put: no lock
        # read() miss: find, insert, readpage, unlock_page (2.5; 6.1 "pm_load_page miss")
        "read_miss": OLD_LOAD_MISS,
        # read() of a page another thread is loading: the second reader's steps (2.5 step 3)
        "read_wait": (
            "+pm_lock", "-pm_lock",  # pm_find_page hits a page without PG_UPTODATE
            "+page_lock",  # lock_page = sem_down(pg_sem): sleeps until the loader's unlock_page (6.1)
            "-page_lock",  # PG_UPTODATE now set: unlock_page, return
        ),
        # write() of a non-resident page: the miss, then write_metadata (4.2 fs_file_write)
        "write_miss": OLD_LOAD_MISS + (
            "+file_qlock", "-file_qlock",  # write_metadata: qlock(&f->qlock): FSF_DIRTY, length, mtime
        ),
        # page fault, page resident (__hpf, 4.1; 6.1 "page fault (hit)")
        "fault_hit": (
            "+vmr_lock",  # __hpf: spin_lock(vmr_lock); find_vmr (4.1 step 1)
            "+pm_lock", "-pm_lock",  # pm_load_page_nowait -> pm_find_page, nested in vmr_lock (2.6)
            "+pte_lock", "-pte_lock",  # map_page_at_addr (4.1 step 6)
            "-vmr_lock",  # pm_put_page (no lock); spin_unlock(vmr_lock) (4.1 steps 7, 8)
        ),
        # page fault miss, single-core process (PROC_RUNNING_S): load blocking, refault (4.1 step 5.4)
        "fault_miss_scp": (
            "+vmr_lock", "+pm_lock", "-pm_lock",  # __hpf: pm_load_page_nowait -> -EAGAIN
            "-vmr_lock",  # foc_incref; spin_unlock(vmr_lock)
            "+proc_lock", "-proc_lock",  # __hpf_load_page: RUNNING_S -> WAITING under proc_lock
            *OLD_LOAD_MISS,  # pm_load_page (blocking)
            "+proc_lock", "-proc_lock",  # proc_wakeup(p): spin_lock(proc_lock) (process.c)
            "+vmr_lock", "+pm_lock", "-pm_lock", "+pte_lock", "-pte_lock", "-vmr_lock",  # refault
        ),
        # page fault miss, multicore process (PROC_RUNNING_M): -EAGAIN, then SYS_populate_va (4.1)
        "fault_miss_mcp": (
            "+vmr_lock", "+pm_lock", "-pm_lock", "-vmr_lock",  # __hpf: nowait misses; unlock
            "+proc_lock", "-proc_lock",  # __hpf_load_page: RUNNING_M -> -EAGAIN, to user space
            "+vmr_lock", "+pm_lock", "-pm_lock",  # populate_va: vmr_lock; populate_pm_va: nowait
            "-vmr_lock",  # "might block here, can't hold the spinlock"
            *OLD_LOAD_MISS,  # pm_load_page
            "+vmr_lock",  # re-take vmr_lock; vmr_history unchanged
            "+pte_lock", "-pte_lock",  # map_page_at_addr
            "-vmr_lock",  # pm_put_page; populate_va: spin_unlock(vmr_lock)
        ),
        # truncate / hole punch of whole pages 0..11 (4.3): write_metadata, then the PM removal
        "punch_hole": (
            "+file_qlock", "-file_qlock",  # fs_file_truncate: write_metadata first (4.3 step 1)
            "+pm_lock", "-pm_lock",  # pm_remove_or_zero_pages: the whole walk under pm_lock (2.8)
        ),
        # mmap of a file (4.4 do_mmap)
        "mmap_shared_rw": (
            "+file_qlock", "-file_qlock",  # tree_chan_mmap: qlock(&f->qlock), sets FSF_DIRTY (4.4)
            "+pm_lock", "-pm_lock",  # pm_add_vmr while !vm_ready (2.1; 4.4 step 2)
            "+vmr_lock", "-vmr_lock",  # vmr_insert; vm_ready = true (4.4 step 3)
        ),
        "mmap_private_ro": (
            "+file_qlock", "-file_qlock",  # tree_chan_mmap qlocks f->qlock on every mmap
            "+pm_lock", "-pm_lock",
            "+vmr_lock", "-vmr_lock",
        ),
        # munmap of a whole shared writable VMR with two PTEs (4.4 __do_munmap)
        "munmap": (
            "+vmr_lock",  # munmap: spin_lock(vmr_lock)
            "+pte_lock", "-pte_lock",  # __munmap_pte walk: dirty -> PG_DIRTY, clear Present (step 2)
            "tlbshootdown", "+proc_lock", "-proc_lock",  # proc_tlbshootdown once (step 3)
            "+pte_lock", "-pte_lock",  # __vmr_free_pgs walk (step 4)
            "+pm_lock", "-pm_lock",  # destroy_vmr -> pm_remove_vmr (2.1)
            "-vmr_lock",
        ),
    }  # fmt: skip
    lock_nesting = {
        # 2.6 / 4.1 step 5.3: the non-blocking lookup nests pm_lock inside the caller's vmr_lock
        "fault_hit": {"+pm_lock": ("vmr_lock",), "+pte_lock": ("vmr_lock",)},
        # 2.5: the new page is locked before the insert; readpage runs with no PM lock
        "read_miss": {"+pm_lock": [(), ("page_lock",)], "readpage": ("page_lock",)},
        "read_wait": {"+page_lock": ()},  # the waiter sleeps on the page lock holding nothing
        "write_miss": {"+file_qlock": ()},
        # 4.1: vmr_lock is dropped before proc_lock and the blocking load
        "fault_miss_scp": {
            "+proc_lock": (),
            "readpage": ("page_lock",),
            "+pte_lock": ("vmr_lock",),
        },
        "fault_miss_mcp": {
            "+pm_lock": [("vmr_lock",), ("vmr_lock",), (), ("page_lock",)],
            "+proc_lock": (),
            "readpage": ("page_lock",),
            "+pte_lock": ("vmr_lock",),
        },
        "punch_hole": {"+pm_lock": ()},
        # 4.4: pm_add_vmr is not nested in vmr_lock; munmap nests everything in vmr_lock
        "mmap_shared_rw": {"+file_qlock": (), "+pm_lock": (), "+vmr_lock": ()},
        "munmap": {
            "+pte_lock": ("vmr_lock",),
            "+proc_lock": ("vmr_lock",),
            "+pm_lock": ("vmr_lock",),
        },
    }
    # The held -> taken edges the reference names (5.2 item 7; 6.1).
    lock_edges = frozenset(
        {
            ("vmr_lock", "pm_lock"),
            ("vmr_lock", "pte_lock"),
            ("pm_lock", "pte_lock"),
            ("pm_lock", "proc_lock"),
        }
    )


DESIGN = OldPageMap
