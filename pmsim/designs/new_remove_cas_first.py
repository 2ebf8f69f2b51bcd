"""What-if: NEW's ``__remove_or_zero_cb`` takes the page out of its slot (the CAS) before the
VMR scan, and puts it back if a VMR covers it, as ``__flush_unused_cb`` already does.

NEW reads the slot word, scans the VMRs under ``pm_lock``, then CASes against the value
read: a fault through a VMR that became ready after the scan can find, map and put the page
inside that window, and the CAS still succeeds (the hazard oracle's ``aba_dangerous``: a
mapped page freed). With the CAS first, a lookup in the window finds no page and waits on
``pm_qlock`` to insert a fresh one, so no mapping of the removed page can appear. The price:
lookups of a page being scanned miss and convoy on the qlock (ref 5.2 item 6).
"""

from __future__ import annotations

from pmsim.designs.new_rcu_qlock import NewPageMap


class NewRemoveCasFirst(NewPageMap):
    name = "new_remove_cas_first"
    summary = "NEW, __remove_or_zero_cb CASes the page out before the VMR scan (put back if mapped)"

    def _remove_or_zero_cb(self, th, idx: int):
        """__remove_or_zero_cb, CAS first: a page in use is zeroed and kept; else CAS the
        page out of its slot, ``pm_has_vmr_with_page`` (``pm_lock``); a VMR that could map it:
        ``WRITE_ONCE`` the word back, zero and keep; else free it."""
        slot = self.tree.slots[idx]
        page = slot.page
        if page is None:
            raise self.violation(th, idx, "radix item without a page while the qlock is held")
        yield from th.sync()  # read the word now, and CAS against what was read
        if slot.refcnt:
            return self._keep_zeroed(th)
        ok, _ = slot.line.cas(th, slot.word)
        if not ok:
            return self._keep_zeroed(th)
        slot.page = None
        mapped = yield from self.pm_has_vmr_with_page(th, idx)
        if mapped:
            yield from th.sync()
            slot.line.rmw(th, slot.word)  # WRITE_ONCE(*slot, page | flags)
            slot.page = page
            return self._keep_zeroed(th)
        return self._free_yanked(th, slot, page)


DESIGN = NewRemoveCasFirst
