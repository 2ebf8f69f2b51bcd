"""The design registry: discovery, names, entry points, docs/designs.md's example variant, and a
throw-away design added at test time that every design check then covers."""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pmsim.designs as designs_pkg
from pmsim.designs import designs, get_design
from pmsim.designs.base import PageMap
from pmsim.errors import ConfigError
from pmsim.operations import ENTRY_POINTS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "designs.md"


def test_the_registry_finds_every_design_module():
    """Every module of the package but base.py defines a design (one that forgot ``DESIGN``
    would be silently missing), each under its own name, OLD and NEW among them."""
    found = designs()
    modules = {m.name for m in pkgutil.iter_modules(designs_pkg.__path__)} - {"base"}
    assert {
        sys.modules[cls.__module__].__name__.rsplit(".", 1)[1] for cls in found.values()
    } == modules
    assert {"old", "new"} <= set(found)
    for name, cls in found.items():
        assert issubclass(cls, PageMap) and cls.name == name and cls.summary


def test_every_design_in_the_registry_has_a_row_in_docs_designs_md():
    rows = set(re.findall(r"^\| `(\w+)` \|", DOCS.read_text(encoding="utf-8"), re.M))
    assert rows == set(designs())


def test_unknown_design_names_say_what_exists():
    with pytest.raises(ConfigError, match=r"unknown 'nwe' \(did you mean 'new'\?\)"):
        get_design("nwe")


@pytest.mark.parametrize("op", ["fsync", "reclaim"])
def test_old_has_no_writeback_or_reclaim_entry_point(op):
    with pytest.raises(ConfigError, match=f"design old: has no {op} entry point"):
        get_design("old").require(op)
    get_design("new").require(op)  # NEW has it


def test_operations_outside_the_list_are_refused():
    with pytest.raises(ConfigError, match="unknown"):
        get_design("new").require("truncate_everything")
    assert set(get_design("new").entry_points) == set(ENTRY_POINTS)


def test_variants_override_only_what_differs():
    new, old = get_design("new"), get_design("old")
    assert get_design("old_mcs").pm_lock_kind == "mcs" and old.pm_lock_kind is None
    assert (
        get_design("new_sync_shootdown").shootdown_mode == "sync" and new.shootdown_mode == "async"
    )
    assert get_design("old_remove_contig").punch_hole_fn == "pm_remove_contig"
    own = {n for n, v in vars(get_design("new_batched_wb")).items() if callable(v)}
    assert own == {"queue_writeback", "flush_queued_writebacks", "pm_writeback_pages"}
    own = {n for n, v in vars(get_design("old_striped")).items() if callable(v)}
    assert own == {"__init__", "radix_writers_lock", "pm_has_vmr_with_page"}
    # A variant's lock-order rows are its own where it differs, its parent's elsewhere.
    striped = get_design("old_striped")
    assert set(striped.own_lock_order()) < set(striped.lock_order) == set(old.lock_order)
    assert striped.lock_order["munmap"] == old.lock_order["munmap"]
    assert striped.lock_order["read_hit"] != old.lock_order["read_hit"]


def test_the_docs_example_variant_is_found_without_touching_other_modules(tmp_path, monkeypatch):
    """docs/designs.md: saving the example as a module of the package is all it takes."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S).group(1)
    (tmp_path / "new_mcs_pm_lock.py").write_text(code, encoding="utf-8")
    monkeypatch.setattr(designs_pkg, "__path__", [*designs_pkg.__path__, str(tmp_path)])
    designs.cache_clear()
    try:
        cls = get_design("new_mcs_pm_lock")
        assert cls.pm_lock_kind == "mcs" and issubclass(cls, get_design("new"))
        assert "new" in designs() and "old" in designs()
    finally:
        monkeypatch.undo()
        sys.modules.pop(f"{designs_pkg.__name__}.new_mcs_pm_lock", None)
        designs.cache_clear()
    assert "new_mcs_pm_lock" not in designs()


THROWAWAY = '''"""A throw-away what-if made by tests/test_designs.py: NEW with an MCS ``pm_lock``."""

from pmsim.designs.new_rcu_qlock import NewPageMap


class NewThrowaway(NewPageMap):
    name = "new_throwaway"
    summary = "NEW, pm_lock as an MCS queue lock (a test's throw-away design)"
    pm_lock_kind = "mcs"


DESIGN = NewThrowaway
'''
# A pytest plugin that puts the throw-away module's folder on the designs package's path before
# the test modules are collected (as saving the file into pmsim/designs/ would).
PLUGIN = """import pmsim.designs as designs

designs.__path__.append({folder!r})
designs.designs.cache_clear()
"""


def test_a_design_added_as_one_file_is_run_by_every_design_check(tmp_path):
    """Adding a design is one file (and one docs row): the lock-order, no-sleep-under-spinlock,
    invariant and fast-path tests list it and run it, with no test edited; the docs check
    asks for its row."""
    folder = tmp_path / "designs"
    folder.mkdir()
    (folder / "new_throwaway.py").write_text(THROWAWAY, encoding="utf-8")
    (tmp_path / "throwaway_plugin.py").write_text(
        PLUGIN.format(folder=str(folder)), encoding="utf-8"
    )
    root = Path(__file__).resolve().parents[1]
    tests = [
        "test_lock_order.py",
        "test_pagemap_invariants.py",
        "test_fast_paths.py",
        "test_designs.py",
    ]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "throwaway_plugin", "-p", "no:cacheprovider", "-q",
         "-rA", "-k", "new_throwaway or has_a_row_in_docs", *(str(root / "tests" / t) for t in tests)],
        cwd=root, capture_output=True, text=True, timeout=280,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])},
    )  # fmt: skip
    passed = re.findall(r"^PASSED \S+::(\w+)\[([^\]]*)\]", out.stdout, re.M)
    failed = re.findall(r"^FAILED \S+::(\w+)", out.stdout, re.M)
    ran = {test for test, ids in passed if "new_throwaway" in ids}
    assert {
        "test_lock_sequence_matches_reference",  # test_lock_order.py: every path, in order
        "test_nesting",
        "test_no_spinlock_held_while_blocking",
        "test_lock_order_graph_is_acyclic_per_design",
        "test_random_operation_mix_keeps_the_page_cache_consistent",  # the invariants
        "test_fast_path_is_the_general_path",  # test_fast_paths.py
        "test_a_design_that_overrides_an_inlined_function_gets_the_general_path",
    } <= ran, out.stdout[-3000:]
    # The one failure: its missing row in docs/designs.md.
    assert failed == ["test_every_design_in_the_registry_has_a_row_in_docs_designs_md"], out.stdout[
        -3000:
    ]
