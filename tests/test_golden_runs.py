"""Every preset on every design (and the lock kinds) gives the numbers of ``tests/data/golden_runs.json``,
bit for bit: a refactor of the engine, the designs or the kernel paths changes no simulated number.

A change meant to move numbers regenerates the fixture (``python tests/golden_runs.py --write``)
in the same commit and says which numbers moved and why.
"""

from __future__ import annotations

import json

import pytest
from golden_runs import FIXTURE, LOCKBENCH, cases, run_case, run_lockbench_case

WANT = json.loads(FIXTURE.read_text())
CASES = cases()


def test_the_fixture_covers_every_case_and_nothing_else():
    assert set(WANT) == set(CASES) | set(LOCKBENCH)


@pytest.mark.parametrize("case", sorted(CASES))
def test_run_is_bit_identical(case):
    got = run_case(*CASES[case])
    want = WANT[case]
    assert got["total_ops_per_s"] == want["total_ops_per_s"]
    assert got["ops"] == want["ops"]
    assert got["summary"] == want["summary"], "a summary number moved (headline numbers are equal)"
    assert got["tables"] == want["tables"], "a table moved (the summary is equal)"


@pytest.mark.parametrize("case", sorted(LOCKBENCH))
def test_lockbench_is_bit_identical(case):
    assert run_lockbench_case(LOCKBENCH[case]) == WANT[case]
