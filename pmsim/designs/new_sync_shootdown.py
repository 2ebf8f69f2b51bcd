"""What-if: NEW with synchronous TLB shootdowns: ``proc_tlbshootdown`` waits for the acks.

Akaros sends the IPIs and returns; code after it assumes the flushes are done
(akaros-pagemap.md 5.2 item 1). Waiting closes that window at the price of
holding ``pm_lock`` (and the qlock, in writeback) until the slowest target has
run its handler.
"""

from __future__ import annotations

from pmsim.designs.new_rcu_qlock import NewPageMap


class NewSyncShootdown(NewPageMap):
    name = "new_sync_shootdown"
    summary = "NEW, the page map's TLB shootdowns wait for every target's acknowledgement"
    shootdown_mode = "sync"


DESIGN = NewSyncShootdown
