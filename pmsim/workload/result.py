"""A run's result: tidy tables, the summary object, and writing them out all or nothing.

Tables (pandas, one row per run and ...): ``ops`` (operation), ``locks`` (lock
name), ``lock_holders`` (lock and the holder's operation), ``cores`` (core),
``counters`` (event counter), ``timeseries`` (simulated millisecond),
``op_timeseries`` (operation and simulated millisecond), ``latency`` (operation
and latency histogram bucket: for CDFs), ``intervals`` (daemon pass), ``run``
(one row), and where the time went (:mod:`pmsim.workload.contention`):
``lockstat`` (lock class, and lock and call site), ``lines`` (cache-line class),
``blame`` (waiter, holder and releaser of contended waits) and ``breakdown``
(operation, mean or p99, part of its latency: :mod:`pmsim.workload.breakdown`). Each row starts with the design,
the workload and the seed. The summary holds only simulated results, identical
for the same spec and seed; wall-clock time, host and versions are kept apart
in ``provenance``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pmsim.errors import ConfigError
from pmsim.hazards import HAZARDS, HazardStats
from pmsim.operations import BY_NAME, COUNTED_OPERATIONS, DAEMONS
from pmsim.process import PROCESS_LOCKS
from pmsim.stats import censored_quantile, joint_buckets
from pmsim.storage import WHAT_IF
from pmsim.workload import breakdown, contention
from pmsim.workload.metrics import MS
from pmsim.workload.steady import steadiness

# Operations a workload issues; a fault (inside a touch) and a miss (inside a read, write or
# fault) are nested, so they are not counted again.
QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
# The latency statistics that operations still running at the end can make lower bounds.
LATENCY_BOUNDS = (*(q for q, _ in QUANTILES), "max")


@dataclass
class RunResult:
    """Tables, summary and provenance of one run, and the resolved spec that made them."""

    spec: object
    design: str
    tables: dict[str, pd.DataFrame]
    summary: dict
    provenance: dict = field(default_factory=dict)

    def summary_with_provenance(self) -> dict:
        return {**self.summary, "provenance": self.provenance}

    def write(self, out_dir) -> Path:
        """Write every table as Parquet, ``summary.json`` and ``spec.yaml`` into ``out_dir``,
        all or nothing: into a temporary sibling folder first, renamed into place at the end.
        An existing ``out_dir`` is replaced only if empty or written by ``pmsim run``."""
        out = Path(out_dir)
        check_run_folder(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        except OSError as e:
            raise ConfigError(f"--out: cannot write to {str(out)!r} ({e.strerror})") from None
        try:
            for name, df in self.tables.items():
                df.to_parquet(tmp / f"{name}.parquet", index=False)
            (tmp / "summary.json").write_text(
                json.dumps(self.summary_with_provenance(), indent=2, sort_keys=True)
            )
            (tmp / "spec.yaml").write_text(
                f"# {self.spec.name} on {self.design}: pmsim run spec.yaml --design "
                f"{self.design}\n"
                + yaml.safe_dump(self.spec.model_dump(mode="json"), sort_keys=False)
            )
            if out.exists():
                check_run_folder(out)  # again: it may have changed while the run ran
                old = out.with_name(f".{out.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(out, old)
                os.replace(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out


RUN_FILES = ("summary.json", "spec.yaml")


def check_run_folder(out: Path) -> None:
    """Refuse to replace anything but an empty folder or one ``pmsim run --out`` wrote (its
    summary.json and spec.yaml, and Parquet tables beside them)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out: {str(out)!r} exists and is not a folder")
    names = {e.name for e in out.iterdir()}
    ours = all(n in RUN_FILES or (n.endswith(".parquet") and "/" not in n) for n in names)
    if names and not (ours and set(RUN_FILES) <= names):
        raise ConfigError(
            f"--out: {str(out)!r} is not empty and is not a folder pmsim run wrote (it would be "
            "replaced); give a new or empty folder"
        )


