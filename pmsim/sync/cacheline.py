"""A cache line as a FIFO server of line transfers; atomics on its words go through it.

Models the coherence traffic of locked RMWs (x86 ``lock cmpxchg``, ``lock xadd``,
``lock or/and``) on one 64-byte line, e.g. the radix slot words (8 per line) or a
page's ``pg_flags``. A local hit costs ``cas_uncontended_ns``; a transfer from
another core costs ``cas_remote_ns`` (a CAS loads then writes) or
``cacheline_transfer_ns`` (a blind RMW), more across sockets. The line is busy for
``contended_atomic_per_contender_ns`` per transfer, so N cores hammering one line
see about N times that per atomic (perfbook refcnt data).
"""

from __future__ import annotations

import math

NEVER = -math.inf  # the write time of a word never written
WORDS = 8  # 8-byte words per 64-byte line


class CacheLine:
    """FIFO service of atomics on one line, with per-word write times for CAS failures."""

    __slots__ = (
        "name",
        "free_at",
        "owner",
        "written",
        "occupancy",
        "_local",
        "_cas",
        "_cas_remote",
        "_rmw",
        "_rmw_remote",
        "recorder",
    )

    def __init__(self, machine, name: str):
        c = machine.costs
        self.name = name
        self.free_at = 0.0
        self.owner = None  # core holding the line
        self.written = [NEVER] * WORDS  # per word: serialization time of its last successful write
        self.occupancy = c.ns("contended_atomic_per_contender_ns")
        self._local = c.ns("cas_uncontended_ns")
        self._cas = c.ns("cas_remote_ns")
        self._cas_remote = c.ns("cas_remote_socket_ns")
        self._rmw = c.ns("cacheline_transfer_ns")
        self._rmw_remote = c.ns("cacheline_transfer_remote_socket_ns")
        self.recorder = machine.recorder

    def rmw(self, thread, word: int = 0) -> None:
        """A locked RMW that cannot fail (atomic_add/or/and); charges its latency to ``thread``.

        The caller must have synced ``thread`` (its clock is the simulated time).
        """
        now = thread.env._now  # (SimPy's ``now`` property, read without the call)
        core = thread.core
        # Queue the access (FIFO): a local hit, or a transfer that occupies the line at
        # most ``occupancy``. (The same in cas(), with the CAS latencies.)
        start = self.free_at if self.free_at > now else now
        owner = self.owner
        if owner is core:
            latency = occ = self._local
        else:
            latency = (
                self._rmw if owner is None or owner.socket == core.socket else self._rmw_remote
            )
            occ = self.occupancy if self.occupancy < latency else latency  # min()
        self.free_at = start + occ
        self.owner = core
        self.written[word] = start
        thread.pending += start + latency - now

    def changed_since(self, word: int, t: float) -> bool:
        """Was ``word`` written (serialized) at or after ``t``?"""
        return self.written[word] >= t

    def cas(
        self, thread, word: int = 0, read_at: float | None = None, equal: bool | None = None
    ) -> tuple[bool, float]:
        """One ``atomic_cas`` attempt on ``word`` whose expected value was read at ``read_at``.

        It fails if another successful write to the word was serialized at or after
        that read, unless the caller compared the values itself (``equal``: a CAS
        succeeds on an equal value even if the word changed and changed back, the
        ABA case). Returns (succeeded, service start); the start is when the value a
        retry compares against was read. Charges the attempt's latency to ``thread``.
        """
        now = thread.env._now  # (SimPy's ``now`` property, read without the call)
        if read_at is None:
            read_at = now
        core = thread.core
        # Queue the access, as in rmw()
        start = self.free_at if self.free_at > now else now
        owner = self.owner
        if owner is core:
            latency = occ = self._local
        else:
            latency = (
                self._cas if owner is None or owner.socket == core.socket else self._cas_remote
            )
            occ = self.occupancy if self.occupancy < latency else latency  # min()
        self.free_at = start + occ
        self.owner = core
        ok = self.written[word] < read_at if equal is None else equal
        if ok:
            self.written[word] = start
        else:
            self.recorder.count(f"cas_failures.{self.name}")
        thread.pending += start + latency - now
        return ok, start

    def retry_owned(self, thread, word: int = 0) -> None:
        """The retry of a CAS that just failed. A failed ``lock cmpxchg`` leaves the line in
        this core's cache, exclusive, and returns the current value; the retry follows at once
        and hits the line locally before another core's request can take it, so it succeeds.
        Call it right after the failed :meth:`cas`."""
        self.free_at += self._local
        self.written[word] = self.free_at - self._local
        thread.pending += self._local

    def cas_loop(self, thread, word: int = 0):
        """``do { old = *p; new = f(old); } while (!atomic_cas(p, old, new))`` (a generator).

        The first attempt fails if the word was written since it was read; the retry then
        succeeds while the line is still owned (:meth:`retry_owned`). Returns the attempts.
        """
        if thread.pending or thread.stolen or thread.core.thread is not thread:
            yield from thread.sync()
        ok, _ = self.cas(thread, word, thread.env.now)
        if ok:
            return 1
        self.retry_owned(thread, word)
        return 2
