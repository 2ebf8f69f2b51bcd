"""Lock-order conformance: the locks each kernel path takes, in order, against the reference.

Every entry point of every design runs a small deterministic scenario (one thread unless the
path needs two). The locks are recorded from *outside* the model: ``SpinLock.acquire/release``,
``QLock.acquire/release`` (and ``QLock.__init__`` for a lock created held),
``BackingStore.readpage/writepage/writepages``, ``TlbShootdown.shootdown``, ``Rcu.read_section``
and ``Thread.block`` are wrapped by delegating wrappers that append
``(thread name, event, lock)`` to a list. The sequence of one thread is compared to
``EXPECTED``, a table written from the reference akaros-pagemap.md (tables 6.1 OLD and 6.2
NEW, sections 2 and 4) and checked against the C code (kern/src/pagemap.c, mm.c, process.c,
ns/fs_file.c, ns/tree_file.c, drivers/dev/gtfs.c; a4d7239a for OLD, HEAD for NEW). Where the
reference's table 6 and the C code differ, the row follows the C code and says so.

Not in the rows (granularity of the model): a semaphore's internal ``sem->lock`` spinlock is
part of each qlock step; ``set_acmtime_noperm``'s hourly ``f->qlock`` in read(), ``merge_me``
and ``MAP_POPULATE`` in mmap, and the ksched lock of ``proc_wakeup`` are not modelled.

Step notation (one string per event, in the order the thread did them):

- ``+L`` the thread now holds lock ``L`` (recorded when ``acquire`` returns);
- ``-L`` it released ``L``;
- ``*L`` ``L`` was created held by the thread (``sem_init(&pg_sem, 0)``: pm_load_page's new
  page is locked before it is inserted, 2.5 step 2.3);
- ``rcu`` one ``rcu_read_lock`` .. ``rcu_read_unlock`` section (NEW lookups, 2.2);
- ``readpage`` / ``writepage`` / ``writepages`` a ``pm_op`` call on the backing store
  (recorded when it starts);
- ``tlbshootdown`` ``proc_tlbshootdown`` (its ``proc_lock`` follows);
- ``L@P``: a per-process lock (``vmr_lock``, ``pte_lock``, ``proc_lock``) of process ``P``,
  written so only in scenarios with two processes.

``NESTING`` states, for the key rows, which locks are held when each lock is taken. Further
checks: no path blocks or takes a qlock while holding a spinlock; the union of every
held -> taken edge is acyclic (akaros-pagemap.md 5.2 item 7); the what-if variants take the
same locks as their base design except where they say they differ.
"""

from __future__ import annotations

import pytest

from pmsim.costs import CostTable
from pmsim.errors import ConfigError
from pmsim.kernel.system import Kernel
from pmsim.kernel.vm import PROT_READ, PROT_WRITE
from pmsim.machine import Machine, Thread
from pmsim.storage import BackingStore
from pmsim.sync.qlock import QLock
from pmsim.sync.rcu import Rcu
from pmsim.sync.spinlock import SpinLock
from pmsim.sync.tlb import TlbShootdown

RW = PROT_READ | PROT_WRITE

# =========================================================================== the table
# Sub-sequences several rows share.
OLD_LOAD_MISS = [
    "+pm_lock",
    "-pm_lock",  # pm_find_page @a4d7239a misses: spin_lock(pm_lock) (2.2 OLD; 2.5 step 1)
    "*page_lock",  # kpage_alloc; sem_init(&pg_sem, 0): locked before it is visible (2.5 step 2.3)
    "+pm_lock",
    "-pm_lock",  # pm_insert_page @a4d7239a: radix_insert under pm_lock (2.3 OLD)
    "readpage",  # load_locked_page: pm_op->readpage, no PM lock held (2.5 step 4.1; 6.1)
    "-page_lock",  # unlock_page: sem_up(pg_sem) (2.5 step 4.4)
]
NEW_LOAD_MISS = [
    "rcu",  # pm_find_page @HEAD misses: rcu_read_lock only (2.2 NEW)
    "*page_lock",  # sem_init(&pg_sem, 0) (2.5 step 2.3)
    "+pm_qlock",
    "-pm_qlock",  # pm_insert_page @HEAD: qlock(pm_qlock) (2.3 NEW; 6.2)
    "readpage",  # load_locked_page, outside the PM locks (6.2 "pm_load_page miss")
    "-page_lock",  # unlock_page
]
# pm_writeback_pages @HEAD on the fsync scenario (VMRs vA1, vP, vB, vA2, vR; see _fsync_setup):
# the part before the page walk.
NEW_WB_MARK_AND_SHOOT = [
    "+pm_qlock",  # pm_writeback_pages: qlock(pm_qlock) (2.13 step 1)
    "+pm_lock",  # mark_and_clear_dirty_ptes: spin_lock(pm_lock) (2.11 step 1)
    "+pte_lock@A",
    "-pte_lock@A",  # vA1 (PROT_WRITE|MAP_SHARED): whole-VMR walk under pte_lock; vP private: skipped
    "+pte_lock@B",
    "-pte_lock@B",  # vB
    "+pte_lock@A",
    "-pte_lock@A",  # vA2; vR read-only: skipped (2.11 step 2)
    "-pm_lock",
    "+pm_lock",  # shootdown_vmrs: spin_lock(pm_lock) (2.12)
    "tlbshootdown",
    "+proc_lock@A",
    "-proc_lock@A",  # vA1 flagged: proc_tlbshootdown(A) (3.4: under proc_lock)
    "tlbshootdown",
    "+proc_lock@B",
    "-proc_lock@B",  # vB
    "tlbshootdown",
    "+proc_lock@A",
    "-proc_lock@A",  # vA2: A again, no de-dup by process (2.12 step 2)
    "-pm_lock",
]
NEW_WB = NEW_WB_MARK_AND_SHOOT + [
    # __writeback_cb per dirty page (0, 1, 2 from PTEs, 5 from write()): queue_writeback ->
    # gtfs_pm_writepage: qlock(&f->qlock) around the RPC (2.13 step 4; 3.8 "pm_qlock then f->qlock")
    *["+file_qlock", "writepage", "-file_qlock"] * 4,
    "-pm_qlock",  # flush_queued_writebacks (empty TODO), qunlock (2.13 steps 5, 6)
]
BATCHED_WB = NEW_WB_MARK_AND_SHOOT + [
    "-pm_qlock",  # new_batched_wb: queue_writeback only collects; qunlock first
    "+file_qlock",
    "writepages",
    "-file_qlock",  # flush_queued_writebacks after qunlock: one bulk write
]
SYNC_METADATA = [
    "+file_qlock",
    "-file_qlock",  # gtfs writeback_file -> sync_metadata: qlock(&f->qlock), always (4.5 step 1)
]

