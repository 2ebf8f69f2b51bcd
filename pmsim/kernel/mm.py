"""Page faults, populate, mmap and munmap of file mappings (kern/src/mm.c; akaros-pagemap.md 4.1, 4.4).

- ``hpf`` holds the process's ``vmr_lock`` across the non-blocking lookup
  (``pm_load_page_nowait``); on a miss it drops the lock and either loads the page
  blocking and refaults (a single-core process) or returns -EAGAIN, and the
  user-level scheduler calls ``SYS_populate_va`` (a multicore process).
- ``map_page_at_addr`` installs the PTE under ``pte_lock``; a present PTE (a
  concurrent fault won) is left alone.
- A user access goes through the core's TLB without entering the kernel
  (:func:`user_access`); a store sets the PTE's dirty bit unless the TLB entry caches it.
"""

from __future__ import annotations

from pmsim import hazards
from pmsim.errors import violation
from pmsim.kernel.vm import PROT_WRITE, PT_ENTRIES, Pte, Vmr, walk_ns
from pmsim.pagecache import versions
from pmsim.pagecache.page import PG_DIRTY, Page
from pmsim.sync.tlb import TlbEntry, flush_due, pending_flush

EAGAIN = -11
EFAULT = -14
EPERM = -1


class MmCosts:
    """The costs the mm paths read, looked up once per kernel."""

    def __init__(self, costs):
        self.vmr_scan = costs.ns("vmr_scan_ns_per_vmr")
        self.pte_level = costs.ns("pte_walk_ns_per_level")
        self.pte_entry = costs.ns("pte_walk_ns_per_entry")
        self.pt_page = costs.ns("page_alloc_ns") / 2 + costs.ns("page_zero_4k_ns")
        self.copy = costs.ns("page_copy_4k_ns")
        self.page_alloc = costs.ns("page_alloc_ns") / 2
        self.access = costs.ns("memory_latency_ns")
        self.flags_rmw = costs.ns("cacheline_transfer_ns")
        self.tlb_refill = costs.ns("tlb_refill_ns")


def map_page_at_addr(th, cost: MmCosts, vmr: Vmr, off: int, page, private: bool):
    """kern/src/mm.c: map_page_at_addr: ``pte_lock``; pgdir_walk with create (a page-table page where none
    exists); leave a present PTE; else write the PTE (writable if the VMR is)."""
    proc = vmr.proc
    yield from proc.pte_lock.acquire(th, "map_page_at_addr")
    th.pending += 4 * cost.pte_level
    chunk = (vmr.base + off) // PT_ENTRIES
    if chunk not in proc.pt_chunks:
        proc.pt_chunks.add(chunk)
        th.pending += cost.pt_page
    pte = vmr.ptes.get(off)
    if pte is None:
        vmr.ptes[off] = Pte(page, bool(vmr.prot & PROT_WRITE), private)
        if not private:
            page.mapcount += 1
    elif not pte.present:
        raise violation(
            th.machine,
            th,
            page.index,
            "map_page_at_addr over a mapped, not-present PTE (assert !pte_is_mapped)",
        )
    yield from proc.pte_lock.release(th)


def copy_and_swap_pmpg(th, cost: MmCosts, pm, page):
    """kern/src/mm.c: __copy_and_swap_pmpg: a private copy of the PM page; the PM page's slot ref is put."""
    th.pending += cost.page_alloc + cost.copy
    yield from pm.pm_put_page(th, page)
    return Page(page.index)


def map_file_page(th, cost: MmCosts, vmr: Vmr, off: int, page):
    """The tail __hpf and populate_pm_va share: a private mapping gets a copy (which puts the
    PM page); map_page_at_addr; ``pm_put_page`` of a PM page (the PTE holds no slot ref)."""
    pm = vmr.file.pm
    private = not vmr.shared
    mapped = (yield from copy_and_swap_pmpg(th, cost, pm, page)) if private else page
    yield from map_page_at_addr(th, cost, vmr, off, mapped, private)
    if not private:
        yield from pm.pm_put_page(th, page)


def hpf_load_page(th, proc, pm, idx: int):
    """kern/src/mm.c: __hpf_load_page: under ``proc_lock``, an SCP (PROC_RUNNING_S) is set
    waiting; it loads the page blocking, ``proc_wakeup`` (``proc_lock`` again), and puts it (the
    caller refaults). An MCP gets -EAGAIN, reflected to user space."""
    yield from proc.proc_lock.acquire(th, "hpf_load_page")
    if proc.state != "RUNNING_S":
        yield from proc.proc_lock.release(th)
        return EAGAIN
    yield from proc.proc_lock.release(th)
    page = yield from pm.pm_load_page(th, idx)
    yield from proc.proc_lock.acquire(th, "hpf_load_page")  # proc_wakeup
    yield from proc.proc_lock.release(th)
    yield from pm.pm_put_page(th, page)
    return 0


