"""The workload spec: what a run simulates, as validated data (pydantic).

A workload names the machine, the files and their state at the start, the
processes with their threads and mappings, the operation mix, the access
pattern, the loop (closed with think time, or open with arrivals), background
daemons, and the run's duration, warm-up and seed. Sizes are in pages; times
are durations (``400ns``, ``2us``, ``20ms``) or distributions (``exp:2us``).
Every key is checked: unknown keys, wrong types, impossible sizes and mappings
past the end of a file are refused (:func:`pmsim.workload.load.load_spec`
turns the refusal into one line).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    create_model,
    field_validator,
    model_validator,
)

from pmsim.errors import ConfigError
from pmsim.kernel.syscall import FD_MODES
from pmsim.operations import BY_NAME, DAEMONS, MIX_OPERATIONS, in_scope, words
from pmsim.storage import STORE_KINDS
from pmsim.sync.qlock import WAKE_POLICIES
from pmsim.sync.spinlock import SPINLOCK_KINDS
from pmsim.units import Distribution, format_time, parse_dist, parse_time


def _duration(v):
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        raise ValueError(f"a duration needs a unit (e.g. {v}us), got {v!r}")
    try:
        return parse_time(v)
    except ConfigError as e:
        raise ValueError(str(e).split(": ", 1)[-1]) from None


def _distribution(v):
    if isinstance(v, Distribution):
        return v
    try:
        return parse_dist(v)
    except (
        ConfigError
    ) as e:  # keep "distribution 'exp:2': ..." (the value) when the problem is inside it
        raise ValueError(str(e).removeprefix("distribution: ")) from None


# A duration in ns, written and printed with its unit.
Duration = Annotated[
    float, BeforeValidator(_duration), PlainSerializer(format_time, return_type=str)
]
Dist = Annotated[
    Distribution, BeforeValidator(_distribution), PlainSerializer(str, return_type=str)
]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Weight = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
Pages = Annotated[int, Field(gt=0)]


class Strict(BaseModel):
    """Unknown keys and silent type coercions are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool(cls, data):
        # Lax pydantic reads true (and YAML's yes, on) as 1: only a boolean key takes a boolean.
        if isinstance(data, dict):
            for name, v in data.items():
                field = cls.model_fields.get(name)
                if isinstance(v, bool) and field is not None and field.annotation is not bool:
                    raise ValueError(
                        f"{name} ({v!r}): expected a number or a string, not a boolean"
                    )
        return data


class MachineSpec(Strict):
    cores: Annotated[int, Field(gt=0, le=4096)] = 16
    sockets: Annotated[int, Field(gt=0)] = 1
    spinlock: Literal[SPINLOCK_KINDS] = SPINLOCK_KINDS[0]
    qlock_wake: Literal[WAKE_POLICIES] = WAKE_POLICIES[0]
    costs: dict[str, float | str] = {}  # cost-table overrides by name (pmsim costs)

    @model_validator(mode="after")
    def _sockets(self):
        if self.sockets > self.cores:
            raise ValueError(f"sockets ({self.sockets}) exceed cores ({self.cores})")
        return self


class FileSpec(Strict):
    name: str = "data"
    pages: Pages = 4096
    store: Literal[STORE_KINDS] = STORE_KINDS[0]
    resident: Fraction = 1.0  # of the file's pages, in the page cache at the start
    dirty: Fraction = 0.0  # of the file's pages, dirty at the start (a subset of the resident ones)
    weight: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] = 1.0  # share of file operations

    @model_validator(mode="after")
    def _dirty_resident(self):
        if self.dirty > self.resident:
            raise ValueError(
                f"dirty ({self.dirty}) exceeds resident ({self.resident}): only resident pages can be dirty"
            )
        return self


class MappingSpec(Strict):
    file: str | None = None  # default: the first file
    offset: Annotated[int, Field(ge=0)] = 0  # pages into the file
    length: Pages | None = None  # pages; default: to the end of the file
    shared: bool = True
    prot: Literal["r", "rw"] = "rw"