EXPECTED: dict[tuple[str, str], list[str]] = {
    # ---- read() of a resident page: fs_file_read -> pm_load_page hit -> pm_put_page (4.2) ----
    ("old", "read_hit"): [
        "+pm_lock",
        "-pm_lock",  # pm_find_page under pm_lock (2.2 OLD; 6.1 "pm_load_page hit"); put: no lock
    ],
    ("new", "read_hit"): [
        "rcu",  # pm_find_page: RCU read side, no lock (2.2 NEW; 6.2 "pm_load_page hit: none")
    ],
    # ---- read() miss: find, insert, readpage, unlock_page (2.5; 6.1/6.2 "pm_load_page miss") ----
    ("old", "read_miss"): OLD_LOAD_MISS,
    ("new", "read_miss"): NEW_LOAD_MISS,
    ("new", "read_miss_network"): [  # gtfs exists only at HEAD (99d1ef50 is after a4d7239a)
        "rcu",
        "*page_lock",
        "+pm_qlock",
        "-pm_qlock",
        "+file_qlock",
        "readpage",
        "-file_qlock",  # gtfs_pm_readpage -> gtfs_fsf_read: qlock(&f->qlock) (3.8)
        "-page_lock",
    ],
    # ---- read() of a page another thread is loading: steps of the second reader (2.5 step 3) ----
    ("old", "read_wait"): [
        "+pm_lock",
        "-pm_lock",  # pm_find_page hits a page without PG_UPTODATE
        "+page_lock",  # lock_page = sem_down(pg_sem): sleeps until the loader's unlock_page (6.1 "page loading elsewhere")
        "-page_lock",  # PG_UPTODATE now set: unlock_page, return
    ],
    ("new", "read_wait"): ["rcu", "+page_lock", "-page_lock"],
    # ---- write() of a non-resident page: the miss, then write_metadata (4.2 fs_file_write) ----
    ("old", "write_miss"): OLD_LOAD_MISS
    + [
        "+file_qlock",
        "-file_qlock",  # write_metadata: qlock(&f->qlock) sets FSF_DIRTY, length, mtime
    ],
    ("new", "write_miss"): NEW_LOAD_MISS + ["+file_qlock", "-file_qlock"],
    # ---- page fault, page resident (__hpf, 4.1; 6.1/6.2 "page fault (hit)") ----
    ("old", "fault_hit"): [
        "+vmr_lock",  # __hpf: spin_lock(vmr_lock); find_vmr (4.1 step 1)
        "+pm_lock",
        "-pm_lock",  # pm_load_page_nowait -> pm_find_page, nested in vmr_lock (2.6; 4.1 step 5.3)
        "+pte_lock",
        "-pte_lock",  # map_page_at_addr (4.1 step 6)
        "-vmr_lock",  # pm_put_page (no lock); spin_unlock(vmr_lock) (4.1 steps 7, 8)
    ],
    ("new", "fault_hit"): ["+vmr_lock", "rcu", "+pte_lock", "-pte_lock", "-vmr_lock"],
    # ---- page fault miss, single-core process (PROC_RUNNING_S): load blocking, refault (4.1 step 5.4) ----
    ("old", "fault_miss_scp"): [
        "+vmr_lock",
        "+pm_lock",
        "-pm_lock",  # __hpf: pm_load_page_nowait -> -EAGAIN
        "-vmr_lock",  # foc_incref; spin_unlock(vmr_lock)
        "+proc_lock",
        "-proc_lock",  # __hpf_load_page: RUNNING_S -> WAITING under proc_lock
        *OLD_LOAD_MISS,  # pm_load_page (blocking)
        "+proc_lock",
        "-proc_lock",  # proc_wakeup(p): spin_lock(proc_lock) (kern/src/process.c: proc_wakeup)
        "+vmr_lock",
        "+pm_lock",
        "-pm_lock",
        "+pte_lock",
        "-pte_lock",
        "-vmr_lock",  # refault: a hit
    ],
    (
        "new",
        "fault_miss_scp",
    ): [  # 6.2 "page fault (miss, SCP)"; proc_wakeup from 4.1 and the C code
        "+vmr_lock",
        "rcu",
        "-vmr_lock",
        "+proc_lock",
        "-proc_lock",
        *NEW_LOAD_MISS,
        "+proc_lock",
        "-proc_lock",  # proc_wakeup(p)
        "+vmr_lock",
        "rcu",
        "+pte_lock",
        "-pte_lock",
        "-vmr_lock",
    ],
    # ---- page fault miss, multicore process (PROC_RUNNING_M): -EAGAIN, then SYS_populate_va (4.1) ----
    ("old", "fault_miss_mcp"): [
        "+vmr_lock",
        "+pm_lock",
        "-pm_lock",
        "-vmr_lock",  # __hpf: nowait misses; unlock
        "+proc_lock",
        "-proc_lock",  # __hpf_load_page: RUNNING_M -> -EAGAIN, reflected to user space
        "+vmr_lock",
        "+pm_lock",
        "-pm_lock",  # populate_va: spin_lock(vmr_lock); populate_pm_va: nowait misses
        "-vmr_lock",  # "might block here, can't hold the spinlock"
        *OLD_LOAD_MISS,  # pm_load_page
        "+vmr_lock",  # re-take vmr_lock; vmr_history unchanged
        "+pte_lock",
        "-pte_lock",  # map_page_at_addr
        "-vmr_lock",  # pm_put_page; populate_va: spin_unlock(vmr_lock)
    ],
    ("new", "fault_miss_mcp"): [
        "+vmr_lock",
        "rcu",
        "-vmr_lock",
        "+proc_lock",
        "-proc_lock",
        "+vmr_lock",
        "rcu",
        "-vmr_lock",
        *NEW_LOAD_MISS,
        "+vmr_lock",
        "+pte_lock",
        "-pte_lock",
        "-vmr_lock",
    ],
    # ---- truncate / hole punch of whole pages 0..11 (4.3): write_metadata, then the PM removal ----
    ("old", "punch_hole"): [
        "+file_qlock",
        "-file_qlock",  # fs_file_truncate: write_metadata first (4.3 step 1)
        "+pm_lock",
        "-pm_lock",  # pm_remove_or_zero_pages @a4d7239a: the whole walk under pm_lock (2.8 OLD; 6.1)
    ],
    ("new", "punch_hole"): [
        "+file_qlock",
        "-file_qlock",
        "+pm_qlock",  # pm_remove_or_zero_pages @HEAD: qlock(pm_qlock) (2.8 NEW)
        *["+pm_lock", "-pm_lock"]
        * 12,  # __remove_or_zero_cb -> pm_has_vmr_with_page per resident page (2.7; 6.2)
        "-pm_qlock",
    ],
    ("old_remove_contig", "punch_hole"): [  # pm_remove_contig @a4d7239a (2.9; 6.1)
        "+file_qlock",
        "-file_qlock",
        "+pm_lock",  # atomic_swap(pm_removal); spin_lock(pm_lock); pinned scan; pass 1 (2.9 steps 0-2)
        "+pte_lock@A",
        "-pte_lock@A",  # pass 2, vA1: __pm_mark_not_present under pte_lock (2.9 step 3)
        "+pte_lock@B",
        "-pte_lock@B",  # vB
        "+pte_lock@A",
        "-pte_lock@A",  # vA2 (A already in ptr_store)
        "tlbshootdown",
        "+proc_lock@A",
        "-proc_lock@A",  # shootdown_and_reset_ptrstore, pm_lock held
        "tlbshootdown",
        "+proc_lock@B",
        "-proc_lock@B",  # ("lock ordering: pm (RCU) -> proc lock")
        "+pte_lock@A",
        "-pte_lock@A",  # pass 3: __pm_mark_dirty_pgs_unmap / __pm_mark_unmap (2.9 step 4)
        "+pte_lock@B",
        "-pte_lock@B",
        "+pte_lock@A",
        "-pte_lock@A",
        "-pm_lock",
        *["writepage"] * 10,
        "+pm_lock",  # pass 4: a PTR_ARR_LEN batch, pm_lock dropped (2.9 step 5)
        "-pm_lock",
        *["writepage"] * 2,
        "+pm_lock",  # goto handle_dirty: the other 2 dirty pages
        "-pm_lock",  # pass 5 removes; spin_unlock; atomic_set(pm_removal, 0) (2.9 steps 6, 7)
    ],
    # ---- NEW writeback (4.5): pm_writeback_pages (2.13), and fsync = gtfs writeback_file ----
    ("new", "pm_writeback_pages"): NEW_WB,
    ("new_batched_wb", "pm_writeback_pages"): BATCHED_WB,
    ("new", "fsync"): SYNC_METADATA + NEW_WB,
    ("new_batched_wb", "fsync"): SYNC_METADATA + BATCHED_WB,
    # ---- NEW memory pressure: pm_free_unused_pages (2.14; 6.2) on pages 0..3 (see _reclaim) ----
    ("new", "reclaim"): [
        "+pm_qlock",  # qlock (2.14 step 1)
        "+pm_lock",
        "-pm_lock",  # page 0: CAS page -> NULL, then pm_has_vmr_with_page: no VMR -> freed
        # page 1: slot refcount 1 (a reader between load and put): skipped before any lock
        "+pm_lock",
        "-pm_lock",  # page 2: a VMR covers it -> WRITE_ONCE restores it
        "+pm_lock",
        "-pm_lock",  # page 3: no VMR, PG_DIRTY ->
        "+file_qlock",
        "writepage",
        "-file_qlock",  # writepage with the qlock held, then free (2.14 step 5)
        "-pm_qlock",
    ],
    # ---- mmap of a file (4.4 do_mmap) ----
    ("old", "mmap_shared_rw"): [
        "+file_qlock",
        "-file_qlock",  # foc_dev_mmap -> tree_chan_mmap: qlock(&f->qlock), sets FSF_DIRTY (4.4 step 1)
        "+pm_lock",
        "-pm_lock",  # pm_add_vmr while !vm_ready (2.1; 4.4 step 2)
        "+vmr_lock",
        "-vmr_lock",  # vmr_insert; vm_ready = true (4.4 step 3)
    ],
    ("new", "mmap_shared_rw"): [
        "+file_qlock",
        "-file_qlock",
        "+pm_lock",
        "-pm_lock",
        "+vmr_lock",
        "-vmr_lock",
    ],
    ("old", "mmap_private_ro"): [
        "+file_qlock",
        "-file_qlock",  # tree_chan_mmap qlocks f->qlock on every mmap; only FSF_DIRTY is conditional
        "+pm_lock",
        "-pm_lock",
        "+vmr_lock",
        "-vmr_lock",
    ],
    ("new", "mmap_private_ro"): [
        "+file_qlock",
        "-file_qlock",
        "+pm_lock",
        "-pm_lock",
        "+vmr_lock",
        "-vmr_lock",
    ],
    # ---- munmap of a whole shared writable VMR with two PTEs (4.4 __do_munmap) ----
    ("old", "munmap"): [
        "+vmr_lock",  # munmap: spin_lock(vmr_lock)
        "+pte_lock",
        "-pte_lock",  # __munmap_pte walk: dirty -> PG_DIRTY, clear Present (4.4 step 2)
        "tlbshootdown",
        "+proc_lock",
        "-proc_lock",  # proc_tlbshootdown once (step 3)
        "+pte_lock",
        "-pte_lock",  # __vmr_free_pgs walk (step 4)
        "+pm_lock",
        "-pm_lock",  # destroy_vmr -> pm_remove_vmr (2.1)
        "-vmr_lock",
    ],
    ("new", "munmap"): [
        "+vmr_lock",
        "+pte_lock",
        "-pte_lock",
        "tlbshootdown",
        "+proc_lock",
        "-proc_lock",
        "+pte_lock",
        "-pte_lock",
        "+pm_lock",
        "-pm_lock",
        "-vmr_lock",
    ],
}

