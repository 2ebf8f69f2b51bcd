"""The operations a workload issues and the simulator reports, declared once.

Everything that lists operations derives from :data:`OPERATIONS`: a workload's ``mix`` keys,
the runner's dispatch, the kernel entry points a workload needs of a design, which operations
count in the total throughput, the names in the tables and the summary, and the table in
docs/workloads.md (a test checks it is :func:`markdown_table`'s). Adding an operation is one
declaration here plus its kernel path (a :class:`~pmsim.kernel.system.Kernel` method named by
``entry``), provided its scope is one the runner knows.

Scopes, which say what an operation acts on and so how the runner issues it:

- ``file_pages``: ``request_pages`` pages of a file chosen by weight, from a page the access
  pattern picks (``entry(thread, file, index, npages)``);
- ``file``: a whole file chosen by weight (``entry(thread, file)``);
- ``global``: every file at once (``entry(thread)``);
- ``mapping``: one page of one of the process's mappings (a touch);
- ``churn``: ``mmap``, touches and ``munmap`` of a fresh mapping (the ``churn`` block);
- ``part``: issued only as a step of another operation, reported on its own (mmap, munmap);
- ``nested``: runs inside another operation and is reported, but not counted again.
"""

from __future__ import annotations

from dataclasses import dataclass

SCOPES = ("file_pages", "file", "global", "mapping", "churn", "part", "nested")


@dataclass(frozen=True)
class Operation:
    """One operation: what it acts on, the kernel entry point that runs it, whether a workload's
    mix may weight it and whether it counts in the total, and what it needs of a design."""

    name: str
    scope: str
    entry: str | None  # the Kernel method that runs it (a design must offer it); None: no entry
    in_mix: bool  # a workload may give it a weight (``mix.<name>``)
    counted: bool  # counts in total_ops_per_s and the time series (nested ones do not count again)
    needs: tuple[str, ...]  # the kernel entry points a workload using it needs of a design
    doc: str

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(f"operation {self.name}: unknown scope {self.scope!r}")


def _op(name, scope, doc, *, entry=True, mix=True, counted=True, needs=None) -> Operation:
    entry = name if entry is True else entry
    return Operation(name, scope, entry, mix, counted, needs or ((entry,) if entry else ()), doc)


# In this order everywhere: the mix keys, the tables' operations, the design entry points.
OPERATIONS: tuple[Operation, ...] = (
    _op(
        "read",
        "file_pages",
        "`read()`: `fs_file_read` (per page `pm_load_page`, copy, `pm_put_page`)",
    ),
    _op(
        "write",
        "file_pages",
        "`write()`: `fs_file_write` (per page `pm_load_page`, copy, PG_DIRTY, `pm_put_page`; then "
        "`write_metadata` under `f->qlock`)",
    ),
    _op(
        "touch",
        "mapping",
        "a user load or store of a mapped page: no kernel entry if its PTE allows it, else page "
        "faults (`__hpf`) until it does",
        needs=("touch", "fault"),
    ),
    _op(
        "fault",
        "nested",
        "a page fault inside a touch (`__hpf`; for a multicore process, then `SYS_populate_va`)",
        mix=False,
        counted=False,
    ),
    _op(
        "miss",
        "nested",
        "`pm_load_page` after its lookup failed or found a page not yet up to date, until the "
        "page is up to date (inside a read, write or fault)",
        entry=None,
        mix=False,
        counted=False,
    ),
    _op("fsync", "file", "gtfs `writeback_file` (`pm_writeback_pages`); tmpfs: only the syscall"),
    _op("punch_hole", "file_pages", "`fs_file_punch_hole` (the page map's removal of the range)"),
    _op(
        "mmap_munmap",
        "churn",
        "`do_mmap` of `churn.pages` pages, `churn.touches` touches, `do_munmap`",
        entry=None,
        counted=False,
        needs=("mmap", "munmap", "touch", "fault"),
    ),
    _op("reclaim", "global", "memory pressure: `pm_free_unused_pages` on every file"),
    _op("mmap", "part", "`do_mmap` of a file range (a step of `mmap_munmap`)", mix=False),
    _op("munmap", "part", "`do_munmap` of a whole mapping (a step of `mmap_munmap`)", mix=False),
)

# Kernel daemons a workload may run (``daemons.<name>``), and the operation each runs every
# period: on every file for a file-scoped operation, once for a global one.
DAEMONS = {"writeback": "fsync", "reclaim": "reclaim"}

BY_NAME = {op.name: op for op in OPERATIONS}
MIX_OPERATIONS = tuple(op.name for op in OPERATIONS if op.in_mix)
COUNTED_OPERATIONS = tuple(op.name for op in OPERATIONS if op.counted)
REPORTED_OPERATIONS = tuple(op.name for op in OPERATIONS if op.scope != "churn")
ENTRY_POINTS = tuple(op.entry for op in OPERATIONS if op.entry is not None)


def in_scope(*scopes: str) -> tuple[str, ...]:
    """The names of the mix operations with one of ``scopes``, in declaration order."""
    return tuple(op.name for op in OPERATIONS if op.in_mix and op.scope in scopes)


def words(names) -> str:
    """``a, b or c``: names for a message."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def markdown_table() -> str:
    """The operations as the Markdown table of docs/workloads.md."""
    rows = [
        "| operation | in `mix` | counts in the total | acts on | runs |",
        "|---|---|---|---|---|",
    ]
    for op in OPERATIONS:
        rows.append(
            f"| `{op.name}` | {'yes' if op.in_mix else 'no'} | {'yes' if op.counted else 'no'} "
            f"| {op.scope.replace('_', ' ')} | {op.doc} |"
        )
    return "\n".join(rows)
