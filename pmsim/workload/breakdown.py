"""Where an operation's latency went: on-CPU work, spinning and sleeping per lock, hand-offs, IO,
IPI handlers and RCU, for the mean operation and the p99 one ("where did NEW's slow reads go?").

The waiting paths (a contended spinlock or qlock, an IO sleep, ``synchronize_rcu``, an IPI or
RCU callback stealing the core) add their time to the thread's ``waits`` (``Thread.waited``);
the runner hands it here when an operation ends, only if something was added, and clears it
(an operation that never waited is all on-CPU work and costs one test). What lands between two
operations (an IPI handler during think time, paid at the thread's next sync) is the next
operation's, as its time is. Nested operations (a miss, a fault) are not broken down: their waits are the enclosing
operation's. Per operation, the totals give the mean operation's breakdown; per latency bucket (the
latency histogram's 1/64-octave buckets), the sums give the breakdown of the operations at or
above the p99 latency: on-CPU is the latency minus the rest (for the tail, the latency of a
bucket is its midpoint, so within ~0.55%).
"""

from __future__ import annotations

import math

import numpy as np

from pmsim.operations import BY_NAME

KINDS = ("on_cpu", "spin", "sleep", "handoff", "io", "ipi", "rcu")
_SUB = 64  # buckets per octave, as pmsim.stats.Histogram


def bucket(ns: float) -> int:
    """The latency histogram's fine bucket of ``ns``."""
    return int(math.log2(ns + 1.0) * _SUB)


class Breakdown:
    """Wait times of the operations that completed in the window, in total and per latency
    bucket, per (source, operation)."""

    def __init__(self, warmup: float, end: float):
        self.warmup = warmup
        self.end = end
        self.totals: dict[tuple, dict] = {}  # (source, op) -> (kind, what) -> ns
        self.by_bucket: dict[tuple, dict] = {}  # (source, op) -> bucket -> (kind, what) -> ns

    def add(self, source: str, op: str, t0: float, t1: float, waits: dict) -> None:
        """An operation ran ``t0`` .. ``t1`` and waited ``waits`` (the window as OpStats.done)."""
        if t1 < self.warmup or t1 > self.end:
            return
        key = (source, op)
        tot = self.totals.setdefault(key, {})
        per = self.by_bucket.setdefault(key, {}).setdefault(bucket(t1 - t0), {})
        for k, ns in waits.items():
            tot[k] = tot.get(k, 0.0) + ns
            per[k] = per.get(k, 0.0) + ns

    def rows(self, meter) -> list[dict]:
        """Per (source, operation), its mean and p99 operation's breakdown: one row per part
        (``kind``, ``what``) with its time in us and its share of the latency."""
        out = []
        for (source, op), st in meter.seen():
            if op in BY_NAME and BY_NAME[op].scope == "nested":
                continue  # (a miss or fault: its waits are its enclosing operation's)
            h = st.latency
            n = h.count
            if not n:
                continue
            key = (source, op)
            tot = self.totals.get(key, {})
            out += _rows(source, op, "mean", n, h.mean(), {k: v / n for k, v in tot.items()})
            counts = h.fine_counts()
            b99 = bucket(h.quantile(0.99))
            tail = counts[b99:]
            m = int(tail.sum())
            if not m:
                continue
            idx = np.arange(b99, b99 + tail.size)
            mid = (2.0 ** (idx / _SUB) + 2.0 ** ((idx + 1) / _SUB)) / 2 - 1.0
            lat = float((np.minimum(mid, h.max) * tail).sum()) / m
            parts: dict = {}
            for b, d in self.by_bucket.get(key, {}).items():
                if b >= b99:
                    for k, v in d.items():
                        parts[k] = parts.get(k, 0.0) + v
            out += _rows(source, op, "p99", m, lat, {k: v / m for k, v in parts.items()})
        return out


def _rows(source, op, stat, n, latency_ns, parts) -> list[dict]:
    waited = sum(parts.values())
    rows = [
        {
            "source": source,
            "op": op,
            "stat": stat,
            "ops": n,
            "kind": "on_cpu",
            "what": "",
            "us": max(0.0, latency_ns - waited) / 1e3,
            "share": max(0.0, latency_ns - waited) / latency_ns if latency_ns > 0 else 0.0,
        }
    ]
    for (kind, what), ns in sorted(parts.items()):
        rows.append(
            {
                "source": source,
                "op": op,
                "stat": stat,
                "ops": n,
                "kind": kind,
                "what": what,
                "us": ns / 1e3,
                "share": ns / latency_ns if latency_ns > 0 else 0.0,
            }
        )
    return rows


COLUMNS = ["source", "op", "stat", "ops", "kind", "what", "us", "share"]