# Which locks a thread holds (in the order it took them) when it takes a lock or does IO.
# A tuple: every occurrence of the step; a list: one entry per occurrence, in order.
NESTING: dict[tuple[str, str], dict] = {
    # 2.6 / 4.1 step 5.3: OLD's non-blocking lookup nests pm_lock inside the caller's vmr_lock
    ("old", "fault_hit"): {"+pm_lock": ("vmr_lock",), "+pte_lock": ("vmr_lock",)},
    ("new", "fault_hit"): {"rcu": ("vmr_lock",), "+pte_lock": ("vmr_lock",)},
    # 2.5: the new page is locked before the insert; readpage runs with no PM lock
    ("old", "read_miss"): {"+pm_lock": [(), ("page_lock",)], "readpage": ("page_lock",)},
    ("new", "read_miss"): {"+pm_qlock": ("page_lock",), "readpage": ("page_lock",)},
    ("new", "read_miss_network"): {
        "+file_qlock": ("page_lock",),
        "readpage": ("page_lock", "file_qlock"),
    },
    # the waiter sleeps on the page lock holding nothing
    ("old", "read_wait"): {"+page_lock": ()},
    ("new", "read_wait"): {"+page_lock": ()},
    ("old", "write_miss"): {"+file_qlock": ()},
    # 4.1: vmr_lock is dropped before proc_lock and the blocking load
    ("old", "fault_miss_scp"): {
        "+proc_lock": (),
        "readpage": ("page_lock",),
        "+pte_lock": ("vmr_lock",),
    },
    ("new", "fault_miss_scp"): {
        "+proc_lock": (),
        "+pm_qlock": ("page_lock",),
        "readpage": ("page_lock",),
    },
    ("old", "fault_miss_mcp"): {
        "+pm_lock": [("vmr_lock",), ("vmr_lock",), (), ("page_lock",)],
        "+proc_lock": (),
        "readpage": ("page_lock",),
        "+pte_lock": ("vmr_lock",),
    },
    ("new", "fault_miss_mcp"): {
        "+pm_qlock": ("page_lock",),
        "readpage": ("page_lock",),
        "+pte_lock": ("vmr_lock",),
    },
    # 2.8: NEW's per-page pm_lock round trips sit inside the qlock
    ("old", "punch_hole"): {"+pm_lock": ()},
    ("new", "punch_hole"): {"+pm_lock": ("pm_qlock",)},
    # 2.9: pte_lock and proc_lock under pm_lock; writeback with pm_lock dropped
    ("old_remove_contig", "punch_hole"): {
        "+pte_lock@A": ("pm_lock",),
        "+pte_lock@B": ("pm_lock",),
        "+proc_lock@A": ("pm_lock",),
        "+proc_lock@B": ("pm_lock",),
        "writepage": (),
    },
    # 2.11 - 2.13: pm_qlock -> pm_lock -> pte_lock / proc_lock; writepage (f->qlock) under pm_qlock
    ("new", "pm_writeback_pages"): {
        "+pm_lock": ("pm_qlock",),
        "+pte_lock@A": ("pm_qlock", "pm_lock"),
        "+pte_lock@B": ("pm_qlock", "pm_lock"),
        "+proc_lock@A": ("pm_qlock", "pm_lock"),
        "+proc_lock@B": ("pm_qlock", "pm_lock"),
        "+file_qlock": ("pm_qlock",),
        "writepage": ("pm_qlock", "file_qlock"),
    },
    ("new_batched_wb", "pm_writeback_pages"): {
        "+pte_lock@A": ("pm_qlock", "pm_lock"),
        "+file_qlock": (),
        "writepages": ("file_qlock",),
    },
    # 2.14: pm_lock per page and the dirty page's writepage inside the qlock
    ("new", "reclaim"): {"+pm_lock": ("pm_qlock",), "writepage": ("pm_qlock", "file_qlock")},
    # 4.4: pm_add_vmr is not nested in vmr_lock; munmap nests everything in vmr_lock
    ("old", "mmap_shared_rw"): {"+file_qlock": (), "+pm_lock": (), "+vmr_lock": ()},
    ("old", "munmap"): {
        "+pte_lock": ("vmr_lock",),
        "+proc_lock": ("vmr_lock",),
        "+pm_lock": ("vmr_lock",),
    },
    ("new", "munmap"): {
        "+pte_lock": ("vmr_lock",),
        "+proc_lock": ("vmr_lock",),
        "+pm_lock": ("vmr_lock",),
    },
}

