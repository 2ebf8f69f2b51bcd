"""A file and its syscalls (kern/src/ns/fs_file.c; akaros-pagemap.md 4.2, 4.3).

``fs_file_read`` and ``fs_file_write`` do, per page, load / copy / put (a write
also sets PG_DIRTY, then ``write_metadata`` takes the file's own qlock).
``fs_file_punch_hole`` hands the whole pages to the page map's removal
function. ``readpage``/``writepage`` are the ``pm_op`` of the file's store; the
``gtfs`` store runs them under the file's qlock (ref 3.8).
"""

from __future__ import annotations

from pmsim.pagecache import versions
from pmsim.pagecache.page import PG_DIRTY, PG_UPTODATE
from pmsim.storage import BackingStore


class FsFile:
    """``struct fs_file``: its length in pages, backing store, qlock, FSF_DIRTY and page map."""

    def __init__(self, machine, name: str, nr_pages: int, store: str, design):
        self.machine = machine
        self.name = name
        self.nr_pages = nr_pages
        self.store = BackingStore(machine, name, store)
        self.qlock = machine.qlock("file_qlock")  # f->qlock
        self.dirty = False  # FSF_DIRTY: set by write() and shared writable mmaps, never cleared
        self.meta_changed = False  # mtime or length changed since the last sync_metadata
        self.pm = design(machine, self)
        self.copy_ns = machine.costs.ns("page_copy_4k_ns")  # memcpy of one page
        # data versions by page index (pmsim/pagecache/versions.py): on the store, the last
        # made, and the trail of a loss (for the stale read it causes)
        self.disk: dict[int, int] = {}
        self.latest: dict[int, int] = {}
        self.lost: dict[int, tuple] = {}

    # --- pm_op --------------------------------------------------------------------------
    def readpage(self, th, page):
        """pm_op->readpage: synchronous; sets PG_UPTODATE. gtfs takes ``f->qlock`` around the RPC."""
        if self.store.kind == "gtfs":
            yield from self.qlock.acquire(th, "readpage")
            yield from self.store.readpage(th)
            page.flags |= PG_UPTODATE
            versions.loaded(th, self, page)
            yield from self.qlock.release(th)
        else:
            yield from self.store.readpage(th)
            page.flags |= PG_UPTODATE
            versions.loaded(th, self, page)

    def writepage(self, th, page):
        """pm_op->writepage: synchronous (tmpfs: a no-op). gtfs takes ``f->qlock``."""
        if self.store.kind == "gtfs":
            yield from self.qlock.acquire(th, "writepage")
            versions.written(th, self, page)
            yield from self.store.writepage(th)
            yield from self.qlock.release(th)
        else:
            versions.written(th, self, page)
            yield from self.store.writepage(th)

    def sync_metadata(self, th):
        """gtfs ``writeback_file`` -> ``sync_metadata``: under ``f->qlock``, a wstat RPC when
        the mtime or length changed since the last one (tmpfs has none of this)."""
        if self.store.kind == "tmpfs":
            return
        yield from self.qlock.acquire(th, "sync_metadata")
        if self.meta_changed:
            self.meta_changed = False
            yield from self.store.wstat(th)
        yield from self.qlock.release(th)

    def writepages(self, th, pages: list):
        """The bulk write the ``TODO (WB)`` asks for (what-if designs only)."""
        if self.store.kind == "gtfs":
            yield from self.qlock.acquire(th, "writepages")
            for page in pages:
                versions.written(th, self, page)
            yield from self.store.writepages(th, len(pages))
            yield from self.qlock.release(th)
        else:
            for page in pages:
                versions.written(th, self, page)
            yield from self.store.writepages(th, len(pages))


def fs_file_read(th, f: FsFile, index: int, npages: int):
    """fs_file_read: for each page, pm_load_page, memcpy_to_safe, pm_put_page. (The atime
    update takes ``f->qlock`` at most once an hour per file: not modelled.)

    Returns the generator to run: for one page, that page's step itself (one generator
    level less on the hot path)."""
    if npages == 1 and 0 <= index < f.nr_pages:
        return f.pm.load_copy_put(th, index, f.copy_ns)
    return _fs_file_read_pages(th, f, index, npages)


def _fs_file_read_pages(th, f: FsFile, index: int, npages: int):
    step = f.pm.load_copy_put  # pm_load_page, memcpy_to_safe, pm_put_page
    for idx in range(index, min(index + npages, f.nr_pages)):
        yield from step(th, idx, f.copy_ns)


def fs_file_write(th, f: FsFile, index: int, npages: int):
    """fs_file_write: for each page, pm_load_page (even for a full overwrite),
    memcpy_from_safe, ``atomic_or`` PG_DIRTY, pm_put_page; then write_metadata under ``f->qlock``."""
    pm = f.pm
    for idx in range(index, min(index + npages, f.nr_pages)):
        page = yield from pm.pm_load_page(th, idx)
        th.pending += f.copy_ns
        line = page.flags_line
        if line is None:
            line = page.flags_line = f.machine.cacheline("pg_flags")
        yield from th.sync()
        line.rmw(th)  # atomic_or(&page->pg_flags, PG_DIRTY)
        page.flags |= PG_DIRTY
        versions.store(th, f, page, True)  # (the copy's data; PG_DIRTY marks it)
        yield from pm.pm_put_page(th, page)
    yield from f.qlock.acquire(th, "fs_file_write")  # write_metadata
    f.dirty = True
    f.meta_changed = True  # the mtime (and maybe the length)
    yield from f.qlock.release(th)


def fs_file_punch_hole(th, f: FsFile, index: int, npages: int):
    """fs_file_punch_hole over whole pages: the page map's removal of [index, index+npages)
    (a4d7239a and later: pm_remove_or_zero_pages), then the backend's punch_hole (tmpfs:
    nothing; not modelled for the other stores)."""
    remove = getattr(f.pm, f.pm.punch_hole_fn)
    yield from remove(th, index, npages)
