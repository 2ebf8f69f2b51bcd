"""pmsim sensitivity: the cost space, the verdict intervals, the CLI contract (``--json``:
``ranking`` and ``verdicts`` with ``name``, ``share``, ``ci95_low``, ``ci95_high``), bad input,
resuming, and the robustness studies file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from pmsim.cli import main
from pmsim.sensitivity import analysis
from pmsim.sensitivity.robustness import is_studies_file, load_studies
from pmsim.sensitivity.space import LOG_SPAN, cost_space, dimension

TINY = [
    "--set",
    "machine.cores=2",
    "--set",
    "processes.0.count=2",
    "--set",
    "duration=0.2ms",
    "--set",
    "warmup=0.05ms",
]


def test_space_log_where_wide_and_derived_follow_bases():
    k = dimension("kthread_switch_ns")  # 50-2000: log
    assert k.log and 2000 / 50 > LOG_SPAN
    assert k.value(0) == 50 and k.value(1) == 2000
    assert k.value(0.5) == pytest.approx(math.sqrt(50 * 2000), rel=1e-5)
    assert k.position(k.value(0.3)) == pytest.approx(0.3, abs=1e-5)
    c = dimension("cacheline_transfer_ns")  # 30-140: 4.7x, log
    assert c.log
    t = dimension("ttas_handoff_factor")  # 0.5-1: linear
    assert not t.log and t.value(0.5) == pytest.approx(0.75)
    r = dimension("rcu_read_section_ns")  # 0-4: spans > 3x but includes 0: linear
    assert not r.log
    dims, skipped = cost_space(
        {"cacheline_transfer_ns", "cas_remote_ns", "radix_fanout", "syscall_entry_exit_ns"},
        {"syscall_entry_exit_ns"},
    )
    assert [d.name for d in dims] == ["cacheline_transfer_ns"]
    assert "derived" in skipped["cas_remote_ns"] and "--set" in skipped["syscall_entry_exit_ns"]
    assert "whole number" in skipped["radix_fanout"]


def test_wilson_interval_covers_at_its_level():
    """Over 2,000 seeded binomial draws the Wilson 95% interval covers p at least 92% of the
    time (its coverage at n = 32 is close to 95%), and it is exact at 0 and n."""
    rng = np.random.default_rng(5)
    for p in (0.1, 0.5, 0.9):
        ks = rng.binomial(32, p, 2000)
        cover = np.mean([lo <= p <= hi for lo, hi in (analysis.wilson(int(k), 32) for k in ks)])
        assert cover >= 0.92
    assert analysis.wilson(0, 10)[0] == 0 and analysis.wilson(10, 10)[1] == 1
    lo, hi = analysis.wilson(10, 10)
    assert 0.6 < lo < 0.75


def test_sobol_ranks_a_known_function():
    """y = 4 x0 + x1 (x2 inert): ST ranks x0 first, x2 last, near zero."""
    from pmsim.sensitivity.space import Dimension

    dims = [Dimension(n, 0.0, 1.0, False, 0.5) for n in ("x0", "x1", "x2")]
    x = analysis.sobol_sample(dims, 64, seed=3)
    y = 4 * x[:, 0] + x[:, 1]
    idx = analysis.sobol_indices(dims, y, seed=3)
    assert idx["x0"]["ST"] > idx["x1"]["ST"] > idx["x2"]["ST"]
    assert idx["x0"]["ST"] == pytest.approx(16 / 17, abs=0.15)
    assert abs(idx["x2"]["ST"]) < 0.05
    m = analysis.morris_indices(
        dims, xm := analysis.morris_sample(dims, 4, 3), 4 * xm[:, 0] + xm[:, 1], 3
    )
    assert analysis.screened([m], keep=6) == ["x0", "x1"]


def _fix_all_but(workload: str, keep: set) -> list[str]:
    """``--set`` arguments fixing every cost the designs read except ``keep`` at its default:
    fewer costs, fewer runs (the Morris stage is ``samples (k + 1)`` points)."""
    from pmsim.sensitivity.study import base_spec, parse_sets
    from pmsim.sweeps.reads import probe

    spec = base_spec(workload, parse_sets(TINY[1::2]))
    dims, _ = cost_space(probe("old", spec) | probe("new", spec), set())
    return [a for d in dims if d.name not in keep for a in ("--set", f"{d.name}={d.default}")]


def test_cli_contract_json(tmp_path, capsys):
    out = tmp_path / "s"
    vary = {"cacheline_transfer_ns", "ttas_handoff_factor", "page_copy_4k_ns"}
    vary |= {"syscall_entry_exit_ns", "rcu_read_section_ns", "radix_lookup_ns_per_level"}
    args = ["sensitivity", "read_hits_procs", "--designs", "old", "new", *TINY]
    args += _fix_all_but("read_hits_procs", vary)
    args += ["--samples", "2", "--out", str(out), "--workers", "2", "--json"]
    assert main(args) == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj["ranking"]) == {"old", "new"}
    for metrics in obj["ranking"].values():
        assert "total_ops_per_s" in metrics
        assert all(isinstance(n, str) for names in metrics.values() for n in names)
    names = [v["name"] for v in obj["verdicts"]]
    assert "new faster than old (throughput)" in names
    for v in obj["verdicts"]:
        assert {"name", "share", "ci95_low", "ci95_high"} <= set(v)
        assert 0 <= v["ci95_low"] <= v["share"] <= v["ci95_high"] <= 1
    assert (out / "sensitivity.json").is_file() and (out / "indices.parquet").is_file()
    assert (out / "figures" / "tornado-old.png").is_file()
    assert list((out / "figures").glob("verdict_map-*.png"))
    # Resuming: every run is already written, the same answer comes back.
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == obj


@pytest.mark.parametrize(
    "args, named",
    [
        (["--designs", "old", "nope"], ["--designs", "'nope'"]),
        (["--designs", "old", "new", "--set", "machine.cores=lots"], ["machine.cores", "lots"]),
        (["--designs", "old", "new", "--samples", "1"], ["--samples", "1"]),
        (["--designs", "old", "new", "--set", "machine.cores"], ["--set", "machine.cores"]),
        ([], ["--designs"]),
    ],
)
def test_bad_input_is_one_line_exit_2(args, named, tmp_path, capsys):
    code = main(["sensitivity", "read_hits_procs", *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert all(n in err for n in named), err


def test_robustness_file_is_a_studies_file():
    assert is_studies_file("robustness") and not is_studies_file("read_hits")
    raw, _ = load_studies("robustness")
    names = {s["workload"] for s in raw["studies"]}
    assert {"read_hits_procs", "hot_page_procs"} <= names
    assert raw["out"] == "results/robustness"


def test_sweep_of_the_studies_file_points_to_sensitivity(capsys):
    assert main(["sweep", "robustness", "--out", "/nonexistent/x"]) == 2
    assert "pmsim sensitivity robustness" in capsys.readouterr().err


def test_serial_and_pool_give_the_same_study(tmp_path):
    """The study runs through the sweep engine: in this process or on a pool, the same
    indices and verdicts (every run a pure function of its spec and seed). All but five costs
    fixed at their defaults (``--set``), to keep it short."""
    from pmsim.sensitivity.study import base_spec, parse_sets, run_study
    from pmsim.sweeps.reads import probe

    sets = parse_sets(TINY[1::2])
    spec = base_spec("hot_page_procs", sets)
    dims, _ = cost_space(probe("old", spec) | probe("new", spec), set())
    keep = {"cacheline_transfer_ns", "contended_atomic_per_contender_ns", "kthread_switch_ns"}
    keep |= {"syscall_entry_exit_ns", "ttas_handoff_factor"}
    sets.update({d.name: d.default for d in dims if d.name not in keep})
    a = run_study(
        "hot_page_procs", ["old", "new"], sets, 2, tmp_path / "a", workers=1, progress=False
    )
    b = run_study(
        "hot_page_procs", ["old", "new"], sets, 2, tmp_path / "b", workers=2, progress=False
    )
    assert {c["name"] for c in a["costs"]} == keep
    for key in ("ranking", "verdicts", "indices", "screened"):
        assert json.dumps(a[key], sort_keys=True) == json.dumps(b[key], sort_keys=True)
    # Resuming (as after a kill: the engine's own kill tests cover the sweeps): half the Morris
    # runs and the whole Sobol stage gone, the same command completes to the same answer.
    import shutil

    done = sorted((tmp_path / "a" / "morris" / "runs" / "summary").glob("*.parquet"))
    for f in done[::2]:
        f.unlink()
    shutil.rmtree(tmp_path / "a" / "sobol")
    (tmp_path / "a" / "sensitivity.json").unlink()
    again = run_study(
        "hot_page_procs", ["old", "new"], sets, 2, tmp_path / "a", workers=1, progress=False
    )
    for key in ("ranking", "verdicts", "indices", "screened"):
        assert json.dumps(again[key], sort_keys=True) == json.dumps(a[key], sort_keys=True)


def test_verdicts_on_synthetic_outputs():
    """Throughput, p99 and hazard-count verdicts over known outputs: shares and intervals, and
    the hinge is the cost that moves the thresholded quantity."""
    from pmsim.sensitivity.space import Dimension
    from pmsim.sensitivity.study import _verdicts

    dims = [Dimension(n, 1.0, 2.0, False, 1.5) for n in ("a", "b", "c")]
    n = 16
    x = analysis.sobol_sample(dims, n, seed=2)
    ys = {
        "old|total_ops_per_s": np.full(len(x), 1.0),
        "new|total_ops_per_s": 0.75 + 0.5 * x[:, 1],  # faster where b > 0.5: half the space
        "old|ops.read.latency_us.p99": np.full(len(x), 10.0),
        "new|ops.read.latency_us.p99": np.full(len(x), 5.0),  # always lower
        "new|hazards.stale_tlb.count": np.where(x[:, 2] > 0.75, 3.0, 0.0),  # free in 3/4
    }
    outputs = {k: tuple(k.split("|")) for k in ys}
    got = {v["name"]: v for v in _verdicts(["old", "new"], outputs, ys, dims, x, n, 2)}
    fast = got["new faster than old (throughput)"]
    assert fast["samples"] == 2 * n and abs(fast["share"] - 0.5) <= 0.2
    assert fast["ci95_low"] < 0.5 < fast["ci95_high"] and fast["hinges"][0] == "b"
    p99 = got["new p99 below old's (read)"]
    assert p99["share"] == 1.0 and p99["ci95_high"] == 1.0 and p99["ci95_low"] > 0.85
    hz = got["new free of stale_tlb hazards"]
    assert abs(hz["share"] - 0.75) <= 0.2 and hz["hinges"][0] == "c"
    # a quantity no cost moves hinges on nothing (p99 is 5 below old's everywhere)
    assert p99["hinges"] == []