class ProcessSpec(Strict):
    name: str = "app"
    count: Pages = 1
    threads: Pages = 1  # per process
    kind: Literal["mcp", "scp"] = "mcp"  # multicore (PROC_RUNNING_M) or single-core process
    fd: Literal[FD_MODES] = FD_MODES[0]  # how its threads opened the files (kernel/syscall.py)
    mappings: list[MappingSpec] = []

    @model_validator(mode="after")
    def _scp(self):
        if self.kind == "scp" and self.threads != 1:
            raise ValueError(
                f"a single-core process (kind scp) runs one thread, got threads={self.threads}"
            )
        return self


class _Mix(Strict):
    """Relative weights of the operations each thread issues (``pmsim.operations``: one field
    per operation a mix may weight, 0 by default)."""

    @model_validator(mode="after")
    def _some(self):
        if not any(getattr(self, op) > 0 for op in MIX_OPERATIONS):
            raise ValueError("every weight is 0: give at least one operation a positive weight")
        return self

    def weights(self) -> dict[str, float]:
        return {op: getattr(self, op) for op in MIX_OPERATIONS if getattr(self, op) > 0}


MixSpec = create_model(
    "MixSpec",
    __base__=_Mix,
    __doc__=_Mix.__doc__,
    **{op: (Weight, Field(0.0, description=BY_NAME[op].doc)) for op in MIX_OPERATIONS},
)
FILE_PAGE_OPS = in_scope("file_pages")  # read, write, punch_hole: request_pages of a file
MAPPING_OPS = in_scope("mapping")  # touch: a page of a mapping
CHURN_OPS = in_scope("churn")  # mmap_munmap: the churn block


Repeat = Annotated[
    int, Field(ge=1, le=1_000_000)
]  # each page drawn is used this many times in a row


class Uniform(Strict):
    kind: Literal["uniform"]
    repeat: Repeat = 1


class Zipf(Strict):
    kind: Literal["zipf"]
    theta: Annotated[float, Field(ge=0.0, le=10.0)] = 0.99
    repeat: Repeat = 1


class Sequential(Strict):
    kind: Literal["sequential"]


class HotPage(Strict):
    kind: Literal["hot_page"]
    page: Annotated[int, Field(ge=0)] = 0  # the page index (within the file or the mapping)


class Disjoint(Strict):
    kind: Literal["disjoint"]  # each thread stays in its own slice, uniform within it
    repeat: Repeat = 1


def _by_kind(*members) -> dict:
    """kind tag -> member class, for a union told apart by its ``kind`` key."""
    return {get_args(m.model_fields["kind"].annotation)[0]: m for m in members}


PATTERN_KINDS = _by_kind(Uniform, Zipf, Sequential, HotPage, Disjoint)
Pattern = Annotated[Union[tuple(PATTERN_KINDS.values())], Field(discriminator="kind")]  # noqa: UP007 (a tuple of members, not X | Y)


class Closed(Strict):
    kind: Literal["closed"]
    think: Dist = parse_dist("const:0ns")  # user-space work between operations (holds the core)


class Open(Strict):
    kind: Literal["open"]
    arrivals: Dist  # per-thread interarrival times; the thread serves its requests in order

    @field_validator("arrivals")
    @classmethod
    def _positive_mean(cls, v):
        if v.mean <= 0:  # endless requests in no time: an infinite offered load
            raise ValueError(f"the mean interarrival must be > 0, got {v}")
        return v


LOOP_KINDS = _by_kind(Closed, Open)
Loop = Annotated[Union[tuple(LOOP_KINDS.values())], Field(discriminator="kind")]  # noqa: UP007


class Churn(Strict):
    """One ``mmap_munmap`` operation: map ``pages`` pages, touch ``touches`` of them, unmap."""

    file: str | None = None
    pages: Pages = 16
    touches: Annotated[int, Field(ge=0)] = 4
    shared: bool = True
    prot: Literal["r", "rw"] = "rw"


class Daemon(Strict):
    period: Duration
    core: Annotated[int, Field(ge=0)] | None = None  # default: the last core