def hpf(th, cost: MmCosts, proc, vpn: int, write: bool):
    """kern/src/mm.c: __hpf, for a file-backed VMR. Returns 0, EAGAIN (an MCP: populate from user space), EFAULT (no
    VMR) or EPERM (a store to a mapping without PROT_WRITE)."""
    while True:  # refault
        yield from proc.vmr_lock.acquire(th, "hpf")
        vmr, visited = proc.find_vmr(vpn)
        th.pending += visited * cost.vmr_scan
        if vmr is None or (write and not vmr.prot & PROT_WRITE):
            yield from proc.vmr_lock.release(th)
            return EFAULT if vmr is None else EPERM
        off = vpn - vmr.base
        idx = vmr.foff + off
        pm = vmr.file.pm
        page = yield from pm.pm_load_page_nowait(th, idx)
        if page is None:
            yield from proc.vmr_lock.release(th)
            ret = yield from hpf_load_page(th, proc, pm, idx)
            if ret:
                return ret
            continue
        yield from map_file_page(th, cost, vmr, off, page)
        yield from proc.vmr_lock.release(th)
        return 0


def populate_va(th, cost: MmCosts, proc, vpn: int):
    """kern/src/mm.c: populate_va / populate_pm_va for one page (``SYS_populate_va(va, 1)``): under
    ``vmr_lock``, the non-blocking lookup; on a miss drop ``vmr_lock``, load blocking,
    re-take it and give up if the VMRs changed; map; put."""
    yield from proc.vmr_lock.acquire(th, "populate_va")
    vmr, visited = proc.find_vmr(vpn)
    th.pending += visited * cost.vmr_scan
    if vmr is None:
        yield from proc.vmr_lock.release(th)
        return EFAULT
    history = proc.vmr_history
    off = vpn - vmr.base
    pm = vmr.file.pm
    page = yield from pm.pm_load_page_nowait(th, vmr.foff + off)
    if page is None:
        yield from proc.vmr_lock.release(th)
        page = yield from pm.pm_load_page(th, vmr.foff + off)
        yield from proc.vmr_lock.acquire(th, "populate_va")
        if history != proc.vmr_history:  # "FYI: VMR changed during populate"
            yield from pm.pm_put_page(th, page)
            yield from proc.vmr_lock.release(th)
            return 0
    yield from map_file_page(th, cost, vmr, off, page)
    yield from proc.vmr_lock.release(th)
    return 0


def pte_usable(vmr: Vmr, off: int, write: bool) -> bool:
    """Would a user access go through without a fault (a present PTE, writable for a store)?"""
    pte = vmr.ptes.get(off)
    return pte is not None and pte.present and (pte.writable or not write)


def user_access(th, cost: MmCosts, vmr: Vmr, off: int, write: bool) -> bool:
    """A user load or store to page ``off`` of ``vmr`` through this core's TLB, with no kernel
    entry; False if it faults. The core first applies the shootdown flushes handled by now. A
    TLB miss walks the page table (``tlb_refill_ns``): a present PTE (writable, for a store)
    fills an entry caching its D. A store through an entry with D cached sets nothing; one
    with D clear has the MMU set the PTE's D (an atomic RMW; a not-present PTE faults).
    Every store makes a new data version (pmsim/pagecache/versions.py)."""
    core = th.core
    if core.tlb_flushes:
        flush_due(core, th.now)
    vpn = vmr.base + off
    ent = core.tlb.get(vpn)
    if ent is None or ent.vmr is not vmr:
        pte = vmr.ptes.get(off)
        if pte is None or not pte.present or (write and not pte.writable):
            return False
        th.pending += cost.tlb_refill
        ent = core.tlb[vpn] = TlbEntry(vmr, pte, pte.dirty)
    elif write and not ent.pte.writable:
        return False
    th.pending += cost.access
    pte = ent.pte
    page = pte.page
    if page.freed and not pte.private:
        hazards.occur(
            th.machine,
            "freed_while_mapped",
            th,
            0.0,
            (hazards.step(th, f"access to freed page {page.index} through a TLB entry"),),
            "tlb",
        )
    if write:
        if not ent.dirty:
            if not pte.present:  # the MMU's walk to set D finds P clear: a fault ...
                t_walk = th.now - cost.access  # (when the MMU read the PTE)
                if pte.rmw is None or t_walk >= pte.rmw[1]:
                    del core.tlb[vpn]
                    return False
                _store_in_munmap_window(th, vmr, pte, page, t_walk)  # ... unless P was not clear
                return True
            pte.dirty = True  # the MMU's atomic A/D update
            ent.dirty = True
        if pte.private:
            return True
        if pte.dirty:  # a marked store (versions.store, inlined: the common case)
            page.version += 1
            page.uncovered = None
        else:
            _store(th, vmr, pte, page, core)
    return True


