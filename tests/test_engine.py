"""pmsim.engine against the SimPy it was written for: its layout assumptions, its copies of
SimPy's code, and that it behaves exactly as SimPy does.

engine.py repeats a few of SimPy 4.1's lines (the run loop with ``step`` in it, a schedule entry,
an event's outcome) and relies on SimPy's data layout (a heap entry is ``(time, priority, event
id, event)``; an event's state is ``callbacks``, ``_ok``, ``_value``; yielding a processed event
resumes a process at once). If a SimPy release changes any of that, these tests fail loudly and
name what to re-check, instead of results shifting silently.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest
import simpy
from simpy.core import BoundClass
from simpy.events import NORMAL, PENDING, Event, Process, Timeout

from pmsim import engine

PACKAGE = Path(engine.__file__).resolve().parent

# SHA-256 (first 16 hex digits) of the source of each SimPy function engine.py copies or relies
# on, in the SimPy release engine.py was checked against (4.1.2).
SIMPY_SOURCES = {
    "Environment.step": "8fea2b488c8ad7fa",
    "Environment.run": "69a3b1cf82217681",
    "Environment.schedule": "d77e268cd77bd921",
    "Environment.__init__": "1424f6ad2e4e8742",
    "BoundClass.bind_early": "c74fd506c0ffe608",
    "Event.__init__": "954dfeb735f0d6c6",
    "Event.succeed": "d859345dcf4f537a",
    "Timeout.__init__": "321c9947d58d38ec",
    "Process._resume": "7c85b9fe960e6b8e",
}
# SimPy's private names: only engine.py may use them.
SIMPY_PRIVATE = {"_now", "_queue", "_eid", "_ok", "_value", "_defused", "_resume", "_target"}


def test_simpy_is_the_series_engine_was_written_for():
    assert simpy.__version__.startswith(engine.SIMPY_SERIES + ".")


@pytest.mark.parametrize("name", sorted(SIMPY_SOURCES))
def test_simpy_code_engine_copies_or_relies_on_is_unchanged(name):
    owner, attr = name.split(".")
    fn = getattr({"Environment": simpy.Environment, "BoundClass": BoundClass, "Event": Event,
                  "Timeout": Timeout, "Process": Process}[owner], attr)  # fmt: skip
    digest = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:16]
    assert digest == SIMPY_SOURCES[name], (
        f"SimPy's {name} changed (SimPy {simpy.__version__}): re-check pmsim/engine.py against it, "
        "then update SIMPY_SOURCES"
    )


def test_heap_entries_and_event_states_have_the_layout_engine_assumes():
    env = engine.Environment()
    ev = Event(env)
    assert ev.callbacks == [] and ev._value is PENDING  # pending
    env.schedule(ev, NORMAL, 5.0)
    (entry,) = env._queue
    assert len(entry) == 4 and entry[0] == 5.0 and entry[1] == NORMAL and entry[3] is ev
    assert isinstance(entry[2], int) and next(env._eid) == entry[2] + 1
    ev._ok, ev._value = True, "v"
    env.run()
    assert ev.callbacks is None and ev.ok and ev.value == "v" and env.now == env._now == 5.0


def test_yielding_a_spent_event_resumes_at_once_and_rearm_schedules_it_again():
    env = engine.Environment()
    spent = engine.spent_event(env)
    seen = []

    def proc():
        value = yield spent  # processed already: no time passes, no event is scheduled
        seen.append((env.now, value, len(env._queue)))
        env.rearm(spent, 7.0)
        value = yield spent
        seen.append((env.now, value))

    env.process(proc())
    env.run()
    assert seen == [(0.0, None, 0), (7.0, None)]


def _trace(env_cls, seed: int) -> list:
    """A random mix of timeouts, spent events re-armed, events triggered at a time, successes
    and a failure caught, with many ties in time; returns the order things happened in."""
    env = env_cls()
    rng = np.random.default_rng(seed)
    log = []

    def rearmed(env, ev, delay):  # what engine.Environment.rearm does, with SimPy's own API
        if isinstance(env, engine.Environment):
            env.rearm(ev, delay)
            return ev
        return env.timeout(delay)

    def worker(i):
        spent = engine.spent_event(env)
        for step in range(40):
            kind = rng.integers(4)
            delay = float(rng.integers(0, 3))
            if kind == 0:
                yield env.timeout(delay)
            elif kind == 1:
                spent = rearmed(env, spent, delay)
                yield spent
            elif kind == 2:
                ev = Event(env)
                engine.trigger_at(env, ev, delay, (i, step))
                log.append(("value", i, (yield ev)))
            else:
                ev = env.event()
                ev.fail(ValueError(i))
                try:
                    yield ev
                except ValueError:
                    log.append(("caught", i))
            log.append((env.now, i, step))

    for i in range(6):
        env.process(worker(i))
    env.run(until=30.5)
    log.append(("end", env.now))
    env.run(until=60)
    log.append(("end", env.now))
    return log


@pytest.mark.parametrize("seed", range(5))
def test_engine_runs_a_model_exactly_as_simpy_does(seed):
    """engine.Environment (its run loop, clock and re-arm) and plain SimPy (a Timeout where the
    engine re-arms) give the same order of events, times and values, including runs resumed
    after ``until``."""
    assert _trace(engine.Environment, seed) == _trace(simpy.Environment, seed)


def _until_trace(env_cls) -> list:
    env = env_cls()
    log = []
    until = env.timeout(5, "v")

    def late_callback():  # added after run() added its StopSimulation callback
        yield env.timeout(1)
        until.callbacks.append(lambda ev: log.append(("late", env.now)))

    env.process(late_callback())
    log.append(("first", env.run(until=until), env.now))
    log.append(("second", env.run(until=6), env.now))
    with pytest.raises(ValueError):
        env.run(until=3)
    with pytest.raises(RuntimeError, match="No scheduled events left"):
        env.run(until=env.event())
    return log


def test_an_until_event_stops_the_run_and_its_other_callbacks_run_on_resume():
    """As SimPy: run(until=event) returns its value; a callback after run's own stop is run
    when the simulation resumes; an until in the past, or one nothing will trigger, fails."""
    assert _until_trace(engine.Environment) == _until_trace(simpy.Environment)
    assert _until_trace(engine.Environment)[:2] == [("first", "v", 5), ("late", 5)]


def test_an_unhandled_failure_stops_the_run_as_in_simpy():
    env = engine.Environment()
    env.event().fail(KeyError("lost"))
    with pytest.raises(KeyError):
        env.run()


def test_event_aliases_are_bound_once():
    env = engine.Environment()
    assert env.timeout is env.timeout and env.event is env.event and env.process is env.process


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def test_only_engine_touches_simpy_internals():
    """grep for SimPy's private names and modules: only pmsim/engine.py may use them."""
    found = []
    for path, tree in _modules():
        if path.name == "engine.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in SIMPY_PRIVATE:
                if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                    found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("simpy."):
                found.append(f"{path.name}:{node.lineno} from {node.module}")
    assert found == []


