"""Bad workload input is refused in one line naming the key and the value, never run or ignored.

The property tests start from a small valid spec and apply one generated
corruption (an unknown key, a wrong type, a zero or negative size, a mapping
past the end of its file, a malformed duration, a bad cost, an impossible
combination); :func:`pmsim.workload.load.validate_spec` must raise a
:class:`~pmsim.errors.ConfigError` whose message is one line and names the key
and the value. The command-line tests check what a user sees: exit status 2
and exactly one ``pmsim: error:`` line on stderr, with no traceback.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pmsim.cli import main
from pmsim.costs import cost_params
from pmsim.errors import ConfigError
from pmsim.units import parse_dist, parse_time
from pmsim.workload.load import load_spec, presets, validate_spec

ROOT = Path(__file__).resolve().parents[1]

# A small valid spec that uses every section, so every key can be corrupted.
BASE = {
    "name": "tiny",
    "machine": {
        "cores": 2,
        "sockets": 1,
        "spinlock": "ttas",
        "qlock_wake": "waker_core",
        "costs": {"cacheline_transfer_ns": 30},
    },
    "files": [
        {
            "name": "data",
            "pages": 64,
            "store": "tmpfs",
            "resident": 1.0,
            "dirty": 0.0,
            "weight": 1.0,
        }
    ],
    "processes": [
        {
            "name": "app",
            "count": 1,
            "threads": 2,
            "kind": "mcp",
            "mappings": [{"file": "data", "offset": 0, "length": 16, "shared": True, "prot": "rw"}],
        }
    ],
    "mix": {
        "read": 1.0,
        "write": 0.0,
        "touch": 0.0,
        "fsync": 0.0,
        "punch_hole": 0.0,
        "mmap_munmap": 0.1,
        "reclaim": 0.0,
    },
    "pattern": {"kind": "zipf", "theta": 0.9},
    "request_pages": 1,
    "touch_stores": 0.0,
    "churn": {"file": "data", "pages": 8, "touches": 2, "shared": True, "prot": "r"},
    "loop": {"kind": "closed", "think": "const:0ns"},
    "daemons": {"writeback": {"period": "0.5ms", "core": 1}},
    "duration": "1ms",
    "warmup": "0.1ms",
    "seed": 1,
}

INT_KEYS = {
    "cores",
    "sockets",
    "pages",
    "count",
    "threads",
    "offset",
    "length",
    "request_pages",
    "touches",
    "core",
    "seed",
}
FLOAT_KEYS = {"resident", "dirty", "weight", "touch_stores", "theta", *BASE["mix"]}
CHOICES = {
    "spinlock": ("ttas", "ticket", "mcs"),
    "qlock_wake": ("waker_core", "remote_ipi"),
    "store": ("tmpfs", "nvme", "hdd", "gtfs"),
    "kind": ("mcp", "scp"),
    "prot": ("r", "rw"),
}
STR_KEYS = {"name", "file"}
BOOL_KEYS = {"shared"}
DURATION_KEYS = {"duration", "warmup", "period"}
DIST_KEYS = {"think"}
OPTIONAL_KEYS = {"file", "length", "core"}  # None is their default, so None is not a wrong type


def walk(node, path=()):
    """Every (path, value) of a nested dict/list; a path is a tuple of keys and list indices."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, path + (i,))


def get(raw, path):
    for p in path:
        raw = raw[p]
    return raw


def put(raw, path, value):
    get(raw, path[:-1])[path[-1]] = value


NODES = [p for p, v in walk(BASE) if isinstance(v, dict)]  # where a key can be added
# Leaves, but not the kind that picks a pattern's or a loop's variant (its own tests are below).
LEAVES = [
    p
    for p, v in walk(BASE)
    if not isinstance(v, (dict, list)) and p not in {("pattern", "kind"), ("loop", "kind")}
]
COSTS = ("machine", "costs")


def base():
    return copy.deepcopy(BASE)


