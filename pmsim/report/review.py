"""The design-review report of a sweep: question, set-up, headline numbers with their 95%
intervals, where each design wins, the hazards quantified, the figures.

Every number is read from the sweep's tables (the aggregate, the paired differences,
the summary, the manifest's resolved workloads and the provenance) and printed with
:func:`num` / :func:`ci`, so a test can find each one again in the tables.
"""

from __future__ import annotations

import json
import math

from pmsim.plots import data
from pmsim.report.blocks import Bullets, Figure, Heading, Para, Table
from pmsim.report.races import races
from pmsim.report.robustness import robustness, scalability
from pmsim.sweeps import verdicts
from pmsim.sweeps.tables import factor_value

THROUGHPUT = "total_ops_per_s"
HISTOGRAM_RESOLUTION = "64 buckets per octave (each 1.1% wide; a percentile within 0.55%)"
# The hazards of a writeback daemon, as (column title, metric, scale, unit).
HAZARDS = [
    ("writeback passes done", "daemons.fsync.count", 1, ""),
    ("pm_qlock held by a pass, mean", "locks.pm_qlock.held_by.fsync.hold_us_mean", 1e-3, "ms"),
    ("held by a pass, longest", "locks.pm_qlock.held_by.fsync.hold_us_max", 1e-3, "ms"),
    ("pass still running at the end, age", "daemons.fsync.unfinished_age_us_max", 1e-3, "ms"),
    ("miss latency p99", "ops.miss.latency_us.p99", 1, "µs"),
    ("miss latency max", "ops.miss.latency_us.max", 1, "µs"),
    ("pm_qlock wait max", "locks.pm_qlock.wait_us_max", 1e-3, "ms"),
    ("pm_qlock hand-off mean", "locks.pm_qlock.handoff_us_mean", 1, "µs"),
    ("misses still waiting at the end", "ops.miss.unfinished", 1, ""),
    ("oldest waiting miss", "ops.miss.unfinished_age_us_max", 1e-3, "ms"),
    ("PTE walk (mark_and_clear_dirty_ptes)", "timings.pte_walk.us_mean", 1, "µs"),
    ("shootdown_vmrs", "timings.shootdown_vmrs.us_mean", 1, "µs"),
    ("TLB shootdowns per run", "tlb.shootdowns", 1, ""),
    ("IPIs per run", "tlb.ipis", 1, ""),
]


def num(x: float) -> str:
    """A number with 4 significant digits (thousands separated), or '-' for a missing one."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    digits = max(0, 3 - int(math.floor(math.log10(abs(x)))))
    return f"{x:,.{digits}f}"


def ci(mean: float, half: float, scale: float = 1.0) -> str:
    """``mean ± half`` (scaled), the half-width to the mean's last shown digit."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    m = num(mean * scale)
    if half is None or math.isnan(half):
        return m
    decimals = len(m.split(".")[1]) if "." in m else 0
    return f"{m} ± {abs(half) * scale:,.{decimals}f}"


def cell(s, scale: float = 1.0) -> str:
    """A :meth:`Review.stat` as a table cell: ``mean ± half``, or ``≥ mean`` where some
    replication's value was only a lower bound (something still in progress at the end)."""
    if not s:
        return "-"
    if len(s) > 3 and s[3]:
        return f"≥ {num(s[0] * scale)}"
    if len(s) > 6 and s[6] == "bootstrap":  # a percentile's interval: asymmetric
        return f"{num(s[0] * scale)} [{num(s[4] * scale)}, {num(s[5] * scale)}]"
    return ci(s[0], s[1], scale)


# How the report words each flag of the aggregate (pmsim.sweeps.tables.aggregate).
FLAG_WORDS = {
    "bimodal": "split: the replications form two clusters, shown instead of their mean",
    "censored": "≥: a lower bound, something still in progress at the end reached it",
    "unsteady": "unsteady: some run's measured window was not steady (warm-up not over by "
    "MSER-5, or a daemon finished fewer than 3 passes)",
    "underpowered": "underpowered: one replication, or a 95% half-width over half the mean",
}


