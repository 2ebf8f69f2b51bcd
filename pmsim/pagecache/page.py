"""``struct page`` as the page map uses it (kern/include/page_alloc.h; akaros-pagemap.md 1.3).

A page carries its flags, its index in the file, the radix slot that holds it
(``pg_tree_slot``) and its page lock (``pg_sem``, a semaphore created held by the
thread that inserts the page and released when ``readpage`` is done).
"""

from __future__ import annotations

PG_LOCKED = 0x001  # in IO; tied to pg_sem
PG_UPTODATE = 0x002  # contents valid
PG_DIRTY = 0x004  # newer than the backing store
PG_PAGEMAP = 0x010  # belongs to a page map; page_decref asserts it is clear
PG_REMOVAL = 0x020  # OLD pm_remove_contig's working mark

FLAG_NAMES = {
    PG_LOCKED: "LOCKED",
    PG_UPTODATE: "UPTODATE",
    PG_DIRTY: "DIRTY",
    PG_PAGEMAP: "PAGEMAP",
    PG_REMOVAL: "REMOVAL",
}


def flag_names(flags: int) -> str:
    return "|".join(n for bit, n in FLAG_NAMES.items() if flags & bit) or "0"


class Page:
    """One 4 KiB page of a file's page cache."""

    __slots__ = (
        "index",
        "flags",
        "sem",
        "slot",
        "freed",
        "flags_line",
        "mapcount",
        "version",
        "wb_at",
        "uncovered",
    )

    def __init__(self, index: int):
        self.index = index  # pg_index
        self.flags = 0  # pg_flags
        self.sem = None  # pg_sem (a QLock), created by the inserter
        self.slot = None  # pg_tree_slot: the Slot that holds this page
        self.freed = False  # page_decref has returned it to the allocator
        self.flags_line = None  # the cache line of pg_flags, made on first contended use
        self.mapcount = 0  # PTEs pointing at this page (for the mapped-freed-page hazard check)
        # The hazard oracle's data versions (pmsim/hazards.py): the version of the contents (one
        # per store), when writepage last copied them, and the first store since then that
        # nothing marks dirty (a trail: tuple of Steps), or None.
        self.version = 0
        self.wb_at = -1.0
        self.uncovered = None

    def __repr__(self) -> str:
        return f"Page({self.index}, {flag_names(self.flags)})"