def _store_in_munmap_window(th, vmr: Vmr, pte, page, t_walk: float) -> None:
    """A store whose D update came before ``__munmap_pte`` wrote the PTE with P clear (the
    event order ran the munmap first): before its read of D, munmap saw D (PG_DIRTY); between
    the read and the write, the plain write erased the D the MMU set: ``lost_dirty``."""
    t_read, t_write = pte.rmw
    if t_walk < t_read:
        page.flags |= PG_DIRTY
        versions.store(th, vmr.file, page, True)
        return
    versions.store(th, vmr.file, page, False)
    trail = (
        hazards.step(None, f"__munmap_pte reads the PTE of page {page.index} (D clear)", t_read),
        hazards.step(th, f"store to page {page.index}: the MMU sets D", t_walk),
        hazards.step(None, "__munmap_pte writes the PTE with P clear: D is lost", t_write),
    )
    page.uncovered = None  # reported here: nothing can mark it any more
    hazards.occur(th.machine, "lost_dirty", th, t_write - t_read, trail, "munmap", t_write - t_walk)


def _store(th, vmr: Vmr, pte, page, core) -> None:
    """An unmarked store's data version: the PTE's D is clear (a stale TLB entry)."""
    trail = [s for s in (pte.cleared,) if s is not None]
    pending = pending_flush(core)
    open_ns = 0.0  # from the writepage that took the page's last copy to this core's flush
    if page.wb_at >= 0:
        trail.append(
            hazards.step(
                None,
                f"writepage of page {page.index} copies v{vmr.file.disk.get(page.index, 0)}",
                page.wb_at,
            )
        )
    if pending is not None:
        if page.wb_at >= 0:
            open_ns = max(0.0, pending[0] - page.wb_at)
        trail.append(pending[1])
        trail.append(
            hazards.step(None, f"(flush of core {core.index} handled at {pending[0]:,.1f} ns)",
                         pending[0])
        )  # fmt: skip
    trail.append(hazards.step(th, f"store through core {core.index}'s TLB entry (D cached)"))
    versions.store(th, vmr.file, page, False, trail, open_ns)


def do_mmap(th, cost: MmCosts, proc, f, foff: int, npages: int, prot: int, shared: bool) -> Vmr:
    """kern/src/mm.c: do_mmap of a file: the device mmap hook (``tree_chan_mmap``: ``f->qlock``;
    a shared writable mapping sets FSF_DIRTY); ``pm_add_vmr`` while not ready; under ``vmr_lock`` insert the VMR
    and mark it ready. (merge_me and MAP_POPULATE are not modelled.)"""
    yield from f.qlock.acquire(th, "do_mmap")  # tree_chan_mmap
    if prot & PROT_WRITE and shared:
        f.dirty = True
    yield from f.qlock.release(th)
    vmr = Vmr(proc, f, proc.place(npages), npages, foff, prot, shared)
    yield from f.pm.pm_add_vmr(th, vmr)
    yield from proc.vmr_lock.acquire(th, "do_mmap")
    th.pending += len(proc.vmrs) * cost.vmr_scan  # vmr_insert: a sorted linear list
    proc.vmrs.append(vmr)
    proc.vmr_history += 1
    vmr.ready = True
    vmr.ready_at = th.now
    yield from proc.vmr_lock.release(th)
    return vmr


def do_munmap(th, cost: MmCosts, tlb, vmr: Vmr):
    """kern/src/mm.c: __do_munmap of a whole VMR, ``vmr_lock`` held: under ``pte_lock`` walk it with
    __munmap_pte (a dirty PTE dirties its page; clear Present); one shootdown; walk again
    under ``pte_lock`` with __vmr_free_pgs (PTEs to 0); destroy_vmr -> ``pm_remove_vmr``."""
    proc = vmr.proc
    pm = vmr.file.pm
    yield from proc.vmr_lock.acquire(th, "do_munmap")
    th.pending += len(proc.vmrs) * cost.vmr_scan  # find and isolate the VMR
    walk = walk_vmr_ns(cost, vmr)
    yield from proc.pte_lock.acquire(th, "do_munmap")
    th.pending += walk
    shootdown = False
    for pte in vmr.ptes.values():  # __munmap_pte: a plain read of the PTE, then a write
        if pte.present:
            t_read = th.now
            if pte.dirty and not pte.private:
                pte.page.flags |= PG_DIRTY
                th.pending += cost.flags_rmw
            pte.present = False
            pte.rmw = (t_read, th.now + cost.pte_entry)  # (the write ends the entry's step)
            shootdown = True
    yield from proc.pte_lock.release(th)
    if shootdown:
        yield from tlb.shootdown(th, proc)
    yield from proc.pte_lock.acquire(th, "do_munmap")
    th.pending += walk
    for pte in vmr.ptes.values():  # __vmr_free_pgs
        if not pte.private:
            pte.page.mapcount -= 1
    vmr.ptes.clear()
    yield from proc.pte_lock.release(th)
    proc.vmrs.remove(vmr)  # destroy_vmr
    proc.vmr_history += 1
    yield from pm.pm_remove_vmr(th, vmr)
    yield from proc.vmr_lock.release(th)


def walk_vmr_ns(cost: MmCosts, vmr: Vmr) -> float:
    """env_user_mem_walk over a whole VMR."""
    return walk_ns(vmr.proc, vmr.base, vmr.base + vmr.npages, cost.pte_entry, cost.pte_level)
