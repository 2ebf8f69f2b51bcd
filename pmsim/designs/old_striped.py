"""What-if: OLD with ``pm_lock``'s radix role split into ``stripes`` spinlocks by page index.

Every radix access of page ``i`` (lookup, insert, removal) takes stripe ``i % stripes``
(``pm_lock_stripe``) instead of ``pm_lock``; ``pm_lock`` keeps guarding the VMR list, so the
removal's VMR scan takes it per page, as NEW's ``pm_has_vmr_with_page`` does. A hole punch moves
from stripe to stripe along its walk (a page inserted behind it in a stripe it has left stays).
Not modelled: what would make the radix tree's shared inner nodes safe under different stripes
(their allocation and freeing cost as in OLD); ``pm_remove_contig``, which this variant does not
call, still takes ``pm_lock``. It shows what striping alone buys lookups that still serialise
per stripe.
"""

from __future__ import annotations

from pmsim.designs.base import PageMap
from pmsim.designs.old_spinlock import OldPageMap


class OldStriped(OldPageMap):
    name = "old_striped"
    summary = "OLD with pm_lock's radix role split into 16 spinlocks by page index"
    stripes = 16
    locks = ("pm_lock", "pm_lock_stripe", "page_lock")

    def __init__(self, machine, file):
        super().__init__(machine, file)
        self.pm_stripes = [
            machine.spinlock("pm_lock_stripe", self.pm_lock_kind) for _ in range(self.stripes)
        ]

    def radix_writers_lock(self, index: int):
        """The stripe of page ``index``: lookups, inserts and removals of it take this one."""
        return self.pm_stripes[index % self.stripes]

    # The VMR list keeps pm_lock: the removal's scan takes it (NEW's pm_has_vmr_with_page).
    pm_has_vmr_with_page = PageMap.pm_has_vmr_with_page

    # Where its locks differ from OLD's: a stripe where OLD takes pm_lock for the radix tree.
    lock_order = {
        "read_hit": ("+pm_lock_stripe", "-pm_lock_stripe"),
        "read_miss": (
            "+pm_lock_stripe", "-pm_lock_stripe",  # pm_find_page misses
            "*page_lock",
            "+pm_lock_stripe", "-pm_lock_stripe",  # pm_insert_page
            "readpage",
            "-page_lock",
        ),
        "read_wait": ("+pm_lock_stripe", "-pm_lock_stripe", "+page_lock", "-page_lock"),
        "fault_hit": (
            "+vmr_lock", "+pm_lock_stripe", "-pm_lock_stripe", "+pte_lock", "-pte_lock", "-vmr_lock",
        ),
        # pages 0..11, one stripe each: the walk starts under page 0's stripe and moves on
        "punch_hole": (
            "+file_qlock", "-file_qlock",
            "+pm_lock_stripe", "+pm_lock", "-pm_lock",  # page 0: its stripe, the VMR scan
            *("-pm_lock_stripe", "+pm_lock_stripe", "+pm_lock", "-pm_lock") * 11,  # pages 1..11
            "-pm_lock_stripe",
        ),
    }  # fmt: skip
    lock_order["write_miss"] = lock_order["read_miss"] + ("+file_qlock", "-file_qlock")
    lock_order["fault_miss_scp"] = (
        "+vmr_lock", "+pm_lock_stripe", "-pm_lock_stripe", "-vmr_lock",
        "+proc_lock", "-proc_lock",
        *lock_order["read_miss"],
        "+proc_lock", "-proc_lock",
        *lock_order["fault_hit"],
    )  # fmt: skip
    lock_order["fault_miss_mcp"] = (
        "+vmr_lock", "+pm_lock_stripe", "-pm_lock_stripe", "-vmr_lock",
        "+proc_lock", "-proc_lock",
        "+vmr_lock", "+pm_lock_stripe", "-pm_lock_stripe", "-vmr_lock",
        *lock_order["read_miss"],
        "+vmr_lock", "+pte_lock", "-pte_lock", "-vmr_lock",
    )  # fmt: skip
    lock_nesting = {
        "fault_hit": {"+pm_lock_stripe": ("vmr_lock",), "+pte_lock": ("vmr_lock",)},
        "read_miss": {"+pm_lock_stripe": [(), ("page_lock",)], "readpage": ("page_lock",)},
        "fault_miss_mcp": {
            "+pm_lock_stripe": [("vmr_lock",), ("vmr_lock",), (), ("page_lock",)],
            "+proc_lock": (),
            "readpage": ("page_lock",),
            "+pte_lock": ("vmr_lock",),
        },
        "punch_hole": {"+pm_lock": ("pm_lock_stripe",), "+pm_lock_stripe": ()},
    }


DESIGN = OldStriped