# What-if variants and the design they change; a variant's own rows in EXPECTED are the paths
# where it differs.
VARIANT_BASE = {
    "old_remove_contig": "old",
    "old_mcs": "old",
    "new_batched_wb": "new",
    "new_sync_shootdown": "new",
}
FAMILIES = {
    "old": ("old", "old_remove_contig", "old_mcs"),
    "new": ("new", "new_batched_wb", "new_sync_shootdown"),
}

# Lock-order edges (held -> taken) the reference names (5.2 item 7; 6.1; 6.2; 3.8).
DOCUMENTED_EDGES = {
    "old": {
        ("vmr_lock", "pm_lock"),
        ("vmr_lock", "pte_lock"),
        ("pm_lock", "pte_lock"),
        ("pm_lock", "proc_lock"),
    },
    "new": {
        ("vmr_lock", "pte_lock"),
        ("pm_qlock", "pm_lock"),
        ("pm_lock", "pte_lock"),
        ("pm_lock", "proc_lock"),
        ("pm_qlock", "file_qlock"),
    },
}


# =========================================================================== recording
class LockTrace:
    """Events recorded from outside the model: (thread name, event, lock label or None)."""

    def __init__(self):
        self.events: list[tuple[str, str, str | None]] = []
        self.kinds: dict[str, str] = {}  # lock label -> "spin" | "qlock"
        self._labels: dict[int, str] = {}
        self._keep: list = []  # the labelled objects, so their ids stay unique

    def reset(self) -> None:
        self.events.clear()
        self.kinds.clear()
        self._labels.clear()
        self._keep.clear()

    def name_procs(self, *procs) -> None:
        """Label the per-process locks ``L@P`` (scenarios with more than one process)."""
        for p in procs:
            for attr in ("vmr_lock", "pte_lock", "proc_lock"):
                lock = getattr(p, attr)
                self._labels[id(lock)] = f"{attr}@{p.name}"
                self._keep.append(lock)

    def label(self, lock) -> str:
        return self._labels.get(id(lock), lock.name)

    def record(self, thread, event: str, lock=None, kind: str | None = None) -> None:
        label = None if lock is None else self.label(lock)
        if kind is not None:
            self.kinds[label] = kind
        self.events.append((thread.name, event, label))

    @staticmethod
    def render(event: str, label: str | None) -> str:
        prefix = {"acquire": "+", "release": "-", "init_held": "*"}.get(event)
        return prefix + label if prefix else event

    def walk(self, thread_name: str) -> tuple[list[tuple[str, tuple[str, ...]]], list[str]]:
        """Every event of one thread as (step, locks held just before it), and what it holds at the end."""
        held: list[str] = []
        out = []
        for name, event, label in self.events:
            if name != thread_name:
                continue
            step = self.render(event, label)
            out.append((step, tuple(held)))
            if event in ("acquire", "init_held"):
                held.append(label)
            elif event == "release":
                assert label in held, f"{thread_name} released {label} it did not hold"
                held.remove(label)
        return out, held

    def steps(self, thread_name: str) -> list[str]:
        """The thread's steps in table notation (``block`` events left out)."""
        return [s for s, _ in self.walk(thread_name)[0] if s != "block"]

    def threads(self) -> list[str]:
        return list(dict.fromkeys(name for name, _, _ in self.events))


