"""The unit of work a sweep sends to an executor: ``(design, spec) -> tables``.

It is a pure function of its arguments, so any executor (in-process, a process
pool, a Dask worker) gives bit-identical tables. Wall time, host and pid go apart, in
the provenance, which is not part of the results.
"""

from __future__ import annotations

import os

from pmsim.version import code_digest
from pmsim.workload.runner import run_workload
from pmsim.workload.spec import WorkloadSpec


def run_task(design: str, spec: WorkloadSpec) -> dict:
    """Simulate one run: its tables, summary and provenance."""
    res = run_workload(spec, design)
    return {
        "tables": res.tables,
        "summary": res.summary,
        "provenance": {**res.provenance, "pid": os.getpid(), "code_digest": code_digest()},
    }
