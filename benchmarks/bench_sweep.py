"""Parallel efficiency of ``pmsim.sweep``: the same sweep on 2 local worker processes and serially.

The sweep is punch_hole on OLD and NEW, a grid over the file's size and two
replications: 8 runs of about 1-2 s each (``--quick``: shorter runs, 2
repetitions). Each sweep is timed end to end through ``pmsim.sweep`` (planning,
pool start-up, the runs, the Parquet files, finalize, pool shutdown), into a fresh
folder with ``resume=False``, serially (``workers=1``) and with ``workers=2``, in
this one process, the order alternating across repetitions. The speedup
serial/parallel is paired within each repetition; the median and range over
repetitions are reported (target >= 1.8x, an efficiency of 90% on 2 workers).

A parallel sweep starts cold, as ``pmsim sweep --workers 2`` or a notebook's first
sweep does: a fork server left from an earlier sweep (it imports pmsim, then forks
the workers) is stopped before it. The process has one thread when the pool
starts, as a fresh ``pmsim sweep`` has (tqdm's monitor thread is turned off), so
pmsim chooses its start method as it would for the command; the header says
which. ``--warm`` also times a parallel sweep with the fork server of the
previous one still running (a notebook's later sweeps); ``--what-if`` times two
changes pmsim.sweeps could make: workers forked from the driver (no fork server),
and that with the runs ordered longest first by a design-aware cost estimate.

Every sweep's ``summary.parquet`` (parallel, what-if, instrumented) must equal
the first serial one's, exactly: if not, the benchmark stops with exit status 1.
Otherwise it exits 0 whether or not the target is met (a measurement, not a test).

The machine may be shared, so before each timed sweep the benchmark waits (up
to ``--quiet-wait`` s) for other processes to go quiet, and each sweep reports
the CPU seconds it used (this process, the fork server and the workers) and the
cores other processes used meanwhile ("others"), from ``/proc`` (Linux).
``--breakdown`` adds instrumented sweeps (serial, cold, warm: a timeline of the
pool's start-up, each run in its worker, the driver's writes, finalize and
shutdown) and micro-measurements of the pieces, to show where the time goes.

Usage: ``python benchmarks/bench_sweep.py [--reps 3] [--quick] [--warm] [--what-if] [--breakdown]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

import pmsim
import pmsim.sweeps.api as sweep_api
from pmsim.sweeps.executors import local_pool
from pmsim.sweeps.plan import RunPlan
from pmsim.sweeps.store import SweepStore

WORKERS = 2
TARGET = 1.8
HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def experiment(duration_ms: float, replications: int) -> dict:
    """punch_hole on OLD and NEW x 2 file sizes x ``replications``: 4 * replications runs."""
    return {"name": "bench_sweep", "workload": "punch_hole", "designs": ["old", "new"],
            "grid": {"files.0.pages": [4096, 8192]}, "overrides": {"duration": f"{duration_ms:g}ms"},
            "replications": replications, "seed": 1}


# --- CPU accounting (Linux /proc; zeros elsewhere) ------------------------------------------
def machine_busy_s() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, steal seconds) since boot."""
    try:
        f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    v = [int(x) for x in f]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v[:8]
    return (user + nice + system + irq + softirq) / HZ, steal / HZ


def forkserver_pid() -> int | None:
    return getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None)


def tree_cpu_s(pid: int | None) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped (a fork server: its workers)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / HZ


def own_cpu_s() -> float:
    """CPU seconds of this process and of the children it has reaped."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def stop_forkserver() -> None:
    """Stop multiprocessing's fork server (reaping it), so the next pool starts it anew."""
    fs = multiprocessing.forkserver._forkserver
    if hasattr(fs, "_stop"):
        fs._stop()


class Meter:
    """Wall time, own CPU (this process + fork server + workers) and foreign CPU over a block."""

    def __enter__(self):
        self.fs0 = forkserver_pid()
        self.fs_cpu0 = tree_cpu_s(self.fs0)
        self.cpu0, (self.busy0, self.steal0) = own_cpu_s(), machine_busy_s()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        busy, steal = machine_busy_s()
        fs1 = forkserver_pid()
        fs_cpu = tree_cpu_s(fs1) - (self.fs_cpu0 if fs1 == self.fs0 else 0.0)
        self.cpu = own_cpu_s() - self.cpu0 + fs_cpu
        self.foreign = max(0.0, (busy - self.busy0) - self.cpu) / self.wall  # cores
        self.steal = (steal - self.steal0) / self.wall
        return False