@pytest.fixture
def trace(monkeypatch) -> LockTrace:
    """Wrap the lock, IO, shootdown, RCU and block primitives with recording delegates."""
    tr = LockTrace()

    def wrap_lock(cls, method, event, kind):
        original = getattr(cls, method)

        def wrapper(self, thread):
            result = yield from original(self, thread)
            tr.record(thread, event, self, kind)
            return result

        monkeypatch.setattr(cls, method, wrapper)

    for cls, kind in ((SpinLock, "spin"), (QLock, "qlock")):
        wrap_lock(cls, "acquire", "acquire", kind)
        wrap_lock(cls, "release", "release", kind)

    qlock_init = QLock.__init__

    def init(self, machine, name, wake="waker_core", held_by=None):
        qlock_init(self, machine, name, wake, held_by)
        if held_by is not None:
            tr.record(held_by, "init_held", self, "qlock")

    monkeypatch.setattr(QLock, "__init__", init)

    def wrap_io(method):
        original = getattr(BackingStore, method)

        def wrapper(self, thread, *args):
            tr.record(thread, method)
            return (yield from original(self, thread, *args))

        monkeypatch.setattr(BackingStore, method, wrapper)

    for method in ("readpage", "writepage", "writepages"):
        wrap_io(method)

    shootdown = TlbShootdown.shootdown

    def tlb_wrapper(self, thread, proc):
        tr.record(thread, "tlbshootdown")
        return (yield from shootdown(self, thread, proc))

    monkeypatch.setattr(TlbShootdown, "shootdown", tlb_wrapper)

    read_section = Rcu.read_section

    def rcu_wrapper(self, thread):
        tr.record(thread, "rcu")
        return read_section(self, thread)

    monkeypatch.setattr(Rcu, "read_section", rcu_wrapper)

    block = Thread.block

    def block_wrapper(self, event):
        tr.record(self, "block")
        return (yield from block(self, event))

    monkeypatch.setattr(Thread, "block", block_wrapper)
    return tr


