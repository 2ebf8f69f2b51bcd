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


DESIGN = OldRemoveContig
