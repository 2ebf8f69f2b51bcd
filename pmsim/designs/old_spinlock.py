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
from pmsim.pagecache.page import PG_DIRTY, PG_REMOVAL

PTR_ARR_LEN = 10  # pm_remove_contig's ptr_store: procs to shoot down, then pages to write back


class OldPageMap(PageMap):
    """The spinlocked page map of a4d7239a."""

    name = "old"
    summary = "a4d7239a: pm_lock spinlock on every lookup, insert and removal"

    def __init__(self, machine, file):
        super().__init__(machine, file)
        self.pm_removal = 0  # atomic_t single-remover flag

    # --- lookups and inserts ---------------------------------------------------------
    def pm_find_page(self, th, index):
        """pm_find_page (OLD): under ``pm_lock``, radix lookup, then the CAS loop that takes a
        slot ref and clears PM_REMOVAL (a reader aborts a concurrent pm_remove_contig)."""
        yield from self.pm_lock.acquire(th)
        th.pending += self.tree.lookup_ns()
        slot = self.tree.slots.get(index)
        page = None
        if slot is not None:
            page = yield from self._slot_get(th, slot, clear_removal=True)
        yield from self.pm_lock.release(th)
        return page

    def _free_radix_nodes(self, th, n: int) -> None:
        th.pending += n * self._slab  # kmem_cache_free at once

    # --- pm_remove_or_zero_pages (2.8), a4d7239a: all under the spinlock ---------------
    @property
    def radix_writers_lock(self):
        """OLD: ``pm_lock`` guards the radix tree (and the VMR list)."""
        return self.pm_lock

    def _remove_or_zero_cb(self, th, idx: int):
        """__remove_or_zero_cb (OLD): the caller holds ``pm_lock``; the VMR scan needs no lock."""
        slot = self.tree.slots[idx]
        page = slot.page
        if page is None:
            raise self.violation(th, idx, "radix item without a page under pm_lock")
        yield from th.sync()  # read the word now
        old = slot.value()
        if self._has_vmr_with_page(th, idx) or old[1]:
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
        th.pending += self._flags_rmw  # atomic_swap(&pm_removal, 1)
        if self.pm_removal:
            self.recorder.count("remove_contig_gave_up")
            return 0
        self.pm_removal = 1
        end = index + nr
        tree = self.tree
        yield from self.pm_lock.acquire(th)
        if not index < end < ULONG_LIMIT:  # assert(index + nr_pgs > index), unsigned
            raise self.violation(th, index, f"pm_remove_contig: range of {nr} pages wraps")
        # Pinned scan: MAP_LOCKED is never stored on the 2018 kernel (ref 1.4), so none are.
        th.pending += len(self.vmrs) * self._vmr_scan
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
            th.pending += self._flags_rmw
        # Pass 2, revoke mappings: VMRs that map the *first* index (ref 5.1 item 7); procs
        # batched for shootdowns in a 10-entry store, flushed when full and at the end.
        ptr_store: list = []
        th.pending += len(self.vmrs) * self._vmr_scan
        for vmr in list(self.vmrs):
            if not vmr.has_page_idx(index):
                continue
            proc = vmr.proc
            yield from proc.pte_lock.acquire(th)
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
            yield from vmr.proc.pte_lock.acquire(th)
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
                    th.pending += self._flags_rmw
                i += 1
            yield from self.pm_lock.release(th)
            for page in batch:
                yield from self.file.writepage(th, page)
            yield from self.pm_lock.acquire(th)
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
                th.pending += self._flags_rmw
                continue
            slot.page = None  # PM_REMOVAL stays set: the radix still sees an item
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
            th.pending += self._flags_rmw
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
            th.pending += self._flags_rmw
        self._pm_mark_unmap(th, vmr, off, pte)

    def _shootdown_and_reset(self, th, ptr_store: list):
        """shootdown_and_reset_ptrstore: proc_tlbshootdown for each stored proc, pm_lock held."""
        for proc in ptr_store:
            yield from self.tlb.shootdown(th, proc)
        ptr_store.clear()


DESIGN = OldPageMap
