"""A simulated process: its locks and the cores it runs on.

Akaros (kern/include/env.h; kern/src/process.c: proc_alloc): ``proc_lock``,
``vmr_lock`` and ``pte_lock`` are plain spinlocks. A multicore process
(``PROC_RUNNING_M``) has vcores on a set of cores; TLB shootdowns IPI each one.
"""

from __future__ import annotations

from pmsim.errors import ConfigError

PROC_STATES = ("RUNNING_M", "RUNNING_S")


class Process:
    """A process's identity, state, locks and vcore placement."""

    def __init__(self, machine, name: str, cores: list[int], state: str = "RUNNING_M"):
        if state not in PROC_STATES:
            raise ConfigError(f"process {name}: unknown state {state!r}")
        self.machine = machine
        self.name = name
        self.state = state
        self.cores = [machine.cores[i] for i in cores]
        # Locks are named by kind, so the recorder sums them over processes.
        self.proc_lock = machine.spinlock("proc_lock")
        self.vmr_lock = machine.spinlock("vmr_lock")
        self.pte_lock = machine.spinlock("pte_lock")

    def vcore_cores(self) -> list:
        """Cores that get a shootdown IPI: the online vcores of an MCP, none for an SCP."""
        return self.cores if self.state == "RUNNING_M" else []
