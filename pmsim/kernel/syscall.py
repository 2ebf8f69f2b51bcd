"""The syscall layer above the file: ``sysread``/``syswrite`` (kern/src/ns/sysfile.c).

Every ``read()``/``write()`` of a user thread resolves its fd before the file sees it, and
the locks it takes are shared by all threads of a process:

1. ``fdtochan`` -> ``lookup_fd``: ``spin_lock(&fdt->lock)`` (the process's fd table), check
   the fd, ``chan_incref`` (a ``kref`` atomic on the chan's line), ``spin_unlock``;
2. ``rread``/``rwrite``: the file offset read under ``spin_lock(&c->lock)``;
3. the device's read/write (``fs_file_read``/``fs_file_write``: the page map);
4. the offset advanced under ``c->lock`` again;
5. ``cclose`` -> ``kref_put``: a second atomic on the chan's line.

How threads opened the file decides what they share (``processes[].fd``): ``shared``, one
open file per process (a program that opens once and hands the fd to its threads: one chan,
one ``c->lock``, one kref line for all of them), or ``per_thread`` (each thread opened it: its
own chan, but still the process's one ``fdt->lock``). ``pread``/``pwrite`` (no offset lock)
are not wired to the page map in Akaros, so they are not offered. Kernel threads (the
daemons) call the file directly and pay none of this.
"""

from __future__ import annotations

FD_MODES = ("shared", "per_thread")  # the first is the default

# The lock steps of the layer, as the designs' lock-order rows write them (tests/test_lock_order.py)
FDTOCHAN = ("+fdt_lock", "-fdt_lock")  # lookup_fd; chan_incref inside (an atomic, not a lock)
CHAN_OFFSET = ("+chan_lock", "-chan_lock")  # rread/rwrite: c->offset under c->lock


class Chan:
    """``struct chan`` of one open file: ``c->lock`` (the offset) and the line of its kref."""

    __slots__ = ("file", "lock", "ref")

    def __init__(self, machine, file):
        self.file = file
        self.lock = machine.spinlock("chan_lock")
        self.ref = machine.cacheline("chan_ref")


class FdTable:
    """``struct fd_table`` of one process: its spinlock and the chans its fds point to.

    ``owner``: the process's only thread, if it has one. Its fd table and chans are then
    private: no other thread can observe them, so the layer charges their costs without sync
    points (events only where threads can interact); the costs and lock statistics are those
    of the locked path (tests/test_fidelity.py compares the two)."""

    __slots__ = ("machine", "mode", "lock", "chans", "owner")

    def __init__(self, machine, mode: str = "shared"):
        self.machine = machine
        self.mode = mode
        self.lock = machine.spinlock("fdt_lock")
        self.chans: dict = {}  # (opener, file) -> Chan; opener is the thread for per_thread
        self.owner = None

    def make_private(self, thread) -> None:
        """``thread`` is the process's only thread: its table and chans are private to it."""
        self.owner = thread

    def chan(self, th, file) -> Chan:
        """The chan ``th``'s fd for ``file`` points to (opened before the run, at no cost)."""
        key = (th if self.mode == "per_thread" else None, file)
        chan = self.chans.get(key)
        if chan is None:
            chan = self.chans[key] = Chan(self.machine, file)
        return chan


def fdtochan(th, fdt: FdTable, chan: Chan):
    """``fdtochan`` -> ``lookup_fd``: the fd table's lock around ``chan_incref`` (a generator)."""
    yield from fdt.lock.acquire(th, "fdtochan")
    yield from th.sync()
    chan.ref.rmw(th)  # chan_incref: kref_get, an atomic on the chan's line
    yield from fdt.lock.release(th)


def chan_offset(th, chan: Chan):
    """Read or advance ``c->offset`` under ``c->lock`` (a generator)."""
    yield from chan.lock.acquire(th, "chan_offset")
    yield from chan.lock.release(th)


def cclose(th, chan: Chan):
    """``cclose`` -> ``kref_put``: drop the reference ``fdtochan`` took (a generator)."""
    yield from th.sync()
    chan.ref.rmw(th)


def sysrw(th, file, body):
    """``rread``/``rwrite`` around ``body`` (the file's read or write, a generator) for a user
    thread: fd lookup, offset read, the body, offset update, the chan's ref dropped."""
    fdt = th.proc.fdt
    chan = fdt.chan(th, file)
    if fdt.owner is th:  # a single-thread process: nothing here is shared
        enter_private(th, fdt, chan)
        result = yield from body
        leave_private(th, chan)
        return result
    yield from fdtochan(th, fdt, chan)
    yield from chan_offset(th, chan)
    result = yield from body
    yield from chan_offset(th, chan)
    yield from cclose(th, chan)
    return result


def enter_private(th, fdt: FdTable, chan: Chan) -> None:
    """``fdtochan`` and the offset read for the only thread of a process: the steps and costs
    of the locked path, on the thread's own clock (nothing here is shared)."""
    fdt.lock.acquire_private(th, "fdtochan")  # lookup_fd
    chan.ref.rmw_private(th)  # chan_incref
    fdt.lock.release_private(th)
    chan.lock.round_trip_private(th, "chan_offset")  # the offset


def leave_private(th, chan: Chan) -> None:
    """The offset update and ``cclose`` for the only thread of a process."""
    chan.lock.round_trip_private(th, "chan_offset")
    chan.ref.rmw_private(th)