def flagged(rv, design: str, workload: str, point: dict, metric: str, scale: float = 1.0) -> str:
    """A metric as a table cell with its flags: the split instead of the mean, ``≥`` for a
    bound, and ``(unsteady)`` / ``(underpowered)`` after it."""
    s = rv.stat(design, workload, point, metric)
    if not s:
        return "-"
    flags = rv.flags(design, workload, point, metric).split(",")
    text = rv.split(design, workload, point, metric, scale) or cell(s, scale)
    notes = [f for f in ("unsteady", "underpowered") if f in flags]
    return text + (f" ({', '.join(notes)})" if notes else "")


class Review:
    """The numbers of one sweep, indexed for the report."""

    def __init__(self, result):
        self.res = result
        self.exp = result.experiment
        self.base, self.others = self.exp.designs[0], self.exp.designs[1:]
        self.point_keys = [f for f in self.exp.factors if f != "workload"]
        self.manifest = json.loads((result.out / "manifest.json").read_text())

    # --- lookups (the figures' own: pmsim.plots.data) ---------------------------------------
    def workloads(self) -> list[str]:
        return data.workloads(self.res)

    def designs_of(self, workload: str) -> list[str]:
        return data.designs(self.res, workload)

    def points_of(self, workload: str) -> list[dict]:
        """The factor points (without the workload) the workload ran at, in the sweep's order."""
        rows = data.ok_summary(self.res, workload)
        return [
            dict(zip(self.point_keys, t))
            for t in dict.fromkeys(
                tuple(factor_value(v) for v in r)
                for r in rows[self.point_keys].itertuples(index=False)
            )
        ]

    def stat(self, design: str, workload: str, point: dict, metric: str):
        """(mean, ci95_half, n, is a lower bound in some replication, ci95_low, ci95_high,
        interval method: ``t`` or ``bootstrap``) of a metric, or None."""
        rows = data.select_point(data.metric(self.res, workload, metric), point)
        rows = rows[rows["design"] == design]
        if rows.empty:
            return None
        r = rows.iloc[0]
        return (
            r["mean"],
            r["ci95_half"],
            r["n"],
            bool(r.get("lower_bound", 0)),
            r["ci95_low"],
            r["ci95_high"],
            r.get("ci_method", "t"),
        )

    def split(self, design: str, workload: str, point: dict, metric: str, scale=1.0) -> str:
        """The replications' split (``split: 2 of 3 at 17.60, 1 at 4.400``, scaled), or ''."""
        if "bimodal" not in self.flags(design, workload, point, metric):
            return ""
        rows = data.select_point(data.ok_summary(self.res, workload), point)
        values = rows.loc[rows["design"] == design, metric].dropna().to_numpy(dtype=float)
        parts = verdicts.split(values)
        return verdicts.describe_split(parts, scale, num) if parts is not None else ""

    def flags(self, design: str, workload: str, point: dict, metric: str) -> str:
        rows = data.select_point(data.metric(self.res, workload, metric), point)
        rows = rows[rows["design"] == design]
        return "" if rows.empty or "flags" not in rows else str(rows["flags"].iloc[0] or "")

    def difference(self, design: str, workload: str, point: dict, metric: str):
        d = self.res.differences
        rows = data.select_point(d[(d["workload"] == workload) & (d["metric"] == metric)], point)
        rows = rows[rows["design"] == design]
        return None if rows.empty else rows.iloc[0]

    def main_op(self, workload: str) -> str | None:
        """The operation the workload issues most (its latency is the one to compare)."""
        ok = data.ok_summary(self.res, workload)
        counts = {
            c.split(".")[1]: ok[c].mean()
            for c in ok.columns
            if c.startswith("ops.") and c.endswith(".count")
        }
        counts = {op: n for op, n in counts.items() if op not in ("miss", "fault") and n > 0}
        return max(counts, key=counts.get) if counts else None

    def label(self, point: dict) -> str:
        """``16 cores`` when the point is a core count (threads alongside), else ``key=value``."""
        cores = point.get("machine.cores")
        rest = {
            k: v
            for k, v in point.items()
            if k != "machine.cores" and not (k.endswith(".threads") and v == cores)
        }
        parts = [f"{cores} core{'s' if cores != 1 else ''}"] if cores is not None else []
        parts += [
            f"{k.split('.')[-1] if k.count('.') else k}={'none' if v is None or v != v else v}"
            for k, v in rest.items()
        ]
        return ", ".join(parts) or "the base point"

    def specs(self, workload: str) -> list[dict]:
        return [
            r["spec"]
            for r in self.manifest["runs"]
            if r["workload"] == workload and r["status"] == "ok"
        ]


