"""An experiment as data: a base workload, the designs to compare, factors, replications.

::

    # What does NEW buy over OLD as cores grow?
    workload: read_hits              # preset name or YAML path (relative to this file)
    designs: [old, new]
    grid:                            # crossed: every combination
      workload: [read_hits, punch_hole]
    zip:                             # advanced together, crossed with the grid
      machine.cores: [1, 4, 16]
      processes.0.threads: [1, 4, 16]
    overrides: {duration: 5ms}       # applied to every run, before the factors
    workload_overrides:              # applied to one workload's runs, after the overrides
      punch_hole: {request_pages: 8}
    exclude:                         # runs left out: those matching every key of an entry
      - {design: old, workload: punch_hole}   # a list of values means any of them
    replications: 3
    seed: 1
    practical_difference: 0.02       # smaller differences are reported as negligible
    out: results/quick               # relative to the working folder; --out overrides

A factor or override key is any dotted workload key (as ``pmsim run --set``) or a bare
cost name; the factor ``workload`` picks the workload itself. Every refusal is one
line naming the key and the value.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pmsim.costs import did_you_mean
from pmsim.errors import ConfigError
from pmsim.workload.load import _Loader, _one_line, preset_question, presets, yaml_problem

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"

# Keys a factor may not vary: the seed is derived per run, the name identifies the workload.
_RESERVED = {
    "seed": "seeds are derived from the experiment's seed, the factor point and the replication",
    "name": "a run's workload name comes from its workload",
}


class ExperimentSpec(BaseModel):
    """A validated experiment. ``grid`` and ``zip`` map a key to the list of its values."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str
    question: str = ""
    workload: str | None = None
    designs: Annotated[list[str], Field(min_length=1)]
    grid: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    zip: dict[str, Annotated[list[Any], Field(min_length=1)]] = {}
    overrides: dict[str, Any] = {}
    # per workload (as named in the experiment): overrides for its runs only, after ``overrides``
    workload_overrides: dict[str, dict[str, Any]] = {}
    exclude: list[dict[str, Any]] = []
    replications: Annotated[int, Field(ge=1, le=10_000)] = 1
    seed: Annotated[int, Field(ge=0)] = 1
    # the smallest difference that matters, as a fraction of the baseline (pmsim.sweeps.verdicts)
    practical_difference: Annotated[float, Field(ge=0, lt=1)] = 0.02
    out: str | None = None
    base_dir: str = "."  # where relative workload paths are found: the experiment file's folder

    @field_validator("designs")
    @classmethod
    def _designs(cls, v):
        from pmsim.designs import designs

        known = designs()
        for d in v:
            if d not in known:
                raise ValueError(
                    f"unknown design {d!r}{did_you_mean(d, known)} (pmsim designs lists them)"
                )
        if len(set(v)) != len(v):
            raise ValueError(f"a design is listed twice: {v}")
        return v

    @model_validator(mode="after")
    def _factors(self):
        both = set(self.grid) & set(self.zip)
        if both:
            raise ValueError(f"factor {sorted(both)[0]!r} is in both grid and zip")
        for key, value in [*self.grid.items(), *self.zip.items(), *self.overrides.items()]:
            if key in _RESERVED:
                raise ValueError(f"{key!r} cannot be set here (got {value!r}): {_RESERVED[key]}")
        workloads = self.grid.get("workload", []) + self.zip.get("workload", [])
        for w in workloads:
            if not isinstance(w, str):
                raise ValueError(f"'workload': {w!r} is not a workload name or path")
        named = set(workloads)
        named |= {self.workload} if self.workload else set()
        for w, items in self.workload_overrides.items():
            # one the experiment does not run is ignored (a cut-down copy of it still loads),
            # a name that is no workload at all is a typo
            if w not in named and w not in presets():
                raise ValueError(
                    f"workload_overrides.{w}: no such workload (this experiment runs "
                    f"{', '.join(sorted(named))}; pmsim workloads lists the presets)"
                )
            for key, value in items.items():
                if key in _RESERVED or key == "workload":
                    raise ValueError(f"workload_overrides.{w}.{key} cannot be set (got {value!r})")
        if "workload" in self.overrides:
            raise ValueError(
                f"'workload' is not an override (got {self.overrides['workload']!r}): give it as "
                "the experiment's workload or as a factor"
            )
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(
                "zip lists must have the same length, got "
                + ", ".join(f"{k}: {n}" for k, n in lengths.items())
            )
        for key, values in [*self.grid.items(), *self.zip.items()]:
            if key == "workload" and not all(isinstance(v, str) for v in values):
                raise ValueError(
                    f"factor 'workload' takes preset names or YAML paths, got {values}"
                )
            seen = []
            for v in values:
                if v in seen and key in self.grid:
                    raise ValueError(f"factor {key!r} lists the value {v!r} twice")
                seen.append(v)
        # A zip's rows advance together: a value may recur in one key (a sampled design of a
        # cost space, pmsim sensitivity), a whole row may not.
        rows = []
        for row in (dict(zip(self.zip, r)) for r in zip(*self.zip.values())):
            if row in rows:
                raise ValueError(f"zip lists the row {row!r} twice")
            rows.append(row)
        if self.workload is None and "workload" not in self.factors:
            raise ValueError(
                "no workload: give 'workload' (a preset name or YAML path) or a 'workload' factor"
            )
        self._check_exclude()
        return self

    @property
    def choices(self) -> dict[str, list]:
        """Every value each key of an ``exclude`` entry can take: the designs, the factors'."""
        return {"design": self.designs, **self.grid, **self.zip}

    def _check_exclude(self) -> None:
        values = self.choices
        for i, entry in enumerate(self.exclude):
            if not entry:
                raise ValueError(f"exclude.{i}: an empty entry would leave out every run")
            for key, given in entry.items():
                if key not in values:
                    raise ValueError(
                        f"exclude.{i}: key {key!r} is not 'design' or a factor "
                        f"({', '.join(values)}), got {given!r}"
                    )
                for v in _any_of(given, values[key]):
                    if v not in values[key]:
                        raise ValueError(
                            f"exclude.{i}.{key}: {v!r} is not one of its values {values[key]}"
                        )

    def excluded(self, design: str, point: dict) -> bool:
        """Whether the run of ``design`` at ``point`` is left out (matches an ``exclude`` entry)."""
        return any(self.matches(entry, design, point) for entry in self.exclude)

    def matches(self, entry: dict, design: str, point: dict) -> bool:
        """Whether one ``exclude`` entry matches the run of ``design`` at ``point``."""
        at, values = {"design": design, **point}, self.choices
        return all(at[k] in _any_of(v, values[k]) for k, v in entry.items())

    @property
    def factors(self) -> list[str]:
        """The factor keys: the grid's, then the zip's."""
        return [*self.grid, *self.zip]


