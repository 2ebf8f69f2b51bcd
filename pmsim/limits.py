"""What a run or a sweep will cost, estimated before it starts, so nothing dies of
``MemoryError`` halfway or runs for hours unannounced: what cannot fit this machine's memory
is refused, and what is large (by the thresholds below) stops with its estimate unless asked
to proceed (``--allow-large``, ``allow_large=True``).

The coefficients are measured (docs/sweeps.md, "Limits"): a pmsim process holds ~135 MB
before it simulates; a file page ~0.3 KB once cached; a simulated thread ~160 KB (its random
streams' blocks); a simulated millisecond ~0.5 KB (the time series). Wall time is charged
9 us per simulated operation, an operation taking at least 0.5 us simulated, so a closed-loop
thread without think time does 2000 per simulated millisecond and a core no more: on the
design_review sweep that is 0.5x to 220x the measured wall time (median 7.6x; slow devices
and think times make operations rarer than that). A planned run holds ~10 KB in the sweep's
driver and takes ~0.2 ms to plan.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from pmsim.errors import ConfigError

BASE_BYTES = 135e6
PAGE_BYTES = 300
THREAD_BYTES = 160e3
MS_BYTES = 500
WALL_PER_OP_S = 9e-6
WALL_PER_PAGE_S = 5e-6  # building the page cache at the start
MIN_OP_NS = 500.0
PLAN_BYTES = 10e3
PLAN_S = 2e-4

RUN_WALL_S = 3600.0  # a run estimated longer stops without allow_large
SWEEP_WALL_S = 2 * 3600.0  # a sweep estimated longer (on its workers) stops without allow_large
MEMORY_SHARE = 0.5  # of the available memory: a run estimated above it stops without allow_large
RUNS = 100_000  # a sweep with more runs stops without allow_large

FLAG = "--allow-large"


def _f(n) -> float:
    """A count as a float, however large the integer given (float() of 10**400 raises)."""
    return float(min(n, 10**300))


@dataclass(frozen=True)
class Estimate:
    memory: float  # bytes, peak, of the process simulating the run
    wall_s: float  # seconds on one core

    def __str__(self) -> str:
        return f"about {size(self.memory)} of memory and {duration(self.wall_s)} of wall time"


def estimate(spec) -> Estimate:
    """The peak memory and the wall time of simulating ``spec`` (a WorkloadSpec)."""
    pages = sum(_f(f.pages) for f in spec.files)
    threads = _f(spec.total_threads)
    cores = _f(spec.machine.cores)
    ms = spec.duration / 1e6
    loop = spec.loop
    if loop.kind == "closed":  # each thread keeps a core busy but while it thinks
        per_thread = 1.0 / (MIN_OP_NS + loop.think.mean)
    else:
        per_thread = 1.0 / max(loop.arrivals.mean, MIN_OP_NS)
    ops = min(threads * per_thread, cores / MIN_OP_NS) * spec.duration
    return Estimate(
        memory=BASE_BYTES + pages * PAGE_BYTES + threads * THREAD_BYTES + ms * MS_BYTES,
        wall_s=ops * WALL_PER_OP_S + pages * WALL_PER_PAGE_S,
    )


def available_memory() -> float | None:
    """Bytes this machine can give a process now (MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_run(spec, allow_large: bool = False, what: str = "", local: bool = True) -> Estimate:
    """Refuse a run that cannot fit this machine's memory (when it runs here, ``local``); stop
    one estimated above the thresholds unless ``allow_large``."""
    est = estimate(spec)
    _check(est, spec, what or f"workload {spec.name}", allow_large, local)
    return est


def _check(est: Estimate, spec, where: str, allow_large: bool, local: bool) -> None:
    shape = (
        f"{sum(f.pages for f in spec.files)} pages, {spec.total_threads} threads, "
        f"{spec.duration / 1e6:g} ms simulated"
    )
    avail = available_memory() if local else None
    if avail is not None and est.memory > avail:
        raise ConfigError(
            f"{where}: needs {size(est.memory)} of memory ({shape}); this machine has "
            f"{size(avail)} available"
        )
    if allow_large:
        return
    if est.wall_s > RUN_WALL_S:
        why = f"over {duration(RUN_WALL_S)} for one run"
    elif avail is not None and est.memory > MEMORY_SHARE * avail:
        why = f"over half the {size(avail)} of memory available"
    else:
        return
    raise ConfigError(f"{where}: estimated {est} ({shape}): {why}; give {FLAG} to run it anyway")


def check_sweep_size(name: str, runs: int, allow_large: bool = False) -> None:
    """Before planning: refuse a sweep whose plan alone cannot fit this machine's memory, and
    stop one with more than :data:`RUNS` runs unless ``allow_large``."""
    avail = available_memory()
    memory = _f(runs) * PLAN_BYTES
    if avail is not None and memory > avail:
        raise ConfigError(
            f"experiment {name}: {runs} runs; planning them needs {size(memory)} of memory, "
            f"this machine has {size(avail)} available"
        )
    if runs > RUNS and not allow_large:
        raise ConfigError(
            f"experiment {name}: {runs} runs (planning them takes about "
            f"{duration(_f(runs) * PLAN_S)} and {size(memory)}): over {RUNS}; "
            f"give {FLAG} to run it anyway"
        )


def check_sweep(
    name: str, plans, parallel: int | None, allow_large: bool = False, local: bool = True
) -> float | None:
    """Each run's limits, then the whole sweep's estimated wall time on ``parallel`` workers
    (stops above :data:`SWEEP_WALL_S` unless ``allow_large``; None: unknown, a cluster's)."""
    ests = [estimate(p.spec) for p in plans]
    for key in (lambda i: ests[i].memory, lambda i: ests[i].wall_s):  # the largest runs
        i = max(range(len(plans)), key=key)
        p = plans[i]
        where = f"experiment {name}, run {p.run_id} ({p.design}, {p.workload})"
        _check(ests[i], p.spec, where, allow_large, local)
    if parallel is None:
        return None
    largest = max(e.memory for e in ests)
    avail = available_memory() if local else None
    if avail is not None and parallel > 1 and parallel * largest > avail:
        raise ConfigError(
            f"experiment {name}: {parallel} workers running runs of up to {size(largest)} at once "
            f"need {size(parallel * largest)} of memory; this machine has {size(avail)} "
            f"available (give --workers {max(1, int(avail // largest))})"
        )
    wall = sum(e.wall_s for e in ests) / max(parallel, 1)
    if wall > SWEEP_WALL_S and not allow_large:
        raise ConfigError(
            f"experiment {name}: estimated {duration(wall)} of wall time for {len(plans)} runs "
            f"on {parallel} worker{'s' if parallel != 1 else ''}: over {duration(SWEEP_WALL_S)}; "
            f"give {FLAG} to run it anyway"
        )
    return wall


def size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if n < 1e15 else f"{n / 1e12:.3g} TB"
    return f"{n / 1e3:.3g} KB"


def duration(s: float) -> str:
    if math.isinf(s) or s >= 2 * 86400:
        return f"{s / 86400:.3g} days"
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 120:
        return f"{s / 60:.3g} min"
    return f"{s:.3g} s"
