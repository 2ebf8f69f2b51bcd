"""One run over simulated time: how a latency moves while the daemons (writeback's fsync,
reclaim) run, and the pm_qlock queue behind it. Needs the per-run ``op_timeseries`` and
``intervals`` tables."""

from __future__ import annotations

import numpy as np

from pmsim.operations import DAEMONS
from pmsim.plots import data, style

DAEMON_OPS = tuple(DAEMONS.values())  # what the daemons' passes run (fsync first)


def daemon_workloads(result, ops=DAEMON_OPS) -> list[str]:
    """Workloads with daemon intervals, those with fsync first."""
    t = data.run_table(result, "intervals")
    if t.empty:
        return []
    found = [w for op in ops for w in dict.fromkeys(t.loc[t["op"] == op, "workload"])]
    return list(dict.fromkeys(found))


def default_design(designs: list[str]) -> str:
    """The NEW side: ``new`` if swept, else the first design named new*, else the first."""
    if "new" in designs:
        return "new"
    return next((d for d in designs if d.startswith("new")), designs[0])


def pick_run(result, workload: str, design: str, point: dict, replication: int | None):
    s = data.select_point(data.ok_summary(result, workload), point)
    s = s[s["design"] == design]
    if s.empty:
        raise ValueError(f"writeback_timeline: no ok run of {design} on {workload} at {point}")
    s = s.sort_values("replication")
    row = s.iloc[0] if replication is None else s[s["replication"] == replication].iloc[0]
    return row