def path_forms(path):
    """How a message may write a key: dotted (--set style), pydantic style, or its last component."""
    dotted = ".".join(map(str, path))
    bracket = ""
    for p in path:
        bracket += f"[{p}]" if isinstance(p, int) else (f".{p}" if bracket else str(p))
    last = path[-1]
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(last))
    return {dotted, bracket, str(last), escaped}


def check_message(msg: str, path, value=None, has_value=True):
    assert "\n" not in msg and "\r" not in msg, f"not one line: {msg!r}"
    assert msg.strip(), "empty message"
    assert any(f in msg for f in path_forms(path) if f), f"key {path} not named in: {msg!r}"
    if has_value:
        shown = {repr(value), str(value), repr(value)[1:-1]}
        if len(repr(value)) > 40:  # long values may be shortened
            shown.add(repr(value)[:40])
        assert any(s and s in msg for s in shown), f"value {value!r} not named in: {msg!r}"


def refuse(raw) -> str:
    with pytest.raises(ConfigError) as info:
        validate_spec(raw)
    return str(info.value)


def test_base_is_valid():
    validate_spec(base())
    for name in presets():
        load_spec(name)


# --- unknown keys ----------------------------------------------------------------------------


def _typos(word):
    """Near-miss spellings: one character dropped, doubled, swapped with the next, or replaced."""
    letters = string.ascii_lowercase
    return st.one_of(
        st.integers(0, len(word) - 1).map(lambda i: word[:i] + word[i + 1 :]),
        st.integers(0, len(word) - 1).map(lambda i: word[:i] + word[i] + word[i:]),
        st.integers(0, max(len(word) - 2, 0)).map(
            lambda i: word[:i] + word[i + 1 : i + 2] + word[i] + word[i + 2 :]
        ),
        st.tuples(st.integers(0, len(word) - 1), st.sampled_from(letters)).map(
            lambda t: word[: t[0]] + t[1] + word[t[0] + 1 :]
        ),
    )


@st.composite
def typo_cases(draw):
    node = draw(st.sampled_from(NODES))
    keys = [k for k in get(BASE, node)]
    key = draw(st.sampled_from(keys))
    if node == COSTS:  # a misspelt cost name: compare against every cost, not just the ones set
        keys = list(cost_params())
    typo = draw(_typos(key))
    assume(typo and typo not in keys and typo != key)
    # A near miss: the closest key (as a did-you-mean would rank them) is the one misspelt.
    assume(difflib.get_close_matches(typo, keys, n=1) == [key])
    return node, key, typo


@settings(max_examples=300, deadline=None)
@given(typo_cases())
def test_misspelt_key_says_did_you_mean(case):
    node, key, typo = case
    raw = base()
    parent = get(raw, node)
    value = parent.pop(key)
    parent[typo] = value
    msg = refuse(raw)
    check_message(msg, node + (typo,), value, has_value=not isinstance(value, dict))
    assert "did you mean" in msg and repr(key) in msg, msg


