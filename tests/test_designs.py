"""The design registry: discovery, names, entry points, and docs/designs.md's example variant."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import pmsim.designs as designs_pkg
from pmsim.designs import designs, get_design
from pmsim.designs.base import OPERATIONS, PageMap
from pmsim.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "designs.md"


def test_the_registry_finds_every_design_module():
    found = designs()
    assert set(found) == {
        "old",
        "new",
        "new_batched_wb",
        "new_sync_shootdown",
        "old_mcs",
        "old_remove_contig",
    }
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
    assert set(get_design("new").entry_points) == set(OPERATIONS)


def test_variants_override_only_what_differs():
    new, old = get_design("new"), get_design("old")
    assert get_design("old_mcs").pm_lock_kind == "mcs" and old.pm_lock_kind is None
    assert (
        get_design("new_sync_shootdown").shootdown_mode == "sync" and new.shootdown_mode == "async"
    )
    assert get_design("old_remove_contig").punch_hole_fn == "pm_remove_contig"
    own = {n for n, v in vars(get_design("new_batched_wb")).items() if callable(v)}
    assert own == {"queue_writeback", "flush_queued_writebacks", "pm_writeback_pages"}


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