def writeback_timeline(
    result,
    workload: str | None = None,
    design: str | None = None,
    point: dict | None = None,
    replication: int | None = None,
    op: str | None = None,
):
    """One run (default: the first replication of the NEW-side design at the most cores of
    the first workload whose daemon ran fsync): the ``op`` latency per simulated ms (mean
    and max, µs, log; default ``miss``, else ``read``) with the daemon's intervals shaded,
    and below it the pm_qlock queue. Shows whether misses stall while writeback holds the qlock."""
    if workload is None:
        found = daemon_workloads(result)
        if not found:
            raise ValueError(
                "writeback_timeline: the sweep has no 'intervals' table with daemon intervals"
            )
        workload = found[0]
    lay = data.layout(result, workload)
    point = lay.default_point() if point is None else point
    design = design or default_design(data.designs(result, workload))
    run = pick_run(result, workload, design, point, replication)
    rid, color = run["run_id"], style.design_colors(data.designs(result, workload))[design]
    ots = data.run_table(result, "op_timeseries", workload)
    if ots.empty:
        raise ValueError("writeback_timeline: the sweep has no 'op_timeseries' table")
    ots = ots[(ots["run_id"] == rid) & (ots["source"] == "workload")]
    op = op or ("miss" if (ots["op"] == "miss").any() else "read")
    lat = ots[ots["op"] == op].sort_values("time_ms")
    ts = data.run_table(result, "timeseries", workload)
    ts = ts[ts["run_id"] == rid].sort_values("time_ms")
    iv = data.run_table(result, "intervals", workload)
    iv = iv[iv["run_id"] == rid] if not iv.empty else iv

    fig, axes = style.new_figure(2, 1, sharex=True, width=9, height=5.6, height_ratios=[2, 1])
    top, bottom = axes[:, 0]
    busy = lat[lat["count"] > 0]
    # Every millisecond of the run, NaN where none completed: the lines break over a stall
    # rather than drawing a slope across it.
    every = ts[["time_ms"]].merge(busy, on="time_ms", how="left") if len(ts) else busy
    mid = every["time_ms"].to_numpy() - 0.5  # each row is the millisecond ending at time_ms
    top.plot(
        mid,
        every["latency_us_max"],
        color=color,
        ls="--",
        lw=0.9,
        marker="v",
        ms=3,
        label=f"{op} max",
    )
    top.plot(
        mid, every["latency_us_mean"], color=color, lw=1.6, marker="o", ms=3, label=f"{op} mean"
    )
    top.set_yscale("log")
    if not busy.empty:
        lo, hi = busy["latency_us_mean"].min(), busy["latency_us_max"].max()
        style.plain_log_ticks(top.yaxis, hi / lo if lo > 0 else 1e3)
    top.set_ylabel(f"{op} latency (µs)")
    # Measured milliseconds in which no such operation completed: a stall, not a gap in the data.
    done = set(busy["time_ms"].round(6))
    idle = [t - 0.5 for t in ts.loc[ts["measured"], "time_ms"] if round(t, 6) not in done]
    if idle:
        top.plot(
            idle,
            [0.03] * len(idle),
            ls="none",
            marker="|",
            ms=8,
            mew=1.5,
            color="0.25",
            transform=top.get_xaxis_transform(),
            label=f"_no {op}",
        )
    # Each row holds over the millisecond ending at time_ms: a step from the previous end.
    q = ts["pm_qlock_queue"].to_numpy()
    bottom.plot(
        np.r_[0.0, ts["time_ms"].to_numpy()],
        np.r_[q, q[-1:]],
        color=color,
        drawstyle="steps-post",
        lw=1.2,
        label="pm_qlock queue",
    )
    bottom.set_ylabel("pm_qlock waiters\n(mean per ms)")
    bottom.set_xlabel("simulated time (ms)")
    bottom.set_ylim(bottom=0)
    end = float(run["duration_ms"])
    handles = [
        style.Line2D([], [], color=color, lw=1.6, marker="o", ms=3, label=f"{op} mean per ms"),
        style.Line2D(
            [], [], color=color, ls="--", lw=0.9, marker="v", ms=3, label=f"{op} max per ms"
        ),
        style.Line2D([], [], color=color, lw=1.2, label="pm_qlock queue"),
    ]
    for ax in (top, bottom):
        ax.axvspan(0, float(run["warmup_ms"]), color="0.85", alpha=0.6, lw=0)
        ax.set_xlim(0, end)
        ax.grid(alpha=0.3, lw=0.4)
    handles.append(style.Patch(color="0.85", label="warm-up (not measured)"))
    if idle:
        handles.append(
            style.Line2D(
                [],
                [],
                ls="none",
                marker="|",
                ms=8,
                mew=1.5,
                color="0.25",
                label=f"no {op} completed in this ms",
            )
        )
    for name in dict.fromkeys(iv["op"]) if not iv.empty else []:
        c = style.INTERVAL_COLORS.get(name, "#BBBBBB")
        rows = iv[iv["op"] == name]
        for r in rows.itertuples():
            for ax in (top, bottom):
                ax.axvspan(
                    r.start_ms,
                    r.end_ms,
                    color=c,
                    alpha=0.45,
                    lw=0,
                    hatch=None if r.finished else "//",
                    label=f"_{name}",
                )
        handles.append(style.Patch(color=c, alpha=0.45, label=f"daemon {name} ({len(rows)})"))
        if not rows["finished"].all():
            handles.append(
                style.Patch(
                    facecolor=c, alpha=0.45, hatch="//", label=f"{name} unfinished at the end"
                )
            )
    if busy.empty:
        top.text(0.5, 0.5, f"no {op} completed", transform=top.transAxes, ha="center", color="0.4")
    fig.suptitle(
        f"{workload}: {op} latency during daemon activity\n{design} at "
        f"{style.point_text(point) or 'its one point'}, replication {int(run['replication'])}"
    )
    style.legend_below(fig, handles, ncols=3)
    return fig


def finished_pass_run(result, workload: str, design: str):
    """(point, replication) of the run with the most cores (the last point) in which a
    writeback pass finished, or None: where the timeline shows a whole pass, not only a stall."""
    iv = data.run_table(result, "intervals", workload)
    if iv.empty:
        return None
    done = set(iv.loc[(iv["design"] == design) & iv["finished"] & (iv["op"] == "fsync"), "run_id"])
    lay = data.layout(result, workload)
    s = data.ok_summary(result, workload)
    s = s[s["run_id"].isin(done)]
    for point in reversed(lay.points_list()):
        runs = data.select_point(s, point).sort_values("replication")
        if len(runs):
            return point, int(runs["replication"].iloc[0])
    return None


def has_intervals(result, workload: str) -> bool:
    return workload in daemon_workloads(result)


def designs_with_intervals(result, workload: str) -> list[str]:
    t = data.run_table(result, "intervals", workload)
    if t.empty:
        return []
    have = set(t["design"])
    return [d for d in data.designs(result, workload) if d in have]