# --- one timed sweep ----------------------------------------------------------------------------
KINDS = {"serial": "serial (workers=1)", "cold": f"workers={WORKERS}, cold",
         "warm": f"workers={WORKERS}, warm", "fork": "what if: fork pool",
         "fork_lpt": "what if: fork, longest 1st"}


@contextlib.contextmanager
def longest_first(weights: dict[str, float]):
    """What if the sweep knew that some designs' runs take longer: each run's cost estimate
    (which orders the runs, longest first) times its design's weight."""
    orig = RunPlan.cost_estimate
    RunPlan.cost_estimate = property(lambda p: orig.fget(p) * weights.get(p.design, 1.0))
    try:
        yield
    finally:
        RunPlan.cost_estimate = orig


def timed_sweep(exp: dict, kind: str, base: Path, weights: dict[str, float] | None = None) -> dict:
    """One sweep of ``kind`` (see ``KINDS``) into a fresh folder, timed end to end."""
    out = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=base))
    if kind == "cold":
        stop_forkserver()
    order = longest_first(weights or {}) if kind == "fork_lpt" else contextlib.nullcontext()
    with order, Meter() as m:
        if kind in ("fork", "fork_lpt"):
            # What a sweep could do when nothing else runs in its process (the CLI): fork
            # workers from the driver, which has imported pmsim already.
            pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork"))
            try:
                res = pmsim.sweep(exp, out, executor=pool, progress=False, resume=False)
            finally:
                pool.shutdown(wait=True)
        else:
            res = pmsim.sweep(exp, out, workers=1 if kind == "serial" else WORKERS, progress=False,
                              resume=False)
    check_ok(res, KINDS[kind])
    prov = res.provenance
    per_worker = prov.groupby("pid")["wall_s"].sum()
    return {"wall": m.wall, "cpu": m.cpu, "foreign": m.foreign, "steal": m.steal,
            "runs": len(prov), "run_sum": prov["wall_s"].sum(), "run_mean": prov["wall_s"].mean(),
            "busiest_worker": per_worker.max(), "n_workers": len(per_worker),
            "design_wall": prov.merge(res.summary[["run_id", "design"]], on="run_id")
                               .groupby("design")["wall_s"].mean().to_dict(),
            "summary_path": out / "summary.parquet", "dir": out}


def check_ok(res, what: str) -> None:
    """Stop (exit status 1) if a run failed: its numbers would be missing, not wrong."""
    failed = res.failures
    if len(failed):
        sys.exit(f"bench_sweep: {len(failed)} runs failed in the {what} sweep, e.g.: {failed['error'].iloc[0]}")


def pool_kind() -> str:
    """How pmsim's local pool starts its workers here and now (pmsim.sweeps.executors decides)."""
    pool = local_pool(1)
    try:
        return pool._mp_context.get_start_method()
    finally:
        pool.shutdown(wait=True)


def same_summary(a: Path, b: Path) -> str | None:
    """None if the two summary.parquet hold the same table (values, types, order), else why not."""
    try:
        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), check_exact=True)
    except AssertionError as e:
        return " ".join(str(e).split())[:400]
    return None


def describe(label: str, r: dict) -> str:
    steal = f", steal {r['steal']:.2f}" if r["steal"] >= 0.01 else ""
    busiest = f", busiest worker {r['busiest_worker']:5.2f} s" if r["n_workers"] > 1 else " " * 24
    return (f"{label:<27} {r['wall']:6.2f} s   {r['runs']} runs simulating {r['run_mean']:.2f} s each{busiest}   "
            f"CPU {r['cpu']:5.2f} s   others {r['foreign']:.2f} cores{steal}")