# --- sections ---------------------------------------------------------------------------------
def title(rv: Review) -> list:
    return [
        Heading(f"Design review: {rv.exp.name}", 1),
        Para(rv.exp.question or "(no question stated)", quote=True),
    ]


def setup(rv: Review) -> list:
    from pmsim.costs import CostTable, cost_params
    from pmsim.designs import designs
    from pmsim.storage import WHAT_IF
    from pmsim.workload.load import preset_question, presets

    known, pre = designs(), presets()
    blocks = [
        Heading("Set-up"),
        Bullets([f"`{d}`: {known[d].summary}" if d in known else f"`{d}`" for d in rv.exp.designs]),
    ]
    rows = []
    for w in rv.workloads():
        specs = rv.specs(w)
        s0 = specs[0]
        stores = sorted({f["store"] for s in specs for f in s["files"]})
        rows.append(
            [
                w,
                ", ".join(rv.designs_of(w)),
                str(len(rv.points_of(w))),
                f"{s0['duration']} ({s0['warmup']} warm-up)",
                ", ".join(f"{k} (what-if store)" if k in WHAT_IF else k for k in stores),
                preset_question(pre[w]) if w in pre else "",
            ]
        )
    blocks.append(
        Table(["workload", "designs", "points", "simulated", "stores", "question"], rows, right=9)
    )
    factors = [
        f"`{k}`: {', '.join(str(v) for v in vals)}"
        for k, vals in {**rv.exp.grid, **rv.exp.zip}.items()
        if k != "workload"
    ]
    if rv.exp.zip and len(rv.exp.zip) > 1:
        factors.append(f"advanced together: {', '.join(f'`{k}`' for k in rv.exp.zip)}")
    all_specs = [r["spec"] for r in rv.manifest["runs"] if r["status"] == "ok"]
    machine = {
        k: sorted({str(s["machine"][k]) for s in all_specs})
        for k in ("sockets", "spinlock", "qlock_wake")
    }
    counts = rv.res.summary["status"].value_counts()
    prov = rv.res.provenance
    blocks.append(
        Bullets(
            [
                *factors,
                "machine: " + ", ".join(f"{k} {'/'.join(v)}" for k, v in machine.items()),
                f"{rv.exp.replications} replications per design and point (seed {rv.exp.seed}); "
                f"{int(counts.get('ok', 0))} runs finished, {int(counts.get('failed', 0))} failed"
                + (f", {int(counts['missing'])} missing" if counts.get("missing", 0) else ""),
                f"pmsim {rv.manifest['pmsim_version']} (code digest `{rv.manifest['code_digest']}`); "
                f"{num(prov['wall_s'].sum())} s of run time on {', '.join(sorted(set(prov['host'])))}",
            ]
        )
    )
    changed: dict[str, dict] = {}
    for s in all_specs:
        for name, value in s["machine"]["costs"].items():
            changed.setdefault(name, {}).setdefault(str(value), set()).add(s["name"])
    if changed:
        params, defaults = cost_params(), CostTable()
        blocks.append(Para("Costs that differ from the defaults (the rest are `pmsim costs`):"))
        blocks.append(
            Table(
                ["cost", "default", "used", "workloads"],
                [
                    [
                        name,
                        f"{num(defaults.value(name))} {params[name].unit}",
                        value,
                        ", ".join(sorted(ws)),
                    ]
                    for name, values in sorted(changed.items())
                    for value, ws in values.items()
                ],
                right=1,
            )
        )
    else:
        blocks.append(
            Para("Every cost is at its default (`pmsim costs` lists them with their sources).")
        )
    return blocks


