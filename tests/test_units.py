"""Durations and distributions: parse_time, format_time, parse_dist."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pmsim.errors import ConfigError
from pmsim.units import NS_PER, Distribution, format_time, parse_dist, parse_time

UNITS = ["ns", "us", "µs", "ms", "s"]


# --------------------------------------------------------------------------- parse_time
@pytest.mark.parametrize(
    "text, ns",
    [
        ("400ns", 400.0),
        ("2us", 2000.0),
        ("2µs", 2000.0),
        ("1.5ms", 1.5e6),
        ("1s", 1e9),
        ("1e3ns", 1000.0),
        (".5us", 500.0),
        ("0ns", 0.0),
        ("  13.5ms ", 13.5e6),
        ("2 us", 2000.0),
        ("1E-3s", 1e6),
        ("2.5e+2ns", 250.0),
    ],
)
def test_parse_time_examples(text, ns):
    assert parse_time(text) == pytest.approx(ns, rel=1e-15, abs=0)


finite_nonneg = st.floats(min_value=0.0, max_value=1e290, allow_nan=False, allow_infinity=False)


@given(
    x=finite_nonneg,
    unit=st.sampled_from(UNITS),
    fmt=st.sampled_from(["{!r}", "{:.17g}", "{:e}", "{:f}"]),
)
def test_parse_time_round_trips(x, unit, fmt):
    text = fmt.format(x) + unit
    got = parse_time(text)
    assert math.isfinite(got)
    assert got == pytest.approx(float(fmt.format(x)) * NS_PER[unit], rel=1e-12, abs=0)
    if fmt in ("{!r}", "{:.17g}"):  # exact decimal representations of x
        assert got == pytest.approx(x * NS_PER[unit], rel=1e-12, abs=0)


def _assert_config_error_naming(value, fn=parse_time):
    with pytest.raises(ConfigError) as ei:
        fn(value)
    assert repr(value) in str(ei.value)


# A reference grammar written independently of the implementation's regex.
_NUMBER = re.compile(r"(?:\d+|\d*\.\d+)(?:[eE][+-]?\d+)?")


def _well_formed(text: str) -> bool:
    s = text.strip()
    for unit in sorted(UNITS, key=len, reverse=True):
        if s.endswith(unit):
            num = s[: -len(unit)].rstrip()
            return bool(num) and num.isascii() and _NUMBER.fullmatch(num) is not None
    return False


@given(st.text(max_size=30))
def test_parse_time_garbage_is_rejected_or_well_formed(text):
    try:
        value = parse_time(text)
    except ConfigError as e:
        assert repr(text) in str(e)
        # The rejection is justified: ill-formed, or too large to be finite.
        if _well_formed(text):
            assert "not finite" in str(e)
        return
    assert _well_formed(text), f"accepted ill-formed {text!r}"
    assert math.isfinite(value) and value >= 0


@given(st.text(alphabet="0123456789.eE+- nsumµabcxyz:", max_size=12))
def test_parse_time_near_miss_texts(text):
    try:
        value = parse_time(text)
    except ConfigError as e:
        assert repr(text) in str(e)
        return
    assert _well_formed(text)
    assert value >= 0


@given(x=st.floats(min_value=1e-300, max_value=1e200, allow_nan=False), unit=st.sampled_from(UNITS))
def test_parse_time_rejects_negative(x, unit):
    _assert_config_error_naming(f"-{x!r}{unit}")
    with pytest.raises(ConfigError, match="is negative"):  # it once said "malformed"
        parse_time(f"-{x!r}{unit}")


@given(x=finite_nonneg)
def test_parse_time_rejects_missing_unit(x):
    _assert_config_error_naming(repr(x))


@given(
    x=finite_nonneg, unit=st.text(alphabet="abcdefghijklmnopqrstuvwxyzAB", min_size=1, max_size=4)
)
def test_parse_time_rejects_unknown_unit(x, unit):
    assume(unit not in UNITS)
    _assert_config_error_naming(f"{x!r}{unit}")


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.floats(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.binary(max_size=4),
    )
)
def test_parse_time_rejects_non_strings(value):
    _assert_config_error_naming(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ns",
        "1",
        "1 ms s",
        "1.2.3ns",
        "1 000ns",
        "1e999s",
        "inf ns",
        "nanms",
        "-0ns",
        "5 NS",
        "1,5ms",
        "2usx",
    ],
)
def test_parse_time_rejects_examples(text):
    _assert_config_error_naming(text)


def test_parse_time_error_names_the_setting():
    with pytest.raises(ConfigError, match=r"^cost foo_us: malformed duration 'oops'"):
        parse_time("oops", "cost foo_us")


# --------------------------------------------------------------------------- format_time
@pytest.mark.parametrize(
    "ns, text",
    [
        (0, "0ns"),
        (400, "400ns"),
        (999, "999ns"),
        (1000, "1us"),
        (1500, "1.5us"),
        (2.5e6, "2.5ms"),
        (13.5e6, "13.5ms"),
        (1e9, "1s"),
        (3.25e9, "3.25s"),
        (0.5, "0.5ns"),
    ],
)
def test_format_time_examples(ns, text):
    assert format_time(ns) == text


@given(st.floats(min_value=0, max_value=1e200, allow_nan=False))
def test_format_time_round_trips(ns):
    text = format_time(ns)
    assert parse_time(text) == pytest.approx(ns, rel=1e-5, abs=1e-300)


# --------------------------------------------------------------------------- parse_dist
@pytest.mark.parametrize(
    "text, kind, params, mean, scv",
    [
        ("const:400ns", "const", (400.0,), 400.0, 0.0),
        ("exp:2us", "exp", (2000.0,), 2000.0, 1.0),
        ("uniform:1us:3us", "uniform", (1000.0, 3000.0), 2000.0, 1 / 12),
        ("uniform:0ns:4us", "uniform", (0.0, 4000.0), 2000.0, 1 / 3),
        ("uniform:2us:2us", "uniform", (2000.0, 2000.0), 2000.0, 0.0),
        ("lognormal:2us:0.5", "lognormal", (2000.0, 0.5), 2000.0, math.expm1(0.25)),
        ("lognormal:1ms:0", "lognormal", (1e6, 0.0), 1e6, 0.0),
        (" exp:1.5ms ", "exp", (1.5e6,), 1.5e6, 1.0),
        ("exp:0ns", "exp", (0.0,), 0.0, 0.0),
    ],
)
def test_parse_dist_examples(text, kind, params, mean, scv):
    d = parse_dist(text)
    assert d.kind == kind
    assert d.params == pytest.approx(params)
    assert d.mean == pytest.approx(mean)
    assert d.scv == pytest.approx(scv)
    assert str(d) == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "const:400ns",
        "exp:2us",
        "uniform:1us:3us",
        "lognormal:2us:0.5",
        "lognormal:50us:1.0",
        "uniform:0ns:10ns",
    ],
)
def test_parse_dist_sample_mean_and_variance(text):
    d = parse_dist(text)
    n = 200_000
    x = d.sample(np.random.default_rng(12345), n)
    assert x.shape == (n,)
    assert (x >= 0).all()
    sd = math.sqrt(d.scv) * d.mean
    # 5 standard errors: fails by chance with probability < 1e-6 (the seed makes it fixed anyway).
    assert abs(x.mean() - d.mean) <= 5 * sd / math.sqrt(n) + 1e-9 * d.mean
    if d.kind != "lognormal":  # lognormal's sample variance converges too slowly for a tight check
        assert x.var() / d.mean**2 == pytest.approx(d.scv, rel=0.05, abs=1e-12)


def test_sampler_draws_the_same_numbers_as_sample():
    d = parse_dist("exp:3us")
    s = d.sampler(np.random.default_rng(7))
    drawn = [s() for _ in range(5000)]
    ref = d.sample(np.random.default_rng(7), 4096)
    assert drawn[:4096] == ref.tolist()
    assert parse_dist("const:5us").sampler(np.random.default_rng(0))() == 5000.0


dist_time = st.floats(min_value=0, max_value=1e12, allow_nan=False).map(lambda x: f"{x!r}ns")


@given(
    st.one_of(
        st.tuples(st.just("const"), dist_time),
        st.tuples(st.just("exp"), dist_time),
        st.tuples(st.just("uniform"), dist_time, dist_time),
        st.tuples(st.just("lognormal"), dist_time, st.floats(0, 3).map(repr)),
    )
)
def test_parse_dist_valid_grammar(parts):
    kind = parts[0]
    text = ":".join(parts)
    if kind == "uniform" and parse_time(parts[1]) > parse_time(parts[2]):
        _assert_config_error_naming(text, parse_dist)
        return
    d = parse_dist(text)
    assert d.kind == kind
    assert d.mean >= 0 and d.scv >= 0
    if kind == "uniform":
        lo, hi = parse_time(parts[1]), parse_time(parts[2])
        assert d.mean == pytest.approx((lo + hi) / 2)
    else:
        assert d.mean == pytest.approx(parse_time(parts[1]))


@pytest.mark.parametrize(
    "text",
    [
        "exp:1us:2us",  # wrong arity
        "const:",
        "const",
        "uniform:1us",
        "uniform:1us:2us:3us",
        "lognormal:2us",
        "gamma:1us:2",  # unknown kind
        "Exp:2us",
        "normal:2us",
        "uniform:3us:1us",  # lo > hi
        "exp:fast",  # bad duration
        "exp:-1us",
        "lognormal:2us:wide",  # bad shape
        "lognormal:2us:-0.5",
        "lognormal:2us:nan",
        "lognormal:2us:inf",
        "",
        ":",
        "2us",
    ],
)
def test_parse_dist_rejects(text):
    _assert_config_error_naming(text, parse_dist)


@given(st.text(max_size=25))
def test_parse_dist_garbage(text):
    try:
        d = parse_dist(text)
    except ConfigError as e:
        assert repr(text) in str(e)
        return
    assert isinstance(d, Distribution)
    assert d.kind in ("const", "exp", "uniform", "lognormal")
    assert d.mean >= 0


@given(st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans()))
def test_parse_dist_rejects_non_strings(value):
    _assert_config_error_naming(value, parse_dist)


@settings(max_examples=50)
@given(
    lo=st.floats(0, 1e9).filter(lambda x: x == 0 or x > 1e-200),
    width=st.floats(0, 1e9).filter(lambda x: x == 0 or x > 1e-200),
)
def test_uniform_scv_formula(lo, width):
    d = parse_dist(f"uniform:{lo!r}ns:{lo + width!r}ns")
    m = d.mean
    lo_, hi_ = d.params
    expected = (
        0.0 if m == 0 else ((hi_ - lo_) / (hi_ + lo_)) ** 2 / 3
    )  # Var = w^2/12, mean = (lo+hi)/2
    assert d.scv == pytest.approx(expected)
    assert d.scv <= 1 / 3 + 1e-12  # uniform is never more variable than U(0, 2m)
