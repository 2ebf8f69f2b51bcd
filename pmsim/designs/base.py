"""The ``PageMap`` interface and the page-map functions OLD and NEW share.

Read beside kern/src/pagemap.c. ``pm_add_vmr``, ``pm_remove_vmr``, ``pm_put_page``,
``pm_load_page`` (its control flow), ``pm_load_page_nowait`` and ``pm_destroy``
are the same in both designs (akaros-pagemap.md 2.1, 2.4, 2.5, 2.6, 2.15), and
``pm_insert_page`` and ``pm_remove_or_zero_pages`` differ only in the lock radix
writers hold (2.3, 2.8); a design supplies ``pm_find_page``, that lock
(``radix_writers_lock``), its ``__remove_or_zero_cb`` and its removal and writeback
functions. Every function is a generator run by a simulated thread (``th``); work is charged
with ``th.pending += ns`` from the cost table (never literals) and ``yield from th.sync()``
comes before each point where another thread can interact.

A design describes itself (docs/designs.md): the kernel operations it lacks (asking for one is
a :class:`~pmsim.errors.ConfigError`, never a silent zero), the locks it reports, and the lock
order of each kernel path (``lock_order``, ``lock_nesting``, ``lock_edges``: what
tests/test_lock_order.py checks, written here beside the code a reviewer reads). A subclass
inherits every row it does not declare again.
"""

from __future__ import annotations

from pmsim import fastpath, hazards
from pmsim.errors import ConfigError, violation
from pmsim.kernel.syscall import CHAN_OFFSET, FDTOCHAN
from pmsim.kernel.vm import walk_ns
from pmsim.operations import ENTRY_POINTS
from pmsim.pagecache import versions
from pmsim.pagecache.page import PG_LOCKED, PG_PAGEMAP, PG_UPTODATE, Page
from pmsim.pagecache.radix import REFCNT_MAX, RadixTree
from pmsim.sync.qlock import QLock
from pmsim.sync.tlb import TlbShootdown

EEXIST = -17
ULONG_LIMIT = 1 << 64  # page indices are unsigned longs: a range reaching this wraps


class PageMapCosts:
    """The costs the page-map functions read."""

    __slots__ = (
        "page_alloc",
        "page_zero",
        "flags_rmw",
        "vmr_scan",
        "slab",
        "pte_entry",
        "pte_level",
        "page_read",
    )

    def __init__(self, costs):
        self.page_alloc = (
            costs.ns("page_alloc_ns") / 2
        )  # kpage_alloc; the other half at page_decref
        self.page_zero = costs.ns("page_zero_4k_ns")
        self.flags_rmw = costs.ns("cacheline_transfer_ns")  # an atomic on pg_flags (docs/model.md)
        self.vmr_scan = costs.ns("vmr_scan_ns_per_vmr")
        self.slab = costs.ns("slab_alloc_ns")
        self.pte_entry = costs.ns("pte_walk_ns_per_entry")
        self.pte_level = costs.ns("pte_walk_ns_per_level")
        self.page_read = costs.ns("page_struct_read_ns")  # a walk's look at a struct page