def _us(ns: float) -> float:
    return ns / 1e3


def build_result(run, wall_s: float) -> RunResult:
    """Gather a finished :class:`~pmsim.workload.runner.WorkloadRun` into tables and a summary."""
    spec, machine, meter = run.spec, run.machine, run.meter
    rec = machine.recorder
    window = rec.window
    seconds = window / 1e9
    ident = {"design": run.design.name, "workload": spec.name, "seed": spec.seed}

    op_rows = []
    for (source, op), st in meter.seen():
        h = st.latency
        n = h.count
        ages = st.unfinished
        tail = _censored_quantiles(h, st.censored)
        op_rows.append(
            {
                "source": source,
                "op": op,
                "count": n,
                "throughput_per_s": n / seconds,
                "latency_us_mean": _us(h.mean()),
                **{f"latency_us_{q}": v for q, (v, _) in tail.items()},
                **{f"latency_us_{q}_is_lower_bound": b for q, (_, b) in tail.items()},
                "in_progress_mean": st.busy / window,
                "unfinished": len(ages),
                "unfinished_age_us_max": _us(max(ages, default=0.0)),
            }
        )
    lock_rows = [{"lock": name, **st.summary()} for name, st in sorted(rec.locks.items())]
    core_rows = [{"socket": machine.cores[c["core"]].socket, **c} for c in rec.per_core()]
    counters = dict(sorted(rec.counters.items()))
    rcu = machine.rcu
    stores = [f.store for f in run.file_list if f.store.depth]
    capacity = sum(s.depth for s in stores)
    io_util = (
        (sum(s.utilization(window, rec.end_time) * s.depth for s in stores) / capacity)
        if capacity
        else 0.0
    )
    cpu = rec.cpu()
    workload_ops = [r for r in op_rows if r["source"] == "workload"]
    total = sum(r["count"] for r in workload_ops if r["op"] in COUNTED_OPERATIONS) / seconds

    summary = {
        **ident,
        "duration_ms": spec.duration / 1e6,
        "warmup_ms": spec.warmup / 1e6,
        "total_ops_per_s": total,
        **(
            {"offered_ops_per_s": len(run.workers) * 1e9 / spec.loop.arrivals.mean}
            if spec.loop.kind == "open"
            else {}
        ),
        "ops": {r["op"]: _op_summary(r) for r in workload_ops},
        "daemons": {r["op"]: _op_summary(r) for r in op_rows if r["source"] == "daemon"},
        "locks": {
            name: _lock_summary(rec.locks.get(name)) for name in run.design.locks + PROCESS_LOCKS
        },
        "cpu": {k: cpu[k] for k in ("useful", "spin", "idle", "ipi")},
        "tlb": {"shootdowns": counters.get("tlb_shootdowns", 0), "ipis": counters.get("ipis", 0)},
        "io": {
            "reads": counters.get("io_reads", 0),
            "writes": counters.get("io_writes", 0),
            "metadata_rpcs": counters.get("io_metadata", 0),
            "utilization": io_util,
            # stores Akaros does not have (nvme, hdd): this run is a what-if
            "what_if_stores": sorted({f.store.kind for f in run.file_list} & WHAT_IF),
        },
        "costs": {
            "overridden": machine.costs.overridden(),
            "derived_set_explicitly": machine.costs.derived_overridden,
        },
        "rcu": {
            "callbacks": counters.get("rcu_callbacks", 0),
            "grace_periods": counters.get("rcu_grace_periods", 0),
            "max_pending_bytes": rcu.max_pending_bytes if rcu is not None else 0,
        },
        "timings": {name: _timing(h) for name, h in sorted(rec.histograms.items())},
        "counters": counters,
        **hazard_summaries(rec, seconds),
    }
    timeseries = _timeseries(run)
    summary["steady"] = steadiness(
        [r["ops_per_s"] for r in timeseries if r["measured"]], _daemon_passes(run)
    )
    for name, st in rec.locks.items():
        if name not in summary["locks"]:
            summary["locks"][name] = _lock_summary(st)
    holder_rows = [
        {"lock": name, "op": op, **h}
        for name, st in sorted(rec.locks.items())
        for op, h in st.held_by().items()
    ]

    run_row = {
        "total_ops_per_s": total,
        "duration_ms": summary["duration_ms"],
        "warmup_ms": summary["warmup_ms"],
        **{f"cpu_{k}": v for k, v in summary["cpu"].items()},
        "tlb_shootdowns": summary["tlb"]["shootdowns"],
        "tlb_ipis": summary["tlb"]["ipis"],
        "io_reads": summary["io"]["reads"],
        "io_writes": summary["io"]["writes"],
        "io_utilization": io_util,
        **{f"rcu_{k}": v for k, v in summary["rcu"].items()},
    }
    tables = {
        "ops": _frame(
            ident,
            op_rows,
            [
                "source",
                "op",
                "count",
                "throughput_per_s",
                "latency_us_mean",
                "latency_us_p50",
                "latency_us_p90",
                "latency_us_p99",
                "latency_us_p999",
                "latency_us_max",
                *(f"latency_us_{q}_is_lower_bound" for q in LATENCY_BOUNDS),
                "in_progress_mean",
                "unfinished",
                "unfinished_age_us_max",
            ],
        ),
        "locks": _frame(
            ident,
            lock_rows,
            [
                "lock",
                "kind",
                "acquisitions",
                "contended_fraction",
                *LOCK_COLUMNS,
            ],
        ),
        "cores": _frame(ident, core_rows, ["core", "socket", "useful", "spin", "ipi", "idle"]),
        "counters": _frame(
            ident, [{"name": k, "value": float(v)} for k, v in counters.items()], ["name", "value"]
        ),
        "lock_holders": _frame(
            ident,
            holder_rows,
            ["lock", "op", "count", "hold_us_mean", "hold_us_p99", "hold_us_max"],
        ),
        "timeseries": _frame(
            ident,
            timeseries,
            ["time_ms", "measured", "ops", "ops_per_s", "pm_qlock_queue", "dirty_pages"],
        ),
        "op_timeseries": _frame(
            ident,
            _op_timeseries(run),
            ["source", "op", "time_ms", "measured", "count", "latency_us_mean", "latency_us_max"],
        ),
        "latency": _frame(
            ident, _latency_buckets(meter), ["source", "op", "latency_us", "count", "censored"]
        ),
        "intervals": _frame(
            ident, _intervals(run), ["source", "op", "start_ms", "end_ms", "finished"]
        ),
        "hazards": _frame(
            ident,
            [{"hazard": k, **v} for k, v in summary["hazards"].items()],
            ["hazard", *HAZARD_COLUMNS],
        ),
        "run": _frame(ident, [run_row], list(run_row)),
        # (where the time went: pmsim.workload.contention)
        "lockstat": _frame(
            ident,
            contention.lockstat_rows(rec),
            ["lock", "site", "kind", *contention.LOCKSTAT_COLUMNS],
        ),
        "lines": _frame(ident, contention.line_rows(rec), ["line", *contention.LINE_COLUMNS]),
        "blame": _frame(ident, contention.blame_rows(rec), list(contention.BLAME_COLUMNS)),
        "breakdown": _frame(ident, run.breakdown.rows(meter), breakdown.COLUMNS),
    }
    import simpy

    from pmsim.version import __version__

    provenance = {
        "wall_s": wall_s,
        "sim_ops_per_wall_s": total * seconds / wall_s if wall_s > 0 else math.inf,
        "pmsim_version": __version__,
        "simpy_version": simpy.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
    }
    return RunResult(spec, run.design.name, tables, summary, provenance)