# =========================================================================== scenarios
# Constant IO latencies; the runs end long before the first RCU grace period matters.
COSTS = {"nvme_latency_sigma": 0, "network_latency_sigma": 0}
RUN_NS = 2 * 10**7


def _machine(design: str):
    m = Machine(cores=4, costs=CostTable(COSTS), seed=7)
    return m, Kernel(m, design)


def _run(m, *bodies) -> list:
    """Run the bodies as SimPy processes; every one must finish. Returns their results."""
    results = []

    def finish(body):
        results.append((yield from body))

    for body in bodies:
        m.env.process(finish(body))
    m.run(RUN_NS)
    assert len(results) == len(bodies), "a scenario thread did not finish"
    return results


def _after(m, delay, body):
    yield m.env.timeout(delay)
    return (yield from body)


def _kernel_path(th, gen):
    """A page-map function run as a kernel path of its own (entry and smp_idle on exit)."""
    th.kernel_enter()
    result = yield from gen
    yield from th.kernel_exit()
    return result


def _read(design, tr, store="tmpfs", warm=(0,), write=False):
    m, k = _machine(design)
    f = k.file("f", 8, store)
    k.warm(f, warm)
    th = m.thread("t", 0)
    _run(m, (k.write if write else k.read)(th, f, 0))
    return "t"


def _read_wait(design, tr):
    """Loader A misses page 0 (nvme read); B reads it halfway through A's readpage."""
    m, k = _machine(design)
    f = k.file("f", 8, "nvme")
    a, b = m.thread("A", 0), m.thread("B", 1)
    _run(m, k.read(a, f, 0), _after(m, m.costs.ns("nvme_read_4k_us") / 2, k.read(b, f, 0)))
    return "B"


def _fault(design, tr, state, warm):
    """A process on core 0 faults (a load) on page 0 of a shared read-only mapping."""
    m, k = _machine(design)
    f = k.file("f", 8, "tmpfs")
    k.warm(f, warm)
    p = k.process("P", cores=[0], state=state)
    vmr = k.map_now(p, f, 0, 8, PROT_READ, shared=True)
    th = m.thread("t", 0, p)
    assert _run(m, k.fault(th, p, vmr.base, False)) == [0]
    assert 0 in vmr.ptes
    return "t"


def _punch_hole(design, tr):
    """Pages 0..11 resident and dirty, mapped shared by A (vA1 RW, vA2 RO) and B (vB RW), some PTEs
    present; punch [0, 12)."""
    m, k = _machine(design)
    f = k.file("f", 16, "nvme")
    k.warm(f, range(12), dirty=range(12))
    a = k.process("A", cores=[1])
    b = k.process("B", cores=[2])
    tr.name_procs(a, b)
    va1 = k.map_now(a, f, 0, 16, RW, shared=True)
    vb = k.map_now(b, f, 0, 16, RW, shared=True)
    va2 = k.map_now(a, f, 0, 16, PROT_READ, shared=True)
    k.prefault(va1, [0, 1], dirty=[0])
    k.prefault(vb, [2])
    k.prefault(va2, [3])
    th = m.thread("t", 0)
    _run(m, k.punch_hole(th, f, 0, 12))
    return "t"