def med_range(xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"median {fmt.format(statistics.median(xs))} (range {fmt.format(min(xs))}-{fmt.format(max(xs))})"


# --- breakdown --------------------------------------------------------------------------------
def timed_run_task(design, spec):
    """``run_task``, stamping when it started and ended (CLOCK_MONOTONIC, the same in every
    process on the machine) into the run's provenance, which is not part of the results."""
    from pmsim.sweeps.task import run_task

    t = time.perf_counter()
    out = run_task(design, spec)
    out["provenance"] = {**out["provenance"], "task_start": t, "task_end": time.perf_counter(),
                         "task_design": design}
    return out


@contextlib.contextmanager
def instrumented(events: list):
    """Record, without changing what runs, when the sweep plans, opens the store, opens and
    closes the pool, starts and ends each run (in its worker), receives it and writes it, and
    finalizes."""
    def mark(what, t=None, **kw):
        events.append({"t": time.perf_counter() if t is None else t, "what": what, **kw})

    def timed(fn, what):
        def wrapper(*a, **k):
            mark(what + "_start")
            try:
                return fn(*a, **k)
            finally:
                mark(what + "_end")
        return wrapper

    def received(f):
        if f.exception() is None:
            p = f.result()["provenance"]
            mark("result", pid=p["pid"], start=p["task_start"], end=p["task_end"], sim=p["wall_s"],
                 design=p["task_design"])

    class TimedExecutor:
        def __init__(self, ex):
            self.ex = ex

        def submit(self, fn, *a, **k):
            f = self.ex.submit(fn, *a, **k)
            f.add_done_callback(received)
            return f

    orig_open_executor = sweep_api.open_executor

    @contextlib.contextmanager
    def open_executor(*a, **k):
        mark("pool_open_start")
        with orig_open_executor(*a, **k) as (ex, where):
            mark("pool_open_end")
            yield (TimedExecutor(ex) if ex is not None else None), where
            mark("pool_shutdown_start")
        mark("pool_shutdown_end")

    def serial_task(design, spec):
        out = timed_run_task(design, spec)
        p = out["provenance"]
        mark("result", pid=p["pid"], start=p["task_start"], end=p["task_end"], sim=p["wall_s"],
             design=p["task_design"])
        return out

    saved = {(sweep_api, "open_executor"): orig_open_executor, (sweep_api, "run_task"): sweep_api.run_task,
             (sweep_api, "plan_runs"): sweep_api.plan_runs, (SweepStore, "open"): SweepStore.open,
             (SweepStore, "write_run"): SweepStore.write_run, (SweepStore, "finalize"): SweepStore.finalize}
    sweep_api.open_executor = open_executor
    sweep_api.plan_runs = timed(sweep_api.plan_runs, "plan")
    SweepStore.open = timed(SweepStore.open, "store_open")
    SweepStore.write_run = timed(SweepStore.write_run, "write_run")
    SweepStore.finalize = timed(SweepStore.finalize, "finalize")
    try:
        yield mark, serial_task
    finally:
        for (owner, name), fn in saved.items():
            setattr(owner, name, fn)


def breakdown_sweep(exp: dict, workers: int, base: Path, cold: bool) -> dict:
    """One instrumented sweep: print where its wall time goes; return the main figures."""
    events: list[dict] = []
    out = Path(tempfile.mkdtemp(prefix=f"bd{workers}-", dir=base))
    if cold:
        stop_forkserver()
    with instrumented(events) as (mark, serial_task):
        # The pool pickles the task by reference: a function of this script (its workers import
        # it as __mp_main__); in this process the serial loop calls it directly.
        sweep_api.run_task = serial_task if workers == 1 else timed_run_task
        mark("call")
        res = pmsim.sweep(exp, out, workers=workers, progress=False, resume=False)
        mark("return")
    check_ok(res, f"instrumented, workers={workers}")
    t0 = events[0]["t"]
    total = events[-1]["t"] - t0

    def at(what):
        return next(e["t"] - t0 for e in events if e["what"] == what)

    def spans(what):
        starts = [e["t"] for e in events if e["what"] == what + "_start"]
        ends = [e["t"] for e in events if e["what"] == what + "_end"]
        return [b - a for a, b in zip(starts, ends)]

    runs = sorted((e for e in events if e["what"] == "result"), key=lambda e: e["end"])
    writes, fin = spans("write_run"), sum(spans("finalize"))
    task = sum(e["end"] - e["start"] for e in runs)
    sim = sum(e["sim"] for e in runs)
    last_end = runs[-1]["end"] - t0
    kind = "serial (workers=1)" if workers == 1 else f"workers={workers}, {'cold' if cold else 'warm'}"
    print(f"  instrumented sweep, {kind}: {total:.2f} s")
    print(f"    plan + store.open            {sum(spans('plan')) + sum(spans('store_open')):6.2f} s")
    print(f"    runs: {len(runs)} tasks            {task:6.2f} s of run_task ({sim:.2f} s simulating, "
          f"{task - sim:.2f} s building the model and the tables)")
    print(f"    write_run in the driver      {sum(writes):6.2f} s ({statistics.mean(writes) * 1e3:.0f} ms a run)")
    print(f"    finalize                     {fin:6.2f} s")
    fig = {"total": total, "task": task, "writes": sum(writes), "finalize": fin,
           "summary_path": out / "summary.parquet"}
    if workers == 1:
        print(f"    anything else                {total - task - sum(writes) - fin - sum(spans('plan')):6.2f} s")
        times = [e["end"] - e["start"] for e in runs]
        for d in dict.fromkeys(e["design"] for e in runs):
            ds = [e["end"] - e["start"] for e in runs if e["design"] == d]
            print(f"    {d + ' runs take':<28} {statistics.mean(ds):6.2f} s each (mean of {len(ds)})")
        print(f"    these run times on {WORKERS} workers: {sum(times) / WORKERS:.2f} s if split perfectly; list "
              f"scheduling in the sweep's order {list_schedule(times, WORKERS):.2f} s, longest first "
              f"{list_schedule(sorted(times, reverse=True), WORKERS):.2f} s")
        return fig
    opened = at("pool_open_end")
    per: dict = {}
    for e in runs:
        per.setdefault(e["pid"], []).append((e["start"] - t0, e["end"] - t0))
    idle_start = idle_gap = idle_tail = 0.0
    for i, seq in enumerate(per.values()):
        gaps = sum(b[0] - a[1] for a, b in itertools.pairwise(seq))
        idle_start += seq[0][0] - opened
        idle_gap += gaps
        idle_tail += last_end - seq[-1][1]
        print(f"    worker {i + 1}: first run began at {seq[0][0]:5.2f} s, {len(seq)} runs "
              f"(" + ", ".join(f"{b - a:.2f}" for a, b in seq) + f" s), gaps {gaps * 1e3:.0f} ms, "
              f"last ended at {seq[-1][1]:5.2f} s")
    latency = [e["t"] - e["end"] for e in runs]
    print(f"    result reaches the driver    {statistics.median(latency) * 1e3:6.0f} ms after its run ends "
          f"(median; max {max(latency) * 1e3:.0f} ms)")
    print(f"    worker-seconds idle up to the last run's end ({workers} x {last_end - opened:.2f} s): "
          f"start-up {idle_start:.2f}, between runs {idle_gap:.2f}, tail {idle_tail:.2f}")
    after = total - last_end
    print(f"    after the last run ended     {after:6.2f} s (receive it, write it, finalize, pool shutdown "
          f"{sum(spans('pool_shutdown')):.2f} s)")
    fig.update(startup=idle_start / workers, gaps=idle_gap / workers, tail=idle_tail / workers, after=after,
               first_start=min(seq[0][0] for seq in per.values()))
    return fig


def list_schedule(times: list[float], workers: int) -> float:
    """Makespan of runs taken in this order by whichever worker is free first."""
    free = [0.0] * workers
    for t in times:
        i = free.index(min(free))
        free[i] += t
    return max(free)


def pool_startup(cold: bool, fork: bool = False) -> tuple[float, float]:
    """Seconds from a new pool (pmsim's, or one of the fork start method) to its first and its
    second worker running a task."""
    if cold:
        stop_forkserver()
    t0 = time.perf_counter()
    pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("fork")) if fork \
        else local_pool(WORKERS)
    try:
        starts = sorted(f.result() for f in [pool.submit(_started_at, 0.3) for _ in range(WORKERS)])
    finally:
        pool.shutdown(wait=True)
    return starts[0] - t0, starts[-1] - t0