HAZARD_COLUMNS = (
    "count",
    "per_s",
    "window_ns_mean",
    "window_ns_p50",
    "window_ns_p99",
    "window_ns_max",
    "waited_ns_mean",
    "waited_ns_max",
)


def hazard_summaries(rec, seconds: float) -> dict:
    """``hazards``: per hazard (pmsim/hazards.py, every one, zeros included) its count, rate
    per simulated second, window widths and counts by origin (``by_where``); and
    ``hazard_first``: the first occurrence of each seen, with its event trail (left out of
    the sweep tables, which keep numbers)."""
    out, first = {}, {}
    for name in HAZARDS:
        st = rec.hazards.get(name) or HazardStats(name)
        s = st.summary(seconds)
        f = s.pop("first")
        out[name] = s
        if f is not None:
            first[name] = f
    return {"hazards": out, "hazard_first": first}


def format_hazards(summary: dict) -> list[str]:
    """The hazard table of ``pmsim run`` and each seen hazard's first trail."""
    hz = summary.get("hazards")
    if not hz:
        return []
    lines = [
        "",
        f"  {'hazard':20} {'count':>8} {'per s':>10} {'window mean':>12} {'p99':>10} "
        f"{'max':>10} {'waited mean':>12}  (ns)  by origin",
    ]
    for name, h in hz.items():
        where = ", ".join(f"{k} {v}" for k, v in h["by_where"].items())
        lines.append(
            f"  {name:20} {h['count']:>8,} {h['per_s']:>10,.1f} {h['window_ns_mean']:>12,.1f} "
            f"{h['window_ns_p99']:>10,.1f} {h['window_ns_max']:>10,.1f} "
            f"{h['waited_ns_mean']:>12,.1f}  {where}"
        )
    for name, f in summary.get("hazard_first", {}).items():
        lines.append(f"  first {name}:")
        lines += [f"    {line}" for line in f["trail"]]
    return lines


