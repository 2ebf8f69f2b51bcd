"""The cost table: every modelled cost as a named parameter with unit, default, range and source.

The defaults live in ``pmsim/data/costs.yaml`` (from cost-model-sources.md,
section 1). A workload or a sweep overrides any *input* parameter by name; the
model reads values in nanoseconds through :meth:`CostTable.ns`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from pmsim.errors import ConfigError
from pmsim.units import NS_PER, parse_time

TIME_UNITS = {"ns", "us", "ms"}


@dataclass(frozen=True)
class CostParam:
    name: str
    group: str
    unit: str
    default: float
    range: tuple[float, float]
    role: str  # "input": the model reads it; "reference": documented, not a model input
    source: str
    doc: str
    derived_from: str | None = None  # a derived cost: ``factor`` x this base unless set itself
    factor: float = 1.0

    def derivation(self) -> str:
        """``= 2 x cacheline_transfer_ns`` for a derived cost, else empty."""
        if self.derived_from is None:
            return ""
        return f"= {self.factor:g} x {self.derived_from}"


@lru_cache(maxsize=1)
def cost_params() -> dict[str, CostParam]:
    """The shipped parameter table, by name."""
    text = resources.files("pmsim.data").joinpath("costs.yaml").read_text()
    out = {}
    for e in yaml.safe_load(text)["parameters"]:
        derived = e.get("derived") or {}
        out[e["name"]] = CostParam(
            e["name"],
            e["group"],
            e["unit"],
            float(e["default"]),
            (float(e["range"][0]), float(e["range"][1])),
            e["role"],
            e["source"],
            e["doc"],
            derived.get("from"),
            float(derived.get("factor", 1.0)),
        )
    return out


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class CostTable:
    """Cost values after overrides. Immutable once built."""

    def __init__(self, overrides: dict | None = None):
        params = cost_params()
        values = {n: p.default for n, p in params.items()}
        for name, raw in (overrides or {}).items():
            values[name] = self.parse_value(name, raw)
        # A derived cost follows its base unless it was set itself (then it is reported:
        # ``derived_overridden``).
        self.derived_overridden = sorted(
            n for n in (overrides or {}) if params[n].derived_from is not None
        )
        for n, p in params.items():
            if p.derived_from is not None and n not in (overrides or {}):
                values[n] = p.factor * values[p.derived_from]
        self._values = values
        self._views: dict[type, object] = {}
        # names the model has read: an override of anything else did nothing
        self.read: set[str] = set()
        ghz = values["cpu_clock_ghz"]
        if ghz <= 0:
            raise ConfigError(f"cost cpu_clock_ghz: must be > 0, got {ghz!r}")
        self._ns = {}
        for n, p in params.items():
            v = values[n]
            if p.unit in TIME_UNITS:
                v = v * NS_PER[p.unit]
            elif p.unit == "cycles":
                v = v / ghz
            self._ns[n] = v

    @staticmethod
    def parse_value(name: str, raw) -> float:
        params = cost_params()
        p = params.get(name)
        if p is None:
            raise ConfigError(f"unknown cost {name!r}{did_you_mean(name, params)}")
        if p.role != "input":
            raise ConfigError(
                f"cost {name!r} is a reference value the model derives or validates against, "
                f"not an input; it cannot be set (got {raw!r})"
            )
        if isinstance(raw, str) and p.unit in TIME_UNITS and raw.strip()[-1:].isalpha():
            value = parse_time(raw, f"cost {name}") / NS_PER[p.unit]
        else:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"cost {name}: not a number: {raw!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"cost {name}: must be a finite number >= 0, got {raw!r}")
        if p.unit == "count" and value != int(value):
            raise ConfigError(f"cost {name}: must be a whole number, got {raw!r}")
        return value

    def ns(self, name: str) -> float:
        """The value of a time-valued parameter, in nanoseconds."""
        self._mark_read(name)
        if cost_params()[name].unit == "cycles":
            self.read.add("cpu_clock_ghz")
        return self._ns[name]

    def _mark_read(self, name: str) -> None:
        """Reading a derived cost reads its base too (an override of the base moves it)."""
        self.read.add(name)
        base = cost_params()[name].derived_from
        if base is not None and name not in self.derived_overridden:
            self.read.add(base)

    def view(self, cls):
        """A component's typed view of its costs, ``cls(self)``, built once per table (a view
        class reads the costs it needs by name in its ``__init__``; see ``SpinLockCosts``)."""
        view = self._views.get(cls)
        if view is None:
            view = self._views[cls] = cls(self)
        return view

    def value(self, name: str) -> float:
        """The value in the parameter's own unit."""
        self._mark_read(name)
        return self._values[name]

    def check_all_read(self, explicit, what: str) -> None:
        """Refuse overrides in ``explicit`` that the model built so far never read."""
        unused = sorted(n for n in explicit if n not in self.read)
        if unused:
            raise ConfigError(
                f"cost {unused[0]!r} does not affect {what} (it is never read), got "
                f"{explicit[unused[0]]!r}"
                + (f"; also unused: {', '.join(unused[1:])}" if unused[1:] else "")
            )

    def overridden(self) -> dict[str, float]:
        """Parameters whose value differs from the default."""
        params = cost_params()
        return {
            n: v
            for n, v in self._values.items()
            if v != params[n].default
            and (params[n].derived_from is None or n in self.derived_overridden)
        }

    def as_dict(self) -> dict[str, float]:
        return dict(self._values)


def parse_assignment(text: str) -> tuple[str, str]:
    """Split ``NAME=VALUE`` (the ``--set`` syntax)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--set: expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def markdown_table() -> str:
    """The cost table as Markdown, for ``pmsim costs`` and docs/costs.md."""
    lines = [
        "# Cost parameters",
        "",
        "Generated by `pmsim costs --markdown` from `pmsim/data/costs.yaml`. Override an *input* "
        "parameter by name (`--set NAME=VALUE`, in its unit or as a duration such as `2us`). "
        "*Reference* values are documented and used by validation, never read by the model. "
        "A *derived* cost (`= F x BASE`) follows its base unless set itself.",
        "",
    ]
    by_group: dict[str, list[CostParam]] = {}
    for p in cost_params().values():
        by_group.setdefault(p.group, []).append(p)
    for group, ps in by_group.items():
        lines += [
            f"## {group}",
            "",
            "| name | default | unit | range | role | derived | meaning | source |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in ps:
            lines.append(
                f"| `{p.name}` | {p.default:g} | {p.unit} | {p.range[0]:g} – {p.range[1]:g} | {p.role} "
                f"| {p.derivation()} | {p.doc} | {p.source} |"
            )
        lines.append("")
    return "\n".join(lines)
