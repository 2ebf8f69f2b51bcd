"""``pmsim lockbench``: one lock, N threads, closed or open loop; the validation workhorse.

Closed loop: each thread loops think, acquire, hold, release. Open loop: requests
arrive with the given interarrival times and each is taken by an idle thread of
the pool (a request that finds none waits, and that wait counts). The kernel path
of a request is acquire..release; think time is user time.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pmsim.costs import CostTable, cost_params
from pmsim.engine import Event
from pmsim.errors import ConfigError
from pmsim.machine import Machine
from pmsim.stats import Histogram, mean_ci, ratio_ci
from pmsim.sync.spinlock import SPINLOCK_KINDS
from pmsim.units import Distribution, format_time

# Every spinlock kind the machine offers, plus the sleeping qlock.
LOCK_KINDS = (*SPINLOCK_KINDS, "qlock")
IDEAL_GROUPS = ("atomics", "locks")
BATCHES = 20


def ideal_overrides() -> dict[str, float]:
    """Every lock, cache-line, wake and context-switch cost set to zero (``--ideal``)."""
    return {
        n: 0.0 for n, p in cost_params().items() if p.group in IDEAL_GROUPS and p.role == "input"
    }


@dataclass
class LockBenchSpec:
    lock: str
    threads: int
    hold: Distribution
    think: Distribution | None = None
    arrivals: Distribution | None = None
    cores: int | None = None
    ideal: bool = False
    overrides: dict = field(default_factory=dict)
    duration: float = 20e6  # ns
    warmup: float = 2e6
    seed: int = 1
    wake: str | None = None  # qlock wake policy (default waker_core); qlock only

    def check(self) -> None:
        if self.lock not in LOCK_KINDS:
            raise ConfigError(
                f"--lock: unknown lock {self.lock!r} (one of {', '.join(LOCK_KINDS)})"
            )
        if self.threads < 1:
            raise ConfigError(f"--threads: must be >= 1, got {self.threads}")
        if self.cores is not None and self.cores < 1:
            raise ConfigError(f"--cores: must be >= 1, got {self.cores}")
        if (self.think is None) == (self.arrivals is None):
            raise ConfigError("lockbench: give exactly one of --think and --arrivals")
        if self.arrivals is not None and self.arrivals.mean <= 0:
            raise ConfigError(f"--arrivals: mean interarrival must be > 0, got {self.arrivals}")
        if self.wake is not None and self.lock != "qlock":
            raise ConfigError(
                f"--wake {self.wake}: only the qlock has a wake policy, not --lock {self.lock}"
            )
        if self.duration <= self.warmup:
            raise ConfigError(
                f"--duration ({format_time(self.duration)}) must exceed --warmup ({format_time(self.warmup)})"
            )

    def costs(self) -> CostTable:
        overrides = ideal_overrides() if self.ideal else {}
        overrides.update(self.overrides)
        return CostTable(overrides)


class _Batches:
    """Per-batch sums over the measured window, for batch-means confidence intervals."""

    def __init__(self, warmup: float, duration: float):
        self.t0 = warmup
        self.width = (duration - warmup) / BATCHES
        self.count = [0] * BATCHES  # plain lists: numpy scalar indexing is slow on the hot path
        self.wait = [0.0] * BATCHES

    def add(self, t: float, wait: float) -> None:
        b = int((t - self.t0) / self.width)
        if 0 <= b < BATCHES:
            self.count[b] += 1
            self.wait[b] += wait


def run_lockbench(spec: LockBenchSpec) -> dict:
    """Run one lock microbenchmark and return its summary (see ``pmsim lockbench --help``)."""
    spec.check()
    wall0 = time.perf_counter()
    ncores = spec.cores or spec.threads
    m = Machine(
        cores=ncores,
        costs=spec.costs(),
        seed=spec.seed,
        warmup=spec.warmup,
        spinlock_kind="ttas",
        qlock_wake=spec.wake or "waker_core",
    )
    env = m.env
    lock = m.qlock("lockbench") if spec.lock == "qlock" else m.spinlock("lockbench", spec.lock)
    m.costs.check_all_read(spec.overrides, f"lockbench --lock {spec.lock}")
    batches = _Batches(spec.warmup, spec.duration)
    waits = Histogram()
    per_thread = [0] * spec.threads
    warm = spec.warmup
    threads = [m.thread(f"t{i}", i % ncores) for i in range(spec.threads)]

    queue: deque = deque()  # arrival times of requests waiting for a thread (open loop)
    idle: deque = deque()  # events of idle pool threads (open loop)

    def arrivals():
        gap = spec.arrivals.sampler(m.rng("lockbench.arrivals"))
        while True:
            yield env.timeout(gap())
            if idle:
                idle.popleft().succeed(env.now)
            else:
                queue.append(env.now)

    def worker(th, i):
        """Closed loop: think, then a request; open loop: take the next request. Then the
        kernel path: acquire, hold, release. (One function: this loop is the benchmark's hot path.)"""
        think = (
            spec.think.sampler(m.rng(f"lockbench.think.{i}")) if spec.think is not None else None
        )
        hold = spec.hold.sampler(m.rng(f"lockbench.hold.{i}"))
        acquire, release = lock.acquire, lock.release
        while True:
            if think is not None:
                th.pending += think()  # user time, counted as useful
                yield from th.sync()
                t_req = env.now
            elif queue:
                t_req = queue.popleft()
            else:
                ev = Event(env)
                idle.append(ev)
                t_req = yield from th.block(ev)
            th.kernel_enter()
            yield from acquire(th)
            t_acq = env.now + th.pending + th.stolen  # th.now, inlined
            if t_acq >= warm:
                wait = t_acq - t_req
                waits.add(wait)
                batches.add(t_acq, wait)
                per_thread[i] += 1
            th.pending += hold()
            yield from release(th)
            yield from th.kernel_exit()

    for i, th in enumerate(threads):
        env.process(worker(th, i))
    if spec.arrivals is not None:
        env.process(arrivals())
    run0 = time.perf_counter()
    m.run(until=spec.duration)
    run_wall = time.perf_counter() - run0

    window = m.recorder.window
    st = m.recorder.locks["lockbench"]
    n = sum(batches.count)
    per_batch_tput = np.array(batches.count) / (batches.width / 1e9)
    _, tput_ci = mean_ci(per_batch_tput)
    _, wait_ci = ratio_ci(batches.wait, batches.count)
    cpu = m.recorder.cpu()
    hold_mean = st.hold.mean()
    per_thread = np.array(per_thread, dtype=float)
    share = per_thread / per_thread.sum() if per_thread.sum() else per_thread
    return {
        "lock": spec.lock,
        "threads": spec.threads,
        "cores": ncores,
        "mode": "closed" if spec.think is not None else "open",
        "hold": str(spec.hold),
        "think": str(spec.think) if spec.think is not None else None,
        "arrivals": str(spec.arrivals) if spec.arrivals is not None else None,
        "ideal": spec.ideal,
        "wake": (spec.wake or "waker_core") if spec.lock == "qlock" else None,
        "costs_overridden": m.costs.overridden(),
        "duration_s": spec.duration / 1e9,
        "warmup_s": spec.warmup / 1e9,
        "seed": spec.seed,
        "acquisitions": n,
        "throughput_per_s": n / (window / 1e9),
        "ci95_throughput_per_s": tput_ci,
        "mean_wait_s": waits.mean() / 1e9,
        "ci95_mean_wait_s": wait_ci / 1e9,
        "p50_wait_s": waits.quantile(0.5) / 1e9,
        "p99_wait_s": waits.quantile(0.99) / 1e9,
        "max_wait_s": waits.quantile(1.0) / 1e9,
        "mean_hold_s": hold_mean / 1e9,
        "lock_utilization": st.hold.sum() / window,
        "mean_spinning_cores": cpu["spin"] * ncores,
        "contended_fraction": st.contended / st.acquisitions if st.acquisitions else 0.0,
        "max_queue": st.max_queue,
        "thread_share_min": float(share.min()) if share.size else 0.0,
        "thread_share_max": float(share.max()) if share.size else 0.0,
        "cpu": cpu,
        "provenance": {"wall_s": time.perf_counter() - wall0, "run_wall_s": run_wall},
    }