class PageMap:
    """``struct page_map`` of one file, for one design."""

    name = "?"
    summary = ""
    lacks: frozenset[str] = frozenset()  # kernel entry points (pmsim.operations) it does not have
    entry_points: frozenset[str] = frozenset(ENTRY_POINTS)  # derived: every entry point but lacks
    # The locks it reports in every summary, whether or not a run takes them (with the kernel's:
    # the per-process pte_lock, vmr_lock, proc_lock and the pages' page_lock).
    locks: tuple[str, ...] = ("pm_lock", "page_lock")
    pm_lock_kind: str | None = None  # None: the machine's spinlock kind
    shootdown_mode = "async"  # proc_tlbshootdown does not wait for acks
    punch_hole_fn = "pm_remove_or_zero_pages"  # what fs_file_punch_hole calls (a4d7239a and later)
    tree_class = RadixTree  # pm_tree
    backptr_before_publish = False  # pm_insert_page sets pg_tree_slot after radix_insert

    # Lock order per kernel path: path -> the thread's steps in order ("+L" takes L, "-L" drops
    # it, "*L" L created held, "rcu" a read section, readpage / writepage / writepages a pm_op
    # call, tlbshootdown, "L@P" a per-process lock of process P). lock_nesting: path -> step ->
    # the locks held when it happens (a tuple: every time; a list: each time in order).
    # lock_edges: the held -> taken edges the reference names for this design's family.
    lock_order: dict[str, tuple[str, ...]] = {}
    lock_nesting: dict[str, dict] = {}
    lock_edges: frozenset[tuple[str, str]] = frozenset()

    def __init_subclass__(cls, **kwargs):
        """Inherit the lock-order rows a subclass does not declare; derive its entry points."""
        super().__init_subclass__(**kwargs)
        for attr in ("lock_order", "lock_nesting"):
            setattr(cls, f"_own_{attr}", vars(cls).get(attr, {}))
            merged = {}
            for klass in reversed(cls.__mro__):
                merged.update(vars(klass).get(f"_own_{attr}", {}))
            setattr(cls, attr, merged)
        if "read_hit" in cls.lock_order:  # read() of a user thread: the syscall layer around it
            cls.lock_order["sysread_hit"] = (
                *FDTOCHAN, *CHAN_OFFSET, *cls.lock_order["read_hit"], *CHAN_OFFSET
            )  # fmt: skip
        cls.entry_points = frozenset(op for op in ENTRY_POINTS if op not in cls.lacks)

    @classmethod
    def own_lock_order(cls) -> dict[str, tuple[str, ...]]:
        """The lock-order rows this class declares itself (the rest it inherits)."""
        return vars(cls).get("_own_lock_order", {})

    def __init__(self, machine, file):
        self.machine = machine
        self.env = machine.env
        self.file = file
        self.cost = machine.costs.view(PageMapCosts)
        self.tree = self.tree_class(machine, file.nr_pages)  # pm_tree
        self.pm_lock = machine.spinlock("pm_lock", self.pm_lock_kind)
        self.vmrs: list = []  # pm_vmrs
        self.num_pages = 0  # pm_num_pages
        self.tlb = TlbShootdown(machine, self.shootdown_mode)
        self.recorder = machine.recorder
        fastpath.install(self)  # (a subclass builds what its fast paths read before this)

    # --- what the design offers ------------------------------------------------
    @classmethod
    def require(cls, op: str) -> None:
        """Refuse an operation this design has no entry point for."""
        if op not in ENTRY_POINTS:
            raise ConfigError(f"operation {op!r}: unknown (one of {', '.join(ENTRY_POINTS)})")
        if op not in cls.entry_points:
            raise ConfigError(
                f"design {cls.name}: has no {op} entry point "
                f"(it offers {', '.join(o for o in ENTRY_POINTS if o in cls.entry_points)})"
            )

    def violation(self, th, index, msg: str):
        """Stop the run: a code assertion (akaros-pagemap.md 5.3) failed."""
        return violation(self.machine, th, index, msg)

    # --- design-specific parts -------------------------------------------------
    def pm_find_page(self, th, index):
        raise NotImplementedError

    def radix_writers_lock(self, index: int):
        """The lock radix writers hold for page ``index``: OLD ``pm_lock`` (a spinlock, which
        its lookups take too), NEW ``pm_qlock``. A per-page or striped variant overrides this."""
        raise NotImplementedError

    def _free_radix_nodes(self, th, n: int) -> None:
        """Nodes emptied by a radix removal: OLD frees at once, NEW through call_rcu."""
        raise NotImplementedError

    # --- pm_add_vmr / pm_remove_vmr (2.1) ---------------------------------------
    def pm_add_vmr(self, th, vmr):
        """kern/src/pagemap.c: pm_add_vmr. ``pm_lock``; TAILQ_INSERT_TAIL."""
        yield from self.pm_lock.acquire(th, "pm_add_vmr")
        self.vmrs.append(vmr)
        yield from self.pm_lock.release(th)

    def pm_remove_vmr(self, th, vmr):
        """kern/src/pagemap.c: pm_remove_vmr. ``pm_lock``; TAILQ_REMOVE."""
        yield from self.pm_lock.acquire(th, "pm_remove_vmr")
        self.vmrs.remove(vmr)
        yield from self.pm_lock.release(th)

    # --- the slot word ------------------------------------------------------------
    def _slot_get(self, th, slot, clear_removal: bool):
        """The CAS loop of pm_find_page: read the word; a NULL page is a miss; else CAS in
        refcount + 1 (OLD also clears PM_REMOVAL). A CAS that fails because the word changed
        is retried at once with the value it returned, while this core owns the line."""
        yield from th.sync()
        return self._slot_cas_ref(th, slot, clear_removal)

    def _slot_cas_ref(self, th, slot, clear_removal: bool):
        """:meth:`_slot_get` once ``th`` is synced (the word is read now): the page with a new
        slot ref, or None."""
        page = slot.page
        if page is None:
            return None
        if slot.backptr_at > self.env.now and self._in_insert_window(th, slot, page) is None:
            return None
        line = slot.line
        ok, _ = line.cas(th, slot.word)  # (the word was read now)
        if not ok:  # the failed CAS returned the current value; the retry owns the line
            page = slot.page
            if page is None:
                return None
            line.retry_owned(th, slot.word)
        slot.refcnt += 1
        if clear_removal:
            slot.removal = False
        if slot.refcnt > REFCNT_MAX:
            raise self.violation(th, slot.index, f"slot refcount overflows {REFCNT_MAX}")
        if page.slot is not slot:
            raise self.violation(th, slot.index, "page->pg_tree_slot != tree_slot after find")
        return page

    def pm_put_page(self, th, page):
        """kern/src/pagemap.c: pm_put_page. Asserts, then ``atomic_add`` of -1 on the
        slot refcount: one lock-free RMW on the slot's cache line."""
        yield from th.sync()  # the asserts read the slot when the put runs
        self._put_ref(th, page)

    def _put_ref(self, th, page) -> None:
        """:meth:`pm_put_page` once ``th`` is synced: the asserts and the ``atomic_add``."""
        slot = page.slot
        if slot is None or slot.page is not page:
            raise self.violation(th, page.index, "pm_put_page: the slot does not hold this page")
        if slot.refcnt <= 0:
            raise self.violation(th, page.index, "pm_put_page: slot refcount would go negative")
        slot.line.rmw(th, slot.word)
        slot.refcnt -= 1

    # --- pm_load_page (2.5) and pm_load_page_nowait (2.6) ------------------------------
    def pm_load_page(self, th, index):
        """kern/src/pagemap.c: pm_load_page. Returns an up-to-date page with a slot ref."""
        page = yield from self.pm_find_page(th, index)
        if page is not None and page.flags & PG_UPTODATE:  # a hit
            self._check_found(th, index, page)
            return page
        return (yield from self._load_page_not_hit(th, index, page))

    def _load_page_not_hit(self, th, index, page):
        """The rest of pm_load_page after its first pm_find_page returned ``page``: a miss
        (None: allocate and insert, or find again after -EEXIST), or a page not up to date
        (lock_page, and readpage if it still is not). Reported as the nested operation
        ``miss``, from the failed lookup until the page is up to date."""
        self.machine.nested_start(th, "miss")
        page = yield from self._miss(th, index, page)
        self.machine.nested_done(th, "miss")
        return page

    def _miss(self, th, index, page):
        """pm_load_page past its failed first lookup (kern/src/pagemap.c), as described above."""
        while page is None:
            th.pending += self.cost.page_alloc  # kpage_alloc (MEM_ATOMIC: never sleeps)
            page = Page(index)
            page.flags = PG_LOCKED | PG_PAGEMAP
            page.sem = QLock(  # sem_init(&pg_sem, 0): created held by the inserter
                self.machine, "page_lock", self.machine.qlock_wake, held_by=th, site="pm_load_page"
            )
            error = yield from self.pm_insert_page(th, index, page)
            if error == 0:
                yield from self._load_locked_page(th, page)
                return page
            # -EEXIST, the benign race: another thread inserted first
            self.recorder.count("pm_insert_eexist")
            page.flags = 0
            self.page_decref(th, page)
            page = yield from self.pm_find_page(th, index)
        self._check_found(th, index, page)
        if page.flags & PG_UPTODATE:
            return page
        yield from self.lock_page(th, page)
        if page.flags & PG_UPTODATE:
            yield from self.unlock_page(th, page)
            return page
        yield from self._load_locked_page(th, page)
        return page

    def _check_found(self, th, index, page) -> None:
        """pm_load_page's assert on the page pm_find_page returned: it holds a slot ref."""
        slot = page.slot
        if slot.refcnt <= 0 or slot.page is not page:
            raise self.violation(th, index, "pm_load_page: found page without a slot ref")

    def load_copy_put(self, th, index, copy_ns: float):
        """fs_file_read's step for one page: pm_load_page, memcpy_to_safe (``copy_ns``),
        pm_put_page. (NEW declares a fast path for it: ``NewPageMap.load_copy_put_hit``.)"""
        page = yield from self.pm_load_page(th, index)
        th.pending += copy_ns
        yield from self.pm_put_page(th, page)

    def _load_locked_page(self, th, page):
        """``load_locked_page``: readpage (synchronous), assert UPTODATE, unlock_page."""
        yield from self.file.readpage(th, page)
        if not page.flags & PG_UPTODATE:
            raise self.violation(th, page.index, "readpage returned without PG_UPTODATE")
        yield from self.unlock_page(th, page)

    def pm_load_page_nowait(self, th, index):
        """kern/src/pagemap.c: pm_load_page_nowait. The page, or None for -EAGAIN."""
        page = yield from self.pm_find_page(th, index)
        if page is None:
            return None
        if not page.flags & PG_UPTODATE:
            yield from self.pm_put_page(th, page)
            return None
        return page

    def lock_page(self, th, page):
        """kern/src/page_alloc.c: lock_page. ``sem_down(pg_sem)``, then set PG_LOCKED."""
        yield from page.sem.acquire(th, "lock_page")
        if page.flags & PG_LOCKED:
            raise self.violation(th, page.index, "PG_LOCKED set when sem_down(pg_sem) returned")
        page.flags |= PG_LOCKED
        th.pending += self.cost.flags_rmw

    def unlock_page(self, th, page):
        """kern/src/page_alloc.c: unlock_page. Clear PG_LOCKED, ``sem_up(pg_sem)``: wakes one
        waiter, which restarts on this core after this kernel path (the wake chain, 2.5)."""
        page.flags &= ~PG_LOCKED
        th.pending += self.cost.flags_rmw
        yield from page.sem.release(th)

    # --- pm_insert_page (2.3) ----------------------------------------------------------
    def pm_insert_page(self, th, index, page):
        """kern/src/pagemap.c: pm_insert_page. The page fields and the slot word (refcount 1,
        handed to the inserter) are built outside any lock; then, under the radix writers'
        lock (OLD ``pm_lock``; NEW ``pm_qlock``, which may sleep), radix_insert: node
        allocations (OLD: no sleep; NEW: ``MEM_WAIT``), -EEXIST if the slot is taken, the
        item's store into its node (NEW: ``rcu_assign_pointer``); ``pm_num_pages++``."""
        lock = self.radix_writers_lock(index)
        yield from lock.acquire(th, "pm_insert_page")
        tree = self.tree
        slot, allocs = tree.insert(index, page)
        if slot is not None:
            slot.published_at = slot.backptr_at = float("inf")  # not visible until stored
        th.pending += tree.lookup_ns() + allocs * self.cost.slab
        if slot is None:
            yield from lock.release(th)
            return EEXIST
        page.slot = slot  # (the model's pointer; when the C sets it is backptr_at)
        self.num_pages += 1
        yield from th.sync()
        if self.backptr_before_publish:
            slot.backptr_at = self.env.now
        slot.published_at = self.env.now  # rcu_assign_pointer: the item's store
        slot.line.rmw(th, slot.word)
        if not self.backptr_before_publish:
            slot.backptr_at = th.now  # radix_insert returns; page->pg_tree_slot = tree_slot
        yield from lock.release(th)
        return 0

    def _in_insert_window(self, th, slot, page):
        """A lookup read ``slot`` while its insert is under way: before the item's store it
        sees nothing (None); after it, before ``page->pg_tree_slot`` is set, the C's
        ``assert(page->pg_tree_slot == tree_slot)`` would panic: a ``publish_race`` (the model
        goes on with the page)."""
        now = self.env.now
        if now < slot.published_at:
            return None
        hazards.occur(
            self.machine,
            "publish_race",
            th,
            slot.backptr_at - slot.published_at,
            (
                hazards.step(None, f"radix_insert publishes page {slot.index}", slot.published_at),
                hazards.step(th, f"pm_find_page({slot.index}) reads the slot: pg_tree_slot is "
                                 "the poison (assert fails)"),
                hazards.step(None, "pm_insert_page sets page->pg_tree_slot", slot.backptr_at),
            ),
        )  # fmt: skip
        return page

    # --- pm_remove_or_zero_pages (2.8) --------------------------------------------------
    def pm_remove_or_zero_pages(self, th, start: int, nr: int):
        """kern/src/pagemap.c: pm_remove_or_zero_pages (truncate, hole punch): under the radix
        writers' lock (OLD ``pm_lock``: everything below runs under the spinlock; NEW
        ``pm_qlock``), walk the range and run the design's ``__remove_or_zero_cb`` on each
        resident page: zero it if mapped or in use, else remove and free it. (A design whose
        writers' lock depends on the page moves from lock to lock along the walk.)"""
        end = start + nr
        if not start < end < ULONG_LIMIT:  # assert(end_idx > start_idx), unsigned
            raise self.violation(
                th, start, f"pm_remove_or_zero_pages: range of {nr} pages wraps or is empty"
            )
        lock = self.radix_writers_lock(start)
        yield from lock.acquire(th, "pm_remove_or_zero_pages")
        for idx in self._walk(th, start, end):
            page_lock = self.radix_writers_lock(idx)
            if page_lock is not lock:
                yield from lock.release(th)
                lock = page_lock
                yield from lock.acquire(th, "pm_remove_or_zero_pages")
                if idx not in self.tree.slots:  # removed while its lock was not held
                    continue
            removed = yield from self._remove_or_zero_cb(th, idx)
            if removed:
                self._radix_remove(th, idx)
        yield from lock.release(th)

    # --- freeing --------------------------------------------------------------------
    def page_decref(self, th, page) -> None:
        """kern/src/page_alloc.c: page_decref: asserts PG_PAGEMAP is clear, frees the page."""
        if page.flags & PG_PAGEMAP:
            raise self.violation(th, page.index, "page_decref of a page with PG_PAGEMAP set")
        page.freed = True
        if page.mapcount:  # a PTE still points at it (akaros-pagemap.md 5.2, item 2)
            hazards.occur(
                self.machine,
                "freed_while_mapped",
                th,
                0.0,
                (
                    hazards.step(
                        th, f"page_decref of page {page.index}, {page.mapcount} PTE(s) map it"
                    ),
                ),
                "pte",
            )
        if th is not None:
            th.pending += self.cost.page_alloc

    def _radix_remove(self, th, index: int) -> None:
        """The range walker removes a slot whose callback returned true."""
        self._free_radix_nodes(th, self.tree.delete(index))

    def _walk(self, th, start: int, end: int):
        """``radix_for_each_slot_in_range``'s walk: the resident indices, in order. Its tree
        cost is charged at once; each page's ``struct page`` read (flags, refcount) as the
        walk reaches it."""
        indices, cost = self.tree.walk(start, end)
        th.pending += cost
        read = self.cost.page_read
        for idx in indices:
            th.pending += read
            yield idx

    # --- VMR helpers (2.7) -------------------------------------------------------------
    def pm_has_vmr_with_page(self, th, idx: int):
        """pm_has_vmr_with_page (NEW): takes ``pm_lock`` itself, on every call; the O(V) scan."""
        yield from self.pm_lock.acquire(th, "pm_has_vmr_with_page")
        found = self._has_vmr_with_page(th, idx)
        yield from self.pm_lock.release(th)
        return found

    def _has_vmr_with_page(self, th, idx: int) -> bool:
        """The scan of ``pm_has_vmr_with_page`` (caller holds ``pm_lock``): stops at the first
        VMR that could map ``idx``."""
        n = 0
        found = False
        t = th.now
        scan = self.cost.vmr_scan
        for vmr in self.vmrs:
            n += 1
            # the scan reads vm_ready when it reaches the VMR: one set later (on its setter's
            # clock) was not set yet (a VMR whose setter runs later in event order counts as
            # not ready either: docs/model.md)
            if vmr.has_page_idx(idx) and vmr.ready_at <= t + n * scan:
                found = True
                break
        th.pending += n * scan
        return found

    def vmr_for_each(self, th, vmr, idx: int, nr: int, callback) -> None:
        """kern/src/pagemap.c: vmr_for_each (the caller holds the proc's ``pte_lock``): charge
        ``env_user_mem_walk`` over the VMR's pages for file pages [idx, idx+nr) (every PTE slot
        of every page table in range, ref 3.5), and run ``callback(th, vmr, off, pte)`` on each
        PTE that exists there (a walk's callback on an empty entry does nothing)."""
        lo = max(idx, vmr.foff) - vmr.foff
        hi = min(idx + nr, vmr.foff + vmr.npages) - vmr.foff
        if hi <= lo:
            return
        th.pending += walk_ns(
            vmr.proc, vmr.base + lo, vmr.base + hi, self.cost.pte_entry, self.cost.pte_level
        )
        for off, pte in vmr.ptes_in(lo, hi):
            callback(th, vmr, off, pte)

    # --- __remove_or_zero_cb's outcomes ------------------------------------------------
    def _keep_zeroed(self, th) -> bool:
        """``memset(page, 0, PGSIZE)`` and keep the page (mapped, in use, or the CAS failed)."""
        th.pending += self.cost.page_zero
        self.recorder.count("pages_zeroed")
        return False

    def _free_yanked(self, th, slot, page) -> bool:
        """The CAS took the page out of its slot: ``atomic_set(pg_flags, 0)``, ``page_decref``;
        true: the walker removes the slot."""
        slot.page = None
        page.flags = 0
        versions.discarded(self.file, page)  # truncate: its data goes on purpose
        self.page_decref(th, page)
        self.recorder.count("pages_removed")
        return True

    # --- pm_destroy (2.15) -----------------------------------------------------------
    def pm_destroy(self) -> float:
        """kern/src/pagemap.c: pm_destroy, run from an RCU callback on core 0 (4.7): free
        every page (each must have slot refcount 0) and every node. Returns its cost."""
        indices, total = self.tree.walk(0, len(self.tree.resident))
        for idx in indices:
            slot = self.tree.slots[idx]
            if slot.refcnt != 0:
                raise self.violation(None, idx, f"pm_destroy: slot refcount {slot.refcnt} != 0")
            page = slot.page
            page.flags = 0
            self.page_decref(None, page)
            total += self.cost.page_alloc
            total += self.cost.slab * self.tree.delete(idx)
        if len(self.tree):
            raise self.violation(None, None, "radix_tree_destroy: tree not empty")
        return total
