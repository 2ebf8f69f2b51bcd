"""A real, local Dask cluster for tests: a ``dask scheduler`` and ``dask worker`` processes.

Every process is started with this interpreter (``sys.executable``) and with the folder
that holds the imported ``pmsim`` package first on ``PYTHONPATH``, from a scratch working
folder: the scheduler unpickles the tasks it is sent and the workers run them, so both
must import the very pmsim the tests import (checked before the cluster is handed out).
Workers run without a nanny and with one thread each, so a worker's pid is the process
that runs its task: SIGKILL to it loses the run in flight, as a crashed machine would.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pmsim

PMSIM_ROOT = str(Path(pmsim.__file__).resolve().parents[1])


def subprocess_env() -> dict:
    """This process's environment, with the imported pmsim's folder first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PMSIM_ROOT, env.get("PYTHONPATH")) if p)
    return env


def distributed_available() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class DaskCluster:
    scheduler_file: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]
    logs: Path

    def log_tail(self, n: int = 4000) -> str:
        """The end of every process's log (for a failing test's message)."""
        out = []
        for f in sorted(self.logs.glob("*.log")):
            out.append(f"--- {f.name}\n{f.read_text(errors='replace')[-n:]}")
        return "\n".join(out)


def _stop(procs: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """Terminate each process by its handle; kill the ones that do not exit in time."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextlib.contextmanager
def dask_cluster(folder, n_workers: int = 2, timeout: float = 60.0):
    """Start a scheduler and ``n_workers`` single-threaded workers; yield a :class:`DaskCluster`
    once every worker has registered and imports this pmsim; stop them all on exit."""
    from distributed import Client

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / "cwd"  # not the repository: pmsim must come from PYTHONPATH / the install
    work.mkdir(exist_ok=True)
    sched_file = folder / "scheduler.json"
    env = subprocess_env()
    procs: list[subprocess.Popen] = []
    logs = contextlib.ExitStack()

    def start(args, log_name):
        log = logs.enter_context(open(folder / log_name, "wb"))  # noqa: SIM115 - closed in finally
        p = subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(p)
        return p

    try:
        scheduler = start(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(sched_file),
            ],
            "scheduler.log",
        )
        deadline = time.monotonic() + timeout
        while True:  # the file is written once the scheduler listens; wait until it parses
            try:
                if json.loads(sched_file.read_text()).get("address"):
                    break
            except (OSError, ValueError):
                pass
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"dask scheduler did not start (exit {scheduler.poll()}):\n"
                    f"{_tail(folder / 'scheduler.log')}"
                )
            time.sleep(0.05)
        workers = [
            start(
                [
                    "worker",
                    "--scheduler-file",
                    str(sched_file),
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--local-directory",
                    str(folder / f"scratch{i}"),
                ],
                f"worker{i}.log",
            )
            for i in range(n_workers)
        ]
        cluster = DaskCluster(str(sched_file), scheduler, workers, folder)
        with Client(scheduler_file=str(sched_file), timeout="30s") as client:
            try:
                client.wait_for_workers(n_workers, timeout=timeout)
            except TimeoutError:
                raise RuntimeError(
                    f"{n_workers} dask workers did not register:\n{cluster.log_tail()}"
                ) from None

            def where_pmsim():  # nested, so Dask pickles it by value
                import sys as _sys

                import pmsim as _pmsim
                import pmsim.sweeps.task  # what a task needs: imported once, up front

                return _sys.executable, str(Path(_pmsim.__file__).resolve())

            here = (sys.executable, str(Path(pmsim.__file__).resolve()))
            on_scheduler = client.run_on_scheduler(where_pmsim)
            on_workers = client.run(where_pmsim)
            if len(on_workers) != n_workers:
                raise RuntimeError(
                    f"expected {n_workers} workers, the scheduler knows {sorted(on_workers)}"
                )
            for who, got in [("scheduler", on_scheduler), *on_workers.items()]:
                if tuple(got) != here:
                    raise RuntimeError(
                        f"dask {who} runs {got}, not this test's interpreter and pmsim {here}"
                    )
        yield cluster
    finally:
        _stop(procs[1:])  # the workers first: a worker whose scheduler went away first may hang
        _stop(procs[:1])
        logs.close()