_garbage = st.one_of(
    st.text(min_size=1, max_size=12),
    st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(
    node=st.sampled_from(NODES),
    key=_garbage,
    value=st.one_of(st.integers(), st.text(max_size=8), st.none()),
)
def test_garbage_key_is_refused(node, key, value):
    raw = base()
    parent = get(raw, node)
    assume(key not in parent)
    if node == COSTS:
        assume(key not in cost_params())
    parent[key] = value
    msg = refuse(raw)
    check_message(msg, node + (key,), value)


# --- wrong types ------------------------------------------------------------------------------

_words = st.text(alphabet=string.ascii_letters + " _!?", min_size=1, max_size=10).filter(
    lambda s: (
        s.strip().lower()
        not in {
            "inf",
            "infinity",
            "nan",
            "true",
            "false",
            "yes",
            "no",
            "on",
            "off",
            "t",
            "f",
            "y",
            "n",
        }
    )
)
_containers = st.one_of(
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _wrong(key):
    if key in INT_KEYS:
        return st.one_of(
            _words,
            _containers,
            st.booleans(),
            st.none(),
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)),
        )
    if key in FLOAT_KEYS:
        return st.one_of(_words, _containers, st.booleans(), st.none())
    if key in CHOICES:
        return st.one_of(
            _words.filter(lambda s: s not in CHOICES[key]),
            st.integers(),
            _containers,
            st.booleans(),
            st.none(),
        )
    if key in STR_KEYS:
        return st.one_of(st.integers(), st.floats(allow_nan=False), _containers, st.booleans())
    if key in BOOL_KEYS:
        return st.one_of(
            _words,
            st.integers(min_value=2),
            st.floats(allow_nan=False).filter(lambda x: x not in (0, 1)),
            _containers,
            st.none(),
        )
    if key in DURATION_KEYS:
        return st.one_of(
            st.integers(), st.floats(allow_nan=False), _words, _containers, st.booleans(), st.none()
        )
    if key in DIST_KEYS:
        return st.one_of(st.integers(), _words, _containers, st.booleans(), st.none())
    raise AssertionError(f"no wrong values for {key}")


@st.composite
def wrong_type_cases(draw):
    path = draw(st.sampled_from(LEAVES))
    if path[:2] == COSTS:
        value = draw(st.one_of(_containers, st.booleans(), st.none(), _words))
    else:
        value = draw(_wrong(path[-1]))
        if path[-1] in OPTIONAL_KEYS:
            assume(value is not None)
    return path, value


@settings(max_examples=400, deadline=None)
@given(wrong_type_cases())
def test_wrong_type_is_refused(case):
    path, value = case
    raw = base()
    put(raw, path, value)
    msg = refuse(raw)
    check_message(msg, path, value)


# --- zero or negative sizes -------------------------------------------------------------------

SIZES = [
    ("machine", "cores"),
    ("machine", "sockets"),
    ("files", 0, "pages"),
    ("processes", 0, "count"),
    ("processes", 0, "threads"),
    ("processes", 0, "mappings", 0, "length"),
    ("request_pages",),
    ("churn", "pages"),
]
NON_NEGATIVE = [
    ("processes", 0, "mappings", 0, "offset"),
    ("churn", "touches"),
    ("daemons", "writeback", "core"),
    ("seed",),
    ("files", 0, "resident"),
    ("files", 0, "dirty"),
    ("touch_stores",),
    ("pattern", "theta"),
    *[("mix", op) for op in BASE["mix"]],
]


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(SIZES), value=st.integers(max_value=0))
def test_zero_or_negative_size_is_refused(path, value):
    raw = base()
    put(raw, path, value)
    check_message(refuse(raw), path, value)


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(NON_NEGATIVE),
    value=st.one_of(
        st.integers(max_value=-1), st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
    ),
)
def test_negative_value_is_refused(path, value):
    raw = base()
    if path[-1] not in FLOAT_KEYS:
        value = int(value) if value == int(value) else value
    assume(value < 0)
    put(raw, path, value)
    check_message(refuse(raw), path, value)


# --- mappings past the end of the file --------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(pages=st.integers(1, 256), data=st.data())
def test_mapping_past_end_of_file_is_refused(pages, data):
    raw = base()
    raw["files"][0]["pages"] = pages
    raw["processes"][0]["mappings"][0]["length"] = None  # to the end of the file unless set below
    past_offset = data.draw(st.booleans())
    m = raw["processes"][0]["mappings"][0]
    if past_offset:
        m["offset"] = data.draw(st.integers(pages, pages + 10**6))
        key, value = "offset", m["offset"]
    else:
        m["offset"] = data.draw(st.integers(0, pages - 1))
        m["length"] = data.draw(st.integers(pages - m["offset"] + 1, pages + 10**6))
        key, value = "length", m["length"]
    msg = refuse(raw)
    check_message(msg, ("processes", 0, "mappings", 0, key), value)
    assert "past the end" in msg and str(pages) in msg, msg


