"""TLB shootdowns: ``proc_tlbshootdown`` (kern/src/process.c; kern/src/trap.c: send_kernel_message).

Under the process's ``proc_lock``, an MCP gets one immediate kernel message (an
IPI) per online vcore; the sender pays ``ipi_send_ns`` per target and does not
wait for acknowledgements. Each target runs ``__tlbshootdown`` in IRQ context:
``ipi_receive_cycles`` plus a full flush (``tlb_flush_local_ns``), taken from
whatever runs there. The ``sync`` what-if waits for the slowest target to finish.
A single-core process (``PROC_RUNNING_S``) flushes only the caller's core.

Each core has a TLB (:class:`TlbEntry` per user virtual page, ``Core.tlb``): filled by a user
access (``tlb_refill_ns`` for the walk), caching the PTE's writable and dirty bits. A shootdown
flushes a target's TLB when its handler has run there (``ipi_latency_ns`` after the send, then
the handler, behind any earlier flush), not when it is sent: :func:`flush_due` applies a
pending flush lazily, at the core's next user access at or after that time (only an access can
see the TLB, so no event is needed). The flushes are kept with the step that sent them, for
hazard trails. The handler's CPU time is still charged to the target from the send (as the
core's meter expects); only the flush waits for the latency.
"""

from __future__ import annotations

from pmsim.errors import ConfigError
from pmsim.hazards import Step

SHOOTDOWN_MODES = ("async", "sync")


class TlbEntry:
    """One cached translation: the VMR and PTE it came from, and D as the TLB caches it (a
    store through an entry with D cached never sets the PTE's D again)."""

    __slots__ = ("vmr", "pte", "dirty")

    def __init__(self, vmr, pte, dirty: bool):
        self.vmr = vmr
        self.pte = pte
        self.dirty = dirty


def flush_due(core, now: float):
    """Apply the shootdown flushes handled on ``core`` by ``now`` (``__tlbshootdown``: a full
    flush). Returns the last applied (when, step), or None."""
    flushes = core.tlb_flushes
    done = None
    while flushes and flushes[0][0] <= now:
        done = flushes.pop(0)
    if done is not None:
        core.tlb.clear()
    return done


def pending_flush(core):
    """The first flush sent to ``core`` and not yet handled: (when, step), or None."""
    return core.tlb_flushes[0] if core.tlb_flushes else None


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
        self.latency_ns = c.ns("ipi_latency_ns")

    def shootdown(self, thread, proc):
        """``proc_tlbshootdown(p, 0, 0)`` issued by ``thread`` (a generator)."""
        rec = self.machine.recorder
        yield from proc.proc_lock.acquire(thread, "proc_tlbshootdown")
        rec.count("tlb_shootdowns")
        targets = proc.vcore_cores()
        if not targets:  # PROC_RUNNING_S (or not running): flush the caller's own TLB
            thread.pending += self.local_flush_ns
            thread.core.tlb.clear()
            thread.core.tlb_flushes.clear()
        else:
            env = self.machine.env
            sent = Step(thread.now, thread.core.index, thread.name, f"shootdown of {proc.name}")
            last = 0.0
            for core in targets:  # send_kernel_message(pcoreid, __tlbshootdown, KMSG_IMMEDIATE)
                thread.pending += self.send_ns
                core.steal(env, self.handler_ns)  # (its time is charged from the send)
                flushes = core.tlb_flushes
                arrive = thread.now + self.latency_ns
                end = max(arrive, flushes[-1][0] if flushes else arrive) + self.handler_ns
                flushes.append((end, sent))
                last = max(last, end)
            rec.count("ipis", len(targets))
            if self.mode == "sync":  # wait for every target's ack: the last handler's end
                thread.pending += max(0.0, last - thread.now)
        yield from proc.proc_lock.release(thread)
