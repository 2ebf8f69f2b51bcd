"""The cost table: defaults, ranges, overrides, unit conversion, and docs/costs.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmsim.costs import TIME_UNITS, CostTable, cost_params, markdown_table, parse_assignment
from pmsim.errors import ConfigError
from pmsim.units import NS_PER

PARAMS = cost_params()
INPUTS = [n for n, p in PARAMS.items() if p.role == "input"]
REFERENCES = [n for n, p in PARAMS.items() if p.role == "reference"]
TIME_PARAMS = [n for n in INPUTS if PARAMS[n].unit in TIME_UNITS]
DOCS = Path(__file__).resolve().parent.parent / "docs" / "costs.md"


def test_table_is_well_formed():
    assert len(PARAMS) >= 40
    assert REFERENCES and INPUTS
    groups = {"atomics", "locks", "rcu", "tlb", "memory", "pagecache", "io", "machine"}
    units = {"ns", "us", "ms", "cycles", "GHz", "pages", "count", "ratio"}
    for name, p in PARAMS.items():
        assert p.name == name
        assert p.group in groups, name
        assert p.unit in units, name
        assert p.role in ("input", "reference"), name
        assert p.source.strip() and p.doc.strip(), name
        if p.unit in TIME_UNITS or p.unit == "cycles":
            assert f"_{p.unit}" in name + "_", f"{name} should name its unit _{p.unit}"


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_default_within_range(name):
    p = PARAMS[name]
    lo, hi = p.range
    assert lo <= hi
    assert lo <= p.default <= hi, f"{name}: default {p.default} outside [{lo}, {hi}]"
    assert p.default >= 0


def test_defaults_in_ns():
    c = CostTable()
    ghz = PARAMS["cpu_clock_ghz"].default
    for name in INPUTS:
        p = PARAMS[name]
        assert c.value(name) == p.default
        if p.unit in TIME_UNITS:
            assert c.ns(name) == pytest.approx(p.default * NS_PER[p.unit])
        elif p.unit == "cycles":
            assert c.ns(name) == pytest.approx(p.default / ghz)
    assert c.ns("qlock_sleep_wake_us") == 5000.0
    assert c.ns("rcu_gp_min_period_ms") == 25e6
    assert c.ns("ipi_receive_cycles") == pytest.approx(1212 / 2.4)
    assert c.overridden() == {}


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ConfigError) as ei:
        CostTable({"qlock_sleep_wake_ns": 1})
    msg = str(ei.value)
    assert "'qlock_sleep_wake_ns'" in msg
    assert "did you mean 'qlock_sleep_wake_us'" in msg
    with pytest.raises(ConfigError, match="did you mean 'ipi_send_ns'"):
        CostTable({"ipi_sned_ns": 1})


def test_unknown_name_without_a_close_match():
    with pytest.raises(ConfigError) as ei:
        CostTable({"zzzzzzzz": 1})
    assert "'zzzzzzzz'" in str(ei.value)
    assert "did you mean" not in str(ei.value)


@pytest.mark.parametrize(
    "raw", [-1, -0.001, "-1", "-1us", float("nan"), float("inf"), "inf", "nan", "1e999"]
)
def test_negative_or_non_finite_rejected(raw):
    with pytest.raises(ConfigError) as ei:
        CostTable({"qlock_sleep_wake_us": raw})
    assert "qlock_sleep_wake_us" in str(ei.value)
    assert repr(raw) in str(ei.value)


@given(st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False))
def test_any_negative_rejected(x):
    for name in ("ipi_send_ns", "rcu_gp_min_period_ms", "ipi_receive_cycles", "hdd_latency_sigma"):
        with pytest.raises(ConfigError, match=name):
            CostTable({name: x})


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_parameters_cannot_be_overridden(name):
    with pytest.raises(ConfigError) as ei:
        CostTable({name: PARAMS[name].default})
    assert repr(name) in str(ei.value)
    assert "reference" in str(ei.value)


@pytest.mark.parametrize(
    "name, raw, value, ns",
    [
        ("qlock_sleep_wake_us", "3us", 3.0, 3000.0),
        ("qlock_sleep_wake_us", "500ns", 0.5, 500.0),
        ("qlock_sleep_wake_us", "3µs", 3.0, 3000.0),
        ("qlock_sleep_wake_us", "0.01ms", 10.0, 10000.0),
        ("qlock_sleep_wake_us", 3, 3.0, 3000.0),
        ("qlock_sleep_wake_us", "3", 3.0, 3000.0),
        ("ipi_send_ns", "2us", 2000.0, 2000.0),
        ("ipi_send_ns", " 250ns ", 250.0, 250.0),
        ("rcu_gp_min_period_ms", "500us", 0.5, 5e5),
        ("rcu_gp_min_period_ms", "1s", 1000.0, 1e9),
        ("hdd_read_4k_ms", "1e3us", 1.0, 1e6),
    ],
)
def test_time_strings_accepted_for_time_params(name, raw, value, ns):
    c = CostTable({name: raw})
    assert c.value(name) == pytest.approx(value)
    assert c.ns(name) == pytest.approx(ns)
    assert c.overridden() == {name: pytest.approx(value)}


@given(
    name=st.sampled_from(TIME_PARAMS),
    x=st.floats(0, 1e6),
    unit=st.sampled_from(["ns", "us", "ms", "s"]),
)
def test_any_duration_string_sets_the_same_ns(name, x, unit):
    c = CostTable({name: f"{x!r}{unit}"})
    assert c.ns(name) == pytest.approx(x * NS_PER[unit], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    "name, raw",
    [
        ("rcu_cb_thresh", "3us"),
        ("hdd_latency_sigma", "1ms"),
        ("cpu_clock_ghz", "3GHz"),
        ("qlock_sleep_wake_us", "3 parsecs"),
        ("ipi_send_ns", None),
        ("ipi_send_ns", [1]),
        ("ipi_send_ns", "fast"),
    ],
)
def test_non_numbers_rejected(name, raw):
    with pytest.raises(ConfigError) as ei:
        CostTable({name: raw})
    assert name in str(ei.value)
    assert repr(raw) in str(ei.value)


def test_counts_must_be_whole():
    assert CostTable({"rcu_cb_thresh": 4}).value("rcu_cb_thresh") == 4
    assert CostTable({"rcu_cb_thresh": "4"}).value("rcu_cb_thresh") == 4
    with pytest.raises(ConfigError, match="rcu_cb_thresh.*whole"):
        CostTable({"rcu_cb_thresh": 2.5})


@pytest.mark.parametrize("ghz", [1.0, 2.0, 2.4, 3.5])
def test_cycles_converted_with_cpu_clock(ghz):
    c = CostTable({"cpu_clock_ghz": ghz, "ipi_receive_cycles": 1200})
    assert c.ns("ipi_receive_cycles") == pytest.approx(1200 / ghz)
    assert c.value("ipi_receive_cycles") == 1200
    # Clock rate changes no time-valued parameter.
    assert c.ns("ipi_send_ns") == CostTable().ns("ipi_send_ns")


def test_default_cycles_follow_an_overridden_clock():
    assert CostTable({"cpu_clock_ghz": 1.212}).ns("ipi_receive_cycles") == pytest.approx(1000.0)


def test_zero_clock_rejected():
    with pytest.raises(ConfigError, match="cpu_clock_ghz"):
        CostTable({"cpu_clock_ghz": 0})


def test_table_is_independent_of_other_tables():
    a = CostTable({"ipi_send_ns": 1})
    b = CostTable()
    assert a.ns("ipi_send_ns") == 1 and b.ns("ipi_send_ns") == 300
    d = a.as_dict()
    d["ipi_send_ns"] = 7
    assert a.value("ipi_send_ns") == 1


def test_parse_assignment():
    assert parse_assignment("qlock_sleep_wake_us=3us") == ("qlock_sleep_wake_us", "3us")
    assert parse_assignment(" a = 1 ") == ("a", "1")
    for bad in ("noequals", "=3", " =3"):
        with pytest.raises(ConfigError) as ei:
            parse_assignment(bad)
        assert repr(bad) in str(ei.value)


def test_markdown_table_lists_every_parameter():
    md = markdown_table()
    for name in PARAMS:
        assert f"| `{name}` |" in md
    for group in {p.group for p in PARAMS.values()}:
        assert f"## {group}" in md


def test_docs_costs_md_is_generated_from_the_table():
    """docs/costs.md must be regenerated (``pmsim costs --markdown``) whenever costs.yaml changes."""
    assert DOCS.exists(), "docs/costs.md is missing"
    assert DOCS.read_text(encoding="utf-8") == markdown_table()


def test_overrides_the_model_never_read_are_refused():
    t = CostTable({"cas_remote_ns": 90, "ipi_send_ns": 250})
    t.ns("cas_remote_ns")
    with pytest.raises(ConfigError, match="ipi_send_ns"):
        t.check_all_read({"cas_remote_ns": 90, "ipi_send_ns": 250}, "this run")
    t.ns("ipi_send_ns")
    t.check_all_read({"cas_remote_ns": 90, "ipi_send_ns": 250}, "this run")


def test_reading_a_cycles_cost_reads_the_clock():
    t = CostTable({"cpu_clock_ghz": 3.0})
    t.ns("ipi_receive_cycles")
    t.check_all_read({"cpu_clock_ghz": 3.0}, "this run")