def _started_at(hold: float) -> float:
    t = time.perf_counter()
    time.sleep(hold)  # so that the other task goes to the other worker
    return t


def import_time(lazy_scipy: bool = False) -> float:
    """Wall seconds (median of 3) of a fresh interpreter importing pmsim.sweeps.task, as the fork
    server does; ``lazy_scipy``: with an empty stand-in for scipy.stats (which no run calls)."""
    code = "import pmsim.sweeps.task"
    if lazy_scipy:
        code = ("import sys, types, scipy; m = types.ModuleType('scipy.stats'); sys.modules['scipy.stats'] = m; "
                "scipy.stats = m; import pmsim.sweeps.task; assert 'scipy.stats._stats_py' not in sys.modules")

    def run():
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t
    return statistics.median(run() for _ in range(3))


def spin(n: int) -> float:
    t = time.perf_counter()
    s = 0
    for i in range(n):
        s += i * i
    return time.perf_counter() - t


def machine_ceiling(n: int = 10_000_000) -> float:
    """Speedup of 2 busy loops in 2 (warm) processes over the same loops in a row: what the
    machine itself gives right now, with no pmsim in it."""
    pool = local_pool(WORKERS)
    try:
        list(pool.map(spin, [1000] * WORKERS))
        t = time.perf_counter()
        for _ in range(WORKERS):
            spin(n)
        serial = time.perf_counter() - t
        t = time.perf_counter()
        list(pool.map(spin, [n] * WORKERS))
        parallel = time.perf_counter() - t
    finally:
        pool.shutdown(wait=True)
    return serial / parallel


