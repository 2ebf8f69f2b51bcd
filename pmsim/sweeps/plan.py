"""Expand an experiment into its runs: every design at every factor point, replicated.

A run's seed derives from the experiment's seed, its factor point and its
replication number, not from its design: every design at one point sees the same
random numbers (common random numbers), so a difference between designs is not
sampling noise. A run's id hashes everything that determines its tables (design,
resolved workload, the digest of pmsim's code), so a resumed sweep reuses exactly the runs whose
inputs and model code did not change. Every run's workload is validated, and checked against its
design, before anything runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pmsim.errors import ConfigError
from pmsim.rng import _name_key
from pmsim.sweeps.reads import ReadProbe, cost_name, experiment_costs, without_costs
from pmsim.sweeps.spec import ExperimentSpec
from pmsim.sweeps.tables import canonical, factor_value
from pmsim.version import code_digest
from pmsim.workload.load import _one_line, read_workload, set_dotted, validate_spec
from pmsim.workload.spec import WorkloadSpec


@dataclass(frozen=True)
class RunPlan:
    """One run of a sweep: what to simulate and the columns that identify it."""

    run_id: str
    design: str
    workload: str
    replication: int
    seed: int
    point: dict  # factor key -> value, in the experiment's factor order
    spec: WorkloadSpec
    # Costs the experiment sets that this design does not read here, dropped from ``spec``
    # (pmsim.sweeps.reads); ``source``: the run whose results this one reuses (the same design
    # and spec at another value of such a cost), None when it runs itself.
    unread: tuple[str, ...] = ()
    source: str | None = None
    costs_checked: bool = False  # the experiment sets costs: the summary says what was read

    @property
    def notes(self) -> dict:
        """Summary columns of an experiment that sets costs: which of them this run does not
        read, and the run whose results these are (itself unless reused)."""
        if not self.costs_checked:
            return {}
        return {"unread_costs": ",".join(self.unread), "result_of": self.source or self.run_id}

    @property
    def ident(self) -> dict:
        """The run's identity columns, as table cells (a mapping factor value as JSON)."""
        return {
            "run_id": self.run_id,
            "design": self.design,
            "workload": self.workload,
            "replication": self.replication,
            "seed": self.seed,
            **{k: factor_value(v) for k, v in self.point.items() if k != "workload"},
        }

    @property
    def cost_estimate(self) -> float:
        """Relative wall time, to start the longest runs first: threads x simulated time."""
        return self.spec.total_threads * self.spec.duration


def points(exp: ExperimentSpec) -> list[dict]:
    """Factor points: the grid's product, crossed with the zip's rows."""
    grid = [dict(zip(exp.grid, values)) for values in itertools.product(*exp.grid.values())]
    zipped = [dict(zip(exp.zip, values)) for values in zip(*exp.zip.values())] or [{}]
    return [{**g, **z} for g in grid for z in zipped]


def count_runs(exp: ExperimentSpec) -> int:
    """How many runs ``exp`` has at most (before ``exclude``), without listing them."""
    grid = math.prod(len(v) for v in exp.grid.values())
    zipped = len(next(iter(exp.zip.values()))) if exp.zip else 1
    return grid * zipped * len(exp.designs) * exp.replications


