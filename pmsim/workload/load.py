"""Find a workload (a preset name or a YAML path), apply ``--set`` overrides, validate it.

Presets are the YAML files of the repository's ``workloads/`` folder. Overrides
are dotted keys (``machine.cores=32``, ``duration=20ms``, ``processes.0.threads=4``,
``pattern.kind=zipf``); a bare cost name (``cacheline_transfer_ns=30``) sets
``machine.costs``. Values are read as YAML scalars, so ``32`` is a number and
``true`` a boolean; ``KEY=null`` drops the key, so its default applies (switching
``loop.kind`` to ``open`` needs ``loop.think=null``). Every refusal is a one-line :class:`~pmsim.errors.ConfigError`
naming the key and the value.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import get_args

import yaml
from pydantic import BaseModel, ValidationError

from pmsim.costs import cost_params, did_you_mean, parse_assignment
from pmsim.errors import ConfigError
from pmsim.errors import one_line as _one_line
from pmsim.workload.spec import LOOP_KINDS, PATTERN_KINDS, WorkloadSpec

WORKLOADS_DIR = Path(__file__).resolve().parents[2] / "workloads"


def presets() -> dict[str, Path]:
    """Preset name -> YAML file, from the repository's ``workloads/`` folder."""
    return {p.stem: p for p in sorted(WORKLOADS_DIR.glob("*.yaml"))}


def preset_question(path: Path) -> str:
    """The design question a preset answers: its first comment line."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


# Deeper than any workload or experiment (about 6 levels), far below Python's recursion limit.
MAX_DEPTH = 64


class _Loader(yaml.SafeLoader):
    """Safe YAML that refuses a key written twice in one mapping (PyYAML keeps the last silently),
    aliases (``*name``: a few hundred bytes of them expand to gigabytes) and deep nesting (which
    would exhaust Python's recursion)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} (aliases are not allowed)", event.start_mark
            )
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"key {key!r} given twice", key_node.start_mark
                        )
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class refuses it
                    pass
        return super().construct_mapping(node, deep)


def yaml_problem(e, what: str) -> str:
    """One line for a YAML parse error of ``what``: where and what."""
    mark = getattr(e, "problem_mark", None)
    where = f" line {mark.line + 1}" if mark is not None else ""
    if isinstance(e, yaml.reader.ReaderError):  # its str() spans two lines
        ch = e.character if isinstance(e.character, int) else ord(e.character)
        problem = f"character #x{ch:04x} at offset {e.position}: {e.reason}"
    else:
        problem = getattr(e, "problem", None) or e
    return _one_line(f"{what}:{where} is not valid YAML ({problem})")


def read_workload(workload: str) -> tuple[dict, str]:
    """The raw mapping of a preset name or a YAML path, and the workload's name."""
    path = Path(workload)
    if workload.endswith((".yaml", ".yml")) or path.is_file():
        if path.is_dir():
            raise ConfigError(f"workload: {workload!r} is a folder, not a workload file")
        if not path.is_file():
            raise ConfigError(f"workload: no such file {workload!r}")
        name = path.stem
    else:
        table = presets()
        if workload not in table and path.is_dir():
            raise ConfigError(f"workload: {workload!r} is a folder, not a workload file")
        if workload not in table:
            raise ConfigError(
                f"workload: unknown preset {workload!r}{did_you_mean(workload, table)} "
                f"(presets: {', '.join(table)}; or give a .yaml path)"
            )
        path, name = table[workload], workload
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(_one_line(f"workload {path}: cannot be read ({e})")) from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(yaml_problem(e, f"workload {path}")) from None
    if raw is None:
        raise ConfigError(f"workload {path}: the file is empty (a workload needs at least its mix)")
    if not isinstance(raw, dict):
        raise ConfigError(f"workload {path}: expected a mapping of keys, got {type(raw).__name__}")
    raw.setdefault("name", name)
    return raw, name


def apply_overrides(raw: dict, assignments) -> dict:
    """A copy of ``raw`` with each ``KEY=VALUE`` (dotted key) applied in order."""
    out = copy.deepcopy(raw)
    for text in assignments:
        try:
            key, value = parse_assignment(text)
            set_dotted(out, key, _scalar(value))
        except ConfigError as e:
            raise ConfigError(_one_line(str(e))) from None
    return out


def _scalar(text: str):
    try:
        return yaml.load(text, Loader=_Loader) if text else ""
    except yaml.YAMLError as e:
        if (getattr(e, "problem", None) or "").startswith(("alias", "nested")):
            raise ConfigError(yaml_problem(e, "--set value")) from None
        return text


def set_dotted(raw: dict, key: str, value, label: str = "--set") -> None:
    """Set ``raw[a][b][c] = value`` for ``key = "a.b.c"`` (a number indexes a list); errors
    start with ``label`` and the key."""
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{label} {key}: a dotted key needs a name between each pair of dots")
    if len(parts) == 1 and parts[0] not in WorkloadSpec.model_fields and parts[0] in cost_params():
        parts = ["machine", "costs", parts[0]]
    node = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"{label} {key}: {where!r} is not an index of a list of {len(node)} "
                    f"(0..{len(node) - 1})"
                )
            part = int(part)
            if last:
                node[part] = value
            else:
                node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(
                f"{label} {key}: {'.'.join(parts[:i])!r} is not a mapping (it is {node!r})"
            )
        if last:
            if value is None:  # KEY=null drops the key: its default applies again
                node.pop(part, None)
            else:
                node[part] = value
        else:
            child = node.get(part)
            if child is None:
                if part in ("files", "processes"):  # a list the spec fills with one default item
                    child = node[part] = [{}]
                elif parts[i + 1].isdigit():
                    raise ConfigError(
                        f"{label} {key}: {where!r} is not set, so it has no item {parts[i + 1]} "
                        f"(set the whole list, e.g. {where}=[{{...}}])"
                    )
                else:
                    child = node[part] = {}
            node = child


