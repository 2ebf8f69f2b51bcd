"""Where the time went: lockstat-style tables, cache-line bounces and the waited-behind matrix.

Built at the end of a run from what the primitives already told the recorder (no event of its
own): :func:`lockstat_rows` gives Linux ``/proc/lock_stat``'s columns per lock class and per
call site (the C function that took the lock, as the model names it), :func:`line_rows` the
transfers, failed CAS and busy time of every cache-line class, :func:`blame_rows` whom each
contended wait waited behind and who handed the lock over. ``pmsim locks RUN_DIR`` prints them
from a run folder (:func:`format_locks`).

Lockstat's meanings, as pmsim counts them (times in us):

- ``contentions``: acquisitions that had to wait (spin, or sleep on a qlock);
  ``waittime-*`` are over those waits only, from the request to running with the lock (the
  hand-off included), so ``waittime-total`` is the sum of the contended waits;
- ``acquisitions``: every acquisition in the window; per call site, the holds that ended in
  the window (a site's acquisitions are counted at release);
- ``acq-bounces``: acquisitions whose lock word came from another core's cache (or from memory,
  the first time), ``con-bounces`` the contended ones among them (the lock handed to a waiter
  on another core);
- ``holdtime-*``: the holds that ended in the window; ``handoff-total``: the time from each
  release to the next holder running (the lock neither free nor used).
"""

from __future__ import annotations

import math

import pandas as pd

from pmsim.errors import ConfigError

ALL = "*"  # the site of a lock class's own row
LOCKSTAT_COLUMNS = (
    "con-bounces",
    "contentions",
    "waittime-min",
    "waittime-max",
    "waittime-total",
    "waittime-avg",
    "acq-bounces",
    "acquisitions",
    "holdtime-min",
    "holdtime-max",
    "holdtime-total",
    "holdtime-avg",
    "handoff-total",
)
LINE_COLUMNS = ("transfers", "first_touches", "cas_failures", "busy_us")
BLAME_COLUMNS = (
    "lock",
    "waiter_op",
    "waiter_site",
    "holder_op",
    "holder_site",
    "released_by_op",
    "released_by_site",
    "waits",
    "wait_us_total",
    "waiting_at_end",
    "waiting_us_at_end",
)
WAITING = "-"  # the releaser of a wait still going at the end


def _us(ns: float) -> float:
    return ns / 1e3


def _minimum(x: float) -> float:
    return 0.0 if math.isinf(x) else x


def lockstat_rows(recorder) -> list[dict]:
    """One row per lock class (``site`` ``*``) and one per (lock, call site), sorted by total
    wait (then name), lockstat's columns."""
    rows = []
    for name, st in recorder.locks.items():
        base_total, base_sites = st.bounce_base
        st.fold_round_trips()
        sites = st.sites
        con = sum(s.contentions for s in sites.values())
        con_b = sum(s.con_bounces for s in sites.values())
        wtot = sum(s.wait_total for s in sites.values())
        wmin = min((s.wait_min for s in sites.values()), default=math.inf)
        wmax = max((s.wait_max for s in sites.values()), default=0.0)
        hold = st.hold
        rows.append(
            {
                "lock": name,
                "site": ALL,
                "kind": st.kind,
                "con-bounces": con_b,
                "contentions": con,
                "waittime-min": _us(_minimum(wmin)),
                "waittime-max": _us(wmax),
                "waittime-total": _us(wtot),
                "waittime-avg": _us(wtot / con) if con else 0.0,
                "acq-bounces": st.acq_bounces - base_total + con_b,
                "acquisitions": st.acquisitions,
                "holdtime-min": _us(hold.min if hold.count else 0.0),
                "holdtime-max": _us(hold.max if hold.count else 0.0),
                "holdtime-total": _us(hold.total),
                "holdtime-avg": _us(hold.mean()) if hold.count else 0.0,
                "handoff-total": _us(st.handoff.total),
            }
        )
        for site, s in sorted(sites.items()):
            acq_b = st.site_bounces[site] - base_sites[site]
            rows.append(
                {
                    "lock": name,
                    "site": site,
                    "kind": st.kind,
                    "con-bounces": s.con_bounces,
                    "contentions": s.contentions,
                    "waittime-min": _us(_minimum(s.wait_min)),
                    "waittime-max": _us(s.wait_max),
                    "waittime-total": _us(s.wait_total),
                    "waittime-avg": _us(s.wait_total / s.contentions) if s.contentions else 0.0,
                    "acq-bounces": acq_b + s.con_bounces,
                    "acquisitions": s.holds,
                    "holdtime-min": _us(_minimum(s.hold_min)),
                    "holdtime-max": _us(s.hold_max),
                    "holdtime-total": _us(s.hold_total),
                    "holdtime-avg": _us(s.hold_total / s.holds) if s.holds else 0.0,
                    "handoff-total": 0.0,  # (a hand-off belongs to the lock, not to a site)
                }
            )
    rows.sort(key=lambda r: (-r["waittime-total"], r["lock"], r["site"] != ALL, r["site"]))
    return [r for r in rows if r["acquisitions"] or r["contentions"]]


def line_rows(recorder) -> list[dict]:
    """One row per cache-line class: transfers (bounces), first touches (from memory), failed
    CAS, and the time those misses kept the lines busy."""
    rows = []
    for name, st in sorted(recorder.lines.items()):
        transfers, cold, busy = st.window()
        if not (transfers or cold):
            continue
        rows.append(
            {
                "line": name,
                "transfers": transfers,
                "first_touches": cold,
                "cas_failures": int(recorder.counters.get(f"cas_failures.{name}", 0)),
                "busy_us": _us(busy),
            }
        )
    rows.sort(key=lambda r: (-r["transfers"], r["line"]))
    return rows


