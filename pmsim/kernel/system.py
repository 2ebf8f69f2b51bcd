"""The simulated kernel of one design: its files, processes and the entry points workloads call.

Each entry point is a generator a simulated thread runs; it names the operation
(``Thread.op``, quoted by invariant violations), enters and leaves the kernel
(a syscall's or a trap's fixed cost, and ``smp_idle`` on the way out), and calls
the kernel path that reaches the page map (akaros-pagemap.md section 4). A design
that lacks an entry point (OLD: ``fsync``, ``reclaim``) refuses it with a
ConfigError.
"""

from __future__ import annotations

from pmsim.designs import get_design
from pmsim.errors import violation
from pmsim.kernel import mm
from pmsim.kernel.fs_file import FsFile, fs_file_punch_hole, fs_file_read, fs_file_write
from pmsim.kernel.syscall import sysrw
from pmsim.kernel.vm import PT_ENTRIES, Pte, Vmr
from pmsim.pagecache.page import PG_DIRTY, PG_PAGEMAP, PG_UPTODATE, Page
from pmsim.process import Process
from pmsim.sync.tlb import TlbShootdown


class Kernel:
    """Files with page maps of one design, processes, and the operations on them."""

    def __init__(self, machine, design):
        self.machine = machine
        self.design = get_design(design) if isinstance(design, str) else design
        machine.design = self.design.name
        self.files: list[FsFile] = []
        self.procs: list[Process] = []
        c = machine.costs
        self.mm_cost = c.view(mm.MmCosts)
        self.tlb = TlbShootdown(machine, "async")  # munmap's shootdown (mm code, not the PM)
        self._syscall = c.ns("syscall_entry_exit_ns")
        self._trap = c.ns("minor_fault_us")

    # --- set-up ---------------------------------------------------------------------
    def file(self, name: str, nr_pages: int, store: str = "tmpfs") -> FsFile:
        f = FsFile(self.machine, name, nr_pages, store, self.design)
        self.files.append(f)
        return f

    def process(
        self, name: str, cores: list[int], state: str = "RUNNING_M", fd: str = "shared"
    ) -> Process:
        p = Process(self.machine, name, cores, state, fd)
        self.procs.append(p)
        return p

    def warm(self, f: FsFile, indices, dirty=()) -> None:
        """Make pages resident (up to date, no users) before the run, at no simulated cost.
        Dirty pages imply an earlier write(), which set FSF_DIRTY."""
        tree = f.pm.tree
        dirty = set(dirty)
        if dirty:
            f.dirty = True
        for idx in indices:
            page = Page(idx)
            page.flags = PG_UPTODATE | PG_PAGEMAP | (PG_DIRTY if idx in dirty else 0)
            slot, _ = tree.insert(idx, page)
            if slot is None:
                continue
            slot.refcnt = 0
            page.slot = slot
            f.pm.num_pages += 1

    def map_now(
        self, proc: Process, f: FsFile, foff: int, npages: int, prot: int, shared: bool
    ) -> Vmr:
        """A ready VMR on the process's and the page map's lists, before the run."""
        vmr = Vmr(proc, f, proc.place(npages), npages, foff, prot, shared)
        vmr.ready = True
        proc.vmrs.append(vmr)
        f.pm.vmrs.append(vmr)
        if prot & mm.PROT_WRITE and shared:
            f.dirty = True  # the device mmap hook sets FSF_DIRTY, as do_mmap does
        return vmr

    def prefault(self, vmr: Vmr, offsets, dirty=()) -> None:
        """Install PTEs for resident pages before the run (shared mappings only)."""
        dirty = set(dirty)
        slots = vmr.file.pm.tree.slots
        for off in offsets:
            page = slots[vmr.foff + off].page
            pte = vmr.ptes[off] = Pte(page, bool(vmr.prot & mm.PROT_WRITE), False)
            pte.dirty = off in dirty
            page.mapcount += 1
            vmr.proc.pt_chunks.add((vmr.base + off) // PT_ENTRIES)

    # --- entry points ------------------------------------------------------------------
    def _enter(self, th, op: str, cost: float) -> None:
        if op not in self.design.entry_points:
            self.design.require(op)
        th.op = op
        th.in_kernel = True  # th.kernel_enter()
        th.pending += cost

    def read(self, th, f: FsFile, index: int, npages: int = 1):
        """read(): sysread (kernel/syscall.py: the fd table and chan locks) around fs_file_read
        of ``npages`` pages from page ``index``; a kernel thread calls fs_file_read directly."""
        self._enter(th, "read", self._syscall)
        body = fs_file_read(th, f, index, npages)
        yield from (body if th.proc is None else sysrw(th, f, body))
        yield from th.kernel_exit()

    def write(self, th, f: FsFile, index: int, npages: int = 1):
        """write(): syswrite around fs_file_write of ``npages`` pages from page ``index``."""
        self._enter(th, "write", self._syscall)
        body = fs_file_write(th, f, index, npages)
        yield from (body if th.proc is None else sysrw(th, f, body))
        yield from th.kernel_exit()

    def touch(self, th, vmr: Vmr, off: int, write: bool = False):
        """A user load or store to page ``off`` of a mapping: no kernel entry if its PTE is
        present (writable, for a store); otherwise page faults until it is. Returns the faults."""
        if "touch" not in self.design.entry_points:
            self.design.require("touch")
        th.op = "touch"
        faults = 0
        while not mm.user_access(th, self.mm_cost, vmr, off, write):
            faults += 1
            self.machine.nested_start(th, "fault")
            ret = yield from self.fault(th, vmr.proc, vmr.base + off, write)
            self.machine.nested_done(th, "fault")
            if ret in (mm.EFAULT, mm.EPERM):
                raise violation(self.machine, th, vmr.foff + off, f"segfault: page {off} of {vmr}")
            th.op = "touch"
        return faults

    def fault(self, th, proc: Process, vpn: int, write: bool):
        """A user page fault on a file mapping (__hpf); for a multicore process, the -EAGAIN
        reflected to user space and the ``SYS_populate_va`` that follows."""
        self._enter(th, "fault", self._trap)
        ret = yield from mm.hpf(th, self.mm_cost, proc, vpn, write)
        yield from th.kernel_exit()
        if ret == mm.EAGAIN:
            th.kernel_enter()
            th.pending += self._syscall
            ret = yield from mm.populate_va(th, self.mm_cost, proc, vpn)
            yield from th.kernel_exit()
        return ret

    def fsync(self, th, f: FsFile):
        """fcntl(F_SYNC) -> gtfs writeback_file: pm_writeback_pages if FSF_DIRTY (never
        cleared). tmpfs's CCTL_SYNC does nothing."""
        self._enter(th, "fsync", self._syscall)
        if f.store.kind != "tmpfs":
            yield from f.sync_metadata(th)  # f->qlock; a wstat RPC if mtime or length changed
            if f.dirty:
                yield from f.pm.pm_writeback_pages(th)
        yield from th.kernel_exit()

    def punch_hole(self, th, f: FsFile, index: int, npages: int):
        """Truncate / hole punch of whole pages: write_metadata under ``f->qlock``, then
        fs_file_punch_hole. The file's length is left as it was."""
        self._enter(th, "punch_hole", self._syscall)
        yield from f.qlock.acquire(th, "punch_hole")  # write_metadata
        f.meta_changed = True  # the mtime
        yield from f.qlock.release(th)
        yield from fs_file_punch_hole(th, f, index, npages)
        yield from th.kernel_exit()

    def reclaim(self, th):
        """Memory pressure: gtfs_free_memory's pm_free_unused_pages on every file (a synthetic
        trigger: nothing in the tree calls it, ref 4.6)."""
        self._enter(th, "reclaim", self._syscall)
        for f in self.files:
            yield from f.pm.pm_free_unused_pages(th)
        yield from th.kernel_exit()

    def mmap(self, th, proc: Process, f: FsFile, foff: int, npages: int, prot: int, shared: bool):
        """mmap() of a file range; returns the VMR."""
        self._enter(th, "mmap", self._syscall)
        vmr = yield from mm.do_mmap(th, self.mm_cost, proc, f, foff, npages, prot, shared)
        yield from th.kernel_exit()
        return vmr

    def munmap(self, th, vmr: Vmr):
        """munmap() of a whole VMR."""
        self._enter(th, "munmap", self._syscall)
        yield from mm.do_munmap(th, self.mm_cost, self.tlb, vmr)
        yield from th.kernel_exit()

    def release(self, th, f: FsFile) -> None:
        """The file's last reference goes (tf_release): ``pm_destroy`` runs later from an RCU
        callback on core 0, in cannot-block context (ref 4.7)."""
        self.files.remove(f)
        self.machine.start_rcu().call_rcu(th, f.pm.pm_destroy)