def load_spec(workload: str, overrides=(), seed: int | None = None) -> WorkloadSpec:
    """The validated spec of a preset or YAML path, with overrides (and the seed) applied."""
    raw, _ = read_workload(workload)
    raw = apply_overrides(raw, overrides)
    if seed is not None:
        raw["seed"] = seed
    return validate_spec(raw)


def validate_spec(raw: dict) -> WorkloadSpec:
    """Validate a raw mapping; the first problem becomes a one-line ConfigError."""
    try:
        return _validate(raw)
    except ConfigError as e:
        raise ConfigError(_one_line(str(e))) from None


def _validate(raw: dict) -> WorkloadSpec:
    try:
        spec = WorkloadSpec.model_validate(raw)
    except ValidationError as e:
        errors = e.errors()
        # An unknown key first: a misspelt key also makes the key it meant "required, not given".
        err = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
        raise ConfigError(describe(err, raw)) from None
    from pmsim.costs import CostTable

    params = cost_params()
    given = raw.get("machine", {}).get(
        "costs", {}
    )  # as written: pydantic has read true and 3 as 1.0, 3.0
    for name, value in spec.machine.costs.items():
        key, value = f"workload key machine.costs.{name}", given.get(name, value)
        if name not in params:
            raise ConfigError(f"{key}: unknown cost{did_you_mean(name, params)}, got {value!r}")
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number or a duration, not the boolean {value!r}")
        try:
            CostTable.parse_value(
                name, value
            )  # reference (not input) names, malformed or negative values
        except ConfigError as e:
            raise ConfigError(f"{key}: {str(e).removeprefix(f'cost {name}: ')}") from None
    CostTable(
        spec.machine.costs
    )  # what the table itself checks of the whole set (cpu_clock_ghz > 0)
    return spec


def _path(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_at(loc) -> type[BaseModel] | None:
    """The spec class whose field set ``loc`` (minus its last part) points into."""
    model: type[BaseModel] | None = WorkloadSpec
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _find_model(field.annotation)
    return model


def _find_model(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _find_model(arg)
        if found is not None:
            return found
    return None


def describe(err: dict, raw) -> str:
    """One line for a pydantic error: the dotted key, what is wrong, the value given."""
    loc = _strip_tags(err["loc"])
    key = _path(loc) or "workload"
    value = err.get("input")
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(err["loc"])
        hint = ""
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        cost = (
            difflib.get_close_matches(str(loc[-1]), list(cost_params()), n=1)
            if len(loc) == 1
            else []
        )
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        elif cost:  # a bare --set NAME=VALUE is a cost override when NAME is a cost
            hint = f" (did you mean the cost {cost[0]!r}?)"
        elif allowed:
            hint = f" (keys here: {', '.join(allowed)})"
        return f"workload key {key}: unknown key{hint}, got {shown}"
    if kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
        return f"workload {key}: {msg}" if loc else f"workload: {msg}"
    if kind == "missing":
        return f"workload key {key}: required, not given"
    if kind == "union_tag_invalid":
        tag, expected = (
            str(err["ctx"]["tag"]),
            [t.strip(" '") for t in str(err["ctx"]["expected_tags"]).split(",")],
        )
        return (
            f"workload key {key}.kind: unknown kind{did_you_mean(tag, expected)} "
            f"(one of {', '.join(expected)}), got {tag!r}"
        )
    if kind == "union_tag_not_found":
        typo = (
            difflib.get_close_matches("kind", [k for k in value if isinstance(k, str)], n=1)
            if isinstance(value, dict)
            else []
        )
        hint = f" (for {typo[0]!r} did you mean 'kind'?)" if typo else ""
        return (
            f"workload key {key}.kind: required, not given{hint} (one of {', '.join(_KINDS.get(key, ()))}), "
            f"got {shown}"
        )
    return f"workload key {key}: {err['msg'].lower()}, got {shown}"


# The keys whose value is one of several kinds: pydantic puts the kind in error locations
# (e.g. pattern.zipf.theta).
_KINDS = {"pattern": PATTERN_KINDS, "loop": LOOP_KINDS}


def _strip_tags(loc) -> tuple:
    """``loc`` without the union members pydantic inserts: the kind after ``pattern`` or ``loop``,
    and ``float``/``str`` after a cost name (a cost is a number or a duration)."""
    out = []
    for i, part in enumerate(loc):
        if i == 1 and loc[0] in _KINDS and part in _KINDS[loc[0]]:
            continue
        if i == 3 and tuple(loc[:2]) == ("machine", "costs") and part in ("float", "str"):
            continue
        out.append(part)
    return tuple(out)


def _allowed_keys(loc) -> list[str]:
    """The keys allowed where an unknown key was found."""
    if len(loc) == 3 and loc[0] in _KINDS and loc[1] in _KINDS[loc[0]]:
        return list(_KINDS[loc[0]][loc[1]].model_fields)
    model = _model_at(_strip_tags(loc))
    return list(model.model_fields) if model is not None else []
