"""TLB shootdowns: ``proc_tlbshootdown`` (kern/src/process.c; kern/src/trap.c: send_kernel_message).

Under the process's ``proc_lock``, an MCP gets one immediate kernel message (an
IPI) per online vcore; the sender pays ``ipi_send_ns`` per target and does not
wait for acknowledgements. Each target runs ``__tlbshootdown`` in IRQ context:
``ipi_receive_cycles`` plus a full flush (``tlb_flush_local_ns``), taken from
whatever runs there. The ``sync`` what-if waits for the slowest target to finish.
A single-core process (``PROC_RUNNING_S``) flushes only the caller's core.
"""

from __future__ import annotations

from pmsim.errors import ConfigError

SHOOTDOWN_MODES = ("async", "sync")


class TlbShootdown:
    """Shootdown mechanics shared by every process of a machine."""

    def __init__(self, machine, mode: str = "async"):
        if mode not in SHOOTDOWN_MODES:
            raise ConfigError(
                f"shootdown mode: unknown {mode!r} (one of {', '.join(SHOOTDOWN_MODES)})"
            )
        c = machine.costs
        self.machine = machine
        self.mode = mode
        self.send_ns = c.ns("ipi_send_ns")
        self.handler_ns = c.ns("ipi_receive_cycles") + c.ns("tlb_flush_local_ns")
        self.local_flush_ns = c.ns("tlb_flush_local_ns")

    def shootdown(self, thread, proc):
        """``proc_tlbshootdown(p, 0, 0)`` issued by ``thread`` (a generator)."""
        rec = self.machine.recorder
        yield from proc.proc_lock.acquire(thread, "proc_tlbshootdown")
        rec.count("tlb_shootdowns")
        targets = proc.vcore_cores()
        if not targets:  # PROC_RUNNING_S (or not running): flush the caller's own TLB
            thread.pending += self.local_flush_ns
        else:
            env = self.machine.env
            for core in targets:  # send_kernel_message(pcoreid, __tlbshootdown, KMSG_IMMEDIATE)
                core.steal(env, self.handler_ns)
            rec.count("ipis", len(targets))
            thread.pending += len(targets) * self.send_ns
            if self.mode == "sync":  # wait for the last target's ack: its IPI went out last
                thread.pending += self.handler_ns
        yield from proc.proc_lock.release(thread)
