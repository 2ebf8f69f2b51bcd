"""The unit of work a sweep sends to an executor: ``(design, spec) -> tables``.

It is a pure function of its arguments, so any executor (in-process, a process
pool, a Dask worker) gives bit-identical tables. Wall time, host and pid go apart, in
the provenance, which is not part of the results.
"""

from __future__ import annotations

import os

from pmsim.sweeps.reads import check_unread
from pmsim.version import code_digest
from pmsim.workload.runner import WorkloadRun
from pmsim.workload.spec import WorkloadSpec


def run_task(design: str, spec: WorkloadSpec, unread: tuple[str, ...] = ()) -> dict:
    """Simulate one run: its tables, summary and provenance. ``unread``: costs its experiment
    set that the plan found this design does not read (dropped from ``spec``); reading one
    after all fails the run rather than give a number the experiment did not ask for."""
    run = WorkloadRun(spec, design)
    res = run.run()
    check_unread(design, run.costs.read, unread)
    return {
        "tables": res.tables,
        "summary": res.summary,
        "provenance": {**res.provenance, "pid": os.getpid(), "code_digest": code_digest()},
    }