def headline(rv: Review) -> list:
    """Per workload, at its smallest and largest point: throughput and the main operation's p99."""
    blocks = [
        Heading("Headline numbers"),
        Para(
            f"Mean ± 95% confidence half-width (Student t) over {rv.exp.replications} "
            f"replications; a percentile's interval is a bootstrap's over the replications, "
            f"written [low, high]. The "
            f"difference is paired by seed (each replication runs every design on the same random "
            f"streams); a difference whose interval excludes 0 is a real one at 95%."
        ),
    ]
    header = [
        "workload",
        "point",
        *[f"{d} M ops/s" for d in rv.exp.designs],
        *[f"{d} − {rv.base} M ops/s" for d in rv.others],
        "op",
        *[f"{d} p99 µs" for d in rv.exp.designs],
    ]
    rows = []
    for w in rv.workloads():
        pts = rv.points_of(w)
        op = rv.main_op(w)
        for p in dict.fromkeys(map(json.dumps, [pts[0], pts[-1]])):
            p = json.loads(p)
            row = [w, rv.label(p)]
            for d in rv.exp.designs:
                row.append(flagged(rv, d, w, p, THROUGHPUT, 1e-6))
            for d in rv.others:
                df = rv.difference(d, w, p, THROUGHPUT)
                row.append(ci(df["mean"], df["ci95_half"], 1e-6) if df is not None else "-")
            row.append(op or "-")
            for d in rv.exp.designs:
                row.append(flagged(rv, d, w, p, f"ops.{op}.latency_us.p99") if op else "-")
            rows.append(row)
    blocks.append(Table(header, rows, right=2))
    blocks.append(
        Para(
            "Flags: "
            + "; ".join(FLAG_WORDS.values())
            + f". Percentiles come from histograms of {HISTOGRAM_RESOLUTION}: a p99 interval of "
            "width 0 means every replication fell in one bucket, not that it is exact."
        )
    )
    return blocks


def _classify(rv: Review, design: str, workload: str, metric: str, better_high: bool):
    """The points of a workload by the paired verdict of ``design`` against the baseline on
    ``metric`` (pmsim.sweeps.verdicts.verdict): better, worse, negligible, no difference,
    inconclusive; each item (point, differences row)."""
    out = {k: [] for k in ("better", "worse", "negligible", "same", "inconclusive")}
    for p in rv.points_of(workload):
        df = rv.difference(design, workload, p, metric)
        if df is None:
            continue
        v = df.get("verdict", "inconclusive (underpowered)")
        if v in ("higher", "lower"):
            key = "better" if (v == "higher") == better_high else "worse"
        else:
            key = {"negligible": "negligible", "no difference": "same"}.get(v, "inconclusive")
        out[key].append((p, df))
    return out


def pairs_text(rv: Review, design: str, df, better_high: bool) -> str:
    """``new > old in 3/3 pairs (sign test p = 0.25)``: the pairs going the better way."""
    if "pairs_higher" not in df:
        return ""
    n, up, down = int(df["n"]), int(df["pairs_higher"]), int(df["pairs_lower"])
    good, sign = (up, ">") if better_high else (down, "<")
    bad = down if better_high else up
    if good == bad == 0:
        return f"{design} = {rv.base} in all {n} pairs"
    if bad > good:
        good, sign = bad, "<" if better_high else ">"
    return f"{design} {sign} {rv.base} in {good}/{n} pairs (sign test p = {df['sign_p']:.2g})"


def _span(rv: Review, items, scale: float, unit: str, ratio: bool) -> str:
    where = ", ".join(rv.label(p) for p, _ in items)
    diffs = [ci(df["mean"], df["ci95_half"], scale) for _, df in items]
    text = f"{where} ({'; '.join(diffs)} {unit}"
    if ratio:
        rs = [
            (df["mean"] + df["baseline_mean"]) / df["baseline_mean"]
            for _, df in items
            if df["baseline_mean"]
        ]
        if rs:
            text += f"; ×{num(min(rs))}" + (f" to ×{num(max(rs))}" if len(rs) > 1 else "")
    return text + ")"


def _itemised(rv: Review, d: str, w: str, what: str, items, scale, unit, ratio, better_high):
    """One bullet per point: where, the paired difference, the ratio, the pairs, a split."""
    out = []
    for p, df in items:
        text = f"`{w}` {what} at {_span(rv, [(p, df)], scale, unit, ratio)}"
        pairs = pairs_text(rv, d, df, better_high)
        text += f": {pairs}" if pairs else ""
        splits = [
            f"{x} {sp}" for x in (d, rv.base) if (sp := rv.split(x, w, p, df["metric"], scale))
        ]
        text += f"; {'; '.join(splits)}" if splits else ""
        out.append(text)
    return out


