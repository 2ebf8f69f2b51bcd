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


class CacheLineCosts:
    """The costs of an atomic on a line: a local hit, a transfer from another core for a CAS
    (read, then CAS) or a blind RMW, in or across sockets, and how long a transfer keeps the
    line busy."""

    __slots__ = ("local", "cas", "cas_remote_socket", "rmw", "rmw_remote_socket", "occupancy")

    def __init__(self, costs):
        self.occupancy = costs.ns("contended_atomic_per_contender_ns")
        self.local = costs.ns("cas_uncontended_ns")
        self.cas = costs.ns("cas_remote_ns")
        self.cas_remote_socket = costs.ns("cas_remote_socket_ns")
        self.rmw = costs.ns("cacheline_transfer_ns")
        self.rmw_remote_socket = costs.ns("cacheline_transfer_remote_socket_ns")


class CacheLine:
    """FIFO service of atomics on one line, with per-word write times for CAS failures."""

    __slots__ = ("name", "free_at", "owner", "written", "cost", "recorder", "stats")

    def __init__(self, machine, name: str):
        self.name = name
        self.free_at = 0.0
        self.owner = None  # core holding the line
        self.written = [NEVER] * WORDS  # per word: serialization time of its last successful write
        self.cost = machine.costs.view(CacheLineCosts)
        self.recorder = machine.recorder
        # bounces of this line class: plain counters, touched on a miss only
        self.stats = machine.recorder.line(name)

    def _serve(self, thread, remote: float, remote_socket: float) -> float:
        """Queue one atomic by ``thread`` (FIFO) and charge it its latency: a local hit, or a
        transfer (``remote``, ``remote_socket`` across sockets) that occupies the line at most
        ``occupancy``. Returns when its service starts. ``thread`` must be synced (its clock is
        the simulated time)."""
        now = thread.env.now
        core = thread.core
        cost = self.cost
        start = self.free_at if self.free_at > now else now
        owner = self.owner
        if owner is core:
            latency = occupied = cost.local
        else:
            latency = remote if owner is None or owner.socket == core.socket else remote_socket
            occupied = cost.occupancy if cost.occupancy < latency else latency  # min()
            st = self.stats
            if owner is None:
                st.cold += 1  # the first touch, from memory: not a bounce
            else:
                st.transfers += 1
            st.busy += occupied
        self.free_at = start + occupied
        self.owner = core
        thread.pending += start + latency - now
        return start

    def rmw(self, thread, word: int = 0) -> None:
        """A locked RMW that cannot fail (atomic_add/or/and); charges its latency to ``thread``,
        which must be synced."""
        self.written[word] = self._serve(thread, self.cost.rmw, self.cost.rmw_remote_socket)

    def rmw_private(self, thread, word: int = 0) -> None:
        """A locked RMW on a line no other thread touches (a single-thread process's chan):
        its latency on the thread's own clock, with no sync point and no queue (nobody else
        is served here). The same cost :meth:`rmw` charges."""
        core = thread.core
        owner = self.owner
        if owner is core:
            cost = self.cost.local
        else:
            cost = (
                self.cost.rmw
                if owner is None or owner.socket == core.socket
                else self.cost.rmw_remote_socket
            )
            st = self.stats
            if owner is None:
                st.cold += 1
            else:
                st.transfers += 1
            st.busy += cost
        self.owner = core
        self.written[word] = thread.now
        self.free_at = thread.now + cost
        thread.pending += cost

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
        if read_at is None:
            read_at = thread.env.now
        start = self._serve(thread, self.cost.cas, self.cost.cas_remote_socket)
        ok = self.written[word] < read_at if equal is None else equal
        if ok:
            self.written[word] = start
        else:
            self.recorder.count(f"cas_failures.{self.name}")
        return ok, start

    def retry_owned(self, thread, word: int = 0) -> None:
        """The retry of a CAS that just failed. A failed ``lock cmpxchg`` leaves the line in
        this core's cache, exclusive, and returns the current value; the retry follows at once
        and hits the line locally before another core's request can take it, so it succeeds.
        Call it right after the failed :meth:`cas`."""
        local = self.cost.local
        self.free_at += local
        self.written[word] = self.free_at - local
        thread.pending += local

    def cas_loop(self, thread, word: int = 0):
        """``do { old = *p; new = f(old); } while (!atomic_cas(p, old, new))`` (a generator).

        The first attempt fails if the word was written since it was read; the retry then
        succeeds while the line is still owned (:meth:`retry_owned`). Returns the attempts.
        """
        yield from thread.sync()
        ok, _ = self.cas(thread, word, thread.env.now)
        if ok:
            return 1
        self.retry_owned(thread, word)
        return 2
