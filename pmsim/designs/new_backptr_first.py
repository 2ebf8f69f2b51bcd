"""What-if: NEW with ``page->pg_tree_slot`` set before the radix item is published.

NEW's ``pm_insert_page`` lets ``radix_insert`` publish the item (``rcu_assign_pointer``) and
only then sets ``pg_tree_slot``, poisoned until then; a lock-free ``pm_find_page`` of the
same index in between fails its assert (the hazard oracle's ``publish_race``). Setting the
back-pointer first (a radix call that returns the slot before the item's store, then the
store) closes the window at no cost the model can see: the same stores, in another order.
"""

from __future__ import annotations

from pmsim.designs.new_rcu_qlock import NewPageMap


class NewBackptrFirst(NewPageMap):
    name = "new_backptr_first"
    summary = "NEW, pm_insert_page sets page->pg_tree_slot before the item is published"
    backptr_before_publish = True


DESIGN = NewBackptrFirst