def wins(rv: Review) -> list:
    blocks = []
    practical = getattr(rv.exp, "practical_difference", 0.02)
    pct = f"{practical * 100:g}%"
    for d in rv.others:
        won: dict[str, list] = {d: [], rv.base: []}
        rest = {"negligible": [], "same": [], "inconclusive": []}
        for w in rv.workloads():
            if d not in rv.designs_of(w) or rv.base not in rv.designs_of(w):
                continue
            checks = [(THROUGHPUT, "throughput", True, 1e-6, "M ops/s", True)]
            op = rv.main_op(w)
            if op:
                checks.append(
                    (f"ops.{op}.latency_us.p99", f"{op} p99 latency", False, 1, "µs", False)
                )
            for metric, what, high, scale, unit, ratio in checks:
                got = _classify(rv, d, w, metric, high)
                args = (scale, unit, ratio, high)
                won[d] += _itemised(rv, d, w, what, got["better"], *args)
                won[rv.base] += _itemised(rv, d, w, what, got["worse"], *args)
                for k in rest:
                    rest[k] += _itemised(rv, d, w, what, got[k], *args)
        for who, other in ((d, rv.base), (rv.base, d)):
            blocks += [
                Heading(f"Where {who} wins over {other}"),
                Bullets(won[who])
                if won[who]
                else Para(
                    f"Nowhere: no point where {who} is better at 95% confidence by at least {pct}."
                ),
            ]
        titles = {
            "negligible": f"Real but negligible (under {pct}) between {d} and {rv.base}",
            "same": f"No difference (the 95% interval within ±{pct}) between {d} and {rv.base}",
            "inconclusive": f"Inconclusive (underpowered) between {d} and {rv.base}",
        }
        for k, title in titles.items():
            if rest[k]:
                blocks += [Heading(title, 3), Bullets(rest[k])]
    if blocks:
        blocks.insert(
            0,
            Para(
                f"From the paired differences ({', '.join(rv.others)} − {rv.base}, 95% t "
                f"intervals, each pair run on the same seed), with the count of pairs each way "
                f"and a two-sided sign test; the ratio is the design's mean over the baseline's. "
                f"A difference under {pct} of the baseline is negligible; 'no difference' means "
                f"the interval lies within ±{pct}; an interval that includes 0 and reaches past "
                f"±{pct} is inconclusive (underpowered): more replications would decide it."
            ),
        )
    return blocks


def hazards(rv: Review) -> list:
    """The writeback daemon's cost to the others, where a workload has one."""
    blocks = []
    for w in rv.workloads():
        designs = [
            d for d in rv.designs_of(w) if rv.stat(d, w, rv.points_of(w)[-1], "daemons.fsync.count")
        ]
        if not designs:
            continue
        cols = [
            h
            for h in HAZARDS
            if any(rv.stat(d, w, p, h[1]) for d in designs for p in rv.points_of(w))
        ]
        rows = []
        for d in designs:
            for p in rv.points_of(w):
                row = [d, rv.label(p)]
                for _, metric, scale, _ in cols:
                    row.append(cell(rv.stat(d, w, p, metric), scale))
                rows.append(row)
        blocks += [
            Heading(f"`{w}`", 3),
            Table(
                ["design", "point", *[f"{t} ({u})" if u else t for t, _, _, u in cols]],
                rows,
                right=2,
            ),
        ]
        blocks.append(Para(_hazard_sentence(rv, w, designs[0])))
        reach = _hazard_reach(rv, w, designs[0])
        if reach:
            blocks.append(Para(reach))
    if blocks:
        blocks.insert(0, Heading("Hazards quantified"))
        blocks.insert(
            1,
            Para(
                "NEW's writeback (`pm_writeback_pages`) holds `pm_qlock` for the whole pass: the PTE walk, the "
                "TLB shootdowns and every dirty page's synchronous write, so any miss on the file waits for the "
                "pass. A pass still running when the run ends has no hold time yet: its age is the column "
                "'pass still running at the end'. Mean ± 95% half-width over the replications."
            ),
        )
    return blocks


# The lockstat columns the report shows (mean over the replications), after lock and design.
LOCKSTAT_SHOWN = ("waittime-total", "contentions", "acquisitions", "acq-bounces", "holdtime-total")


