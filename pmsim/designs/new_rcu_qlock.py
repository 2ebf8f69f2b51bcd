"""NEW: kern/src/pagemap.c at HEAD. Lock-free RCU lookups; ``pm_qlock`` serialises writers.

Lookups take no lock: an RCU read section (a compiler barrier), the radix walk and
the CAS loop on the slot word. Inserts, ``pm_remove_or_zero_pages``,
``pm_writeback_pages`` and ``pm_free_unused_pages`` hold the sleeping
``pm_qlock``; ``pm_lock`` now guards only the VMR list, and is taken per slot by
``pm_has_vmr_with_page`` and around the PTE walks of writeback. Empty radix
nodes are freed through ``call_rcu``. akaros-pagemap.md 2.2, 2.3, 2.8, 2.11 - 2.14, 6.2.
"""

from __future__ import annotations

from pmsim.designs.base import ULONG_LIMIT, PageMap
from pmsim.kernel.vm import PROT_WRITE
from pmsim.pagecache.page import PG_DIRTY, PG_UPTODATE

# What the flattened read step (NewPageMap.load_copy_put) does in one generator.
FLATTENED = (
    "pm_find_page",
    "_slot_get",
    "_slot_cas_ref",
    "pm_load_page",
    "_check_found",
    "_load_page_not_hit",
    "pm_put_page",
    "_put_ref",
)


