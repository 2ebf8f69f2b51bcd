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
sweep does: a fork server left from an earlier sweep is stopped before it (pmsim
forks its workers straight from a process with one thread, as this one and the
command are, and uses a fork server otherwise; the header says which).
``--warm`` also times a parallel sweep right after another one.

Every sweep's ``summary.parquet`` must equal
the first serial one's, exactly: if not, the benchmark stops with exit status 1.
Otherwise it exits 0 whether or not the target is met (a measurement, not a test).

The machine may be shared, so before each timed sweep the benchmark waits (up
to ``--quiet-wait`` s) for other processes to go quiet, and each sweep reports
the CPU seconds it used (this process, the fork server and the workers) and the
cores other processes used meanwhile ("others"), from ``/proc`` (Linux).

Usage: ``python benchmarks/bench_sweep.py [--reps 3] [--quick] [--warm]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import pmsim
from pmsim.sweeps.executors import local_pool

WORKERS = 2
TARGET = 1.8
HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def experiment(duration_ms: float, replications: int) -> dict:
    """punch_hole on OLD and NEW x 2 file sizes x ``replications``: 4 * replications runs."""
    return {
        "name": "bench_sweep",
        "workload": "punch_hole",
        "designs": ["old", "new"],
        "grid": {"files.0.pages": [4096, 8192]},
        "overrides": {"duration": f"{duration_ms:g}ms"},
        "replications": replications,
        "seed": 1,
    }


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
KINDS = {
    "serial": "serial (workers=1)",
    "cold": f"workers={WORKERS}, cold",
    "warm": f"workers={WORKERS}, warm",
}


def timed_sweep(exp: dict, kind: str, base: Path) -> dict:
    """One sweep of ``kind`` (see ``KINDS``) into a fresh folder, timed end to end."""
    out = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=base))
    if kind == "cold":
        stop_forkserver()
    with Meter() as m:
        res = pmsim.sweep(
            exp, out, workers=1 if kind == "serial" else WORKERS, progress=False, resume=False
        )
    check_ok(res, KINDS[kind])
    prov = res.provenance
    per_worker = prov.groupby("pid")["wall_s"].sum()
    return {
        "wall": m.wall,
        "cpu": m.cpu,
        "foreign": m.foreign,
        "steal": m.steal,
        "runs": len(prov),
        "run_sum": prov["wall_s"].sum(),
        "run_mean": prov["wall_s"].mean(),
        "busiest_worker": per_worker.max(),
        "n_workers": len(per_worker),
        "summary_path": out / "summary.parquet",
        "dir": out,
    }


def check_ok(res, what: str) -> None:
    """Stop (exit status 1) if a run failed: its numbers would be missing, not wrong."""
    failed = res.failures
    if len(failed):
        sys.exit(
            f"bench_sweep: {len(failed)} runs failed in the {what} sweep, e.g.: {failed['error'].iloc[0]}"
        )


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
    return (
        f"{label:<27} {r['wall']:6.2f} s   {r['runs']} runs simulating {r['run_mean']:.2f} s each{busiest}   "
        f"CPU {r['cpu']:5.2f} s   others {r['foreign']:.2f} cores{steal}"
    )


