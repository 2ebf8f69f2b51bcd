"""The report section "Races the timing opens": the hazard oracle's rates per design and point.

Read from the sweep's aggregate like every other number of the report (``hazards.<name>.per_s``
and ``hazards.<name>.window_ns_mean``, pmsim/hazards.py); the section appears only when the
sweep's runs carried hazard data, and a workload only where some design saw a race or the
sweep compares a fix with the design it fixes.
"""

from __future__ import annotations

from pmsim.hazards import HAZARDS
from pmsim.plots import data
from pmsim.report.blocks import Heading, Para, Table

MEANING = {
    "lost_dirty": "a store no writeback saw and nothing marks dirty",
    "stale_read": "readpage returned data older than the last store",
    "freed_while_mapped": "a page freed while a PTE or a TLB entry maps it",
    "publish_race": "a lock-free lookup between radix_insert's publish and pg_tree_slot (C: panic)",
    "aba_dangerous": "__remove_or_zero_cb freed a page a fault mapped inside its window",
    "aba_find_put": "a find/put inside __remove_or_zero_cb's window (benign)",
}


def races(rv, cell) -> list:
    """Per workload, per design and point: each hazard's rate per simulated second (mean ±
    95% half-width over the replications) and the mean width of its window. ``cell``: the
    review's formatting of a statistic (``review.cell``)."""
    blocks = []
    seen_any = False
    for w in rv.workloads():
        pts = rv.points_of(w)
        designs = rv.designs_of(w)
        if not data.has_metric(rv.res, w, "hazards.lost_dirty.per_s"):
            continue  # a sweep from before the oracle
        shown = [
            h
            for h in HAZARDS
            if any(
                (s := rv.stat(d, w, p, f"hazards.{h}.per_s")) and s[0] > 0
                for d in designs
                for p in pts
            )
        ]
        if not shown:
            blocks.append(Para(f"`{w}`: no race occurred on any design at any point."))
            continue
        seen_any = True
        rows = []
        for d in designs:
            for p in pts:
                row = [d, rv.label(p)]
                if rv.stat(d, w, p, "hazards.lost_dirty.per_s") is None:
                    continue  # (an excluded run)
                for h in shown:
                    rate = rv.stat(d, w, p, f"hazards.{h}.per_s")
                    width = rv.stat(d, w, p, f"hazards.{h}.window_ns_mean")
                    row.append(cell(rate))
                    row.append(cell(width, 1e-3) if rate and rate[0] > 0 else "-")
                rows.append(row)
        head = ["design", "point"]
        for h in shown:
            head += [f"{h} (/s)", f"{h} window (µs)"]
        blocks += [Heading(f"`{w}`", 3), Table(head, rows, right=2)]
    if not blocks:
        return []
    legend = "; ".join(f"`{h}`: {MEANING[h]}" for h in HAZARDS)
    intro = [
        Heading("Races the timing opens"),
        Para(
            "What the simulated timing lets happen (the hazard oracle, docs/model.md): each race's "
            "rate per simulated second and how long its window was open, mean ± 95% half-width "
            f"over the replications. {legend}."
            + ("" if seen_any else " No race occurred in this sweep.")
        ),
    ]
    return intro + blocks
