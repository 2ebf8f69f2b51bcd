"""Costs in experiments comparing designs: a cost one design reads is a valid factor; the design
that does not read it runs once and is reused across its values; a cost no design reads is
refused before anything runs (pmsim.sweeps.reads)."""

from __future__ import annotations

import pandas as pd
import pytest

import pmsim
from pmsim.cli import main
from pmsim.errors import ConfigError
from pmsim.sweeps.plan import plan_runs
from pmsim.sweeps.reads import check_unread, cost_name, probe
from pmsim.sweeps.spec import load_experiment
from pmsim.workload.load import load_spec

TINY = {"duration": "0.3ms", "warmup": "0.05ms", "machine.cores": 2, "processes.0.threads": 2}


def exp(**changes) -> dict:
    raw = {
        "name": "costs",
        "workload": "read_hits",
        "designs": ["old", "new"],
        "overrides": dict(TINY),
        "grid": {"rcu_read_section_ns": [0.3, 3.0]},  # RCU: only NEW reads it
        "replications": 2,
        "seed": 1,
    }
    raw.update(changes)
    return raw


def test_cost_names_of_keys():
    assert cost_name("rcu_read_section_ns") == "rcu_read_section_ns"
    assert cost_name("machine.costs.cas_remote_ns") == "cas_remote_ns"
    assert cost_name("machine.cores") is None and cost_name("duration") is None


def test_probe_reads_what_the_design_builds():
    spec = load_spec(
        "read_hits", ["machine.cores=2", "processes.0.threads=2", "duration=1ms", "warmup=0.1ms"]
    )
    old, new = probe("old", spec), probe("new", spec)
    assert "rcu_read_section_ns" in new and "rcu_read_section_ns" not in old
    assert "ttas_handoff_factor" in old  # the pm_lock spinlock's hand-off
    assert "spinlock_handoff_ns" not in old  # only the MCS variant's
    assert "spinlock_handoff_ns" in probe("old_mcs", spec)


def test_a_design_that_does_not_read_a_cost_factor_is_planned_once_and_reused():
    runs = plan_runs(load_experiment(exp()))
    old = [r for r in runs if r.design == "old"]
    new = [r for r in runs if r.design == "new"]
    assert all(r.unread == ("rcu_read_section_ns",) for r in old)
    assert all("rcu_read_section_ns" not in r.spec.machine.costs for r in old)
    assert all(r.unread == () and r.source is None for r in new)
    first = {r.replication: r.run_id for r in old if r.point["rcu_read_section_ns"] == 0.3}
    for r in old:
        if r.point["rcu_read_section_ns"] == 3.0:
            assert r.source == first[r.replication] and r.run_id != r.source
    # Cost factors do not enter the seed: each value's runs are paired with the reused one.
    seeds = {(r.design, r.point["rcu_read_section_ns"], r.replication): r.seed for r in runs}
    for rep in (0, 1):
        assert len({s for k, s in seeds.items() if k[2] == rep}) == 1
    assert seeds[("old", 0.3, 0)] != seeds[("old", 0.3, 1)]
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.notes["result_of"] for r in old} == set(first.values())


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"grid": {"spinlock_handoff_ns": [30, 140]}}, ["spinlock_handoff_ns", "[30, 140]"]),
        (
            {"grid": {}, "overrides": {**TINY, "machine.costs.gtfs_rpc_write_ms": 1}},
            ["machine.costs.gtfs_rpc_write_ms", "1"],
        ),
    ],
)
def test_a_cost_no_design_reads_is_refused_before_anything_runs(changes, named, tmp_path, capsys):
    with pytest.raises(ConfigError) as e:
        plan_runs(load_experiment(exp(**changes)))
    assert all(n in str(e.value) for n in named) and "old, new" in str(e.value)
    path = tmp_path / "e.yaml"
    import yaml

    path.write_text(yaml.safe_dump(exp(**changes)))
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not affect any run" in err and "Traceback" not in err
    assert not out.exists()


def test_the_same_cost_read_by_one_design_of_a_pair_passes():
    runs = plan_runs(
        load_experiment(exp(designs=["old_mcs", "new"], grid={"spinlock_handoff_ns": [30, 140]}))
    )
    assert {r.design for r in runs if r.unread} == {"new"}


def test_sweep_reuses_and_resumes(tmp_path):
    out = tmp_path / "s"
    res = pmsim.sweep(exp(), out, workers=1, progress=False)
    s = res.summary
    assert (s["status"] == "ok").all() and len(s) == 8
    old = s[s["design"] == "old"].sort_values(["replication", "rcu_read_section_ns"])
    # OLD's metrics are the same run's at both values (one run per replication, reused).
    for _, g in old.groupby("replication"):
        assert g["total_ops_per_s"].nunique() == 1 and g["result_of"].nunique() == 1
    assert set(old["unread_costs"]) == {"rcu_read_section_ns"}
    assert set(s.loc[s["design"] == "new", "unread_costs"]) == {""}
    agg = res.aggregate
    assert set(agg.loc[agg["design"] == "old", "unread_costs"]) == {"rcu_read_section_ns"}
    # Killed between the executed run's files and its reuser's: the rerun completes it.
    reuser = old[old["result_of"] != old["run_id"]].iloc[0]
    (out / "runs" / "summary" / f"{reuser['run_id']}.parquet").unlink()
    again = pmsim.sweep(exp(), out, workers=1, progress=False)
    pd.testing.assert_frame_equal(again.summary, s)


def test_a_wrong_probe_fails_the_run_instead_of_a_silent_number():
    check_unread("old", {"a"}, ("b",))
    with pytest.raises(RuntimeError, match="'b'"):
        check_unread("old", {"a", "b"}, ("b",))
