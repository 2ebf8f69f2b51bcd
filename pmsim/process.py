"""A simulated process: its locks, the cores it runs on, its VMRs and page tables.

Akaros (kern/include/env.h; kern/src/process.c: proc_alloc): ``proc_lock``,
``vmr_lock`` and ``pte_lock`` are plain spinlocks. A multicore process
(``PROC_RUNNING_M``) has vcores on a set of cores; TLB shootdowns IPI each one.
``vm_regions`` is a linear list (``find_vmr`` scans it); page tables exist only
where something was faulted in (``pt_chunks``: 2 MiB chunks with a last-level
page-table page), which is what a PTE walk pays for.
"""

from __future__ import annotations

from pmsim.errors import ConfigError
from pmsim.kernel.syscall import FD_MODES, FdTable
from pmsim.kernel.vm import PT_ENTRIES

PROC_STATES = ("RUNNING_M", "RUNNING_S")
# Every process's locks, reported summed by name (fdt_lock and chan_lock: the syscall layer).
PROCESS_LOCKS = ("pte_lock", "vmr_lock", "proc_lock", "fdt_lock", "chan_lock")


class Process:
    """A process's identity, state, locks and vcore placement."""

    def __init__(
        self, machine, name: str, cores: list[int], state: str = "RUNNING_M", fd: str = "shared"
    ):
        if state not in PROC_STATES:
            raise ConfigError(f"process {name}: unknown state {state!r}")
        if fd not in FD_MODES:
            raise ConfigError(f"process {name}: unknown fd mode {fd!r} (one of {FD_MODES})")
        self.machine = machine
        self.name = name
        self.state = state
        self.cores = [machine.cores[i] for i in cores]
        # Locks are named by kind, so the recorder sums them over processes.
        self.proc_lock = machine.spinlock("proc_lock")
        self.vmr_lock = machine.spinlock("vmr_lock")
        self.pte_lock = machine.spinlock("pte_lock")
        self.fdt = FdTable(machine, fd)  # open_files: its lock and the chans of its fds
        self.vmrs: list = []  # vm_regions, in address order
        self.vmr_history = 0  # bumped by every VMR change (populate_pm_va checks it)
        self.pt_chunks: set[int] = set()  # vpn >> 9 of every last-level page table
        self.next_vpn = 1 << 20  # where the next mmap goes (no placement policy is modelled)

    def place(self, npages: int) -> int:
        """The base VPN for a new mapping: 2 MiB aligned, a 2 MiB gap after the last one."""
        base = self.next_vpn
        self.next_vpn += -(-npages // PT_ENTRIES) * PT_ENTRIES + PT_ENTRIES
        return base

    def find_vmr(self, vpn: int):
        """``find_vmr``: (the VMR holding ``vpn`` or None, VMRs visited by the linear scan)."""
        for n, vmr in enumerate(self.vmrs, 1):
            if vmr.base <= vpn < vmr.base + vmr.npages:
                return vmr, n
        return None, len(self.vmrs)

    def vcore_cores(self) -> list:
        """Cores that get a shootdown IPI: the online vcores of an MCP, none for an SCP."""
        return self.cores if self.state == "RUNNING_M" else []