def med_range(xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"median {fmt.format(statistics.median(xs))} (range {fmt.format(min(xs))}-{fmt.format(max(xs))})"


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
    ap.add_argument(
        "--reps", type=int, default=None, help="repetitions (default 3; 2 with --quick)"
    )
    ap.add_argument(
        "--duration-ms",
        type=float,
        default=None,
        help="simulated time per run (default 30 ms, about 1-2 s wall; 10 ms with --quick)",
    )
    ap.add_argument(
        "--replications", type=int, default=2, help="runs = 4 x this (default 2: 8 runs)"
    )
    ap.add_argument("--quick", action="store_true", help="2 repetitions of shorter runs")
    ap.add_argument(
        "--warm",
        action="store_true",
        help="also time a parallel sweep with the fork server running",
    )
    ap.add_argument(
        "--tmp", default=None, help="folder for the sweeps' output (default: the system's)"
    )
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=30.0,
        help="before each timed sweep, wait up to this many seconds for the machine's other "
        "processes to use under 0.3 cores (default 30; 0 to not wait)",
    )
    args = ap.parse_args()
    reps = args.reps or (2 if args.quick else 3)
    duration = args.duration_ms or (10.0 if args.quick else 30.0)
    exp = experiment(duration, args.replications)
    base = Path(tempfile.mkdtemp(prefix="bench_sweep-", dir=args.tmp))
    try:
        # Untimed warm-up: imports, preset files and caches in this process, for both modes alike.
        warm_exp = {**experiment(3.0, 1), "grid": {"files.0.pages": [4096]}}
        pmsim.sweep(warm_exp, base / "warmup", workers=1, progress=False, resume=False)
        kinds = ["serial", "cold"] + (["warm"] if args.warm else [])
        print(
            f"pmsim.sweep: punch_hole, designs old+new, files.0.pages 4096/8192, {args.replications} "
            f"replications ({4 * args.replications} runs), {duration:g} ms simulated per run; workers=1 vs "
            f"workers={WORKERS}; {reps} reps; {os.cpu_count()} CPUs"
        )
        print(
            f"(pmsim's local pool here starts its workers by {pool_kind()}; cold: no fork server left running "
            f"from an earlier sweep, as for `pmsim sweep --workers {WORKERS}` and a notebook's first sweep; "
            f"CPU: this process + fork server + workers; others: cores used by other processes meanwhile)"
        )
        speed = {k: [] for k in kinds[1:]}
        cpu_ratios, run_ratios, foreign, reference = [], [], [], None
        for rep in range(reps):
            order = kinds if rep % 2 == 0 else kinds[::-1]
            r = {}
            for kind in order:
                if args.quiet_wait > 0:
                    wait_quiet(args.quiet_wait)
                r[kind] = timed_sweep(exp, kind, base)
            reference = reference or r["serial"]["summary_path"]
            for kind in kinds:
                why = same_summary(reference, r[kind]["summary_path"])
                if why:
                    print(
                        f"RESULTS DIFFER: summary.parquet of the {KINDS[kind]} sweep (rep {rep + 1}) is not "
                        f"the serial one: {why}"
                    )
                    return 1
            for kind in kinds[1:]:
                speed[kind].append(r["serial"]["wall"] / r[kind]["wall"])
            cpu_ratios.append(r["cold"]["cpu"] / r["serial"]["cpu"])
            run_ratios.extend(r[k]["run_sum"] / r["serial"]["run_sum"] for k in kinds[1:])
            foreign.extend(r[k]["foreign"] for k in kinds)
            s = speed["cold"][-1]
            print(
                f"rep {rep + 1} (order {', '.join(order)}): speedup {s:.2f}x, efficiency {s / WORKERS:.0%}"
            )
            for kind in kinds:
                extra = "" if kind == "serial" else f"   speedup {speed[kind][-1]:.2f}x"
                print("  " + describe(KINDS[kind], r[kind]) + extra)
            for kind in kinds:
                if rep > 0 or kind != "serial":
                    shutil.rmtree(r[kind]["dir"], ignore_errors=True)
        print(f"summary.parquet identical across all {reps * len(kinds)} sweeps: yes")
        print(
            f"runs' simulation time in a pool / serially: {med_range(run_ratios)}; CPU of the cold parallel "
            f"sweep / the serial one: {med_range(cpu_ratios)}; other processes' load during the sweeps: "
            f"{med_range(foreign)} cores (of {os.cpu_count()})"
        )
        for kind in kinds[2:]:
            print(f"speedup, {KINDS[kind]}: {med_range(speed[kind], '{:.2f}x')}")
        med = statistics.median(speed["cold"])
        verdict = "MET" if med >= TARGET else "NOT MET"
        print(
            f"speedup {med_range(speed['cold'], '{:.2f}x')} ({WORKERS} workers, cold, end to end), efficiency "
            f"{med / WORKERS:.0%}, target >= {TARGET}x: {verdict}"
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
