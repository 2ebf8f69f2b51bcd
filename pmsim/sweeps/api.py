"""``pmsim.sweep``: run an experiment's runs on an executor, writing each as it finishes."""

from __future__ import annotations

import json
import sys
from concurrent.futures import FIRST_COMPLETED, BrokenExecutor, Executor, wait
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pmsim import limits
from pmsim.errors import ConfigError
from pmsim.sweeps.executors import check_executor_args, default_workers, open_executor
from pmsim.sweeps.plan import count_runs, plan_runs, points
from pmsim.sweeps.schedule import LongestFirst
from pmsim.sweeps.spec import ExperimentSpec, load_experiment
from pmsim.sweeps.store import SWEEP_TABLES, SweepStore, tables_digest
from pmsim.sweeps.task import run_task
from pmsim.version import code_digest


@dataclass
class SweepResult:
    """A sweep's tables (see :mod:`pmsim.sweeps.store` for the folder they are read from)."""

    out: Path
    experiment: ExperimentSpec
    summary: pd.DataFrame  # one row per run
    aggregate: pd.DataFrame  # mean and 95% CI per design, factor point and metric
    differences: pd.DataFrame  # each design minus the first, paired by seed: mean and 95% CI
    provenance: pd.DataFrame  # wall time and host per run

    @classmethod
    def load(cls, out) -> SweepResult:
        """The tables of a sweep folder written earlier (by ``pmsim sweep`` or ``pmsim.sweep``)."""
        out = Path(out)
        manifest = out / "manifest.json"
        if not manifest.is_file():
            raise ConfigError(f"results: {str(out)!r} holds no finished sweep (no manifest.json)")
        info = json.loads(manifest.read_text())
        if info.get("tables_digest") is None or info["tables_digest"] != tables_digest(out):
            raise ConfigError(
                f"results: {str(out)!r}: the sweep did not finish (killed, or still running); "
                "run it again to complete its tables"
            )
        exp = ExperimentSpec.model_validate(info["experiment"])
        tables = {name: pd.read_parquet(out / f"{name}.parquet") for name in SWEEP_TABLES}
        return cls(out, exp, **tables)

    @property
    def failures(self) -> pd.DataFrame:
        """Runs that raised, and runs without a result (their files went while it ran)."""
        return self.summary[self.summary["status"] != "ok"]

    def require_ok(self, what: str) -> None:
        """Refuse, in one line, to make ``what`` of a sweep none of whose runs finished ok."""
        s = self.summary
        ok = int((s["status"] == "ok").sum()) if "status" in s and len(s) else len(s)
        if not ok:
            raise ConfigError(
                f"{what}: no run of {self.experiment.name!r} in {self.out} finished ok "
                f"({len(s)} failed; their errors are in {self.out}/runs/failed/): nothing to show"
            )

    @property
    def usl(self) -> pd.DataFrame:
        """Universal Scalability Law fits of every throughput-vs-cores curve (pmsim.sweeps.usl):
        sigma, kappa with 95% intervals, Amdahl's kappa = 0 fit beside, the fitted peak and
        the cores where efficiency falls below 50%. Empty when the cores are not a factor."""
        from pmsim.sweeps.usl import fit_table

        if "_usl" not in self.__dict__:
            self.__dict__["_usl"] = fit_table(self.summary, self.experiment.factors)
        return self.__dict__["_usl"]

    def table(self, name: str) -> pd.DataFrame:
        """A per-run table (one of :data:`~pmsim.sweeps.store.RUN_TABLES`: ``ops``, ``latency``, ...)
        of every finished run, with the runs' identity and factor columns."""
        ok = self.summary.loc[self.summary["status"] == "ok", "run_id"]
        return SweepStore(self.out).table(name, ok)


def default_out(exp: ExperimentSpec) -> Path:
    return Path(exp.out) if exp.out else Path("sweeps") / exp.name


def sweep(
    experiment,
    out=None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    executor: Executor | None = None,
    resume: bool = True,
    progress: bool = True,
    allow_large: bool = False,
) -> SweepResult:
    """Run ``experiment`` (a name from ``experiments/``, a YAML path, a mapping or an
    :class:`ExperimentSpec`) and return its tables.

    Runs go to a local process pool (``workers``, default the CPU count; 1 runs them in
    this process), to a Dask cluster (``scheduler`` address or ``scheduler_file``), or to
    any ``concurrent.futures`` ``executor``. Each finished run is written into ``out``
    (default: the experiment's ``out``, else ``sweeps/NAME``) at once; with ``resume`` a
    rerun runs only what is missing. A run that raises is recorded and the others go on.
    A sweep estimated too large (:mod:`pmsim.limits`) stops first unless ``allow_large``.
    """
    check_executor_args(workers, scheduler, scheduler_file, executor)
    exp = load_experiment(experiment)
    limits.check_sweep_size(exp.name, count_runs(exp), allow_large)
    plans = plan_runs(exp)
    store = SweepStore(out if out is not None else default_out(exp))
    store.check(exp, resume)
    local = executor is None and not (scheduler or scheduler_file)
    if local:
        workers = _workers(workers, len(plans))
    limits.check_sweep(exp.name, plans, workers if local else None, allow_large, local)
    with open_executor(workers, scheduler, scheduler_file, executor) as (ex, where, window):
        finished = store.open(exp, plans, resume)  # after the pool forks: workers lack the lock
        try:
            todo, reusers = _to_execute(plans, finished)
            if todo:
                _run_all(
                    ex,
                    where,
                    window,
                    exp,
                    todo,
                    store,
                    len(finished),
                    len(plans),
                    progress,
                    reusers,
                    finished,
                )
            tables = store.finalize(exp, plans)
        finally:
            store.unlock()
    return SweepResult(store.dir, exp, **tables)