def breakdown(exp: dict, base: Path, quiet_wait: float, reference: Path) -> bool:
    print("\nbreakdown (one instrumented sweep of each kind; the same experiment)")
    wait_quiet(quiet_wait)
    method = pool_kind()
    for cold, fork in ((True, False), (False, False), (False, True)):
        first, second = pool_startup(cold, fork)
        what = "of the fork start method" if fork else f"pmsim's ({method}), {'cold' if cold else 'warm'}"
        print(f"  a new {WORKERS}-worker pool, {what}: first task starts after {first:.2f} s, "
              f"second after {second:.2f} s")
    lazy, full = import_time(lazy_scipy=True), import_time()
    print(f"  a fresh interpreter importing pmsim.sweeps.task: {full:.2f} s; with scipy.stats not imported "
          f"(as if pmsim.stats imported it in t_quantile): {lazy:.2f} s")
    print(f"  machine ceiling now (2 busy loops in 2 processes vs in a row): {machine_ceiling():.2f}x")
    wait_quiet(quiet_wait)
    s = breakdown_sweep(exp, 1, base, cold=False)
    wait_quiet(quiet_wait)
    c = breakdown_sweep(exp, WORKERS, base, cold=True)
    wait_quiet(quiet_wait)
    w = breakdown_sweep(exp, WORKERS, base, cold=False)
    print(f"  speedups of these: cold {s['total'] / c['total']:.2f}x, warm {s['total'] / w['total']:.2f}x; "
          f"run_task total serial {s['task']:.2f} s vs {c['task']:.2f} / {w['task']:.2f} s in the pools "
          f"(x{c['task'] / s['task']:.2f} / x{w['task'] / s['task']:.2f})")
    for fig in (s, c, w):
        why = same_summary(reference, fig["summary_path"])
        if why:
            print(f"RESULTS DIFFER: summary.parquet of an instrumented sweep is not the serial one: {why}")
            return False
    print("  summary.parquet of the instrumented sweeps identical to the serial one: yes")
    return True


