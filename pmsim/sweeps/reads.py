"""Which costs a design reads on a workload, known before a sweep runs anything.

A run refuses a cost it is given but never reads (``CostTable.check_all_read``: it would
change nothing, so it is almost always a mistake). In an experiment comparing designs, a cost
may matter to one design only (``spinlock_handoff_ns`` to an MCS ``pm_lock``): the experiment is
valid when *some* run reads each cost it sets, and a run that does not read one runs without it
(once, reused across that factor's values). That needs the read set at plan time.

It is found by a probe: the run's own model, built and simulated for :data:`PROBE_NS` with the
refusal turned off, and its cost table's ``read`` set taken. Costs are read when a component is
built (its cost view) or when a code path first runs; on every preset and design a 0.5 ms probe
read exactly what the full run reads (checked when this was written, 4 cores). The sweep checks
the guess afterwards: a run given fewer costs than asked for fails if it read one of them
(:func:`check_unread`), so a wrong guess can never give a silently wrong number.
"""

from __future__ import annotations

from pmsim.costs import cost_params
from pmsim.sweeps.tables import canonical

PROBE_NS = 0.5e6  # simulated time of a probe: long enough for every lazily read cost (see above)


def cost_name(key: str) -> str | None:
    """The cost an experiment key sets (a bare cost name or ``machine.costs.NAME``), else None."""
    from pmsim.workload.spec import WorkloadSpec

    if key in cost_params() and key not in WorkloadSpec.model_fields:
        return key
    if key.startswith("machine.costs.") and key.count(".") == 2:
        return key.rsplit(".", 1)[1]
    return None


def experiment_costs(exp) -> dict[str, tuple[str, object]]:
    """Cost name -> (the key that sets it, its value or values), for every cost ``exp`` sets
    in its overrides, workload_overrides or factors."""
    out: dict[str, tuple[str, object]] = {}
    items = [
        *exp.overrides.items(),
        *(i for o in exp.workload_overrides.values() for i in o.items()),
        *exp.grid.items(),
        *exp.zip.items(),
    ]
    for key, value in items:
        name = cost_name(key)
        if name is not None:
            out.setdefault(name, (key, value))
    return out


class ReadProbe:
    """The costs each design reads, probed once per design and workload shape (the spec
    without its seed and costs: cost values do not change which components exist)."""

    def __init__(self):
        self._cache: dict[str, frozenset[str]] = {}

    def reads(self, design: str, spec) -> frozenset[str]:
        shape = spec.model_dump(mode="json")
        shape.pop("seed", None)
        shape.get("machine", {}).pop("costs", None)
        key = canonical({"design": design, "spec": shape})
        if key not in self._cache:
            self._cache[key] = probe(design, spec)
        return self._cache[key]


def probe(design: str, spec) -> frozenset[str]:
    """The names ``design``'s model reads on ``spec``, from a short run of it (no result)."""
    from pmsim.workload.runner import WorkloadRun

    short = spec.model_copy(update={"duration": min(spec.duration, PROBE_NS), "warmup": 0.0})
    run = WorkloadRun(short, design)
    run.costs.check_all_read = lambda *a: None  # the probe wants the read set, not the refusal
    run.run()
    return frozenset(run.costs.read)


def without_costs(spec, names):
    """``spec`` with the cost overrides ``names`` dropped (their defaults apply again)."""
    costs = {k: v for k, v in spec.machine.costs.items() if k not in names}
    return spec.model_copy(update={"machine": spec.machine.model_copy(update={"costs": costs})})


def check_unread(design: str, read, unread) -> None:
    """After a run given fewer costs than its experiment set: refuse if it read one of them
    (the plan-time probe was wrong, and that run's values were not applied)."""
    wrong = sorted(set(unread) & set(read))
    if wrong:
        raise RuntimeError(
            f"design {design} read cost {wrong[0]!r}, which the plan-time probe found it does not "
            "read, so the experiment's values of it were not applied to this run (a pmsim bug: "
            "lengthen pmsim.sweeps.reads.PROBE_NS)"
        )