def contention(rv: Review) -> list:
    """Where the time went: per workload, at its last point, each design's locks ranked by total
    wait (lockstat's columns, pmsim.workload.contention) and its most-bounced cache line. Only
    for sweeps whose runs stored the lockstat table."""
    try:
        ls, ln = rv.res.table("lockstat"), rv.res.table("lines")
    except (OSError, KeyError):
        return []
    if ls.empty or "waittime-total" not in ls:
        return []
    ls = ls[ls["site"] == "*"]
    blocks = []
    for w in rv.workloads():
        p = rv.points_of(w)[-1]
        here = data.select_point(ls[ls["workload"] == w], p)
        lines = data.select_point(ln[ln["workload"] == w], p) if len(ln) else ln
        rows = []
        for d in rv.designs_of(w):
            mine = here[here["design"] == d]
            if mine.empty:
                continue
            n = mine["run_id"].nunique()
            top = (
                mine.groupby("lock")[list(LOCKSTAT_SHOWN)].sum().div(n)
                .sort_values(["waittime-total", "acquisitions"], ascending=False).head(3)
            )  # fmt: skip
            bounced = ""
            if len(lines):
                ld = lines[lines["design"] == d].groupby("line")["transfers"].sum().div(n)
                if len(ld) and ld.max() > 0:
                    bounced = f"{ld.idxmax()} ({num(ld.max())})"
            for lock, r in top.iterrows():
                rows.append([d, lock, *(num(r[c]) for c in LOCKSTAT_SHOWN), bounced or "-"])
                bounced = ""
        if rows:
            blocks += [
                Heading(f"`{w}` at {rv.label(p)}", 3),
                Table(
                    [
                        "design",
                        "lock",
                        "waittime-total (µs)",
                        "contentions",
                        "acquisitions",
                        "acq-bounces",
                        "holdtime-total (µs)",
                        "most-bounced line (transfers)",
                    ],
                    rows,
                    right=2,
                ),
            ]
    if blocks:
        blocks[:0] = [
            Heading("Contention: where the time went"),
            Para(
                "Each design's three locks with the most total wait (lockstat's columns: "
                "`pmsim locks RUN_DIR` prints them per call site and per holder for one run), "
                "and the cache line whose atomics moved between cores most, per run (the mean "
                "over the replications) at the workload's last point."
            ),
        ]
    return blocks


def _hazard_reach(rv: Review, w: str, d: str) -> str:
    """The sentence a reviewer wants: "On new, misses wait up to ≥ 15.00 ms behind writeback at
    64 cores; from 32 cores a pass outlasts the run" (no pass finished in the window)."""
    pts = rv.points_of(w)
    waits = [(s, p) for p in pts if (s := rv.stat(d, w, p, "ops.miss.latency_us.max")) and s[0]]
    if not waits:
        return ""
    worst, at = max(waits, key=lambda item: item[0][0])
    text = f"On `{d}`, misses wait up to {cell(worst, 1e-3)} ms behind writeback at {rv.label(at)}"
    outlast = [
        p
        for p in pts
        if (n := rv.stat(d, w, p, "daemons.fsync.count")) is not None
        and n[0] == 0
        and (u := rv.stat(d, w, p, "daemons.fsync.unfinished")) is not None
        and u[0] > 0
    ]
    if outlast:
        text += f"; from {rv.label(outlast[0])} a pass outlasts the run (none finishes)"
    else:
        fewest = min(
            (s[0] for p in pts if (s := rv.stat(d, w, p, "daemons.fsync.count"))), default=0
        )
        text += f"; a pass finishes at every point (at least {num(fewest)} on average)"
    return text + "."


