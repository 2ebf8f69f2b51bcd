"""Speed of ``pmsim lockbench --lock qlock`` against a bare SimPy ``Resource`` loop.

Both run in this one process, interleaved (only the simulation loop is timed in each), with the same threads, hold and think
distributions and the same simulated duration; the figure of merit is lock
acquisitions per wall-clock second, and the reported number is the ratio
pmsim / bare SimPy, paired within each repetition, median over repetitions (target >= 0.8). Usage: ``python benchmarks/bench_lockbench.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import simpy

from pmsim.lockbench import LockBenchSpec, run_lockbench
from pmsim.units import parse_dist


def bare_simpy(
    threads: int, hold_mean: float, think_mean: float, duration: float, seed: int
) -> tuple[int, float]:
    """The simplest SimPy model of one lock: request, hold, release, think."""
    env = simpy.Environment()
    lock = simpy.Resource(env, capacity=1)
    rng = np.random.default_rng(seed)

    def draws(
        mean,
    ):  # block draws, as pmsim's samplers do: a draw costs a list step, not a numpy call
        while True:
            yield from rng.exponential(mean, 4096).tolist()

    holds, thinks = draws(hold_mean), draws(think_mean)
    count = [0]

    def worker():
        while True:
            yield env.timeout(next(thinks))
            with lock.request() as req:
                yield req
                count[0] += 1
                yield env.timeout(next(holds))

    for _ in range(threads):
        env.process(worker())
    t0 = time.perf_counter()
    env.run(until=duration)
    return count[0], time.perf_counter() - t0


def pmsim_qlock(
    threads: int, hold: str, think: str, duration: float, seed: int, ideal: bool
) -> tuple[int, float]:
    spec = LockBenchSpec(
        lock="qlock",
        threads=threads,
        hold=parse_dist(hold),
        think=parse_dist(think),
        duration=duration,
        warmup=0.0,
        seed=seed,
        ideal=ideal,
    )
    res = run_lockbench(spec)
    return res["acquisitions"], res["provenance"]["run_wall_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--hold-us", type=float, default=1.0)
    ap.add_argument("--think-us", type=float, default=10.0)
    ap.add_argument("--duration-ms", type=float, default=200.0)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    hold, think = f"exp:{args.hold_us}us", f"exp:{args.think_us}us"
    dur = args.duration_ms * 1e6
    rates = {
        "bare simpy Resource": [],
        "pmsim qlock (default costs)": [],
        "pmsim qlock (--ideal)": [],
    }
    pmsim_qlock(
        args.threads, hold, think, dur / 10, 0, ideal=False
    )  # untimed warm-up (imports, caches)
    for rep in range(args.reps):
        n, w = bare_simpy(args.threads, args.hold_us * 1e3, args.think_us * 1e3, dur, rep)
        rates["bare simpy Resource"].append(n / w)
        n, w = pmsim_qlock(args.threads, hold, think, dur, rep, ideal=False)
        rates["pmsim qlock (default costs)"].append(n / w)
        n, w = pmsim_qlock(args.threads, hold, think, dur, rep, ideal=True)
        rates["pmsim qlock (--ideal)"].append(n / w)
    base = rates["bare simpy Resource"]
    print(
        f"threads={args.threads} hold={hold} think={think} duration={args.duration_ms}ms reps={args.reps}"
    )
    for name, r in rates.items():
        ratios = [a / b for a, b in zip(r, base)]  # paired within a rep: same machine load
        print(
            f"{name:30} {statistics.median(r):12,.0f} acquisitions/wall-s   "
            f"ratio median {statistics.median(ratios):5.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"
        )


if __name__ == "__main__":
    main()