Daemons = create_model(
    "Daemons",
    __base__=Strict,
    __doc__="Kernel daemons (``pmsim.operations.DAEMONS``): each runs its operation every period.",
    **{
        name: (Daemon | None, Field(None, description=f"runs {op} each period"))
        for name, op in DAEMONS.items()
    },
)


class WorkloadSpec(Strict):
    """One workload: see docs/workloads.md for every key."""

    name: str = "workload"
    machine: MachineSpec = MachineSpec()
    files: Annotated[list[FileSpec], Field(min_length=1)] = [FileSpec()]
    processes: Annotated[list[ProcessSpec], Field(min_length=1)] = [ProcessSpec()]
    mix: MixSpec = MixSpec(read=1.0)
    pattern: Pattern = Uniform(kind="uniform")
    request_pages: Pages = 1  # pages per read, write or hole punch
    touch_stores: Fraction = 0.0  # of touches, the fraction that are stores
    churn: Churn = Churn()
    loop: Loop = Closed(kind="closed")
    daemons: Daemons = Daemons()
    duration: Duration = 20e6
    warmup: Duration = 2e6
    seed: Annotated[int, Field(ge=0)] = 1

    @model_validator(mode="after")
    def _consistent(self):
        self._nothing_ignored()
        if self.duration <= 0:
            raise ValueError(f"duration must be > 0, got {format_time(self.duration)}")
        if self.warmup >= self.duration:
            raise ValueError(
                f"warmup ({format_time(self.warmup)}) must be shorter than duration "
                f"({format_time(self.duration)})"
            )
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"files: two files share a name ({names})")
        by_name = {f.name: f for f in self.files}
        for i, p in enumerate(self.processes):
            for j, m in enumerate(p.mappings):
                where = f"processes[{i}].mappings[{j}]"
                f = _file(by_name, m.file, names, where)
                if m.offset >= f.pages:
                    raise ValueError(
                        f"{where}.offset ({m.offset}) is past the end of file {f.name!r} "
                        f"({f.pages} pages, 0..{f.pages - 1})"
                    )
                if m.length is not None and m.offset + m.length > f.pages:
                    raise ValueError(
                        f"{where}.length ({m.length}) from offset {m.offset} runs past the end of "
                        f"file {f.name!r}: pages {m.offset}..{m.offset + m.length - 1} of {f.pages}"
                    )
        mix = self.mix.weights()
        threads = self.total_threads
        touches = [op for op in MAPPING_OPS if op in mix]
        if touches:
            for i, p in enumerate(self.processes):
                if not p.mappings:
                    raise ValueError(
                        f"processes[{i}] ({p.name}): mix.{touches[0]} needs a mapping to touch; "
                        "it has none"
                    )
                for j, m in enumerate(p.mappings):
                    if self.touch_stores > 0 and m.prot != "rw":
                        raise ValueError(
                            f"processes[{i}].mappings[{j}].prot is {m.prot!r}, but touch_stores "
                            f"({self.touch_stores}) would store to it (a segfault)"
                        )
        f = _file(by_name, self.churn.file, names, "churn")  # resolved even when unused
        if any(op in mix for op in CHURN_OPS):
            if self.churn.pages > f.pages:
                raise ValueError(
                    f"churn.pages ({self.churn.pages}) exceeds file {f.name!r} ({f.pages} pages)"
                )
            if self.churn.touches > self.churn.pages:
                raise ValueError(
                    f"churn.touches ({self.churn.touches}) exceeds churn.pages ({self.churn.pages})"
                )
        file_ops = any(op in mix for op in FILE_PAGE_OPS)
        for f in self.files:
            if file_ops and self.request_pages > f.pages:
                raise ValueError(
                    f"request_pages ({self.request_pages}) exceeds file {f.name!r} ({f.pages} pages)"
                )
        pat = self.pattern
        for extent, what in self._ranges():
            if isinstance(pat, HotPage) and pat.page >= extent:
                raise ValueError(
                    f"pattern.page ({pat.page}) is past the end of {what} ({extent} pages)"
                )
            if isinstance(pat, Disjoint) and extent < threads:
                raise ValueError(
                    f"pattern disjoint: {what} has {extent} pages, fewer than the {threads} threads"
                )
        for name in DAEMONS:
            d = getattr(self.daemons, name)
            if d is not None:
                if d.period <= 0:
                    raise ValueError(
                        f"daemons.{name}.period must be > 0, got {format_time(d.period)}"
                    )
                if d.core is not None and d.core >= self.machine.cores:
                    raise ValueError(
                        f"daemons.{name}.core ({d.core}) is not a core (0..{self.machine.cores - 1})"
                    )
        return self

    def _nothing_ignored(self) -> None:
        """A setting given a value other than its default that nothing in this workload uses is
        refused, not ignored (a resolved spec, which spells out every default, stays valid)."""
        mix, given = self.mix.weights(), self.model_fields_set
        churn = any(op in mix for op in CHURN_OPS)
        stores_used = any(op in mix for op in MAPPING_OPS) or (
            churn and self.churn.touches and self.churn.prot == "rw"
        )
        unused = [
            (
                "churn",
                self.churn.model_dump(mode="json"),
                "churn" in given and self.churn != Churn() and not churn,
                f"mix.{words(CHURN_OPS)} is 0",
            ),
            (
                "touch_stores",
                self.touch_stores,
                "touch_stores" in given and self.touch_stores > 0 and not stores_used,
                f"nothing touches a writable mapping (mix.{words(MAPPING_OPS)} is 0, and no "
                "read-write churn touches)",
            ),
            (
                "request_pages",
                self.request_pages,
                "request_pages" in given
                and self.request_pages != 1
                and not any(op in mix for op in FILE_PAGE_OPS),
                f"mix has no {words(FILE_PAGE_OPS)}",
            ),
            (
                "files[0].weight",
                self.files[0].weight,
                len(self.files) == 1
                and "weight" in self.files[0].model_fields_set
                and self.files[0].weight != 1.0,
                "there is only one file",
            ),
        ]
        for key, value, ignored, why in unused:
            if ignored:
                raise ValueError(
                    f"{key} is set ({value!r}) but nothing uses it: {why} "
                    f"(drop it, or --set {key.replace('[0]', '.0')}=null)"
                )

    def _ranges(self):
        """The page ranges the access pattern is applied to: files for file ops, mappings for touches."""
        mix = self.mix.weights()
        if any(op in mix for op in FILE_PAGE_OPS):
            for f in self.files:
                yield f.pages - self.request_pages + 1, f"file {f.name!r} (as request starts)"
        if any(op in mix for op in MAPPING_OPS):
            for p in self.processes:
                for m in p.mappings:
                    yield self.mapping_length(m), f"a mapping of process {p.name!r}"
        if any(op in mix for op in CHURN_OPS):
            f = self.file_spec(self.churn.file)
            yield f.pages - self.churn.pages + 1, f"file {f.name!r} (as churn blocks start)"

    @property
    def total_threads(self) -> int:
        return sum(p.count * p.threads for p in self.processes)

    def file_spec(self, name: str | None) -> FileSpec:
        return self.files[0] if name is None else next(f for f in self.files if f.name == name)

    def mapping_length(self, m: MappingSpec) -> int:
        return m.length if m.length is not None else self.file_spec(m.file).pages - m.offset

    def operations(self) -> set[str]:
        """The kernel entry points this workload uses (a design must offer them all)."""
        ops = set()
        for op in self.mix.weights():
            ops.update(BY_NAME[op].needs)
        for name, op in DAEMONS.items():
            if getattr(self.daemons, name) is not None:
                ops.update(BY_NAME[op].needs)
        return ops


def _file(by_name: dict, name: str | None, names: list[str], where: str):
    from pmsim.costs import did_you_mean

    if name is None:
        return next(iter(by_name.values()))
    if name not in by_name:
        raise ValueError(
            f"{where}.file: no file named {name!r}{did_you_mean(name, names)} (files: {', '.join(names)})"
        )
    return by_name[name]
