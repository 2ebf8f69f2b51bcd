"""Steady state: MSER truncation on scripted series with known answers, and daemon passes."""

from __future__ import annotations

import numpy as np

from pmsim.workload.steady import mser_truncation, steadiness


def test_a_constant_series_needs_no_truncation():
    assert mser_truncation([7.0] * 40, batch=1) == 0
    assert steadiness([7.0] * 40, None) == {
        "mser_truncation_ms": 0.0,
        "mser_batch_ms": 1,
        "unsteady": 0,
    }


def test_a_transient_is_cut_where_it_ends():
    """10 ms ramping up from 0, then 50 ms flat with small seeded noise: MSER cuts the ramp."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(0, 90, 10), 100 + rng.normal(0, 1, 50)])
    d = mser_truncation(x, batch=1)
    assert 8 <= d <= 12
    assert steadiness(x, None)["unsteady"] == 0
    assert steadiness(x, None)["mser_batch_ms"] == 5  # 60 ms: MSER-5
    assert 5 <= mser_truncation(x, batch=5) <= 10


def test_a_series_still_climbing_is_unsteady():
    x = np.linspace(0, 100, 40)  # never settles: the best cut is the last allowed
    assert steadiness(x, None)["unsteady"] == 1


def test_too_short_to_tell_is_unsteady():
    assert mser_truncation([1.0] * 9, batch=1) is None
    assert steadiness([1.0] * 9, None)["unsteady"] == 1


def test_fewer_than_three_daemon_passes_is_unsteady():
    flat = [5.0] * 30
    assert steadiness(flat, 2) == {
        "mser_truncation_ms": 0.0,
        "mser_batch_ms": 1,
        "daemon_passes": 2,
        "unsteady": 1,
    }
    assert steadiness(flat, 3)["unsteady"] == 0
