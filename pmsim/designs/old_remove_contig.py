"""OLD with hole punching through ``pm_remove_contig``, as ``fs_file_punch_hole`` did before
a4d7239a (akaros-pagemap.md 4.3, 4.8): the multi-pass removal with the single-remover
rule, shootdowns under ``pm_lock`` and writeback of dirty pages in batches of 10.
"""

from __future__ import annotations

from pmsim.designs.old_spinlock import OldPageMap


class OldRemoveContig(OldPageMap):
    name = "old_remove_contig"
    summary = "OLD, hole punch calls the multi-pass pm_remove_contig (pre-a4d7239a caller)"
    punch_hole_fn = "pm_remove_contig"

    lock_order = {
        "punch_hole": (  # pm_remove_contig @a4d7239a (2.9; 6.1)
            "+file_qlock", "-file_qlock",
            "+pm_lock",  # atomic_swap(pm_removal); spin_lock(pm_lock); pinned scan; pass 1 (2.9)
            "+pte_lock@A", "-pte_lock@A",  # pass 2, vA1: __pm_mark_not_present under pte_lock
            "+pte_lock@B", "-pte_lock@B",  # vB
            "+pte_lock@A", "-pte_lock@A",  # vA2 (A already in ptr_store)
            "tlbshootdown", "+proc_lock@A", "-proc_lock@A",  # shootdown_and_reset_ptrstore,
            "tlbshootdown", "+proc_lock@B", "-proc_lock@B",  # pm_lock held ("pm -> proc lock")
            "+pte_lock@A", "-pte_lock@A",  # pass 3: __pm_mark_dirty_pgs_unmap / __pm_mark_unmap
            "+pte_lock@B", "-pte_lock@B",
            "+pte_lock@A", "-pte_lock@A",
            "-pm_lock", *("writepage",) * 10, "+pm_lock",  # pass 4: a PTR_ARR_LEN batch, unlocked
            "-pm_lock", *("writepage",) * 2, "+pm_lock",  # goto handle_dirty: the other 2
            "-pm_lock",  # pass 5 removes; spin_unlock; atomic_set(pm_removal, 0) (2.9 steps 6, 7)
        ),
    }  # fmt: skip
    lock_nesting = {
        # 2.9: pte_lock and proc_lock under pm_lock; writeback with pm_lock dropped
        "punch_hole": {
            "+pte_lock@A": ("pm_lock",),
            "+pte_lock@B": ("pm_lock",),
            "+proc_lock@A": ("pm_lock",),
            "+proc_lock@B": ("pm_lock",),
            "writepage": (),
        },
    }


DESIGN = OldRemoveContig