def _fsync_setup(design, tr):
    """Network (gtfs-like) file; pages 0..5 resident, page 5 dirty from a write(). VMRs in list order:
    vA1 (A, shared RW, dirty PTE on page 0), vP (A, private RW), vB (B, shared RW, dirty PTE on 1),
    vA2 (A, shared RW, dirty PTE on 2), vR (B, shared RO, clean PTE on 3)."""
    m, k = _machine(design)
    f = k.file("f", 8, "network")
    k.warm(f, range(6), dirty=[5])
    f.dirty = True  # FSF_DIRTY, set by that write()
    a = k.process("A", cores=[1])
    b = k.process("B", cores=[2])
    tr.name_procs(a, b)
    va1 = k.map_now(a, f, 0, 8, RW, shared=True)
    k.map_now(a, f, 0, 8, RW, shared=False)
    vb = k.map_now(b, f, 0, 8, RW, shared=True)
    va2 = k.map_now(a, f, 0, 8, RW, shared=True)
    vr = k.map_now(b, f, 0, 8, PROT_READ, shared=True)
    k.prefault(va1, [0], dirty=[0])
    k.prefault(vb, [1], dirty=[1])
    k.prefault(va2, [2], dirty=[2])
    k.prefault(vr, [3])
    return m, k, f, m.thread("t", 0)


def _fsync(design, tr):
    m, k, f, th = _fsync_setup(design, tr)
    _run(m, k.fsync(th, f))
    return "t"


def _writeback(design, tr):
    m, k, f, th = _fsync_setup(design, tr)
    _run(m, _kernel_path(th, f.pm.pm_writeback_pages(th)))
    return "t"


def _reclaim(design, tr):
    """Pages 0..3 resident: 0 unused; 1 in use (slot refcount 1, a reader between load and put);
    2 mapped by a VMR; 3 dirty and unmapped."""
    m, k = _machine(design)
    f = k.file("f", 8, "network")
    k.warm(f, range(4), dirty=[3])
    f.pm.tree.slots[1].refcnt = 1
    a = k.process("A", cores=[1])
    k.map_now(a, f, 2, 1, PROT_READ, shared=True)
    th = m.thread("t", 0)
    _run(m, k.reclaim(th))
    return "t"


def _mmap(design, tr, prot, shared):
    m, k = _machine(design)
    f = k.file("f", 8, "tmpfs")
    p = k.process("P", cores=[0])
    th = m.thread("t", 0, p)
    (vmr,) = _run(m, k.mmap(th, p, f, 0, 8, prot, shared))
    assert vmr in p.vmrs and vmr in f.pm.vmrs
    return "t"


def _munmap(design, tr):
    m, k = _machine(design)
    f = k.file("f", 8, "tmpfs")
    k.warm(f, [0, 1])
    p = k.process("P", cores=[0])
    vmr = k.map_now(p, f, 0, 8, RW, shared=True)
    k.prefault(vmr, [0, 1], dirty=[0])
    th = m.thread("t", 0, p)
    _run(m, k.munmap(th, vmr))
    assert vmr not in f.pm.vmrs
    return "t"


SCENARIOS = {
    "read_hit": lambda d, tr: _read(d, tr),
    "read_miss": lambda d, tr: _read(d, tr, warm=()),
    "read_miss_network": lambda d, tr: _read(d, tr, store="network", warm=()),
    "read_wait": _read_wait,
    "write_miss": lambda d, tr: _read(d, tr, warm=(), write=True),
    "fault_hit": lambda d, tr: _fault(d, tr, "RUNNING_M", warm=[0]),
    "fault_miss_scp": lambda d, tr: _fault(d, tr, "RUNNING_S", warm=[]),
    "fault_miss_mcp": lambda d, tr: _fault(d, tr, "RUNNING_M", warm=[]),
    "punch_hole": _punch_hole,
    "pm_writeback_pages": _writeback,
    "fsync": _fsync,
    "reclaim": _reclaim,
    "mmap_shared_rw": lambda d, tr: _mmap(d, tr, RW, True),
    "mmap_private_ro": lambda d, tr: _mmap(d, tr, PROT_READ, False),
    "munmap": _munmap,
}


def run_scenario(tr: LockTrace, design: str, path: str) -> str:
    """Run one scenario on a fresh machine with an empty trace; returns the thread the row is about."""
    tr.reset()
    return SCENARIOS[path](design, tr)


def expected(design: str, path: str) -> list[str]:
    """The design's own row, else its base design's."""
    return EXPECTED.get((design, path)) or EXPECTED[(VARIANT_BASE.get(design, design), path)]


def design_paths(design: str) -> list[str]:
    base = VARIANT_BASE.get(design, design)
    return sorted({p for d, p in EXPECTED if d in (design, base)})


def _ids(keys):
    return [f"{d}-{p}" for d, p in keys]


def _base(label: str) -> str:
    return label.split("@")[0]


# =========================================================================== tests
def test_every_row_has_a_scenario_and_every_design_exists():
    """The table only names scenarios and designs that exist."""
    from pmsim.designs import designs

    names = designs()
    for d, p in EXPECTED:
        assert p in SCENARIOS and d in names
    for v, b in VARIANT_BASE.items():
        assert v in names and b in names


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=_ids(sorted(EXPECTED)))
def test_lock_sequence_matches_reference(trace, key):
    """Each row of EXPECTED: the thread's lock / IO / shootdown steps, in order (6.1, 6.2; 2; 4)."""
    design, path = key
    name = run_scenario(trace, design, path)
    assert trace.steps(name) == EXPECTED[key]


