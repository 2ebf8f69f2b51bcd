"""Speed of ``pmsim run read_hits_procs --design new`` against a bare SimPy ``Resource`` loop.

(``read_hits_procs``: one single-thread process per core, so each read is the lock-free read
hit plus its own process's uncontended syscall layer; ``read_hits``, threads of one process,
measures the fd-table spinlock instead.)

The figure of merit is simulated operations per wall-clock second. The baseline
is the simplest SimPy model of one lock: 16 processes, each looping
``request``, a hold of the read's mean latency, ``release``. Both run in this
one process, interleaved, and only their simulation loops are timed; the ratio
is paired within each repetition (the same machine load), and the median over
repetitions is reported (target >= 1.0). ``--profile`` adds a cProfile summary
of one pmsim run.

Usage: ``python benchmarks/bench_run.py [--reps 5] [--duration-ms 10] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time

import simpy

from pmsim.workload.load import load_spec
from pmsim.workload.runner import WorkloadRun


def bare_simpy(threads: int, hold_ns: float, duration_ns: float) -> tuple[int, float]:
    """One Resource acquire and release per operation (no think time, as read_hits)."""
    env = simpy.Environment()
    lock = simpy.Resource(env, capacity=1)
    count = [0]

    def worker():
        while True:
            req = lock.request()
            yield req
            yield env.timeout(hold_ns)
            lock.release(req)
            count[0] += 1

    for _ in range(threads):
        env.process(worker())
    t0 = time.perf_counter()
    env.run(until=duration_ns)
    return count[0], time.perf_counter() - t0


def pmsim_run(cores: int, duration_ms: float, seed: int) -> tuple[int, float, float]:
    """(reads, wall seconds of the simulation loop, mean read latency ns) of read_hits_procs on
    NEW."""
    spec = load_spec(
        "read_hits_procs",
        [
            f"machine.cores={cores}",
            f"processes.0.count={cores}",
            f"duration={duration_ms}ms",
            "warmup=0ms",
        ],
        seed,
    )
    res = WorkloadRun(spec, "new").run()
    read = res.summary["ops"]["read"]
    return read["count"], res.provenance["wall_s"], read["latency_us"]["mean"] * 1e3


def profile_summary(cores: int, duration_ms: float, top: int = 15) -> str:
    prof = cProfile.Profile()
    prof.enable()
    pmsim_run(cores, duration_ms, 0)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=16)
    ap.add_argument("--duration-ms", type=float, default=10.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    _, _, hold = pmsim_run(
        args.cores, 0.5, 0
    )  # untimed warm-up (imports, caches); the baseline's hold
    base, ours, ratios = [], [], []
    for rep in range(args.reps):
        n, w = bare_simpy(args.cores, hold, args.duration_ms * 1e6)
        base.append(n / w)
        n, w, _ = pmsim_run(args.cores, args.duration_ms, rep)
        ours.append(n / w)
        ratios.append(ours[-1] / base[-1])
    print(
        f"read_hits_procs --design new, {args.cores} cores, {args.duration_ms} ms simulated, {args.reps} reps"
    )
    print(
        f"  bare SimPy Resource loop  {statistics.median(base):12,.0f} ops/wall-s (hold {hold:.0f} ns)"
    )
    print(f"  pmsim run read_hits_procs {statistics.median(ours):12,.0f} ops/wall-s")
    print(
        f"  ratio (paired per rep)    median {statistics.median(ratios):.2f}  "
        f"range {min(ratios):.2f}-{max(ratios):.2f}  (target >= 1.0)"
    )
    if args.profile:
        print(profile_summary(args.cores, args.duration_ms))


if __name__ == "__main__":
    main()