# --- durations --------------------------------------------------------------------------------


def _not_a_duration(text):
    try:
        parse_time(text)
    except ConfigError:
        return True
    return False


_bad_durations = st.one_of(
    st.text(max_size=10).filter(_not_a_duration),
    st.integers(0, 10**6).map(str),  # no unit
    st.tuples(
        st.integers(1, 999), st.sampled_from(["sec", "mss", "m", "h", "min", "nsec", "US ", "µ"])
    )
    .map(lambda t: f"{t[0]}{t[1]}")
    .filter(_not_a_duration),
    st.integers(1, 999).map(lambda n: f"-{n}ms"),
    st.sampled_from(["ms", "1.2.3ms", "1e400ms", "inf s", "nan us", "", " "]),
)


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from([("duration",), ("warmup",), ("daemons", "writeback", "period")]),
    value=_bad_durations,
)
def test_malformed_duration_is_refused(path, value):
    raw = base()
    put(raw, path, value)
    check_message(refuse(raw), path, value)


def _not_a_dist(text):
    try:
        parse_dist(text)
    except ConfigError:
        return True
    return False


@settings(max_examples=120, deadline=None)
@given(
    kind=st.sampled_from(["closed", "open"]),
    value=st.one_of(
        st.text(max_size=12),
        _bad_durations.map(lambda d: f"exp:{d}"),
        st.sampled_from(
            [
                "exp:1us:2us",
                "const",
                "uniform:2us",
                "uniform:3us:1us",
                "lognormal:1us:x",
                "poisson:1us",
                "2us",
            ]
        ),
    ).filter(_not_a_dist),
)
def test_malformed_distribution_is_refused(kind, value):
    raw = base()
    key = "think" if kind == "closed" else "arrivals"
    raw["loop"] = {"kind": kind, key: value}
    check_message(refuse(raw), ("loop", key), value)


# --- costs ------------------------------------------------------------------------------------

INPUT_COSTS = sorted(n for n, p in cost_params().items() if p.role == "input")
REFERENCE_COSTS = sorted(n for n, p in cost_params().items() if p.role != "input")


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(alphabet=string.ascii_lowercase + "_0123456789", min_size=1, max_size=30),
    value=st.one_of(st.integers(0, 100), st.floats(0, 100)),
)
def test_unknown_cost_is_refused(name, value):
    assume(name not in cost_params())
    raw = base()
    raw["machine"]["costs"] = {name: value}
    msg = refuse(raw)
    check_message(msg, COSTS + (name,), value)
    assert "cost" in msg


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(INPUT_COSTS),
    value=st.one_of(
        st.integers(max_value=-1),
        st.floats(max_value=-1e-12, allow_nan=False),
        st.integers(1, 999).map(lambda n: f"-{n}ns"),
    ),
)
def test_negative_cost_is_refused(name, value):
    raw = base()
    raw["machine"]["costs"] = {name: value}
    check_message(refuse(raw), COSTS + (name,), value)


@pytest.mark.parametrize("name", REFERENCE_COSTS[:3])
def test_reference_cost_cannot_be_set(name):
    raw = base()
    raw["machine"]["costs"] = {name: 1}
    check_message(refuse(raw), COSTS + (name,), 1)


# --- impossible workloads ---------------------------------------------------------------------