def _hazard_sentence(rv: Review, w: str, d: str) -> str:
    p = rv.points_of(w)[-1]
    parts = []
    hold = rv.stat(d, w, p, "locks.pm_qlock.held_by.fsync.hold_us_max")
    age = rv.stat(d, w, p, "daemons.fsync.unfinished_age_us_max")
    miss = rv.stat(d, w, p, "ops.miss.latency_us.max")
    if hold and hold[0] > 0:
        parts.append(f"a writeback pass holds `pm_qlock` for up to {ci(hold[0], hold[1], 1e-3)} ms")
    else:  # no pass finished at the largest point: the longest finished one elsewhere
        held = [
            (s, q)
            for q in rv.points_of(w)
            if (s := rv.stat(d, w, q, "locks.pm_qlock.held_by.fsync.hold_us_max")) and s[0] > 0
        ]
        if held:
            s, q = max(held, key=lambda item: item[0][0])
            parts.append(
                f"no pass finished within the run (at {rv.label(q)} one held `pm_qlock` for "
                f"{ci(s[0], s[1], 1e-3)} ms)"
            )
    if age and age[0] > 0:
        parts.append(f"a pass is still running at the end after {ci(age[0], age[1], 1e-3)} ms")
    if miss and miss[0] > 0:
        parts.append(
            f"misses wait up to {cell(miss, 1e-3)} ms"
            + (" (still waiting at the end: a lower bound)" if miss[3] else "")
        )
    waiting = rv.stat(d, w, p, "ops.miss.unfinished")
    oldest = rv.stat(d, w, p, "ops.miss.unfinished_age_us_max")
    if waiting and waiting[0] > 0:
        parts.append(
            f"{ci(waiting[0], waiting[1])} misses are still waiting at the end, the oldest for "
            f"{ci(oldest[0], oldest[1], 1e-3)} ms"
        )
    walk = rv.stat(d, w, p, "timings.pte_walk.us_mean")
    if walk and walk[0] > 0:
        parts.append(f"the PTE walk costs {ci(walk[0], walk[1])} µs a pass")
    ipis = rv.stat(d, w, p, "tlb.ipis")
    if ipis and ipis[0] > 0:
        parts.append(f"{ci(ipis[0], ipis[1])} IPIs are sent in the measured window")
    return (
        (f"On `{d}` at {rv.label(p)}: " + "; ".join(parts) + ".")
        if parts
        else f"On `{d}` at {rv.label(p)}: no writeback pass overlapped the measured window."
    )


# What each standard figure shows (pmsim.plots.standard_figures names them KIND-WORKLOAD[-DESIGN]).
CAPTIONS = {
    "throughput": "throughput per design with its 95% band",
    "latency_vs": "p50 and p99 latency of each operation, per design",
    "speedup_vs_cores": "speedup and parallel efficiency against cores, with the ideal",
    "latency_vs_load": "p50 and p99 latency against the load",
    "latency_cdf": "latency CDF of each operation at the largest point",
    "lock_breakdown": "wait and hold time of each lock",
    "lock_holds_by_op": "how long each kind of holder keeps each lock",
    "timings": "timed kernel steps (PTE walk, shootdown_vmrs, RCU grace period)",
    "cpu_breakdown": "CPU time: useful, spinning, IPI handling, idle",
    "shootdowns_per_op": "TLB shootdowns and IPIs per operation",
    "shootdowns_per_pass": "TLB shootdowns and IPIs per writeback pass",
    "writeback_timeline": "miss latency over simulated time, writeback passes shaded, pm_qlock queue",
}


def _caption(kind: str) -> str:
    for prefix in sorted(CAPTIONS, key=len, reverse=True):
        if kind.startswith(prefix):
            return CAPTIONS[prefix]
    return kind.replace("_", " ")


def figures(rv: Review, paths, base) -> list:
    """The figures, grouped by workload in the report's order."""
    blocks = [Heading("Figures")]
    for w in rv.workloads():
        mine = [p for p in paths if p.stem.split("-")[1:2] == [w]]
        if mine:
            blocks.append(Heading(f"`{w}`", 3))
        for path in mine:
            kind, _, rest = path.stem.partition("-")
            design, _, where = rest[len(w) + 1 :].partition("-")  # a timeline: DESIGN[-POINT]
            on = (f" on {design}" if design else "") + (
                f" at {where.replace('_', ' ')}" if where else ""
            )
            blocks.append(Figure(path.relative_to(base).as_posix(), f"{w}{on}: {_caption(kind)}"))
    return blocks


def build(result, figure_paths=(), base=None) -> list:
    """The report's blocks."""
    rv = Review(result)
    return [
        *title(rv),
        *setup(rv),
        *headline(rv),
        *wins(rv),
        *hazards(rv),
        *races(rv, cell),
        *contention(rv),
        *scalability(result),
        *robustness(result),
        *(figures(rv, figure_paths, base) if figure_paths else []),
    ]
