"""Where a sweep's runs execute: this process, a local process pool, or a Dask cluster.

Every choice is a ``concurrent.futures.Executor``, so the sweep loop is the same
for all of them. Dask is an optional extra.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor

from pmsim.errors import ConfigError


def default_workers() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool, its workers started before it is returned.

    From a process with one thread (the ``pmsim`` command, a script) the workers are forked:
    they start at once with pmsim already imported. Forking a process with other threads (a
    notebook kernel, a Dask client) can copy a lock some thread holds, so there the workers
    fork from a server process that imports pmsim once (about a second), or are spawned
    where there is no fork."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and _only_thread():
        ctx = multiprocessing.get_context("fork")
    elif "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["pmsim.sweeps.task"])
    else:
        ctx = multiprocessing.get_context("spawn")
    parent = os.getpid() if ctx.get_start_method() == "fork" else None
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_worker_start, initargs=(parent,)
    )
    # A forking pool starts all its workers at its first task: now, while this process
    # still has one thread (the progress bar starts one); a fork server imports pmsim now.
    pool.submit(int).result()
    return pool


def _worker_start(parent: int | None) -> None:
    """In each pool worker: end with the process that started it (a killed sweep must not leave
    its workers running forever), and leave Ctrl-C and SIGTERM to the driver, which stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # Linux: the kernel kills us with our parent
    except (OSError, AttributeError):  # not Linux: watch the parent instead
        threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    if parent is not None and os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGKILL)


PR_SET_PDEATHSIG = 1


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGKILL)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's workers now (an interrupted sweep; shutdown alone waits for their runs)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        return terminate()
    # Before 3.14 the pool's processes are only in its private table (what 3.14's method reads).
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        proc.terminate()


def _only_thread() -> bool:
    """This process runs one thread (tqdm's monitor, which only wakes to redraw bars, aside)."""
    others = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and type(t).__name__ != "TMonitor"
    ]
    return not others


def check_executor_args(workers=None, scheduler=None, scheduler_file=None, executor=None) -> None:
    """Refuse a contradictory or malformed choice before anything runs."""
    if executor is not None and (workers is not None or scheduler or scheduler_file):
        raise ConfigError("executor: give an executor or workers/scheduler, not both")
    if scheduler and scheduler_file:
        raise ConfigError("--scheduler and --scheduler-file: give one of them")
    if (scheduler or scheduler_file) and workers is not None:
        raise ConfigError(
            f"--workers {workers}: a Dask cluster has its own workers (start more of them instead)"
        )
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ConfigError(f"--workers: expected a whole number >= 1, got {workers!r}")
    if scheduler_file and not os.path.isfile(scheduler_file):
        raise ConfigError(f"--scheduler-file: no such file {scheduler_file!r}")


@contextlib.contextmanager
def open_executor(
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    executor: Executor | None = None,
):
    """Yield ``(executor, description, window)``; a pool or client this opens is closed on exit.
    ``window`` is how many runs to keep in flight (a local pool's workers), None for all.
    One worker yields no executor: the sweep runs its runs in this process, one by one
    (the reference, and the one a debugger can step through)."""
    check_executor_args(workers, scheduler, scheduler_file, executor)
    if executor is not None:
        yield executor, type(executor).__name__, None
        return
    if scheduler or scheduler_file:
        client = _dask_client(scheduler, scheduler_file)
        try:
            yield (
                client.get_executor(pure=False),
                f"Dask cluster at {client.scheduler.address}",
                None,
            )
        finally:
            client.close()
        return
    workers = default_workers() if workers is None else workers
    if workers == 1:
        yield None, "this process", None
        return
    pool = local_pool(workers)
    try:
        yield pool, f"{workers} local processes", workers
    except BaseException:  # interrupted, or a file could not be written: stop the runs too
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _dask_client(scheduler: str | None, scheduler_file: str | None):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(
            "--scheduler: Dask distributed is not installed (python -m pip install 'pmsim[dask]')"
        ) from None
    try:
        if scheduler_file:
            return Client(scheduler_file=scheduler_file, timeout="10s")
        return Client(scheduler, timeout="10s")
    except Exception as e:  # noqa: BLE001 - distributed raises many kinds (a bad file: AssertionError)
        where = (
            f"--scheduler-file {scheduler_file}" if scheduler_file else f"--scheduler {scheduler}"
        )
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ConfigError(f"{where}: cannot reach the Dask scheduler ({reason[:160]})") from None


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM (kill, a batch system's time limit) stops a sweep as Ctrl-C does: its workers
    are stopped and what finished is kept."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
