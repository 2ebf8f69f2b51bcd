"""Where a sweep's runs execute: this process, a local process pool, or a Dask cluster.

Every choice is a ``concurrent.futures.Executor``, so the sweep loop is the same
for all of them. The pool's workers come from a fork server that has imported
pmsim once (a fork of a bare interpreter is cheap; a fork of a notebook kernel
with threads running is not safe). Dask is an optional extra.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import Executor, ProcessPoolExecutor

from pmsim.errors import ConfigError


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers fork from a server that has imported pmsim's runner."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["pmsim.sweeps.task"])
    else:  # Windows, and macOS without forkserver: spawn imports pmsim in each worker
        ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def check_executor_args(workers=None, scheduler=None, scheduler_file=None, executor=None) -> None:
    """Refuse a contradictory or malformed choice before anything runs."""
    if executor is not None and (workers is not None or scheduler or scheduler_file):
        raise ConfigError("executor: give an executor or workers/scheduler, not both")
    if scheduler and scheduler_file:
        raise ConfigError("--scheduler and --scheduler-file: give one of them")
    if (scheduler or scheduler_file) and workers is not None:
        raise ConfigError(f"--workers {workers}: a Dask cluster has its own workers (start more of them instead)")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: expected a whole number >= 1, got {workers!r}")
    if scheduler_file and not os.path.isfile(scheduler_file):
        raise ConfigError(f"--scheduler-file: no such file {scheduler_file!r}")


@contextlib.contextmanager
def open_executor(workers: int | None = None, scheduler: str | None = None,
                  scheduler_file: str | None = None, executor: Executor | None = None):
    """Yield ``(executor, description)``; a pool or client this opens is closed on exit.
    One worker yields no executor: the sweep runs its runs in this process, one by one
    (the reference, and the one a debugger can step through)."""
    check_executor_args(workers, scheduler, scheduler_file, executor)
    if executor is not None:
        yield executor, type(executor).__name__
        return
    if scheduler or scheduler_file:
        client = _dask_client(scheduler, scheduler_file)
        try:
            yield client.get_executor(pure=False), f"Dask cluster at {client.scheduler.address}"
        finally:
            client.close()
        return
    workers = default_workers() if workers is None else workers
    if workers == 1:
        yield None, "this process"
        return
    pool = local_pool(workers)
    try:
        yield pool, f"{workers} local processes"
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask_client(scheduler: str | None, scheduler_file: str | None):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler: Dask distributed is not installed "
                          "(python -m pip install 'pmsim[dask]')") from None
    try:
        if scheduler_file:
            return Client(scheduler_file=scheduler_file, timeout="10s")
        return Client(scheduler, timeout="10s")
    except Exception as e:  # noqa: BLE001 - distributed raises many kinds (a bad file: AssertionError)
        where = f"--scheduler-file {scheduler_file}" if scheduler_file else f"--scheduler {scheduler}"
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{where}: cannot reach the Dask scheduler ({reason[:160]})") from None