def _timeseries(run) -> list[dict]:
    """One row per simulated millisecond: operations completed in it, the mean number of
    threads waiting on pm_qlocks over it, the dirty pages at its end (the last may be partial)."""
    end = run.spec.duration
    counts = run.meter.completions(COUNTED_OPERATIONS)
    q, d = run.series["pm_qlock_queue"], run.series["dirty_pages"]
    rows = []
    for k in range(len(counts)):
        hi = min((k + 1) * MS, end)
        width = hi - k * MS
        rows.append(
            {
                "time_ms": hi / 1e6,
                "measured": k * MS >= run.spec.warmup,
                "ops": counts[k],
                "ops_per_s": counts[k] / (width / 1e9),
                "pm_qlock_queue": q[k],
                "dirty_pages": d[k],
            }
        )
    return rows


def _daemon_passes(run) -> int | None:
    """The fewest passes a periodic daemon finished inside the window (a file-scoped daemon
    such as writeback does one operation per file a pass), or None without daemons."""
    if not run.daemons:
        return None
    warmup, files = run.spec.warmup, max(len(run.file_list), 1)
    passes = []
    for name, _, _ in run.daemons:
        op = BY_NAME[DAEMONS[name]]
        done = sum(1 for o, _, t1 in run.intervals if o == op.name and t1 >= warmup)
        passes.append(done // files if op.scope == "file" else done)
    return min(passes)


def _op_timeseries(run) -> list[dict]:
    """Per (source, operation) and simulated millisecond with a completion: how many completed
    in it, their mean and longest latency (what a stall looks like over time)."""
    warmup = run.spec.warmup
    rows = []
    for (source, op), st in sorted(run.meter.ops.items()):
        count, total, longest = st.series()
        for k in np.flatnonzero(count).tolist():
            n = int(count[k])
            rows.append(
                {
                    "source": source,
                    "op": op,
                    "time_ms": min((k + 1) * MS, run.spec.duration) / 1e6,
                    "measured": k * MS >= warmup,
                    "count": n,
                    "latency_us_mean": _us(total[k] / n),
                    "latency_us_max": _us(longest[k]),
                }
            )
    return rows


def _latency_buckets(meter) -> list[dict]:
    """Each operation's latency histogram in the window (16 buckets per octave): completions
    (``count``) and operations still running at the end by their age (``censored``), which is
    what a Kaplan-Meier CDF needs."""
    rows = []
    for (source, op), st in meter.seen():
        upper, counts, censored = joint_buckets(st.latency, st.censored, 16)
        rows += [
            {"source": source, "op": op, "latency_us": _us(u), "count": int(c), "censored": int(k)}
            for u, c, k in zip(upper.tolist(), counts.tolist(), censored.tolist())
        ]
    return rows


def _intervals(run) -> list[dict]:
    """Each daemon pass (a writeback fsync of one file, a reclaim) that overlaps the run; one
    still going at the end ends there, unfinished."""
    end = run.spec.duration
    rows = [(op, t0, min(t1, end), True) for op, t0, t1 in run.intervals]
    rows += [(op, t0, end, False) for op, t0 in run.daemons_running.values()]
    return [
        {"source": "daemon", "op": op, "start_ms": t0 / 1e6, "end_ms": t1 / 1e6, "finished": done}
        for op, t0, t1, done in sorted(rows, key=lambda r: (r[1], r[0]))
    ]


def _censored_quantiles(done, censored) -> dict[str, tuple[float, bool]]:
    """p50 ... p999 and max (us) of latencies some of which are still running at the end, each
    with whether it is only a lower bound (pmsim.stats.censored_quantile)."""
    out = {}
    for q, p in (*QUANTILES, ("max", 1.0)):
        v, bound = censored_quantile(done, censored, p)
        out[q] = (_us(v), bool(bound))
    return out


def _timing(h) -> dict:
    """A timed kernel step (``pte_walk``, ``shootdown_vmrs``, ``rcu_grace_period``) in µs."""
    return {
        "count": h.count,
        "us_mean": _us(h.mean()),
        "us_p99": _us(h.quantile(0.99)),
        "us_max": _us(h.max if h.count else 0.0),
    }


def _frame(ident: dict, rows: list[dict], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for i, (k, v) in enumerate(ident.items()):
        df.insert(i, k, v)
    return df


def _op_summary(row: dict) -> dict:
    return {
        "count": row["count"],
        "throughput_per_s": row["throughput_per_s"],
        "latency_us": {
            "mean": row["latency_us_mean"],
            **{q: row[f"latency_us_{q}"] for q in LATENCY_BOUNDS},
            **{
                f"{q}_is_lower_bound": row[f"latency_us_{q}_is_lower_bound"] for q in LATENCY_BOUNDS
            },
        },
        "unfinished": row["unfinished"],
        "unfinished_age_us_max": row["unfinished_age_us_max"],
    }


# A lock's summary entries after kind, acquisitions and contended_fraction (pmsim.recorder).
LOCK_COLUMNS = (
    "wait_us_mean",
    "wait_us_p99",
    "wait_us_p99_is_lower_bound",
    "wait_us_max",
    "wait_us_max_is_lower_bound",
    "waiting_at_end",
    "hold_us_mean",
    "hold_us_p99",
    "hold_us_max",
    "hold_us_max_is_lower_bound",
    "handoff_us_mean",
    "handoff_us_p99",
    "utilization",
    "max_queue",
)

_COUNTS = ("waiting_at_end", "max_queue")


def _lock_summary(st) -> dict:
    if st is None:
        return {
            "acquisitions": 0,
            "contended_fraction": 0.0,
            **{
                k: False if k.endswith("_is_lower_bound") else 0 if k in _COUNTS else 0.0
                for k in LOCK_COLUMNS
            },
        }
    s = st.summary()
    s.pop("kind")
    held_by = st.held_by()
    if held_by:
        s["held_by"] = held_by
    return s


def bounded(value: float, is_lower_bound: bool, fmt: str = ".3g") -> str:
    """``value`` formatted, written ``>=value`` where it is only a lower bound (something was
    still in progress at the run's end, older than the estimate could see past)."""
    return f"{'>=' if is_lower_bound else ''}{value:{fmt}}"


def format_summary(summary: dict) -> str:
    """The readable report ``pmsim run`` prints."""
    lines = [
        f"{summary['workload']} on {summary['design']}: seed {summary['seed']}, "
        f"{summary['duration_ms']:g} ms simulated ({summary['warmup_ms']:g} ms warm-up excluded)",
        f"  total {summary['total_ops_per_s']:,.0f} ops/s",
        *(
            [f"  what-if store: {', '.join(summary['io']['what_if_stores'])} (not an Akaros store)"]
            if summary["io"]["what_if_stores"]
            else []
        ),
        *(
            [
                f"  derived costs set explicitly: {', '.join(summary['costs']['derived_set_explicitly'])}"
            ]
            if summary["costs"]["derived_set_explicitly"]
            else []
        ),
        "",
        f"  {'operation':12} {'count':>9} {'ops/s':>12} {'mean':>9} {'p50':>9} {'p90':>9} {'p99':>9} "
        f"{'p99.9':>9} {'max':>9}  (latency, us)",
    ]
    for title, ops in (("", summary["ops"]), ("daemon ", summary["daemons"])):
        for name, o in ops.items():
            lat = o["latency_us"]
            lines.append(
                f"  {title + name:12} {o['count']:>9,} {o['throughput_per_s']:>12,.0f} "
                + " ".join(
                    f"{bounded(lat[k], lat.get(k + '_is_lower_bound', False), '.3f'):>9}"
                    for k in ("mean", "p50", "p90", "p99", "p999", "max")
                )
                + (
                    f"  +{o['unfinished']} unfinished, oldest {o['unfinished_age_us_max']:,.1f} us"
                    if o["unfinished"]
                    else ""
                )
            )
    lines += [
        "",
        f"  {'lock':12} {'acquired':>10} {'contended':>9} {'wait mean':>10} {'wait p99':>11} "
        f"{'wait max':>11} {'hold mean':>10} {'hold max':>11} {'handoff':>9} {'util':>6}  (us)",
    ]
    for name, lk in summary["locks"].items():
        if lk["acquisitions"]:
            lines.append(
                f"  {name:12} {lk['acquisitions']:>10,} {lk['contended_fraction']:>9.3f} "
                f"{lk['wait_us_mean']:>10.3f} "
                f"{bounded(lk['wait_us_p99'], lk['wait_us_p99_is_lower_bound'], '.3f'):>11} "
                f"{bounded(lk['wait_us_max'], lk['wait_us_max_is_lower_bound'], '.3f'):>11} "
                f"{lk['hold_us_mean']:>10.3f} "
                f"{bounded(lk['hold_us_max'], lk['hold_us_max_is_lower_bound'], '.3f'):>11} "
                f"{lk['handoff_us_mean']:>9.3f} {lk['utilization']:>6.3f}"
                + (
                    f"  {lk['waiting_at_end']} still waiting at the end"
                    if lk["waiting_at_end"]
                    else ""
                )
            )
    c, t, io, r = summary["cpu"], summary["tlb"], summary["io"], summary["rcu"]
    lines += [
        "",
        f"  cpu          useful {c['useful']:.3f}  spin {c['spin']:.3f}  ipi {c['ipi']:.3f}  "
        f"idle {c['idle']:.3f}",
        f"  tlb          {t['shootdowns']:,} shootdowns, {t['ipis']:,} IPIs",
        f"  io           {io['reads']:,} reads, {io['writes']:,} writes, utilization {io['utilization']:.3f}",
        f"  rcu          {r['callbacks']:,} callbacks, {r['grace_periods']:,} grace periods, "
        f"at most {r['max_pending_bytes']:,} bytes waiting",
        *format_hazards(summary),
    ]
    return "\n".join(lines)
