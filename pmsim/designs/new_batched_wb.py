"""What-if: NEW with writeback batched and issued after the qlock is dropped (the ``TODO (WB)``).

``queue_writeback`` collects the dirty pages instead of writing each one, and
``pm_writeback_pages`` calls ``flush_queued_writebacks`` after ``qunlock``: one
bulk write of all of them (the device serves them in parallel up to its queue
depth). Misses no longer wait out D x writepage latency behind the qlock.
Not modelled: what would keep the queued pages alive once the qlock is dropped
(a removal could free one mid-write); the C code has no such mechanism yet.
"""

from __future__ import annotations

from pmsim.designs.new_rcu_qlock import NEW_WB_MARK_AND_SHOOT, SYNC_METADATA, NewPageMap


class NewBatchedWriteback(NewPageMap):
    name = "new_batched_wb"
    summary = "NEW, dirty pages collected under the qlock and written in one batch after qunlock"

    def queue_writeback(self, th, page, queue: list):
        queue.append(page)
        return
        yield

    def flush_queued_writebacks(self, th, queue: list):
        if queue:
            yield from self.file.writepages(th, queue)

    def pm_writeback_pages(self, th):
        yield from self.pm_qlock.acquire(th, "pm_writeback_pages")
        yield from self.mark_and_clear_dirty_ptes(th)
        yield from self.shootdown_vmrs(th)
        queue: list = []
        for idx in self._walk(th, 0, self.file.nr_pages):
            yield from self._writeback_cb(th, idx, queue)
        yield from self.pm_qlock.release(th)
        yield from self.flush_queued_writebacks(th, queue)

    # Where its locks differ from NEW's: the qlock dropped before one bulk write.
    lock_order = {
        "pm_writeback_pages": NEW_WB_MARK_AND_SHOOT + (
            "-pm_qlock",  # queue_writeback only collected the pages; qunlock first
            "+file_qlock", "writepages", "-file_qlock",  # flush_queued_writebacks: one bulk write
        ),
    }  # fmt: skip
    lock_order["fsync"] = SYNC_METADATA + lock_order["pm_writeback_pages"]
    lock_nesting = {
        "pm_writeback_pages": {
            "+pte_lock@A": ("pm_qlock", "pm_lock"),
            "+file_qlock": (),
            "writepages": ("file_qlock",),
        },
    }


DESIGN = NewBatchedWriteback