def _any_of(given, values: list) -> list:
    """An exclude value: one of the factor's values, or a list of them."""
    return list(given) if isinstance(given, list) and given not in values else [given]


_STUDIES = re.compile(r"^kind:\s*sensitivity\b", re.M)


def _is_studies(path: Path) -> bool:
    """A set of sensitivity studies (``kind: sensitivity``, experiments/robustness.yaml)."""
    try:
        return bool(_STUDIES.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return False


def experiments() -> dict[str, Path]:
    """Experiment name -> YAML file, from the repository's ``experiments/`` folder (the sweeps;
    sets of sensitivity studies are :func:`studies`)."""
    return {p.stem: p for p in sorted(EXPERIMENTS_DIR.glob("*.yaml")) if not _is_studies(p)}


def studies() -> dict[str, Path]:
    """Name -> YAML file of the sets of sensitivity studies in ``experiments/`` (pmsim
    sensitivity NAME runs one)."""
    return {p.stem: p for p in sorted(EXPERIMENTS_DIR.glob("*.yaml")) if _is_studies(p)}


def read_experiment(experiment: str) -> tuple[dict, Path | None]:
    """The raw mapping of an experiment name or YAML path, and its file."""
    path = Path(experiment)
    if path.is_dir() and experiment not in experiments():
        raise ConfigError(
            f"experiment: {experiment!r} is a folder, not an experiment file (a sweep's folder "
            "goes to --out)"
        )
    if not (experiment.endswith((".yaml", ".yml")) or path.is_file()):
        table = experiments()
        if experiment in studies():
            raise ConfigError(
                f"experiment {experiment!r} is a set of sensitivity studies: run it with "
                f"pmsim sensitivity {experiment}"
            )
        if experiment not in table:
            known = (
                f"experiments: {', '.join(table)}; or"
                if table
                else "no experiments in experiments/;"
            )
            raise ConfigError(
                f"experiment: unknown name {experiment!r}{did_you_mean(experiment, table)} "
                f"({known} give a .yaml path)"
            )
        path = table[experiment]
    if not path.is_file():
        raise ConfigError(f"experiment: no such file {experiment!r}")
    import yaml

    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(_one_line(f"experiment {path}: cannot be read ({e})")) from None
    except yaml.YAMLError as e:
        raise ConfigError(yaml_problem(e, f"experiment {path}")) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"experiment {path}: expected a mapping of keys, got "
            f"{'an empty file' if raw is None else type(raw).__name__}"
        )
    return raw, path


def load_experiment(experiment) -> ExperimentSpec:
    """An :class:`ExperimentSpec` from a name, a YAML path, a mapping or a spec."""
    if isinstance(experiment, ExperimentSpec):
        return experiment
    if isinstance(experiment, dict):
        raw, path = dict(experiment), None
    else:
        raw, path = read_experiment(str(experiment))
    if raw.get("kind") == "sensitivity":  # experiments/robustness.yaml: studies, not a sweep
        raise ConfigError(
            f"experiment {raw.get('name') or (path.stem if path else experiment)!r} is a set of "
            f"sensitivity studies: run it with pmsim sensitivity "
            f"{path.stem if path else 'FILE'}"
        )
    if path is not None:
        if "base_dir" in raw:  # set from the file's location, not by the file
            raise ConfigError(f"experiment key base_dir: unknown key, got {raw['base_dir']!r}")
        raw.setdefault("name", path.stem)
        raw.setdefault("question", preset_question(path))
        raw.setdefault("base_dir", str(path.parent))
    return validate_experiment(raw)


def validate_experiment(raw: dict) -> ExperimentSpec:
    """Validate a raw mapping; the first problem becomes a one-line ConfigError."""
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as e:
        errors = e.errors()
        err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(_one_line(_describe(err))) from None


def _describe(err: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) if loc else "experiment"
    shown = repr(err.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    if err["type"] == "extra_forbidden":
        close = (
            difflib.get_close_matches(loc[-1], list(ExperimentSpec.model_fields), n=1)
            if len(loc) == 1
            else []
        )
        hint = (
            f" (did you mean {close[0]!r}?)"
            if close
            else f" (keys: {', '.join(k for k in ExperimentSpec.model_fields if k != 'base_dir')})"
        )
        return f"experiment key {key}: unknown key{hint}, got {shown}"
    if err["type"] == "missing":
        return f"experiment key {key}: required, not given"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        return f"experiment {key}: {msg}" if loc else f"experiment: {msg}"
    return f"experiment key {key}: {msg.lower()}, got {shown}"
