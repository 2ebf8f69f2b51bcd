"""The page map's radix tree of packed slot words (kern/src/radix.c; akaros-pagemap.md 1.2, 1.6, 3.6).

Each item is one machine word packing the page, an 11-bit slot refcount and a
flag bit (OLD: ``PM_REMOVAL``). Here a :class:`Slot` holds those three fields;
writers change them only through the CAS protocol of the design that owns the
tree. Eight 8-byte slots share one 64-byte cache line, so lookups of
neighbouring indices contend on the same :class:`~pmsim.sync.cacheline.CacheLine`.

The tree is 64-way; its depth grows with the highest index ever inserted and
never shrinks. Nodes are counted (for allocation and freeing costs, and for the
memory NEW keeps waiting on RCU), not stored: a slot's position is its index.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from pmsim.errors import violation

FANOUT_BITS = 6  # LOG_RNODE_SLOTS
FANOUT = 1 << FANOUT_BITS
SLOTS_PER_LINE = 8  # 8-byte words per 64-byte line
REFCNT_MAX = (1 << 11) - 1  # bits 53..63 of the slot word


class SlotWord(NamedTuple):
    """A slot word's value as a CAS compares it (``old == *slot``)."""

    page: object  # the page, or None once a remover took it out
    refcnt: int
    removal: bool  # OLD's PM_REMOVAL


class Slot:
    """One radix item: the packed slot word and the cache line it lives on."""

    __slots__ = ("index", "page", "refcnt", "removal", "line", "word", "published_at", "backptr_at")

    def __init__(self, index: int, page, line):
        self.index = index
        self.page = page  # None: the page is being (or has been) removed
        self.refcnt = 1  # pm_insert_page hands the inserter one reference
        self.removal = False  # OLD PM_REMOVAL; NEW's flag bit is unused
        self.line = line
        self.word = index % SLOTS_PER_LINE
        # pm_insert_page's window (NEW): lookups before published_at see no item; from then
        # until backptr_at, page->pg_tree_slot is still the poison (set by the inserter).
        self.published_at = 0.0
        self.backptr_at = 0.0

    def value(self) -> SlotWord:
        """The word's value, for a CAS that compares it (``old == *slot``)."""
        return SlotWord(self.page, self.refcnt, self.removal)


class RadixTree:
    """A file's radix tree: slots by index, node counts, the slot cache lines."""

    def __init__(self, machine, nr_pages: int):
        c = machine.costs
        self.machine = machine
        self.slots: dict[int, Slot] = {}
        self.resident = np.zeros(nr_pages, dtype=bool)
        self.depth = 0
        self.children: dict[tuple[int, int], int] = {}  # (level, node id) -> num_items
        self.lines: dict[int, object] = {}
        self.per_level_ns = c.ns("radix_lookup_ns_per_level")
        self.per_slot_ns = c.ns("radix_walk_ns_per_slot")
        self.node_alloc_ns = c.ns("slab_alloc_ns")
        self.node_bytes = int(c.value("radix_node_bytes"))

    # --- lookups ----------------------------------------------------------
    def lookup_ns(self) -> float:
        """``radix_lookup_slot``: one dependent load per level."""
        return self.depth * self.per_level_ns

    def lookup_slot(self, index: int) -> Slot | None:
        return self.slots.get(index)

    def line(self, index: int):
        key = index // SLOTS_PER_LINE
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = self.machine.cacheline("pm_slot")
        return line

    # --- insert / delete ----------------------------------------------------
    def insert(self, index: int, page) -> tuple[Slot | None, int]:
        """``radix_insert``: (the new slot, nodes allocated), or (None, 0) for -EEXIST."""
        if index in self.slots:
            return None, 0
        allocs = 0
        children = self.children
        while (
            self.depth == 0 or index >= FANOUT**self.depth
        ):  # grow: a new root, the old root its first child
            self.depth += 1
            children[(self.depth, 0)] = 1 if self.depth > 1 else 0
            allocs += 1
        level = 1
        while True:  # from the leaf up: count the new child, creating missing nodes
            node = (level, index >> (FANOUT_BITS * level))
            n = children.get(node)
            if n is not None:
                children[node] = n + 1
                break
            children[node] = 1
            allocs += 1
            level += 1
        slot = Slot(index, page, self.line(index))
        self.slots[index] = slot
        self.resident[index] = True
        return slot, allocs

    def delete(self, index: int) -> int:
        """``radix_delete`` / ``__radix_remove_slot``: remove the item; return the nodes freed.

        A node whose ``num_items`` drops to 0 is unlinked from its parent and freed,
        recursively; the root is kept.
        """
        if self.slots.pop(index, None) is None:
            raise violation(self.machine, None, index, "radix_delete of an empty slot")
        self.resident[index] = False
        freed = 0
        level = 1
        children = self.children
        while True:
            node = (level, index >> (FANOUT_BITS * level))
            children[node] -= 1
            if children[node] > 0 or level == self.depth:
                return freed
            del children[node]
            freed += 1
            level += 1

    # --- range walks ----------------------------------------------------------
    def walk(self, start: int, end: int) -> tuple[list[int], float]:
        """``radix_for_each_slot_in_range``: the resident indices in [start, end), in order,
        and the walk's own cost in ns (slots checked in every visited node)."""
        end = min(end, len(self.resident))
        if end <= start or self.depth == 0:
            return [], 0.0
        idx = np.flatnonzero(self.resident[start:end]) + start
        if not len(idx):
            return [], 0.0
        checked = 0
        for level in range(1, self.depth + 1):
            # Every node with an item in range scans from the range's start (or its own
            # first slot) to its last child with an item: rnode_for_each stops once it
            # has seen num_items children.
            shift = FANOUT_BITS * (level - 1)
            child = idx >> shift
            node = child >> FANOUT_BITS
            _, first = np.unique(node, return_index=True)
            last = child[np.append(first[1:] - 1, len(child) - 1)]
            lo = np.maximum(start >> shift, node[first] << FANOUT_BITS)
            checked += int((last - lo + 1).sum())
        return idx.tolist(), checked * self.per_slot_ns

    def __len__(self) -> int:
        return len(self.slots)
