"""VMRs and PTEs of file mappings (kern/include/mm.h; kern/src/mm.c; akaros-pagemap.md 1.4, 2.7, 3.5).

A :class:`Vmr` maps ``npages`` pages of a file, from file page ``foff``, at virtual
page ``base`` of a process. Only PTEs that were faulted in exist as :class:`Pte`
objects (``Vmr.ptes``), so a mapping of a million pages costs memory only for
what was touched. A PTE walk (``env_user_mem_walk``) still costs time for every
entry it visits, present or not, wherever a last-level page table exists:
:func:`walk_ns` charges that.
"""

from __future__ import annotations

PROT_READ = 1
PROT_WRITE = 2
PROT_EXEC = 4
PT_ENTRIES = 512  # entries per page-table page: one last-level table maps 2 MiB


class Pte:
    """A present (or OLD: marked not-present but still mapped) PTE of a file page."""

    __slots__ = ("page", "present", "dirty", "writable", "private", "cleared", "rmw")

    def __init__(self, page, writable: bool, private: bool):
        self.page = page  # the PM page, or for MAP_PRIVATE a private copy
        self.present = True
        self.dirty = False
        self.writable = writable
        self.private = private
        self.cleared = None  # the hazard trail's Step of the last kernel clear of D, if any
        self.rmw = None  # __munmap_pte's (read, write) times: its plain read-then-write of the PTE


class Vmr:
    """``struct vm_region`` for a file mapping."""

    __slots__ = (
        "proc",
        "file",
        "base",
        "npages",
        "foff",
        "prot",
        "shared",
        "ready",
        "ready_at",
        "shootdown_needed",
        "ptes",
    )

    def __init__(self, proc, file, base: int, npages: int, foff: int, prot: int, shared: bool):
        self.proc = proc  # vm_proc
        self.file = file
        self.base = base  # vm_base, as a virtual page number
        self.npages = npages  # (vm_end - vm_base) >> PGSHIFT
        self.foff = foff  # vm_foff >> PGSHIFT: the file page mapped at base
        self.prot = prot
        self.shared = shared  # MAP_SHARED (else MAP_PRIVATE)
        self.ready = False  # vm_ready: set once the VMR is on the proc's list
        self.ready_at = 0.0  # when vm_ready was set (a VMR scan reads it at its own time)
        self.shootdown_needed = False  # NEW: set by __pm_mark_and_clear_dirty
        self.ptes: dict[int, Pte] = {}  # page offset in the VMR -> PTE, only where faulted in

    def has_page_idx(self, idx: int) -> bool:
        """``vmr_has_page_idx``: could this VMR map file page ``idx``? (Not: is a PTE there.)"""
        return self.ready and self.foff <= idx < self.foff + self.npages

    def ptes_in(self, lo: int, hi: int) -> list:
        """(offset, PTE) of the faulted-in PTEs with lo <= offset < hi, in address order."""
        ptes = self.ptes
        if hi - lo < len(ptes):
            return [(o, ptes[o]) for o in range(lo, hi) if o in ptes]
        return sorted((o, p) for o, p in ptes.items() if lo <= o < hi)

    def __repr__(self) -> str:
        kind = "shared" if self.shared else "private"
        return (
            f"Vmr({self.proc.name}, file pages {self.foff}+{self.npages}, prot {self.prot}, {kind})"
        )


def walk_ns(proc, lo_vpn: int, hi_vpn: int, per_entry_ns: float, per_level_ns: float) -> float:
    """Cost of ``env_user_mem_walk`` over [lo_vpn, hi_vpn): every level-1 entry of every
    last-level table in range (present or not), plus the upper-level entries."""
    if hi_vpn <= lo_vpn:
        return 0.0
    c_lo, c_hi = lo_vpn // PT_ENTRIES, (hi_vpn - 1) // PT_ENTRIES
    chunks = proc.pt_chunks
    if c_hi - c_lo + 1 <= len(chunks):
        present = [c for c in range(c_lo, c_hi + 1) if c in chunks]
    else:
        present = [c for c in chunks if c_lo <= c <= c_hi]
    level1 = 0
    for c in present:
        level1 += min(hi_vpn, (c + 1) * PT_ENTRIES) - max(lo_vpn, c * PT_ENTRIES)
    upper = (c_hi - c_lo + 1) + 2  # level-2 entries in range, plus the level-3/4 entries
    return level1 * per_entry_ns + upper * per_level_ns
