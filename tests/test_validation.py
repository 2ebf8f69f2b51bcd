"""The validation checks as seeded statistical tests (tolerance: the run's own 99.9% CI)."""

import pytest

from pmsim import validate


@pytest.mark.parametrize("check", validate.CHECKS, ids=lambda c: c.__name__)
def test_validation_check_passes(check):
    rows = check(quick=True)
    assert rows, "a check must produce rows"
    misses = [r for r in rows if not r.passed]
    assert not misses, validate.format_rows(misses)


def test_intervals_are_informative():
    """A CI so wide that anything passes would make the checks empty: bound it."""
    rows = validate.check_repairman(quick=True)
    for r in rows:
        assert r.halfwidth < 0.1 * r.exact + 0.05, r


def test_validation_detects_a_wrong_model(monkeypatch):
    """Break the model (hold every lock 30% longer than asked) and the checks must miss."""
    from pmsim import lockbench

    real = lockbench.run_lockbench

    def skewed(spec):
        spec.hold = lockbench.Distribution(
            spec.hold.kind,
            tuple(p * 1.3 for p in spec.hold.params[:1]) + spec.hold.params[1:],
            spec.hold.text,
        )
        return real(spec)

    monkeypatch.setattr(validate, "run_lockbench", skewed)
    rows = validate.check_repairman(quick=True)
    assert any(not r.passed for r in rows)


def test_ticket_rows_show_the_bw_chain_beside_the_exact_solution():
    rows = validate.check_ticket(quick=True)
    assert all("BW chain" in r.note for r in rows)
