"""Operations are declared once (pmsim/operations.py): the docs table, the mix schema, the
runner's dispatch and the total throughput all follow the declarations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pmsim.designs import designs
from pmsim.operations import (
    BY_NAME,
    COUNTED_OPERATIONS,
    ENTRY_POINTS,
    MIX_OPERATIONS,
    OPERATIONS,
    markdown_table,
)
from pmsim.workload.load import load_spec
from pmsim.workload.runner import run_workload
from pmsim.workload.spec import MixSpec

DOCS = Path(__file__).resolve().parent.parent / "docs" / "workloads.md"
BEGIN, END = "<!-- operations table: begin -->\n", "\n<!-- operations table: end -->"


def test_docs_table_is_the_declarations():
    text = DOCS.read_text()
    assert BEGIN in text and END in text, "docs/workloads.md lost its operations table markers"
    documented = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert documented == markdown_table(), (
        "docs/workloads.md's operations table differs from pmsim/operations.py: paste "
        "pmsim.operations.markdown_table() between the markers"
    )


def test_mix_schema_has_exactly_the_mix_operations():
    assert tuple(MixSpec.model_fields) == MIX_OPERATIONS


def test_every_entry_point_is_a_kernel_method():
    from pmsim.kernel.system import Kernel

    missing = [e for e in ENTRY_POINTS if not callable(getattr(Kernel, e, None))]
    assert not missing, f"operations whose entry is no Kernel method: {missing}"


def _alone(op: str):
    """A small workload that issues only ``op`` (mapped where a touch needs a mapping)."""
    sets = ["machine.cores=2", "duration=2ms", "warmup=0.5ms", "mix.read=0", f"mix.{op}=1"]
    base = "mmap_churn" if BY_NAME[op].scope == "churn" else "read_hits"
    if BY_NAME[op].scope == "mapping":
        base = "mmap_writeback"
        sets += [f"mix.{o}=0" for o in MIX_OPERATIONS if o != op]
        sets += ["daemons=null", "processes.0.count=1"]
    return load_spec(base, sets)


@pytest.mark.parametrize("op", MIX_OPERATIONS)
def test_each_mix_operation_runs_alone_and_counts_as_declared(op):
    spec = _alone(op)
    design = next(d for d, cls in designs().items() if spec.operations() <= cls.entry_points)
    summary = run_workload(spec, design).summary
    issued = {n: s for n, s in summary["ops"].items() if s["count"]}
    assert issued, f"mix.{op}=1 issued nothing"
    counted = sum(s["throughput_per_s"] for n, s in issued.items() if n in COUNTED_OPERATIONS)
    assert math.isclose(summary["total_ops_per_s"], counted, rel_tol=1e-9)
    if BY_NAME[op].counted:
        assert op in issued and summary["total_ops_per_s"] > 0
    else:
        # a churn operation is reported through its counted parts (mmap, munmap)
        assert op not in summary["ops"]
        assert {"mmap", "munmap"} <= set(issued)


def test_names_are_unique_and_entries_known():
    names = [op.name for op in OPERATIONS]
    assert len(names) == len(set(names))
    assert {op.scope for op in OPERATIONS if op.in_mix} <= {
        "file_pages",
        "file",
        "global",
        "mapping",
        "churn",
    }