class NewPageMap(PageMap):
    """The RCU + qlock page map of HEAD (1c95ea12 and later)."""

    name = "new"
    summary = "HEAD: RCU lock-free lookups, pm_qlock for insert/remove/writeback"
    entry_points = PageMap.entry_points | {"fsync", "reclaim"}

    def __init__(self, machine, file):
        super().__init__(machine, file)
        self.pm_qlock = machine.qlock("pm_qlock")
        self.rcu = machine.rcu
        cls = type(self)  # a variant that overrides a function the flattened step models
        self._flat_read = all(getattr(cls, fn) is getattr(NewPageMap, fn) for fn in FLATTENED)

    def __setattr__(self, name, value):
        """Replacing one of the ``FLATTENED`` functions on this page map (a test's probe)
        turns the flattened read step off, so the replacement is called."""
        if name in FLATTENED:
            object.__setattr__(self, "_flat_read", False)
        object.__setattr__(self, name, value)

    # --- lookups and inserts ---------------------------------------------------------
    def pm_find_page(self, th, index):
        """pm_find_page (NEW): ``rcu_read_lock``; seqcount read and radix walk; the CAS loop
        (refcount + 1 only); ``rcu_read_unlock``. No lock; retries on a changed word."""
        self.rcu.read_section(th)
        th.pending += self.tree.lookup_ns()
        slot = self.tree.slots.get(index)
        if slot is None:
            return None
        return (yield from self._slot_get(th, slot, clear_removal=False))

    def load_copy_put(self, th, index, copy_ns: float):
        """fs_file_read's step for one page, flattened for a hit into one generator:
        pm_load_page -> pm_find_page (NEW) -> its CAS loop (``_slot_get``), memcpy_to_safe,
        pm_put_page. The same charges, syncs, CAS and asserts in the same order; anything
        but a hit on an up-to-date page goes on in pm_load_page's own code. A variant that
        overrides one of those functions gets the general path (``_flat_read``).
        tests/test_fast_paths.py checks it against the general path."""
        if not self._flat_read:
            yield from PageMap.load_copy_put(self, th, index, copy_ns)
            return
        # pm_find_page (NEW)
        self.rcu.read_section(th)
        tree = self.tree
        th.pending += tree.depth * tree.per_level_ns  # tree.lookup_ns()
        slot = tree.slots.get(index)
        page = None
        if slot is not None:  # _slot_get: sync, then the CAS loop on the word
            if th.core.thread is not th:
                yield from th.sync()
            else:
                ev = th.flush()
                if ev is not None:
                    yield ev
            page = self._slot_cas_ref(th, slot, False)
        # pm_load_page
        if page is not None and page.flags & PG_UPTODATE:
            if slot.refcnt <= 0 or slot.page is not page:  # self._check_found(th, index, page)
                raise self.violation(th, index, "pm_load_page: found page without a slot ref")
        else:
            page = yield from self._load_page_not_hit(th, index, page)
        th.pending += copy_ns  # memcpy_to_safe
        # pm_put_page: sync, then the asserts and the atomic_add
        if th.core.thread is not th:
            yield from th.sync()
        else:
            ev = th.flush()
            if ev is not None:
                yield ev
        self._put_ref(th, page)

    def _free_radix_nodes(self, th, n: int) -> None:
        for _ in range(n):  # __radix_remove_slot: call_rcu(__rnode_free_rcu)
            self.rcu.call_rcu(th, None, self._slab, self.tree.node_bytes)

    # --- VMR helpers ----------------------------------------------------------------------
    def pm_has_vmr_with_page(self, th, idx: int):
        """pm_has_vmr_with_page (NEW): takes ``pm_lock`` itself, on every call; O(V) scan."""
        yield from self.pm_lock.acquire(th)
        found = self._has_vmr_with_page(th, idx)
        yield from self.pm_lock.release(th)
        return found

    # --- pm_remove_or_zero_pages (2.8) ------------------------------------------------------
    @property
    def radix_writers_lock(self):
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
        if mapped or old[1]:
            return self._keep_zeroed(th)
        yield from th.sync()
        line = slot.line
        equal = slot.value() == old
        if equal and line.changed_since(slot.word, read_at):
            self.recorder.count("hazard_remove_aba")
        ok, _ = line.cas(th, slot.word, equal=equal)
        return self._free_yanked(th, slot, page) if ok else self._keep_zeroed(th)

    # --- writeback (2.11 - 2.13) -------------------------------------------------------------
    def mark_and_clear_dirty_ptes(self, th):
        """mark_and_clear_dirty_ptes: under ``pm_lock``, every PTE of every writable shared VMR
        (each under its proc's ``pte_lock``): a dirty PTE dirties its page and flags the VMR
        for a shootdown. The walk costs the VMR's size, not its dirty count. Its time, from the
        call to the return, is the ``pte_walk`` timing."""
        t0 = th.now
        yield from self.pm_lock.acquire(th)
        th.pending += len(self.vmrs) * self._vmr_scan
        for vmr in list(self.vmrs):
            if not (vmr.prot & PROT_WRITE and vmr.shared):
                continue
            yield from vmr.proc.pte_lock.acquire(th)
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
                th.pending += self._flags_rmw
            pte.dirty = False
            vmr.shootdown_needed = True

    def shootdown_vmrs(self, th):
        """shootdown_vmrs: under ``pm_lock``, proc_tlbshootdown for every flagged VMR, with no
        de-duplication by process and no waiting for the IPIs. Timed as ``shootdown_vmrs``."""
        t0 = th.now
        yield from self.pm_lock.acquire(th)
        th.pending += len(self.vmrs) * self._vmr_scan
        for vmr in list(self.vmrs):
            if vmr.shootdown_needed:
                vmr.shootdown_needed = False
                yield from self.tlb.shootdown(th, vmr.proc)
        yield from self.pm_lock.release(th)
        self.recorder.sample("shootdown_vmrs", th.now - t0)

    def pm_writeback_pages(self, th):
        """pm_writeback_pages: ``qlock``; mark_and_clear_dirty_ptes; shootdown_vmrs; walk every
        resident page, writing each dirty one synchronously; flush (an empty TODO); ``qunlock``."""
        yield from self.pm_qlock.acquire(th)
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
            th.pending += self._flags_rmw
            yield from self.queue_writeback(th, page, queue)

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
        yield from self.pm_qlock.acquire(th)
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
        page.flags = 0
        self.page_decref(th, page)
        self.recorder.count("pages_reclaimed")
        return True


DESIGN = NewPageMap