@st.composite
def impossible_cases(draw):
    """(raw, key path, value) for a workload whose keys are each fine but do not fit together."""
    raw = base()
    what = draw(
        st.sampled_from(
            [
                "disjoint",
                "scp",
                "dirty",
                "warmup",
                "hot_page",
                "sockets",
                "daemon_core",
                "request_pages",
                "churn",
                "churn_file",
                "mapping_file",
                "touch_no_mapping",
                "unused_churn",
                "unused_stores",
                "unused_request_pages",
                "store_to_read_only",
            ]
        )
    )
    if what == "unused_request_pages":
        n = draw(st.integers(2, 64))
        raw["mix"].update(read=0.0, touch=1.0)
        raw["request_pages"] = n
        return raw, ("request_pages",), n
    if what == "unused_churn":  # a setting nothing uses is refused, not ignored
        raw["mix"]["mmap_munmap"] = 0.0
        return raw, ("churn",), None
    if what == "unused_stores":
        stores = draw(st.floats(0.01, 1.0))
        raw["touch_stores"] = stores
        return raw, ("touch_stores",), stores
    if what == "store_to_read_only":
        stores = draw(st.floats(0.01, 1.0))
        raw["mix"]["touch"] = 1.0
        raw["touch_stores"] = stores
        raw["processes"][0]["mappings"][0]["prot"] = "r"
        return raw, ("processes", 0, "mappings", 0, "prot"), "r"
    if what == "disjoint":
        raw["mix"]["mmap_munmap"] = 0.0
        del raw["churn"]
        threads = draw(st.integers(2, 64))
        raw["processes"][0]["threads"] = threads
        raw["files"][0]["pages"] = draw(st.integers(1, threads - 1))
        raw["processes"][0]["mappings"][0]["length"] = None
        raw["pattern"] = {"kind": "disjoint"}
        return raw, ("pattern",), threads
    if what == "scp":
        threads = draw(st.integers(2, 64))
        raw["processes"][0].update(kind="scp", threads=threads)
        return raw, ("processes", 0, "threads"), threads
    if what == "dirty":
        resident = draw(st.floats(0, 0.99))
        dirty = draw(st.floats(resident, 1.0).filter(lambda d: d > resident))
        raw["files"][0].update(resident=resident, dirty=dirty)
        return raw, ("files", 0, "dirty"), dirty
    if what == "warmup":
        n = draw(st.integers(1, 100))
        raw["warmup"] = f"{n}ms"  # duration is 1ms
        return raw, ("warmup",), f"{n}ms"
    if what == "hot_page":
        page = draw(st.integers(64, 10**6))
        raw["pattern"] = {"kind": "hot_page", "page": page}
        return raw, ("pattern", "page"), page
    if what == "sockets":
        sockets = draw(st.integers(3, 64))
        raw["machine"]["sockets"] = sockets
        return raw, ("machine", "sockets"), sockets
    if what == "daemon_core":
        core = draw(st.integers(2, 4096))
        raw["daemons"]["writeback"]["core"] = core
        return raw, ("daemons", "writeback", "core"), core
    if what == "request_pages":
        n = draw(st.integers(65, 10**6))
        raw["request_pages"] = n
        return raw, ("request_pages",), n
    if what == "churn":
        raw["mix"]["mmap_munmap"] = 1.0
        n = draw(st.integers(65, 10**6))
        raw["churn"]["pages"] = n
        return raw, ("churn", "pages"), n
    if what in ("churn_file", "mapping_file"):
        name = draw(st.text(min_size=1, max_size=10).filter(lambda s: s != "data"))
        if what == "churn_file":
            raw["churn"]["file"] = name
            return raw, ("churn", "file"), name
        raw["processes"][0]["mappings"][0]["file"] = name
        return raw, ("processes", 0, "mappings", 0, "file"), name
    raw["mix"]["touch"] = 1.0
    raw["processes"][0]["mappings"] = []
    return raw, ("mix", "touch"), None


@settings(max_examples=300, deadline=None)
@given(impossible_cases())
def test_impossible_workload_is_refused(case):
    raw, path, value = case
    check_message(refuse(raw), path, value, has_value=value is not None)