def _to_execute(plans, finished) -> tuple[list, dict]:
    """The runs to execute, longest predicted first, and per executed run the unfinished runs
    that reuse its results (pmsim.sweeps.reads): a finished run executes again when a run
    reusing it is not finished (it was killed between the two writes)."""
    reusers: dict[str, list] = {}
    for p in plans:
        if p.source is not None and p.run_id not in finished:
            reusers.setdefault(p.source, []).append(p)
    todo = [
        p for p in plans if p.source is None and (p.run_id not in finished or p.run_id in reusers)
    ]
    return sorted(todo, key=lambda p: -p.cost_estimate), reusers


def _workers(workers: int | None, runs: int) -> int:
    """Local workers: no more than the usable CPUs (more only slow each other down) nor runs."""
    usable = default_workers()
    if workers is not None and workers > usable:
        print(
            f"pmsim sweep: --workers {workers}: this machine lets pmsim use {usable} CPU"
            f"{'s' if usable != 1 else ''}, so {usable} worker{'s' if usable != 1 else ''}",
            file=sys.stderr,
        )
    return max(1, min(usable if workers is None else workers, usable, runs))


def bar_wanted(stream=None) -> bool:
    """A progress bar redraws itself with carriage returns: on a terminal, or as a notebook
    widget (tqdm.auto picks it in Jupyter); in a log file or a pipe it is noise."""
    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return True
    shell = sys.modules.get("IPython")
    ip = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return type(ip).__name__ == "ZMQInteractiveShell"


def _run_all(
    ex, where, window, exp, todo, store, done, total, progress, reusers=None, finished=()
) -> None:
    failed, reusers = 0, reusers or {}
    if progress:
        shape = f"{len(exp.designs)} designs x {len(points(exp))} points x {exp.replications} replications"
        if exp.exclude:
            shape += ", some excluded"
        reused = sum(len(v) for v in reusers.values())
        if reused:
            shape += (
                f"; {reused} reuse another run's results (a design that does not read a cost the "
                "experiment sets runs once across its values)"
            )
        guess = ""
        if ex is None or window is not None:  # here or on a local pool of `window` workers
            wall = sum(limits.estimate(p.spec).wall_s for p in todo) / (window or 1)
            guess = f" (estimated at most {limits.duration(wall)})"
        print(
            f"{exp.name}: {total} runs ({shape}), {done} already written, {len(todo)} to run on "
            f"{where}{guess}; into {store.dir}",
            file=sys.stderr,
        )
    from tqdm.auto import tqdm

    with tqdm(
        total=total,
        initial=done,
        desc=exp.name,
        unit="run",
        disable=not (progress and bar_wanted()),
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        bar.set_postfix_str(f"failed 0, on {where}")
        for plan, result, error in _outcomes(ex, todo, window):
            for each in [plan, *reusers.get(plan.run_id, [])]:
                if error is None:
                    store.write_run(each, result)
                else:
                    line = store.write_failure(each, error)
                    failed += 1
                    bar.set_postfix_str(f"failed {failed}, on {where}")
                    if progress:
                        bar.write(
                            f"run {each.run_id} ({each.design}, {each.workload}, replication "
                            f"{each.replication}) failed: {line[:200]}",
                            file=sys.stderr,
                        )
            bar.update(len(reusers.get(plan.run_id, [])) + (plan.run_id not in finished))


def _task_args(plan) -> tuple:
    """``run_task``'s arguments: the unread costs only when there are some (the two-argument
    call is the task's long-standing contract)."""
    return (plan.design, plan.spec, plan.unread) if plan.unread else (plan.design, plan.spec)


def _outcomes(ex, todo, window):
    """``(plan, result, error)`` of each run as it finishes. ``ex`` None runs them here, in
    order. With a ``window`` (a local pool's worker count) that many runs are in flight and
    the next is the longest predicted; without, all are submitted at once (Dask schedules)."""
    if ex is None:
        for plan in todo:
            try:
                yield plan, run_task(*_task_args(plan)), None
            except Exception as e:  # noqa: BLE001 - recorded as the run's error
                yield plan, None, e
        return
    pending, lengths, running = list(todo), LongestFirst(), {}

    def start(plan):
        running[ex.submit(run_task, *_task_args(plan))] = plan

    for _ in range(len(pending) if window is None else min(window, len(pending))):
        start(pending.pop(0))
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in done:
            plan = running.pop(f)
            error = f.exception()
            result = f.result() if error is None else None
            if result is not None:
                lengths.learn(plan, result["provenance"]["wall_s"])
            if pending:  # before writing this one: the worker should not wait for the driver
                nxt = lengths.pop_longest(pending)
                try:
                    start(nxt)
                except (
                    BrokenExecutor
                ) as e:  # a worker died (killed, out of memory): the pool is gone
                    yield from ((p, None, e) for p in [nxt, *pending])
                    pending.clear()
            if result is not None and result["provenance"]["code_digest"] != code_digest():
                error, result = (
                    RuntimeError(
                        f"the worker on {result['provenance']['host']} runs other pmsim code (digest "
                        f"{result['provenance']['code_digest']}, here {code_digest()}): install this version there"
                    ),
                    None,
                )
            yield plan, result, error