def test_no_module_reads_another_objects_private_attributes():
    """``x._name`` only on ``self`` / ``cls``, on ``other`` of the same class (a merge), or on a
    base class the module's own class derives from (NEW's fast path names what it copies)."""
    found = []
    for path, tree in _modules():
        if path.name == "engine.py" and path.parent == PACKAGE:
            continue
        bases = {b.id for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for b in c.bases
                 if isinstance(b, ast.Name)}  # fmt: skip
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls", "other", *bases})
            ):  # fmt: skip
                found.append(
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node)}"
                )
    assert found == []


def _import_graph() -> dict[str, set[str]]:
    """pmsim module -> the pmsim modules it imports, at the top or inside functions."""
    modules = {}
    for path, tree in _modules():
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = tree
    graph = {}
    for name, tree in modules.items():
        deps = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pmsim"):
                # a submodule (from pmsim.plots import data), else the module itself
                targets = [
                    f"{node.module}.{a.name}"
                    if f"{node.module}.{a.name}" in modules
                    else node.module
                    for a in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("pmsim")]
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_there_is_no_import_cycle_in_pmsim():
    graph = _import_graph()

    def reaches(src, dst, seen):
        for nxt in graph[src]:
            if nxt == dst or (nxt not in seen and not seen.add(nxt) and reaches(nxt, dst, seen)):
                return True
        return False

    assert sorted(m for m in graph if reaches(m, m, set())) == []


def test_the_sync_primitives_import_the_engine_never_the_machine():
    graph = _import_graph()
    for name in (m for m in graph if m.startswith("pmsim.sync.")):
        assert "pmsim.machine" not in graph[name] and "pmsim.cpu" not in graph[name], name
    assert "pmsim.engine" in graph["pmsim.sync.spinlock"]


# docs/architecture.md's layers, lowest first: a module imports only from its own layer or below.
LAYERS = (
    ("errors", "units", "stats", "rng", "version", "analytic", "costs", "operations", "data",
     "fastpath", "probes", "engine", "hazards"),
    ("cpu", "sync", "recorder", "machine"),
    ("pagecache", "storage", "process", "kernel", "designs"),
    ("workload", "lockbench", "validate", "limits", "trace"),
    ("sweeps", "plots", "report", "sensitivity"),
    ("cli", "__main__"),
)  # fmt: skip


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else ""
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    return len(LAYERS)  # the package itself (pmsim/__init__.py): the public API, on top


def test_every_module_has_a_layer_and_imports_only_downwards():
    graph = _import_graph()
    unplaced = [m for m in graph if m != "pmsim" and _layer(m) == len(LAYERS)]
    assert unplaced == [], "add these modules to a layer here and in docs/architecture.md"
    upward = [(m, d) for m, deps in graph.items() for d in deps if _layer(d) > _layer(m)]
    assert upward == []


def test_architecture_doc_names_every_layer_module():
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [n for names in LAYERS for n in names if f"`{n}" not in doc]
    assert missing == []