@pytest.mark.parametrize("key", sorted(NESTING), ids=_ids(sorted(NESTING)))
def test_nesting(trace, key):
    """Which locks are held when each listed lock is taken (or IO starts), per NESTING."""
    design, path = key
    name = run_scenario(trace, design, path)
    events, _ = trace.walk(name)
    for step, want in NESTING[key].items():
        got = [held for s, held in events if s == step]
        assert got, f"{step} never happens"
        if isinstance(want, list):
            assert got == want, step
        else:
            assert all(h == want for h in got), (step, got)


VARIANT_KEYS = [
    (v, p) for v, b in VARIANT_BASE.items() for p in design_paths(b) if (v, p) not in EXPECTED
]


@pytest.mark.parametrize("key", VARIANT_KEYS, ids=_ids(VARIANT_KEYS))
def test_variant_takes_its_base_designs_locks(trace, key):
    """A what-if variant takes the same locks in the same order as its base design on every path
    where it has no row of its own (it changes only what its module says it changes)."""
    variant, path = key
    name = run_scenario(trace, VARIANT_BASE[variant], path)
    base_steps = trace.steps(name)
    name = run_scenario(trace, variant, path)
    assert trace.steps(name) == base_steps


ALL_DESIGNS = sorted({d for fam in FAMILIES.values() for d in fam})


@pytest.mark.parametrize("design", ALL_DESIGNS)
def test_no_spinlock_held_while_blocking(trace, design):
    """Akaros's pre_block_check (3.2): no thread sleeps, takes a qlock or starts IO while it holds
    a spinlock; and every thread ends its path holding nothing."""
    for path in design_paths(design):
        run_scenario(trace, design, path)
        for name in trace.threads():
            events, left = trace.walk(name)
            assert left == [], (path, name, left)
            for step, held in events:
                blocking = (
                    step in ("block", "readpage", "writepage", "writepages")  # sem_down may sleep;
                    or step[0] == "+"
                    and trace.kinds.get(step[1:]) == "qlock"
                )  # sem_init(, 0) does not
                if blocking:
                    spins = [h for h in held if trace.kinds[h] == "spin"]
                    assert spins == [], f"{path}: {name} does {step} holding {spins}"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_lock_order_graph_is_acyclic(trace, family):
    """Union of every held -> taken edge over all paths of a design family (per-process locks merged):
    it has no cycle (no two paths take two locks in opposite orders, 5.2 item 7), it has the edges
    the reference names, and no spinlock -> qlock edge."""
    edges: set[tuple[str, str]] = set()
    kinds: dict[str, str] = {}
    for design in FAMILIES[family]:
        for path in design_paths(design):
            run_scenario(trace, design, path)
            kinds.update({_base(k): v for k, v in trace.kinds.items()})
            for name in trace.threads():
                for step, held in trace.walk(name)[0]:
                    if (
                        step[0] == "+"
                    ):  # (a lock created held is invisible to others: no edge into it)
                        edges |= {(_base(h), _base(step[1:])) for h in held}
    assert DOCUMENTED_EDGES[family] <= edges
    assert not [(a, b) for a, b in edges if kinds[a] == "spin" and kinds[b] == "qlock"]
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)

    def reaches(src, dst, seen):
        for nxt in graph.get(src, ()):
            if nxt == dst or (nxt not in seen and not seen.add(nxt) and reaches(nxt, dst, seen)):
                return True
        return False

    cycles = sorted((a, b) for a, b in edges if reaches(b, a, set()))
    assert cycles == [], f"edges on a cycle: {cycles}"


@pytest.mark.parametrize("design", ["old", "new"])
def test_second_reader_sleeps_until_the_loader_unlocks(trace, design):
    """The read_wait row is the wait path (2.5 step 3): B's lookup comes after A's readpage started,
    B blocks in lock_page, and takes the page lock only after A's unlock_page."""
    run_scenario(trace, design, "read_wait")
    ev = [(n, trace.render(e, lbl)) for n, e, lbl in trace.events]
    a_readpage = ev.index(("A", "readpage"))
    b_first = next(i for i, (n, _) in enumerate(ev) if n == "B")
    assert a_readpage < b_first
    b_take = ev.index(("B", "+page_lock"))
    assert ev.index(("A", "-page_lock")) < b_take
    assert ("B", "block") in ev[b_first:b_take]
    assert trace.steps("A") == expected(design, "read_miss")


@pytest.mark.parametrize("op", ["fsync", "reclaim"])
def test_old_has_no_writeback_or_reclaim_entry_point(op):
    """OLD (a4d7239a) has no writeback or memory-pressure path (4.5, 4.6, 4.8): no rows, a ConfigError."""
    assert not [k for k in EXPECTED if k[0] == "old" and k[1] in (op, "pm_writeback_pages")]
    m, k = _machine("old")
    f = k.file("f", 8, "network")
    th = m.thread("t", 0)
    gen = k.fsync(th, f) if op == "fsync" else k.reclaim(th)
    with pytest.raises(ConfigError):
        next(gen)