def wait_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to ``max_wait`` s) until the machine's other processes use under ``threshold``
    cores over a second; return the load last seen (cores)."""
    deadline = time.perf_counter() + max_wait
    while True:
        b0, c0 = machine_busy_s()[0], own_cpu_s()
        time.sleep(1.0)
        load = (machine_busy_s()[0] - b0) - (own_cpu_s() - c0)
        if load < threshold or time.perf_counter() >= deadline:
            return load


# --- main --------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; 2 with --quick)")
    ap.add_argument("--duration-ms", type=float, default=None,
                    help="simulated time per run (default 30 ms, about 1-2 s wall; 10 ms with --quick)")
    ap.add_argument("--replications", type=int, default=2, help="runs = 4 x this (default 2: 8 runs)")
    ap.add_argument("--quick", action="store_true", help="2 repetitions of shorter runs")
    ap.add_argument("--warm", action="store_true", help="also time a parallel sweep with the fork server running")
    ap.add_argument("--what-if", action="store_true",
                    help="also time sweeps on a pool of the fork start method, and with the runs ordered "
                         "longest first (changes pmsim.sweeps could make)")
    ap.add_argument("--breakdown", action="store_true", help="where the parallel sweep's time goes")
    ap.add_argument("--tmp", default=None, help="folder for the sweeps' output (default: the system's)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="before each timed sweep, wait up to this many seconds for the machine's other "
                         "processes to use under 0.3 cores (default 30; 0 to not wait)")
    args = ap.parse_args()
    reps = args.reps or (2 if args.quick else 3)
    duration = args.duration_ms or (10.0 if args.quick else 30.0)
    exp = experiment(duration, args.replications)
    base = Path(tempfile.mkdtemp(prefix="bench_sweep-", dir=args.tmp))
    # No tqdm monitor thread (tqdm starts one at its first bar, even a disabled one, and it stays):
    # this process then has one thread when a pool starts, as a fresh `pmsim sweep` process has,
    # and pmsim's choice of how to start workers (it may depend on that) is the command's.
    tqdm.monitor_interval = 0
    try:
        # Untimed warm-up: imports, preset files and caches in this process, for both modes alike.
        warm_exp = {**experiment(3.0, 1), "grid": {"files.0.pages": [4096]}}
        pmsim.sweep(warm_exp, base / "warmup", workers=1, progress=False, resume=False)
        kinds = ["serial", "cold"] + (["warm"] if args.warm else []) + (["fork", "fork_lpt"] if args.what_if else [])
        print(f"pmsim.sweep: punch_hole, designs old+new, files.0.pages 4096/8192, {args.replications} "
              f"replications ({4 * args.replications} runs), {duration:g} ms simulated per run; workers=1 vs "
              f"workers={WORKERS}; {reps} reps; {os.cpu_count()} CPUs")
        print(f"(pmsim's local pool here starts its workers by {pool_kind()}; cold: no fork server left running "
              f"from an earlier sweep, as for `pmsim sweep --workers {WORKERS}` and a notebook's first sweep; "
              f"CPU: this process + fork server + workers; others: cores used by other processes meanwhile)")
        speed = {k: [] for k in kinds[1:]}
        cpu_ratios, run_ratios, foreign, reference, weights = [], [], [], None, None
        for rep in range(reps):
            order = kinds if rep % 2 == 0 else kinds[::-1]
            r = {}
            for kind in order:
                if args.quiet_wait > 0:
                    wait_quiet(args.quiet_wait)
                r[kind] = timed_sweep(exp, kind, base, weights)
                if kind == "serial" and weights is None:  # the first serial sweep's run time per design
                    weights = r[kind]["design_wall"]
            reference = reference or r["serial"]["summary_path"]
            for kind in kinds:
                why = same_summary(reference, r[kind]["summary_path"])
                if why:
                    print(f"RESULTS DIFFER: summary.parquet of the {KINDS[kind]} sweep (rep {rep + 1}) is not "
                          f"the serial one: {why}")
                    return 1
            for kind in kinds[1:]:
                speed[kind].append(r["serial"]["wall"] / r[kind]["wall"])
            cpu_ratios.append(r["cold"]["cpu"] / r["serial"]["cpu"])
            run_ratios.extend(r[k]["run_sum"] / r["serial"]["run_sum"] for k in kinds[1:])
            foreign.extend(r[k]["foreign"] for k in kinds)
            s = speed["cold"][-1]
            print(f"rep {rep + 1} (order {', '.join(order)}): speedup {s:.2f}x, efficiency {s / WORKERS:.0%}")
            for kind in kinds:
                extra = "" if kind == "serial" else f"   speedup {speed[kind][-1]:.2f}x"
                print("  " + describe(KINDS[kind], r[kind]) + extra)
            for kind in kinds:
                if rep > 0 or kind != "serial":
                    shutil.rmtree(r[kind]["dir"], ignore_errors=True)
        print(f"summary.parquet identical across all {reps * len(kinds)} sweeps: yes")
        print(f"runs' simulation time in a pool / serially: {med_range(run_ratios)}; CPU of the cold parallel "
              f"sweep / the serial one: {med_range(cpu_ratios)}; other processes' load during the sweeps: "
              f"{med_range(foreign)} cores (of {os.cpu_count()})")
        for kind in kinds[2:]:
            print(f"speedup, {KINDS[kind]}: {med_range(speed[kind], '{:.2f}x')}")
        if args.what_if:
            print("  (fork: the workers forked from this process, no fork server; longest 1st: the runs' cost "
                  "estimates weighted by their design's mean run time in the first serial sweep, "
                  + ", ".join(f"{d} {w:.2f} s" for d, w in weights.items()) + ")")
        if args.breakdown and not breakdown(exp, base, args.quiet_wait, reference):
            return 1
        med = statistics.median(speed["cold"])
        verdict = "MET" if med >= TARGET else "NOT MET"
        print(f"speedup {med_range(speed['cold'], '{:.2f}x')} ({WORKERS} workers, cold, end to end), efficiency "
              f"{med / WORKERS:.0%}, target >= {TARGET}x: {verdict}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