def _name(x) -> str:
    return "other" if x is None else str(x)


def blame_rows(recorder) -> list[dict]:
    """The waited-behind matrix: per lock, waiter (operation, site), holder at the wait's start
    (operation, site) and releaser (operation, site; for a qlock, the waker): contended waits
    and their total time, largest first. Waits still queued at the run's end are rows of their
    own (releaser ``-``, ``waiting_at_end`` and their ages): a writeback pass longer than the
    window is what the readers waited behind even though none of them got the lock."""
    end = recorder.end_time if recorder.end_time is not None else recorder.machine.env.now
    rows = []
    for name, st in recorder.locks.items():
        for (w_op, w_site, h_op, h_site, r_op, r_site), (n, total) in st.blame.items():
            rows.append(_blame_row(name, w_op, w_site, h_op, h_site, r_op, r_site, n, total, 0, 0))
        waiting: dict[tuple, list[float]] = {}
        for lock in list(st.instances):
            for op, site, (h_op, h_site), age in lock.waiting(end):
                if end - age >= recorder.warmup:
                    waiting.setdefault((op, site, h_op, h_site), []).append(age)
        for (w_op, w_site, h_op, h_site), ages in waiting.items():
            total = sum(sorted(ages))  # (sorted: the instances iterate in memory order)
            rows.append(
                _blame_row(
                    name, w_op, w_site, h_op, h_site, None, WAITING, 0, 0.0, len(ages), total
                )
            )
    rows.sort(
        key=lambda r: (
            -(r["wait_us_total"] + r["waiting_us_at_end"]),
            *(str(r[c]) for c in BLAME_COLUMNS[:7]),
        )
    )
    return rows


def _blame_row(lock, w_op, w_site, h_op, h_site, r_op, r_site, n, total, k, ages) -> dict:
    return {
        "lock": lock,
        "waiter_op": _name(w_op),
        "waiter_site": w_site,
        "holder_op": _name(h_op),
        "holder_site": h_site,
        "released_by_op": WAITING if r_site == WAITING else _name(r_op),
        "released_by_site": r_site,
        "waits": n,
        "wait_us_total": _us(total),
        "waiting_at_end": k,
        "waiting_us_at_end": _us(ages),
    }


# --- reading a run folder --------------------------------------------------------------------

BY = ("lock", "site", "holder")
IDENT = ("design", "workload", "seed")


def load_tables(run_dir) -> dict[str, pd.DataFrame]:
    """The ``lockstat``, ``lines`` and ``blame`` tables of a ``pmsim run --out`` folder."""
    from pathlib import Path

    folder = Path(run_dir)
    if not folder.is_dir():
        raise ConfigError(f"locks: RUN_DIR {str(folder)!r} is not a folder")
    out = {}
    for name in ("lockstat", "lines", "blame"):
        path = folder / f"{name}.parquet"
        if not path.exists():
            raise ConfigError(
                f"locks: RUN_DIR {str(folder)!r} has no {name}.parquet (a folder written by "
                "pmsim run --out, with this version)"
            )
        out[name] = pd.read_parquet(path)
    return out


def view(tables: dict[str, pd.DataFrame], by: str = "lock", top: int | None = None):
    """The rows ``pmsim locks`` shows: per lock class, per (lock, site), or per holder (the
    blame matrix summed by lock and holder), sorted by total wait."""
    if by not in BY:
        raise ConfigError(f"locks: --by: unknown view {by!r} (one of {', '.join(BY)})")
    ls = tables["lockstat"]
    if by == "lock":
        df = ls[ls["site"] == ALL].drop(columns="site")
    elif by == "site":
        df = ls[ls["site"] != ALL]
    else:
        b = tables["blame"]
        df = b.groupby(["lock", "holder_op", "holder_site"], as_index=False)[
            ["waits", "wait_us_total", "waiting_at_end", "waiting_us_at_end"]
        ].sum()
        df["_all"] = df["wait_us_total"] + df["waiting_us_at_end"]
        df = df.sort_values(
            ["_all", "lock", "holder_op", "holder_site"], ascending=[False, True, True, True]
        ).drop(columns="_all")
    df = df.reset_index(drop=True)
    return df.head(top) if top is not None else df


def format_locks(tables: dict[str, pd.DataFrame], by: str = "lock", top: int | None = None) -> str:
    """The text ``pmsim locks`` prints: the chosen view, then the cache-line classes."""
    ls = tables["lockstat"]
    title = (
        f"{ls['design'].iloc[0]} on {ls['workload'].iloc[0]}, seed {ls['seed'].iloc[0]}: "
        if len(ls)
        else ""
    )
    df = view(tables, by, top).drop(columns=list(IDENT), errors="ignore")
    lines = [
        f"{title}locks by {by}, sorted by total wait (us)"
        + ("; waiting_*: waits still queued at the end" if by == "holder" else ""),
        df.to_string(index=False, float_format=lambda x: f"{x:.3f}") if len(df) else "(none)",
    ]
    ln = tables["lines"].drop(columns=list(IDENT), errors="ignore")
    if len(ln):
        lines += ["", "cache lines (transfers = bounces):"]
        lines.append(ln.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return "\n".join(lines)
