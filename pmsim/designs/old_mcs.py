"""What-if: OLD with an MCS ``pm_lock``: FIFO, one cache-line transfer per hand-off.

Akaros's kernel has only the TTAS spinlock; an MCS lock removes the hand-off
cost that grows with the number of spinners, but every lookup still serialises.
"""

from __future__ import annotations

from pmsim.designs.old_spinlock import OldPageMap


class OldMcsLock(OldPageMap):
    name = "old_mcs"
    summary = "OLD with pm_lock as an MCS queue lock"
    pm_lock_kind = "mcs"


DESIGN = OldMcsLock
