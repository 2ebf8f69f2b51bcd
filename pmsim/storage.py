"""Backing stores: ``readpage``/``writepage`` latency, a queue depth, synchronous callers.

Akaros has no asynchronous IO, batching or read-ahead (akaros-pagemap.md 3.8): the
caller of ``readpage``/``writepage`` sleeps, giving its core up, until its IO is
done. A device serves at most ``queue_depth`` IOs at once, FIFO beyond that.

Profiles:
- ``tmpfs`` (kern/drivers/dev/tmpfs.c): readpage zeroes the page and sleeps
  ``kthread_usleep(1)``; writepage is a no-op.
- ``nvme``, ``hdd``: lognormal latencies around the cost table's means.
- ``gtfs`` (kern/drivers/dev/gtfs.c): Akaros's 9p-backed file system, one RPC per page
  through ``#mnt``, which serialises them (depth 1); a wstat RPC for ``sync_metadata``.

``tmpfs`` and ``gtfs`` are Akaros's stores. ``nvme`` and ``hdd`` are what-ifs (a local block
device Akaros has no page-cache path for); outputs that use them say so (:data:`WHAT_IF`).
"""

from __future__ import annotations

import heapq

from pmsim.errors import ConfigError
from pmsim.units import Distribution

STORE_KINDS = ("tmpfs", "gtfs", "nvme", "hdd")
WHAT_IF = frozenset({"nvme", "hdd"})  # not Akaros stores: labelled what-if in every output

# Device kinds: the cost-table names of (read mean, write mean, lognormal shape, queue depth).
DEVICE_COSTS = {
    "nvme": ("nvme_read_4k_us", "nvme_write_4k_us", "nvme_latency_sigma", "nvme_queue_depth"),
    "hdd": ("hdd_read_4k_ms", "hdd_write_4k_ms", "hdd_latency_sigma", "hdd_queue_depth"),
    "gtfs": (
        "gtfs_rpc_read_ms",
        "gtfs_rpc_write_ms",
        "gtfs_latency_sigma",
        "gtfs_queue_depth",
    ),
}


class BackingStore:
    """One device: read/write latency distributions and ``queue_depth`` parallel slots."""

    def __init__(self, machine, name: str, kind: str):
        if kind not in STORE_KINDS:
            raise ConfigError(
                f"backing store {name}: unknown kind {kind!r} (one of {', '.join(STORE_KINDS)})"
            )
        c = machine.costs
        self.machine = machine
        self.name = name
        self.kind = kind
        self.depth = 0
        if kind == "tmpfs":
            self.zero_ns = c.ns("page_zero_4k_ns")
            self.sleep_ns = c.ns("tmpfs_readpage_sleep_us")
        else:
            read, write, shape, depth = DEVICE_COSTS[kind]
            sigma = c.value(shape)
            self.read = Distribution("lognormal", (c.ns(read), sigma), f"{kind} read").sampler(
                machine.rng(f"io.{name}.read")
            )
            self.write = Distribution("lognormal", (c.ns(write), sigma), f"{kind} write").sampler(
                machine.rng(f"io.{name}.write")
            )
            self.depth = int(c.value(depth))
            if self.depth < 1:
                raise ConfigError(f"cost {depth}: must be >= 1, got {self.depth}")
        self._slots = [0.0] * self.depth  # min-heap of the times each slot becomes free
        self.busy_ns = 0.0

    def _issue(self, now: float, latency: float, counter: str) -> float:
        """Queue one IO issued at ``now`` on the first free slot; return its completion time."""
        start = max(now, self._slots[0])
        done = start + latency
        heapq.heapreplace(self._slots, done)
        rec = self.machine.recorder
        if done > rec.warmup:
            self.busy_ns += done - max(start, rec.warmup)
        rec.count(counter)
        return done

    def _io(self, thread, latency: float, counter: str):
        """Queue one IO and sleep until it completes (a generator)."""
        yield from thread.sync()
        env = self.machine.env
        done = self._issue(env.now, latency, counter)
        yield from self._sleep(thread, env.timeout(done - env.now))

    def _sleep(self, thread, event):
        """Sleep on IO until ``event`` (a generator; the thread is synced): the time, save and
        restart included, is the operation's IO (``Thread.waited``)."""
        t = thread.env.now
        yield from thread.sleep(event)
        thread.waited("io", self.kind, thread.now - t)

    def readpage(self, thread):
        """``pm_op->readpage``: fill one page from the store (a generator)."""
        if self.kind == "tmpfs":
            thread.pending += self.zero_ns
            yield from thread.sync()
            self.machine.recorder.count("io_reads")
            yield from self._sleep(thread, self.machine.env.timeout(self.sleep_ns))
            return
        yield from self._io(thread, self.read(), "io_reads")

    def writepage(self, thread):
        """``pm_op->writepage``: write one page back (a generator); tmpfs does nothing."""
        if self.kind == "tmpfs":
            self.machine.recorder.count("io_writes")
            return
        yield from self._io(thread, self.write(), "io_writes")

    def wstat(self, thread):
        """gtfs ``sync_metadata``'s wstat RPC (length, mtime) to the 9p server (a generator)."""
        yield from self._io(thread, self.read(), "io_metadata")

    def writepages(self, thread, n: int):
        """A bulk write of ``n`` pages, all issued at once (the ``TODO (WB)`` what-if); the
        caller sleeps until the last one completes (a generator)."""
        if self.kind == "tmpfs":
            self.machine.recorder.count("io_writes", n)
            return
        yield from thread.sync()
        env = self.machine.env
        last = max(self._issue(env.now, self.write(), "io_writes") for _ in range(n))
        yield from self._sleep(thread, env.timeout(last - env.now))

    def utilization(self, window: float, end: float) -> float:
        """Busy slot-time over available slot-time in the measured window ending at ``end``
        (0 for tmpfs). IOs still in flight at ``end`` count only up to it."""
        if not self.depth or window <= 0:
            return 0.0
        overhang = sum(max(0.0, free_at - end) for free_at in self._slots)
        return max(0.0, self.busy_ns - overhang) / (window * self.depth)
