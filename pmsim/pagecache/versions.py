"""Data versions per page, so the hazard oracle can tell a store that was lost from one that
was merely not yet written (pmsim/hazards.py).

Every store to a page (a user store through a TLB entry, a ``write()``'s copy) makes a new
version of its contents; ``writepage`` copies the version the page holds when it starts; a
readpage gets the version the backing store holds. Per file, ``FsFile.disk`` is the version
on the store, and ``FsFile.latest`` the version of a page freed with data the store lacks
(what a later readpage should have returned), by page index.

A store is *marked* when something will make a writeback see it: the PTE it went through has
D set, or the page has PG_DIRTY. An unmarked store (D cached in a stale TLB entry after the
kernel cleared the PTE's D, or a D update a plain PTE write overwrote) is kept on the page
(``Page.uncovered``: the window's width and the trail) until a writepage copies it or a later marked store covers it;
a writeback pass or a free that finds it still there reports ``lost_dirty``.
"""

from __future__ import annotations

from pmsim import hazards
from pmsim.pagecache.page import PG_DIRTY


def store(th, f, page, marked: bool, trail=(), open_ns: float = 0.0) -> None:
    """A store to ``page`` of file ``f`` at ``th``'s clock; ``marked``: the PTE's D (or the
    page's PG_DIRTY) records it. ``trail``: the steps that made it unmarked; ``open_ns``: how
    long the window that let it through was open. (A marked user store is inlined in
    ``mm.user_access``: a new version, nothing pending.)"""
    page.version = v = page.version + 1
    if marked or page.flags & PG_DIRTY:
        page.uncovered = None  # the next writeback writes this version and every earlier one
    elif th.now <= page.wb_at:  # before a writepage's copy that the event order ran first
        f.disk[page.index] = v
    elif page.uncovered is None:
        page.uncovered = (
            open_ns,
            (*trail, hazards.step(th, f"store v{v} to page {page.index}: D not set")),
        )


def written(th, f, page) -> None:
    """``writepage`` starts: the store gets the page's current version."""
    f.disk[page.index] = page.version
    page.wb_at = th.now
    page.uncovered = None


def loaded(th, f, page) -> None:
    """``readpage`` filled ``page``: from the store's version; older than the last store made
    to that page is a ``stale_read``."""
    idx = page.index
    page.version = v = f.disk.get(idx, 0)
    last = f.latest.pop(idx, 0)
    if last > v:
        lost = f.lost.pop(idx, ())
        hazards.occur(
            th.machine,
            "stale_read",
            th,
            th.now - (lost[-1].t if lost else th.now),
            (
                *lost,
                hazards.step(th, f"readpage of page {idx} returns v{v}, last store made v{last}"),
            ),
        )


def check_unseen(th, f, page, where: str) -> None:
    """A writeback pass skipped ``page`` as clean, or the page is being freed without a write:
    a store nothing marked and no writepage copied is ``lost_dirty``."""
    if page.uncovered is None or page.version <= f.disk.get(page.index, 0):
        return
    open_ns, trail = page.uncovered
    page.uncovered = None
    verb = "skips the page as clean" if where == "writeback" else "frees the page unwritten"
    last = hazards.step(th, f"{where}: {verb} (v{page.version}, store has "
                            f"v{f.disk.get(page.index, 0)})")  # fmt: skip
    full = (*sorted(trail, key=lambda s: s.t), last)  # the interleaving, in time order
    hazards.occur(th.machine, "lost_dirty", th, open_ns, full, where, th.now - trail[-1].t)
    if where != "writeback":  # the data is gone: a later readpage of the page reads it stale
        f.latest[page.index] = page.version
        f.lost[page.index] = full


def discarded(f, page) -> None:
    """Truncate or hole punch frees ``page`` on purpose: its unwritten versions are not a loss."""
    f.latest.pop(page.index, None)
    f.lost.pop(page.index, None)
    page.uncovered = None
