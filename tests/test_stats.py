"""Streaming histograms and confidence intervals (pmsim/stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmsim.stats import (
    Histogram,
    censored_quantile,
    histogram_of,
    joint_buckets,
    km_cdf,
    mean_ci,
    ratio_ci,
    t_quantile,
)

REL = 2 ** (1 / 64) - 1  # one bucket's relative width


def filled(values) -> Histogram:
    h = Histogram()
    for v in values:
        h.add(float(v))
    return h


def test_summaries_are_right_before_any_fold():
    """count, total, min and max include samples still in the buffer."""
    h = filled([5.0, 2.0, 9.0])
    assert (h.count, h.total, h.min, h.max) == (3, 16.0, 2.0, 9.0)


def test_mean_std_and_extremes_are_exact_across_folds():
    rng = np.random.default_rng(7)
    x = rng.exponential(1000.0, 100_000)  # more than one 32 k fold
    h = filled(x)
    assert h.count == x.size
    assert h.mean() == pytest.approx(x.mean(), rel=1e-12)
    assert h.std() == pytest.approx(x.std(ddof=1), rel=1e-9)
    assert (h.min, h.max, h.quantile(1.0)) == (x.min(), x.max(), x.max())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e9, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.9, 0.99, 0.999]),
)
def test_quantiles_are_within_one_bucket_of_an_order_statistic(xs, q):
    """The q-quantile lies within one bucket (0.55%) of the order statistic at rank ceil(q n)."""
    h = filled(xs)
    exact = sorted(xs)[max(0, math.ceil(q * len(xs)) - 1)]
    got = h.quantile(q)
    assert abs(got - exact) <= REL * (exact + 1.0) + 1e-9


def test_merge_equals_one_histogram_of_everything():
    rng = np.random.default_rng(3)
    a, b = rng.lognormal(5, 1, 5000), rng.lognormal(7, 0.5, 7000)
    ha, hb, hall = filled(a), filled(b), filled(np.concatenate([a, b]))
    ha.merge(hb)
    assert ha.count == hall.count and ha.mean() == pytest.approx(hall.mean(), rel=1e-12)
    for q in (0.1, 0.5, 0.99):
        assert ha.quantile(q) == hall.quantile(q)


def test_add_many_equals_adding_one_by_one():
    xs = np.random.default_rng(3).exponential(500.0, 100_000).tolist()
    one, many = Histogram(), Histogram()
    for x in xs:
        one.add(x)
    for i in range(0, len(xs), 4096):
        many.add_many(xs[i : i + 4096])
    assert many.count == one.count == len(xs)
    assert many.mean() == pytest.approx(one.mean(), rel=1e-12) and many.max == one.max
    assert [many.quantile(q) for q in (0.5, 0.99, 0.999)] == [
        one.quantile(q) for q in (0.5, 0.99, 0.999)
    ]
    assert len(many._buf) < 1 << 15  # folded as it grows


def test_memory_stays_bounded():
    """A million samples keep a bucket array sized by the value range, not the count."""
    h = filled(np.random.default_rng(1).exponential(1e4, 1_000_000))
    assert h._buckets.size < 64 * 40 and len(h._buf) < 1 << 15


def test_an_empty_histogram_reports_zeros():
    h = Histogram()
    assert (h.count, h.mean(), h.std(), h.quantile(0.99)) == (0, 0.0, 0.0, 0.0)


def test_t_quantile_matches_known_values():
    assert t_quantile(0.975, 29) == pytest.approx(2.045, abs=5e-4)
    assert t_quantile(0.975, 10**6) == pytest.approx(1.95996, abs=1e-4)


def test_mean_ci_covers_the_mean_at_its_level():
    """Of 400 samples of size 10 from N(3, 1), about 95% of the intervals contain 3."""
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(400):
        m, half = mean_ci(rng.normal(3.0, 1.0, 10))
        hits += abs(m - 3.0) <= half
    assert 0.92 <= hits / 400 <= 0.98  # binomial sd at p=0.95, n=400 is 0.011
    assert mean_ci([4.0])[1] == math.inf


def test_ratio_ci_is_the_ratio_of_sums_with_a_positive_width():
    r, half = ratio_ci([10, 20, 33], [1, 2, 3])
    assert r == pytest.approx(63 / 6) and 0 < half < r
    assert ratio_ci([1], [0]) == (0.0, math.inf)


# ------------------------------------------------ censored (still in progress) observations
def test_km_without_censoring_is_the_plain_quantile():
    rng = np.random.default_rng(11)
    h = filled(rng.lognormal(8, 1.5, 5000))
    for q in (0.5, 0.9, 0.99, 0.999, 1.0):
        assert censored_quantile(h, Histogram(), q) == (h.quantile(q), False)


def test_km_textbook_example():
    """Durations 1, 2, 3+, 4, 5 ms (3 ms still running at the end): S = 4/5 after 1, 3/5 after
    2, then 3/5 * 1/2 = 0.3 after 4 and 0 after 5 (the censored one leaves the risk set)."""
    done, cens = filled([1e6, 2e6, 4e6, 5e6]), filled([3e6])
    cdf = km_cdf(done, cens)
    at = {x: cdf[int(np.log2(x + 1.0) * 64)] for x in (1e6, 2e6, 3e6, 4e6, 5e6)}
    assert at[1e6] == pytest.approx(0.2) and at[2e6] == pytest.approx(0.4)
    assert at[3e6] == pytest.approx(0.4)  # nothing ends at 3 ms
    assert at[4e6] == pytest.approx(0.7) and at[5e6] == pytest.approx(1.0)
    for q, want in ((0.4, 2e6), (0.5, 4e6), (0.75, 5e6)):
        got, bound = censored_quantile(done, cens, q)
        assert not bound and abs(got - want) <= REL * want, q
    # the plain ECDF of the completions alone would say the median is 2 ms (2 of 4 done)
    assert done.quantile(0.5) == pytest.approx(2e6, rel=REL)


def test_a_stall_longer_than_the_run_makes_the_tail_a_lower_bound():
    """98 reads of 10 us and 2 stuck for 15 ms at the end: 2% censored beyond every completion,
    so p99 is at least 15 ms (a bound), p50 is 10 us (not), the max is 15 ms (a bound)."""
    done, cens = filled([10e3] * 98), filled([15e6, 14e6])
    p99, b99 = censored_quantile(done, cens, 0.99)
    assert (p99, b99) == (15e6, True)
    p50, b50 = censored_quantile(done, cens, 0.5)
    assert abs(p50 - 10e3) <= REL * 10e3 and not b50
    assert censored_quantile(done, cens, 1.0) == (15e6, True)
    # 1 stuck in 1000: p99 is reached among the completions, and is not a bound
    p99, b99 = censored_quantile(filled([10e3] * 999), filled([15e6]), 0.99)
    assert abs(p99 - 10e3) <= REL * 10e3 and not b99


def test_only_censored_observations():
    assert censored_quantile(Histogram(), filled([5.0, 7.0]), 0.5) == (7.0, True)


def test_joint_buckets_count_both_kinds():
    done, cens = filled([1.0, 100.0, 100.0]), histogram_of([100.0, 5000.0])
    upper, d, c = joint_buckets(done, cens, 16)
    assert d.sum() == 3 and c.sum() == 2 and upper[-1] == 5000.0
    assert list(c[d > 0]) == [0, 1]  # the censored 100 shares the completions' bucket