def derive_seed(experiment_seed: int, point_key: str, replication: int) -> int:
    """A 63-bit seed from the experiment seed, the point and the replication (not the design)."""
    seq = np.random.SeedSequence(experiment_seed, spawn_key=(*_name_key(point_key), replication))
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def plan_runs(exp: ExperimentSpec) -> list[RunPlan]:
    """Every run of ``exp``, validated; a bad point stops with one line naming it.

    Where the experiment sets costs, each design's read set is probed (pmsim.sweeps.reads): a
    cost no run reads is refused; a run that does not read one is planned without it, and
    runs that then coincide (one design at several values of that cost) run once, the others
    reusing its results. Cost factors do not enter the seed, so every value of a cost sees the
    same random numbers, as every design does: a reused run stays paired with the others."""
    from pmsim.designs import get_design

    set_costs = experiment_costs(exp)
    cost_factors = {k for k in exp.factors if cost_name(k) is not None}
    probe = ReadProbe()
    given: set[str] = set()  # costs set in some run's spec
    read: set[str] = set()  # costs some run reads
    planned: set[str] = set()  # run ids so far: a later run with one of them reuses it
    runs = []
    raw_cache: dict[str, dict] = {}
    names: dict[str, str] = {}  # workload name -> the workload value that gave it
    for point in points(exp):
        workload = point.get("workload", exp.workload)
        where = ", ".join(f"{k}={_short(v)}" for k, v in point.items()) or "the base point"
        try:
            raw = _point_workload(exp, point, workload, raw_cache)
        except ConfigError as e:
            raise ConfigError(_one_line(f"experiment {exp.name}, at {where}: {e}")) from None
        name = raw["name"]
        if names.setdefault(name, workload) != workload:
            raise ConfigError(
                _one_line(
                    f"experiment {exp.name}: workloads {names[name]!r} and {workload!r} "
                    f"are both named {name!r} (give one a 'name' key)"
                )
            )
        point_key = canonical(
            {"workload": name, **{k: v for k, v in point.items() if k not in cost_factors}}
        )
        for replication in range(exp.replications):
            seed = derive_seed(exp.seed, point_key, replication)
            try:
                spec = validate_spec({**raw, "seed": seed})
            except ConfigError as e:
                raise ConfigError(_one_line(f"experiment {exp.name}, at {where}: {e}")) from None
            for design in exp.designs:
                if exp.excluded(design, point):
                    continue
                try:
                    for op in sorted(spec.operations()):
                        get_design(design).require(op)
                except ConfigError as e:
                    raise ConfigError(
                        _one_line(
                            f"experiment {exp.name}, at {where}: workload {name} on {e} "
                            f"(drop the design or the workload, or exclude the pair)"
                        )
                    ) from None
                run_spec, unread = spec, ()
                mine = {c for c in set_costs if c in spec.machine.costs}
                if mine:
                    reads = probe.reads(design, spec)
                    given |= mine
                    read |= mine & reads
                    unread = tuple(sorted(mine - reads))
                    run_spec = without_costs(spec, unread) if unread else spec
                run_id = _run_id(design, run_spec)
                source = None
                if unread and run_id in planned:
                    source = run_id
                    run_id = _run_id(design, run_spec, point)
                planned.add(run_id)
                runs.append(
                    RunPlan(
                        run_id,
                        design,
                        name,
                        replication,
                        seed,
                        point,
                        run_spec,
                        unread,
                        source,
                        bool(set_costs),
                    )
                )
    for cost in sorted(given - read):
        key, value = set_costs[cost]
        raise ConfigError(
            _one_line(
                f"experiment {exp.name}: cost {key} does not affect any run: no design of the "
                f"experiment ({', '.join(exp.designs)}) reads it on its workloads, got {value!r}"
            )
        )
    for i, entry in enumerate(exp.exclude):
        if not any(exp.matches(entry, d, p) for d in exp.designs for p in points(exp)):
            raise ConfigError(
                f"experiment {exp.name}: exclude.{i} {entry} matches no run (the zip pairs "
                "those values differently)"
            )
    if not runs:
        raise ConfigError(f"experiment {exp.name}: exclude leaves no run")
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            f"experiment {exp.name}: two runs resolve to the same design, workload and seed"
        )
    return runs


def _run_id(design: str, spec: WorkloadSpec, reuse_at: dict | None = None) -> str:
    """What determines a run's tables (design, resolved workload, pmsim's code), hashed; a run
    that reuses another's results adds its point (its files are its own)."""
    key = {"design": design, "spec": spec.model_dump(mode="json"), "pmsim": code_digest()}
    if reuse_at is not None:
        key["reuses_at"] = reuse_at
    return hashlib.blake2b(canonical(key).encode(), digest_size=8).hexdigest()


def _point_workload(exp: ExperimentSpec, point: dict, workload: str, cache: dict) -> dict:
    """The raw workload of one point: the file, then the overrides (the experiment's, then the
    workload's own), then the factor values."""
    if workload not in cache:
        cache[workload] = read_workload(_locate(workload, exp.base_dir))[0]
    raw = copy.deepcopy(cache[workload])
    for label, items in (
        ("override", exp.overrides.items()),
        (f"workload_overrides.{workload}", exp.workload_overrides.get(workload, {}).items()),
        ("factor", ((k, v) for k, v in point.items() if k != "workload")),
    ):
        for key, value in items:
            set_dotted(raw, key, value, label=label)
    return raw


def _locate(workload: str, base_dir: str) -> str:
    """A relative YAML path is relative to the experiment file's folder; a preset name stays."""
    if workload.endswith((".yaml", ".yml")) and not Path(workload).is_absolute():
        return str(Path(base_dir) / workload)
    return workload


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