# --- one corruption, end to end: a YAML file through pmsim run ---------------------------------


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case=st.one_of(
        typo_cases().map(lambda c: ("typo", c)),
        wrong_type_cases().map(lambda c: ("type", c)),
        impossible_cases().map(lambda c: ("impossible", c)),
    )
)
def test_bad_yaml_file_exits_2_with_one_line(case, tmp_path, capsys):
    kind, c = case
    if kind == "typo":
        node, key, typo = c
        raw = base()
        parent = get(raw, node)
        parent[typo] = parent.pop(key)
    elif kind == "type":
        raw = base()
        put(raw, *c)
    else:
        raw = c[0]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    capsys.readouterr()
    assert main(["run", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("pmsim: error: "), err


# --- the command line -------------------------------------------------------------------------

TINY = [
    "--set",
    "duration=0.2ms",
    "--set",
    "warmup=0.05ms",
    "--set",
    "machine.cores=2",
    "--set",
    "processes.0.threads=2",
]


def write(tmp_path, text, name="w.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def write_bytes(tmp_path, data, name):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


PAST_EOF = """\
machine: {cores: 2}
files:
  - {name: data, pages: 64}
processes:
  - {threads: 2, mappings: [{offset: 60, length: 8}]}
mix: {touch: 1}
duration: 1ms
warmup: 0.1ms
"""


def _cli_cases(tmp_path):
    """(argv, words the one line must contain)."""
    return [
        (["run", "read_hit"], ["read_hit", "did you mean 'read_hits'"]),
        (["run", "no_such_workload"], ["no_such_workload", "presets"]),
        (["run", "read_hits", "--design", "nosuch"], ["design", "nosuch"]),
        (["run", "read_hits", "--design", "od"], ["'od'", "did you mean 'old'"]),
        (["run", "mixed", "--design", "old"], ["old", "fsync"]),
        (["run", "reclaim", "--design", "old"], ["old", "reclaim"]),
        (["run", "read_hits", "--design", "old", "--set", "mix.fsync=1"], ["old", "fsync"]),
        (
            ["run", "read_hits", "--design", "old", "--set", "daemons.writeback.period=1ms"],
            ["old", "fsync"],
        ),
        (
            ["run", "read_hits", "--design", "old", "--set", "daemons.reclaim.period=1ms"],
            ["old", "reclaim"],
        ),
        (["run", "read_hits", "--set", "machine.cores=0"], ["machine.cores", "0"]),
        (["run", "read_hits", "--set", "machine.cores=yes"], ["cores", "True"]),
        (["run", "read_hits", "--set", "duration=20"], ["duration", "20"]),
        (["run", "read_hits", "--set", "warmup=2 fortnights"], ["warmup", "'2 fortnights'"]),
        (["run", "read_hits", "--set", "duration=1ms", "--set", "warmup=1ms"], ["warmup", "1ms"]),
        (["run", "read_hits", "--set", "nosuchkey=1"], ["nosuchkey", "1"]),
        (
            ["run", "read_hits", "--set", "machine.coers=4"],
            ["machine.coers", "did you mean 'cores'", "4"],
        ),
        (
            ["run", "read_hits", "--set", "cachline_transfer_ns=30"],
            ["cachline_transfer_ns", "cacheline_transfer_ns", "30"],
        ),
        (["run", "read_hits", "--set", "machine.costs.no_such_cost=3"], ["no_such_cost", "3"]),
        (
            ["run", "read_hits", "--set", "cacheline_transfer_ns=-5"],
            ["cacheline_transfer_ns", "-5"],
        ),
        (
            ["run", "read_hits", "--set", "cacheline_transfer_ns=true"],
            ["cacheline_transfer_ns", "True"],
        ),
        (["run", "read_hits", "--set", "processes.5.threads=2"], ["processes.5", "0..0"]),
        (["run", "read_hits", "--set", "processes.x.threads=2"], ["processes.x"]),
        (
            ["run", "read_hits", "--set", "processes.0.mappings.0.offset=3"],
            ["processes.0.mappings", "0"],
        ),
        (["run", "read_hits", "--set", "machine.cores.x=3"], ["machine.cores", "16"]),
        (["run", "read_hits", "--set", "machine.cores"], ["machine.cores"]),
        (["run", "read_hits", "--set", "machine..cores=1"], ["machine..cores"]),
        (
            ["run", "read_hits", "--set", "pattern.kind=zipff"],
            ["pattern.kind", "'zipff'", "did you mean 'zipf'"],
        ),
        (
            ["run", "read_hits", "--set", "pattern.kind=disjoint", "--set", "files.0.pages=4"],
            ["disjoint", "16"],
        ),
        (["run", "read_hits", "--set", "processes.0.kind=scp"], ["scp", "threads=16"]),
        (
            ["run", "read_hits", "--set", "files.0.dirty=0.5", "--set", "files.0.resident=0.2"],
            ["dirty", "0.5"],
        ),
        (["run", "hot_page", "--set", "pattern.page=4096"], ["pattern.page", "4096"]),
        (["run", "read_hits", "--seed", "-1"], ["seed", "-1"]),
        (["run", write(tmp_path, PAST_EOF, "past.yaml")], ["mappings[0].length", "8"]),
        (
            [
                "run",
                write(
                    tmp_path, PAST_EOF.replace("offset: 60, length: 8", "offset: 64"), "past2.yaml"
                ),
            ],
            ["mappings[0].offset", "64"],
        ),
        (["run", write(tmp_path, "files: [\n  - {name: data\n", "bad.yaml")], ["not valid YAML"]),
        (
            ["run", write(tmp_path, "duration: 1ms\nduration: 2ms\n", "twice.yaml")],
            ["'duration'", "twice"],
        ),
        (["run", write(tmp_path, "name: x\nseed: \x01\n", "ctrl.yaml")], ["not valid YAML"]),
        (["run", write(tmp_path, "- 1\n- 2\n", "list.yaml")], ["mapping", "list"]),
        (
            ["run", write(tmp_path, "pattern: {knd: zipf}\n", "kind.yaml")],
            ["pattern.kind", "'knd'"],
        ),
        (["run", write(tmp_path, '"a\\nb": 1\n', "newline_key.yaml")], ["unknown key", "a\\nb"]),
        (["run", str(tmp_path / "missing.yaml")], ["missing.yaml"]),
        (
            ["run", write_bytes(tmp_path, b"name: \xff\xfe\n", "latin1.yaml")],
            ["latin1.yaml", "0xff"],
        ),
    ]


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    for argv, words in _cli_cases(tmp_path):
        capsys.readouterr()
        rc = main(argv)
        out, err = capsys.readouterr()
        assert rc == 2, (argv, rc, out, err)
        assert err.count("\n") == 1 and err.startswith("pmsim: error: "), (argv, err)
        for w in words:
            assert w in err, (argv, w, err)


def test_unused_cost_override_is_refused(capsys):
    # Read by NVMe IO only: on an all-tmpfs workload it would change nothing (checked after the run).
    rc = main(["run", "read_hits", *TINY, "--set", "nvme_read_4k_us=30"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("pmsim: error: ")
    assert "nvme_read_4k_us" in err and "30" in err, err


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "pmsim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["run", "read_hit"],
        ["run", "mixed", "--design", "old"],
        ["run", "read_hits", "--set", "duration=20"],
        ["run", "read_hits", "--set", "machine.costs.bogus_ns=1"],
        ["run", "BAD_YAML"],
    ],
    ids=["unknown-preset", "old-fsync", "no-unit", "unknown-cost", "invalid-yaml"],
)
def test_cli_subprocess_bad_input(args, tmp_path):
    args = [write(tmp_path, "files: [\n  - {name: data\n") if a == "BAD_YAML" else a for a in args]
    r = run_cli(*args)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert re.fullmatch(r"pmsim: error: [^\n]+\n", r.stderr), r.stderr


def test_cli_subprocess_tiny_run_succeeds():
    r = run_cli("run", "read_hits", *TINY)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
