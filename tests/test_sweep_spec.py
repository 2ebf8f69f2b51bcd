"""Experiments: how one expands into runs, and bad experiment input refused in one line.

An experiment (YAML, :class:`pmsim.sweeps.spec.ExperimentSpec`) names a base workload,
the designs, grid and zip factors, overrides and replications; :func:`plan_runs`
expands it into one :class:`RunPlan` per design, factor point and replication, and
validates every run's workload before anything runs. The expansion tests check the
order and count of points, that overrides come before factor values, that a bare
cost name is a cost, that the ``workload`` factor finds presets and paths next to
the experiment file, and that every design at a point shares the point's seed.

The refusal tests check what a user sees from ``pmsim sweep``: exit status 2, one
``pmsim: error:`` line on stderr naming the key and the value, no traceback, and no
output folder written. The property test corrupts a valid experiment at random:
planning either succeeds or raises a one-line :class:`~pmsim.errors.ConfigError`.

The last group holds the bugs these tests found (line breaks in messages, relative paths
taken from the working folder, two workloads with one name, a bad Dask target seen only
after the folder was written), now fixed.
"""

from __future__ import annotations

import copy
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import pmsim.sweeps.spec as spec_mod
from pmsim.cli import main
from pmsim.costs import cost_params
from pmsim.errors import ConfigError
from pmsim.sweeps.plan import derive_seed, plan_runs, points
from pmsim.sweeps.spec import ExperimentSpec, experiments, load_experiment
from pmsim.workload.load import preset_question
from pmsim.workload.spec import WorkloadSpec

ROOT = Path(__file__).resolve().parents[1]

# Small enough to plan in milliseconds and (for the one end-to-end run) simulate in well under a second.
TINY = {"duration": "0.2ms", "warmup": "0.05ms", "machine.cores": 2, "processes.0.threads": 2}

BASE = {
    "name": "tiny",
    "question": "Does a tiny sweep plan?",
    "workload": "read_hits",
    "designs": ["old", "new"],
    "overrides": dict(TINY),
    "replications": 1,
    "seed": 1,
}


def exp(**changes) -> dict:
    """A copy of BASE with ``changes``; a change to None removes the key."""
    raw = copy.deepcopy(BASE)
    for k, v in changes.items():
        if v is None:
            raw.pop(k, None)
        else:
            raw[k] = v
    return raw


def plan(raw: dict):
    return plan_runs(load_experiment(raw))


def one_line(msg: str) -> None:
    assert msg.strip(), "empty message"
    assert len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, (
        f"not one line: {msg!r}"
    )


# --- expansion ----------------------------------------------------------------------------------


def test_base_plans_one_run_per_design():
    runs = plan(BASE)
    assert [r.design for r in runs] == ["old", "new"]
    assert {r.workload for r in runs} == {"read_hits"}
    assert all(r.point == {} and r.replication == 0 for r in runs)
    assert all(isinstance(r.spec, WorkloadSpec) for r in runs)


def test_grid_times_zip_counts_and_order():
    raw = exp(
        grid={"machine.cores": [2, 4], "duration": ["0.2ms", "0.4ms", "0.6ms"]},
        zip={"processes.0.threads": [1, 2], "cacheline_transfer_ns": [10, 20]},
    )
    e = load_experiment(raw)
    assert e.factors == [
        "machine.cores",
        "duration",
        "processes.0.threads",
        "cacheline_transfer_ns",
    ]
    pts = points(e)
    # The grid's product (its last key fastest), crossed with the zip's rows (innermost, in step).
    expected = [
        {"machine.cores": c, "duration": d, "processes.0.threads": t, "cacheline_transfer_ns": n}
        for c in (2, 4)
        for d in ("0.2ms", "0.4ms", "0.6ms")
        for t, n in ((1, 10), (2, 20))
    ]
    assert pts == expected
    assert (len(points(e)) * e.replications) == 12
    runs = plan_runs(e)
    assert len(runs) == 12 * 2
    # Runs in point order, then replication, then the designs in the order given.
    assert [r.point for r in runs[::2]] == expected
    assert [r.design for r in runs] == ["old", "new"] * 12
    for r in runs:
        assert list(r.point) == e.factors
        assert r.spec.machine.cores == r.point["machine.cores"]
        assert r.spec.processes[0].threads == r.point["processes.0.threads"]
        assert r.spec.machine.costs["cacheline_transfer_ns"] == r.point["cacheline_transfer_ns"]
        assert r.spec.duration == {"0.2ms": 2e5, "0.4ms": 4e5, "0.6ms": 6e5}[r.point["duration"]]
        assert r.spec.warmup == 5e4  # from the overrides


def test_zip_alone_and_grid_alone():
    z = load_experiment(exp(zip={"machine.cores": [1, 2, 4], "processes.0.threads": [1, 2, 4]}))
    assert points(z) == [{"machine.cores": n, "processes.0.threads": n} for n in (1, 2, 4)]
    assert len(plan_runs(z)) == 3 * 2
    g = load_experiment(exp(grid={"machine.cores": [1, 2], "processes.0.threads": [1, 2]}))
    assert len(points(g)) == 4 and (len(points(g)) * g.replications) == 4


def test_overrides_apply_before_factors():
    raw = exp(
        overrides={**TINY, "machine.cores": 8, "request_pages": 2}, grid={"machine.cores": [2, 4]}
    )
    runs = plan(raw)
    assert sorted({r.spec.machine.cores for r in runs}) == [
        2,
        4,
    ]  # the factor wins over the override
    assert {r.spec.request_pages for r in runs} == {
        2
    }  # an override no factor touches applies everywhere
    assert {r.spec.duration for r in runs} == {2e5}


def test_bare_cost_name_sets_machine_costs():
    runs = plan(exp(grid={"cacheline_transfer_ns": [15, 45]}))
    assert [r.spec.machine.costs["cacheline_transfer_ns"] for r in runs] == [15, 15, 45, 45]
    assert [r.point for r in runs[::2]] == [
        {"cacheline_transfer_ns": 15},
        {"cacheline_transfer_ns": 45},
    ]
    # A cost given as a dotted key is the same setting.
    dotted = plan(exp(grid={"machine.costs.cacheline_transfer_ns": [15, 45]}))
    assert [r.spec.machine.costs for r in dotted] == [r.spec.machine.costs for r in runs]


def test_cost_override_with_a_duration_value():
    runs = plan(exp(overrides={**TINY, "cacheline_transfer_ns": "30ns"}))
    assert {str(r.spec.machine.costs["cacheline_transfer_ns"]) for r in runs} == {"30ns"}


def test_workload_factor_picks_presets():
    raw = exp(workload=None, grid={"workload": ["read_hits", "punch_hole"]})
    runs = plan(raw)
    assert [r.workload for r in runs] == ["read_hits", "read_hits", "punch_hole", "punch_hole"]
    assert [r.spec.name for r in runs] == [r.workload for r in runs]
    assert runs[2].spec.mix.punch_hole > 0 and runs[0].spec.mix.punch_hole == 0
    assert all(r.spec.machine.cores == 2 for r in runs)  # the overrides apply to every workload
    # The workload column names it; it is not repeated as a factor column.
    assert runs[0].ident == {
        "run_id": runs[0].run_id,
        "design": "old",
        "workload": "read_hits",
        "replication": 0,
        "seed": runs[0].seed,
    }


def test_workload_factor_overrides_the_base_workload():
    runs = plan(exp(workload="read_hits", grid={"workload": ["punch_hole"]}))
    assert {r.workload for r in runs} == {"punch_hole"}


WL = """\
# A tiny workload for the sweep tests.
machine: {cores: 2}
files:
  - {name: data, pages: 64}
processes:
  - {name: app, threads: 2}
mix: {read: 1}
duration: 0.3ms
warmup: 0.1ms
"""


def test_relative_workload_paths_resolve_next_to_the_experiment(tmp_path, monkeypatch):
    folder = tmp_path / "exps"
    (folder / "wl").mkdir(parents=True)
    (folder / "wl" / "mine.yaml").write_text(WL.replace("pages: 64", "pages: 96"))
    (folder / "base.yaml").write_text(WL)
    path = folder / "study.yaml"
    path.write_text(
        "# Does the path resolve?\n"
        "workload: base.yaml\n"
        "designs: [new]\n"
        "grid:\n  workload: [base.yaml, wl/mine.yaml, read_hits]\n"
        "overrides: {duration: 0.3ms, warmup: 0.1ms, machine.cores: 2, processes.0.threads: 2}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the experiment's folder
    e = load_experiment(str(path))
    assert e.name == "study" and e.question == "Does the path resolve?"
    assert Path(e.base_dir) == folder
    runs = plan_runs(e)
    assert [r.workload for r in runs] == ["base", "mine", "read_hits"]
    assert [r.spec.files[0].pages for r in runs] == [64, 96, 4096]
    # A relative experiment path works too.
    monkeypatch.chdir(tmp_path)
    assert [r.workload for r in plan_runs(load_experiment("exps/study.yaml"))] == [
        "base",
        "mine",
        "read_hits",
    ]


def test_base_workload_path_resolves_next_to_the_experiment(tmp_path, monkeypatch):
    (tmp_path / "w.yaml").write_text(WL)
    path = tmp_path / "e.yaml"
    path.write_text("designs: [old, new]\nworkload: w.yaml\n")
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    runs = plan_runs(load_experiment(str(path)))
    assert [r.workload for r in runs] == ["w", "w"]
    assert runs[0].spec.duration == 3e5
    assert load_experiment(str(path)).question == ""  # no comment line, no question


def test_exclude_leaves_out_the_matching_runs_and_keeps_every_seed():
    raw = exp(
        grid={"workload": ["read_hits", "writeback_readers"]},
        zip={"machine.cores": [1, 4], "processes.0.threads": [1, 4]},
        overrides=TINY,
    )
    with pytest.raises(ConfigError, match="exclude the pair"):
        plan(raw)
    kept = plan({**raw, "exclude": [{"design": "old", "workload": "writeback_readers"}]})
    assert sorted({(r.design, r.workload) for r in kept}) == [
        ("new", "read_hits"),
        ("new", "writeback_readers"),
        ("old", "read_hits"),
    ]
    assert len(kept) == 6
    both = plan({**raw, "grid": {"workload": ["read_hits"]}})
    seeds = {(r.design, r.point["machine.cores"]): (r.seed, r.run_id) for r in both}
    assert {
        (r.design, r.point["machine.cores"]): (r.seed, r.run_id)
        for r in kept
        if r.workload == "read_hits"
    } == seeds  # excluding runs elsewhere changes no kept run
    # A list means any of its values; several keys must all match.
    some = plan(
        {
            **raw,
            "exclude": [
                {"design": "old", "workload": ["writeback_readers"]},
                {"workload": "read_hits", "machine.cores": [4], "design": "new"},
            ],
        }
    )
    assert sorted((r.design, r.workload, r.point["machine.cores"]) for r in some) == [
        ("new", "read_hits", 1),
        ("new", "writeback_readers", 1),
        ("new", "writeback_readers", 4),
        ("old", "read_hits", 1),
        ("old", "read_hits", 4),
    ]


@pytest.mark.parametrize(
    "exclude, words",
    [
        ([{}], ["exclude.0", "every run"]),
        ([{"design": "olx"}], ["exclude.0.design", "'olx'", "['old', 'new']"]),
        ([{"cores": 4}], ["exclude.0", "'cores'", "machine.cores"]),
        ([{"machine.cores": 3}], ["exclude.0.machine.cores", "3"]),
        ([{"design": "old"}, {"machine.cores": [1, 8]}], ["exclude.1.machine.cores", "8"]),
        ([{"machine.cores": 1, "processes.0.threads": 4}], ["exclude.0", "matches no run"]),
        ([{"design": ["old", "new"]}], ["leaves no run"]),
        ("not a list", ["exclude", "'not a list'"]),
    ],
)
def test_bad_exclude_is_refused_in_one_line(exclude, words):
    raw = exp(zip={"machine.cores": [1, 4], "processes.0.threads": [1, 4]}, exclude=exclude)
    with pytest.raises(ConfigError) as err:
        plan(raw)
    one_line(str(err.value))
    for w in words:
        assert w in str(err.value)


def test_replications():
    e = load_experiment(exp(grid={"machine.cores": [1, 2]}, replications=3))
    runs = plan_runs(e)
    assert (len(points(e)) * e.replications) == 6 and len(runs) == 12
    assert [r.replication for r in runs] == [0, 0, 1, 1, 2, 2] * 2
    for cores in (1, 2):
        seeds = [r.seed for r in runs if r.point["machine.cores"] == cores]
        assert len(set(seeds)) == 3  # one seed per replication, shared by the two designs


def test_run_ids_unique_and_stable():
    raw = exp(
        grid={"machine.cores": [1, 2], "workload": ["read_hits", "punch_hole"]},
        zip={"processes.0.threads": [1, 2]},
        replications=2,
    )
    runs = plan(raw)
    ids = [r.run_id for r in runs]
    assert len(ids) == len(set(ids)) == 2 * 2 * 2 * 2 * 2
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    again = plan(copy.deepcopy(raw))
    assert [r.run_id for r in again] == ids and [r.seed for r in again] == [r.seed for r in runs]


def test_every_design_at_a_point_gets_the_same_seed():
    raw = exp(
        designs=["old", "new", "old_mcs", "new_batched_wb"],
        grid={"machine.cores": [1, 2, 4]},
        replications=2,
    )
    runs = plan(raw)
    by = {}
    for r in runs:
        by.setdefault((r.point["machine.cores"], r.replication), set()).add(r.seed)
        assert r.spec.seed == r.seed
    assert all(len(s) == 1 for s in by.values())
    assert len({next(iter(s)) for s in by.values()}) == len(by)  # different points, different seeds
    # The seed derives from the experiment's seed, the point and the replication, not the design.
    assert derive_seed(1, "p", 0) == derive_seed(1, "p", 0)
    assert (
        len(
            {
                derive_seed(1, "p", 0),
                derive_seed(1, "p", 1),
                derive_seed(1, "q", 0),
                derive_seed(2, "p", 0),
            }
        )
        == 4
    )


def test_experiment_seed_changes_every_run_seed():
    a = plan(exp(seed=1, grid={"machine.cores": [1, 2]}))
    b = plan(exp(seed=2, grid={"machine.cores": [1, 2]}))
    assert not {r.seed for r in a} & {r.seed for r in b}
    assert all(0 <= r.seed < 2**63 for r in a + b)


def test_plans_carry_resolved_specs():
    raw = exp(
        overrides={**TINY, "pattern.kind": "zipf", "mix.write": 1},
        grid={"pattern.theta": [0.5, 0.9]},
        zip={"files.0.pages": [128, 256]},
    )
    runs = plan(raw)
    assert len(runs) == 2 * 2 * 2
    r = runs[-1]
    assert r.point == {"pattern.theta": 0.9, "files.0.pages": 256}
    assert r.spec.pattern.kind == "zipf" and r.spec.pattern.theta == 0.9
    assert r.spec.files[0].pages == 256 and r.spec.files[0].name == "data"
    assert r.spec.mix.read == 1 and r.spec.mix.write == 1
    assert (
        r.spec.machine.cores == 2
        and r.spec.processes[0].threads == 2
        and r.spec.processes[0].name == "reader"
    )
    assert r.spec.duration == 2e5 and r.spec.warmup == 5e4
    assert r.ident == {
        "run_id": r.run_id,
        "design": "new",
        "workload": "read_hits",
        "replication": 0,
        "seed": r.seed,
        "pattern.theta": 0.9,
        "files.0.pages": 256,
    }
    assert r.cost_estimate == r.spec.total_threads * r.spec.duration
    # The resolved spec validates again as it is (what a worker receives).
    assert WorkloadSpec.model_validate(r.spec.model_dump()) == r.spec


def test_null_factor_value_restores_the_default():
    runs = plan(
        exp(overrides={"duration": "0.2ms", "warmup": "0.05ms"}, grid={"machine.cores": [None, 4]})
    )
    assert [r.spec.machine.cores for r in runs[::2]] == [WorkloadSpec().machine.cores, 4]


def test_structured_factor_values():
    runs = plan(
        exp(
            grid={
                "loop": [
                    {"kind": "closed", "think": "exp:1us"},
                    {"kind": "open", "arrivals": "exp:2us"},
                ]
            }
        )
    )
    assert [r.spec.loop.kind for r in runs[::2]] == ["closed", "open"]


def test_mapping_and_spec_inputs():
    e = load_experiment(BASE)
    assert isinstance(e, ExperimentSpec) and load_experiment(e) is e
    assert e.base_dir == "." and e.out is None
    with pytest.raises(
        ValidationError, match="frozen"
    ):  # a planned experiment cannot change under its runs
        e.replications = 5  # type: ignore[misc]


# --- bad input through pmsim sweep --------------------------------------------------------------


def write_exp(folder: Path, content, name="exp.yaml") -> str:
    path = folder / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(
            content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        )
    return str(path)


def refused(capsys, argv, out_dir: Path | None, words=()) -> str:
    """Run ``pmsim`` in this process; assert a one-line refusal naming ``words``, nothing written."""
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (argv, rc, out, err)
    assert out == "", (argv, out)
    assert err.startswith("pmsim: error: ") and err.endswith("\n") and err.count("\n") == 1, (
        argv,
        err,
    )
    assert "Traceback" not in err
    for w in words:
        assert w in err, (argv, w, err)
    if out_dir is not None:
        assert not out_dir.exists(), (
            argv,
            err,
            sorted(out_dir.iterdir()) if out_dir.is_dir() else out_dir,
        )
    return err


# (case id, experiment mapping or raw text, extra CLI args, words the line must contain)
SPEC_CASES = [
    ("unknown-key", exp(replicatons=3), [], ["replicatons", "did you mean 'replications'", "3"]),
    ("unknown-key-list", exp(zzz_top="v"), [], ["zzz_top", "unknown key", "'v'", "designs"]),
    ("misspelt-grid", exp(gird={"machine.cores": [2]}), [], ["gird", "did you mean 'grid'"]),
    ("unknown-design", exp(designs=["old", "od"]), [], ["'od'", "did you mean 'old'"]),
    ("unknown-design-far", exp(designs=["zzzz"]), [], ["'zzzz'", "pmsim designs"]),
    ("empty-designs", exp(designs=[]), [], ["designs", "[]"]),
    ("no-designs", exp(designs=None), [], ["designs", "required"]),
    ("designs-not-list", exp(designs="old"), [], ["designs", "'old'"]),
    ("duplicated-design", exp(designs=["old", "new", "old"]), [], ["designs", "twice", "'old'"]),
    ("replications-0", exp(replications=0), [], ["replications", "0"]),
    ("replications-negative", exp(replications=-3), [], ["replications", "-3"]),
    ("replications-bool", exp(replications=True), [], ["replications", "True"]),
    ("replications-string", exp(replications="3"), [], ["replications", "'3'"]),
    ("replications-float", exp(replications=2.5), [], ["replications", "2.5"]),
    ("replications-huge", exp(replications=10**6), [], ["replications", "1000000"]),
    ("negative-seed", exp(seed=-1), [], ["seed", "-1"]),
    ("seed-bool", exp(seed=True), [], ["seed", "True"]),
    ("grid-not-list", exp(grid={"machine.cores": 4}), [], ["grid.machine.cores", "4"]),
    ("grid-not-mapping", exp(grid=["machine.cores"]), [], ["grid", "['machine.cores']"]),
    ("grid-empty-list", exp(grid={"machine.cores": []}), [], ["grid.machine.cores", "[]"]),
    ("zip-empty-list", exp(zip={"machine.cores": []}), [], ["zip.machine.cores", "[]"]),
    ("value-twice", exp(grid={"machine.cores": [2, 4, 2]}), [], ["machine.cores", "2", "twice"]),
    ("zip-value-twice", exp(zip={"duration": ["1ms", "1ms"]}), [], ["duration", "'1ms'", "twice"]),
    (
        "grid-and-zip",
        exp(grid={"machine.cores": [2]}, zip={"machine.cores": [4]}),
        [],
        ["'machine.cores'", "both grid and zip"],
    ),
    (
        "zip-unequal",
        exp(zip={"machine.cores": [1, 2, 4], "processes.0.threads": [1, 2]}),
        [],
        ["zip", "machine.cores: 3", "processes.0.threads: 2"],
    ),
    ("factor-seed", exp(grid={"seed": [1, 2]}), [], ["'seed'"]),
    ("factor-name", exp(zip={"name": ["a", "b"]}), [], ["'name'"]),
    ("override-seed", exp(overrides={**TINY, "seed": 5}), [], ["'seed'"]),
    (
        "override-workload",
        exp(overrides={**TINY, "workload": "mixed"}),
        [],
        ["'workload'", "override"],
    ),
    ("no-workload", exp(workload=None), [], ["no workload", "'workload'"]),
    (
        "workload-factor-not-string",
        exp(grid={"workload": ["read_hits", 3]}),
        [],
        ["'workload'", "3"],
    ),
    ("unknown-preset", exp(workload="read_hit"), [], ["'read_hit'", "did you mean 'read_hits'"]),
    (
        "unknown-preset-factor",
        exp(workload=None, grid={"workload": ["read_hits", "nosuch_preset"]}),
        [],
        ["workload=nosuch_preset", "'nosuch_preset'", "unknown preset"],
    ),
    (
        "missing-workload-file",
        exp(workload="not_there.yaml"),
        [],
        ["not_there.yaml'", "no such file"],
    ),
    ("invalid-yaml", "workload: [read_hits\ndesigns: [old]\n", [], ["not valid YAML", "line 2"]),
    (
        "control-character",
        "workload: read_hits\ndesigns: [old]\nseed: \x01\n",
        [],
        ["not valid YAML"],
    ),
    ("not-utf8", b"workload: read_hits\nname: \xff\xfe\n", [], ["cannot be read", "0xff"]),
    ("empty-file", "", [], ["empty file"]),
    ("comment-only", "# nothing here\n", [], ["empty file"]),
    ("yaml-list", "- workload: read_hits\n- designs: [old]\n", [], ["mapping", "list"]),
    ("yaml-scalar", "read_hits\n", [], ["mapping", "str"]),
    (
        "duplicate-yaml-key",
        "workload: read_hits\ndesigns: [old]\nworkload: mixed\n",
        [],
        ["'workload'", "twice"],
    ),
    (
        "duplicate-nested-key",
        "workload: read_hits\ndesigns: [old]\ngrid:\n  duration: [1ms]\n  duration: [2ms]\n",
        [],
        ["'duration'", "twice"],
    ),
    (
        "unknown-workload-key",
        exp(grid={"machine.coers": [2, 4]}),
        [],
        ["machine.coers", "at machine.coers=2", "did you mean 'cores'"],
    ),
    (
        "unknown-workload-key-zip",
        exp(zip={"processes.0.thread": [1, 2], "machine.cores": [1, 2]}),
        [],
        ["processes.0.thread", "at processes.0.thread=1, machine.cores=1"],
    ),
    (
        "unknown-override-key",
        exp(overrides={**TINY, "durration": "1ms"}),
        [],
        ["durration", "the base point", "'1ms'", "did you mean 'duration'"],
    ),
    (
        "misspelt-cost-factor",
        exp(grid={"cachline_transfer_ns": [10]}),
        [],
        ["cachline_transfer_ns", "cacheline_transfer_ns"],
    ),
    (
        "negative-cost-override",
        exp(overrides={**TINY, "cacheline_transfer_ns": -5}),
        [],
        ["machine.costs.cacheline_transfer_ns", "-5", "the base point"],
    ),
    (
        "negative-cost-factor",
        exp(grid={"cacheline_transfer_ns": [10, -5]}),
        [],
        ["machine.costs.cacheline_transfer_ns", "-5", "at cacheline_transfer_ns=-5"],
    ),
    (
        "negative-cost-duration",
        exp(overrides={**TINY, "cacheline_transfer_ns": "-5ns"}),
        [],
        ["cacheline_transfer_ns", "-5ns"],
    ),
    (
        "malformed-duration",
        exp(overrides={**TINY, "duration": "5 parsecs"}),
        [],
        ["duration", "'5 parsecs'"],
    ),
    (
        "duration-without-unit",
        exp(grid={"duration": ["1ms", 20]}),
        [],
        ["duration", "20", "at duration=20"],
    ),
    (
        "warmup-at-one-point",
        exp(grid={"warmup": ["0.05ms", "0.2ms", "0.1ms"]}),
        [],
        ["at warmup=0.2ms:", "warmup (200us)", "duration (200us)"],
    ),
    (
        "zero-cores-at-one-point",
        exp(zip={"machine.cores": [2, 0], "processes.0.threads": [2, 1]}),
        [],
        ["at machine.cores=0, processes.0.threads=1", "machine.cores", "0"],
    ),
    ("bad-dotted-key", exp(grid={"processes.3.threads": [1]}), [], ["processes.3", "0..0"]),
    (
        "design-lacks-operation",
        exp(workload="mixed", designs=["new", "old"]),
        [],
        ["mixed", "old", "fsync", "drop the design or the workload"],
    ),
    (
        "design-lacks-operation-factor",
        exp(grid={"mix.fsync": [0, 1]}),
        [],
        ["at mix.fsync=1", "old", "fsync"],
    ),
    (
        "design-lacks-operation-daemon",
        exp(overrides={**TINY, "daemons.reclaim.period": "0.1ms"}),
        [],
        ["old", "reclaim"],
    ),
    (
        "key-not-string",
        "workload: read_hits\ndesigns: [old]\ngrid: {1: [2]}\n",
        [],
        ["grid.1", "1"],
    ),
    ("question-not-string", exp(question=["a"]), [], ["question", "['a']"]),
    # The command line.
    ("workers-0", BASE, ["--workers", "0"], ["--workers", "0"]),
    ("workers-negative", BASE, ["--workers", "-1"], ["--workers", "-1"]),
    ("workers-abc", BASE, ["--workers", "abc"], ["--workers", "'abc'"]),
    (
        "scheduler-and-file",
        BASE,
        ["--scheduler", "tcp://127.0.0.1:1", "--scheduler-file", "s.json"],
        ["--scheduler", "--scheduler-file"],
    ),
    (
        "workers-with-scheduler",
        BASE,
        ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
        ["--workers 2", "Dask"],
    ),
    (
        "workers-with-scheduler-file",
        BASE,
        ["--workers", "2", "--scheduler-file", "s.json"],
        ["--workers 2"],
    ),
    (
        "missing-scheduler-file",
        BASE,
        ["--scheduler-file", "MISSING"],
        ["--scheduler-file", "no_such_sched.json"],
    ),
    ("unknown-option", BASE, ["--wrokers", "2"], ["--wrokers"]),
]


@pytest.mark.parametrize(
    "content, extra, words", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_sweep_refuses_bad_input(content, extra, words, tmp_path, capsys):
    path = write_exp(tmp_path, content)
    out_dir = tmp_path / "out"
    extra = [str(tmp_path / "no_such_sched.json") if a == "MISSING" else a for a in extra]
    refused(capsys, ["sweep", path, "--out", str(out_dir), *extra], out_dir, words)


def test_the_base_experiment_runs(tmp_path, capsys):
    """The refusals above are the corruption's doing: the base experiment itself sweeps."""
    out_dir = tmp_path / "out"
    rc = main(
        ["sweep", write_exp(tmp_path, BASE), "--out", str(out_dir), "--workers", "1", "--quiet"]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (out_dir / "manifest.json").is_file() and (out_dir / "summary.parquet").is_file()
    assert "tiny" in out


def test_unknown_experiment_name(tmp_path, capsys):
    out_dir = tmp_path / "out"
    refused(
        capsys,
        ["sweep", "no_such_experiment_xyz", "--out", str(out_dir)],
        out_dir,
        ["'no_such_experiment_xyz'", "unknown name"],
    )
    refused(
        capsys,
        ["sweep", str(tmp_path / "missing.yaml"), "--out", str(out_dir)],
        out_dir,
        ["missing.yaml", "no such file"],
    )


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "results"
    target.write_text("keep me\n")
    refused(
        capsys,
        ["sweep", write_exp(tmp_path, BASE), "--out", str(target)],
        None,
        ["--out", str(target)],
    )
    assert target.read_text() == "keep me\n"


def test_out_that_is_a_foreign_folder_is_refused(tmp_path, capsys):
    target = tmp_path / "results"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    refused(
        capsys,
        ["sweep", write_exp(tmp_path, BASE), "--out", str(target)],
        None,
        ["--out", str(target), "manifest.json"],
    )
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine\n"


def test_out_inside_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    refused(
        capsys,
        ["sweep", write_exp(tmp_path, BASE), "--out", str(blocker / "sub")],
        None,
        ["--out", str(blocker / "sub")],
    )
    assert blocker.read_text() == "x"


def test_refusal_writes_no_default_out(tmp_path, monkeypatch, capsys):
    """Without --out the folder is the experiment's ``out`` (relative to the working folder)."""
    monkeypatch.chdir(tmp_path)
    path = write_exp(tmp_path, exp(out="results/here", seed=-4))
    refused(capsys, ["sweep", path], tmp_path / "results", ["seed", "-4"])
    path = write_exp(tmp_path, exp(grid={"machine.cores": [0]}))
    refused(capsys, ["sweep", path], tmp_path / "sweeps", ["machine.cores", "0"])


# --- the same through a real process: exit status 2, one line, no traceback -----------------------


def run_cli(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "pmsim", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


SUBPROCESS_CASES = {
    "unknown-key": (exp(replicatons=3), [], "replicatons"),
    "warmup-at-one-point": (exp(grid={"warmup": ["0.05ms", "0.2ms"]}), [], "warmup=0.2ms"),
    "design-lacks-operation": (exp(workload="mixed"), [], "fsync"),
    "workers-abc": (BASE, ["--workers", "abc"], "'abc'"),
}


@pytest.mark.parametrize("case", list(SUBPROCESS_CASES))
def test_sweep_subprocess_refusal(case, tmp_path):
    content, extra, word = SUBPROCESS_CASES[case]
    out_dir = tmp_path / "out"
    r = run_cli("sweep", write_exp(tmp_path, content), "--out", str(out_dir), *extra)
    assert r.returncode == 2, r
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert re.fullmatch(r"pmsim: error: [^\n]+\n", r.stderr), r.stderr
    assert word in r.stderr, r.stderr
    assert not out_dir.exists()


# --- bugs found while writing these tests, fixed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        exp(name="two\nlines", grid={"machine.cores": [0]}),
        exp(grid={"files.0.name": ["a\nb"], "machine.cores": [0]}),
        exp(grid={"machine.cores": [2, "x\ny"]}),
    ],
    ids=["name", "factor-value", "bad-value"],
)
def test_line_break_in_name_or_value_stays_one_line(raw):
    with pytest.raises(ConfigError) as info:
        plan(raw)
    one_line(str(info.value))


def test_relative_workload_path_never_comes_from_the_working_folder(tmp_path, monkeypatch):
    folder = tmp_path / "exps"
    folder.mkdir()
    path = folder / "e.yaml"
    path.write_text("designs: [new]\nworkload: w.yaml\n")
    (tmp_path / "w.yaml").write_text(WL)  # in the working folder, not the experiment's
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        plan_runs(load_experiment(str(path)))
    assert str(folder) in str(info.value)  # says where it looked


def test_workload_factor_values_stay_distinguishable(tmp_path):
    for sub, pages in (("a", 64), ("b", 96)):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "w.yaml").write_text(WL.replace("pages: 64", f"pages: {pages}"))
    path = tmp_path / "e.yaml"
    path.write_text("designs: [new]\ngrid:\n  workload: [a/w.yaml, b/w.yaml]\n")
    try:
        runs = plan_runs(load_experiment(str(path)))
    except ConfigError as e:  # refusing the clash is a fix too
        one_line(str(e))
        return
    assert len({r.ident["workload"] for r in runs}) == 2, [r.ident for r in runs]


@pytest.mark.parametrize("how", ["garbage-scheduler-file", "malformed-address"])
def test_bad_dask_target_is_refused_before_writing(how, tmp_path):
    if how == "garbage-scheduler-file":
        (tmp_path / "sched.json").write_text("not json\n")
        extra = ["--scheduler-file", str(tmp_path / "sched.json")]
    else:
        extra = ["--scheduler", "no-port-here"]
    out_dir = tmp_path / "out"
    r = run_cli("sweep", write_exp(tmp_path, BASE), "--out", str(out_dir), "--quiet", *extra)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-500:]
    assert re.fullmatch(r"pmsim: error: [^\n]+\n", r.stderr), r.stderr
    assert not out_dir.exists()


# --- property: any corruption plans or is refused in one line --------------------------------------

_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=0, max_size=10
)
_words = st.text(alphabet=string.ascii_lowercase + "_.", min_size=1, max_size=14)
_scalars = st.one_of(
    st.integers(-5, 64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    _text,
    st.sampled_from(
        [
            "1ms",
            "0.2ms",
            "0.05ms",
            "5 parsecs",
            "-1ms",
            "exp:1us",
            "zipf",
            "uniform",
            "ttas",
            "read_hits",
            "punch_hole",
            "mixed",
            "nosuch",
            "x.yaml",
            "old",
            "new",
        ]
    ),
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.dictionaries(st.one_of(_words, st.integers(0, 3)), _scalars, max_size=2),
)
# Workload keys that exist, keys reserved to the experiment, costs, and made-up keys.
_keys = st.one_of(
    st.sampled_from(
        [
            "machine.cores",
            "processes.0.threads",
            "processes.1.threads",
            "duration",
            "warmup",
            "files.0.pages",
            "files",
            "mix.read",
            "mix.fsync",
            "mix.touch",
            "pattern.kind",
            "pattern.theta",
            "request_pages",
            "loop.think",
            "loop.kind",
            "machine.spinlock",
            "machine",
            "touch_stores",
            "daemons.writeback.period",
            "daemons.reclaim.period",
            "churn.pages",
            "seed",
            "name",
            "workload",
            "cacheline_transfer_ns",
            "machine.costs.cacheline_transfer_ns",
            "machine.costs",
            "cpu_clock_ghz",
            "machine.cores.x",
            "a..b",
            ".",
            "",
        ]
    ),
    _words,
    _text,
)
_top_values = st.one_of(
    _values,
    st.sampled_from(
        [
            0,
            -1,
            1,
            2,
            10_001,
            10**12,
            True,
            "3",
            2.0,
            [],
            {},
            ["old"],
            ["old", "old"],
            ["nosuch"],
            ["new", "old_mcs"],
            {"machine.cores": [1, 2]},
            {"machine.cores": 3},
            {"duration": ["1ms"]},
        ]
    ),
)

_GOOD_FACTORS = [
    ("machine.cores", [1, 4]),
    ("duration", ["0.2ms", "0.3ms"]),
    ("cacheline_transfer_ns", [5, 50]),
    ("workload", ["read_hits", "punch_hole"]),
    ("pattern.kind", ["uniform", "sequential"]),
    ("processes.0.threads", [1, 3]),
    ("mix.write", [0, 1]),
    ("machine.spinlock", ["ticket", "mcs"]),
    ("loop.think", ["const:0ns", "exp:1us"]),
    ("files.0.pages", [512, 4096]),
]


@st.composite
def _mutations(draw):
    raw = exp(
        grid={"machine.cores": [1, 2]},
        zip={"processes.0.threads": [1, 2], "cacheline_transfer_ns": [10, 20]},
        replications=2,
        seed=3,
    )
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                [
                    "add_top",
                    "set_top",
                    "del_top",
                    "grid",
                    "zip",
                    "override",
                    "drop_factor",
                    "factor_not_list",
                    *["good_factor"] * 8,
                ]
            )
        )
        if kind == "good_factor":  # a valid factor, so that some corrupted experiments still plan
            key, values = draw(st.sampled_from(_GOOD_FACTORS))
            where = draw(
                st.sampled_from(
                    ["grid", "zip"] if key == "workload" else ["grid", "zip", "overrides"]
                )
            )
            section = raw.setdefault(where, {})
            if isinstance(section, dict):
                section[key] = draw(st.sampled_from(values)) if where == "overrides" else values
        elif kind == "add_top":
            raw[draw(st.one_of(_words, _text))] = draw(_values)
        elif kind == "set_top":
            field = draw(
                st.sampled_from([k for k in ExperimentSpec.model_fields if k != "base_dir"])
            )
            if field == "replications":  # keep a valid count small: planning time grows with it
                raw[field] = draw(st.sampled_from([0, -1, 1, 3, 10_001, True, "3", 2.0, None, []]))
            else:
                raw[field] = draw(_top_values)
        elif kind == "del_top":
            raw.pop(draw(st.sampled_from(sorted(raw, key=str))), None)
        elif kind in ("grid", "zip"):
            section = raw.setdefault(kind, {})
            if isinstance(section, dict):
                section[draw(_keys)] = draw(st.lists(_values, min_size=0, max_size=3))
        elif kind == "factor_not_list":
            section = raw.setdefault(draw(st.sampled_from(["grid", "zip"])), {})
            if isinstance(section, dict):
                section[draw(_keys)] = draw(_scalars)
        elif kind == "override":
            section = raw.setdefault("overrides", {})
            if isinstance(section, dict):
                section[draw(_keys)] = draw(_values)
        else:
            section = raw.get(draw(st.sampled_from(["grid", "zip"])))
            if isinstance(section, dict) and section:
                section.pop(draw(st.sampled_from(sorted(section, key=str))))
    return raw


@pytest.mark.parametrize("value", [[], {"a": 1}, 3])
def test_a_workload_factor_that_is_not_a_name_is_refused_in_one_line(value):
    # found by the property below: a list as a workload value was a TypeError traceback
    raw = exp(grid={"machine.cores": [1, 2], "workload": [value]})
    with pytest.raises(ConfigError) as err:
        load_experiment(raw)
    one_line(str(err.value))
    assert "workload" in str(err.value) and repr(value) in str(err.value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations())
def test_corrupted_experiment_plans_or_is_refused_in_one_line(raw):
    try:
        e = load_experiment(raw)
        runs = plan_runs(e)
    except ConfigError as err:
        one_line(str(err))
        event("refused")
        return
    event("planned")
    # It planned: the plan is whole and consistent.
    assert (
        len(runs)
        == sum(not e.excluded(d, p) for p in points(e) for d in e.designs) * e.replications
    )
    assert len({r.run_id for r in runs}) == len(runs)
    assert all(r.spec.seed == r.seed and r.design in e.designs for r in runs)


_new_key = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=12).filter(
    lambda k: (
        k not in WorkloadSpec.model_fields
        and k not in cost_params()
        and k not in ("seed", "name", "workload")
    )
)


@settings(max_examples=60, deadline=None)
@given(key=_new_key, value=st.integers(1, 9), section=st.sampled_from(["grid", "zip"]))
def test_unknown_workload_factor_names_key_and_point(key, value, section):
    with pytest.raises(ConfigError) as info:
        plan(exp(**{section: {key: [value]}}))
    msg = str(info.value)
    one_line(msg)
    assert f"at {key}={value}:" in msg and f"workload key {key}: unknown key" in msg, msg


@settings(max_examples=60, deadline=None)
@given(
    key=st.text(alphabet=string.ascii_letters + string.digits + "_-", min_size=1, max_size=16),
    value=st.one_of(st.integers(), st.text(alphabet=string.ascii_letters, max_size=6)),
)
def test_unknown_top_level_key_names_key_and_value(key, value):
    assume(key not in ExperimentSpec.model_fields)
    with pytest.raises(ConfigError) as info:
        load_experiment(exp(**{key: value}))
    msg = str(info.value)
    one_line(msg)
    assert f"experiment key {key}: unknown key" in msg and repr(value)[:40] in msg, msg


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["cacheline_transfer_ns", "machine.costs.cacheline_transfer_ns"]),
    value=st.one_of(
        st.integers(max_value=-1),
        st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
        st.integers(1, 999).map(lambda n: f"-{n}ns"),
    ),
    where=st.sampled_from(["override", "grid", "zip"]),
)
def test_negative_cost_is_refused_wherever_given(name, value, where):
    raw = (
        exp(overrides={**TINY, name: value})
        if where == "override"
        else exp(**{where: {name: [1, value]}})
    )
    with pytest.raises(ConfigError) as info:
        plan(raw)
    msg = str(info.value)
    one_line(msg)
    assert "machine.costs.cacheline_transfer_ns" in msg and (
        repr(value) in msg or str(value) in msg
    ), msg
    if where != "override":
        assert f"at {name}={value}:" in msg, msg


# --- pmsim experiments ----------------------------------------------------------------------------


def test_experiments_lists_names_and_questions(tmp_path, monkeypatch, capsys):
    (tmp_path / "alpha.yaml").write_text(
        "# Does alpha scale?\nworkload: read_hits\ndesigns: [old, new]\n"
    )
    (tmp_path / "beta.yaml").write_text(
        "# Is beta cheaper?\n# (a second comment line)\n"
        "workload: punch_hole\ndesigns: [new]\nzip: {machine.cores: [1, 2]}\n"
    )
    (tmp_path / "notes.txt").write_text("not an experiment")
    monkeypatch.setattr(spec_mod, "EXPERIMENTS_DIR", tmp_path)
    assert list(experiments()) == ["alpha", "beta"]
    capsys.readouterr()
    assert main(["experiments"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("alpha ") and lines[0].endswith(" Does alpha scale?")
    assert lines[1].startswith("beta ") and lines[1].endswith(" Is beta cheaper?")
    # A name from the folder is an experiment argument; its question and name come from the file.
    e = load_experiment("beta")
    assert e.name == "beta" and e.question == "Is beta cheaper?" and Path(e.base_dir) == tmp_path
    assert len(plan_runs(e)) == 2
    out_dir = tmp_path / "out"
    refused(
        capsys,
        ["sweep", "alpah", "--out", str(out_dir)],
        out_dir,
        ["'alpah'", "did you mean 'alpha'"],
    )


def test_experiments_with_an_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(spec_mod, "EXPERIMENTS_DIR", tmp_path)
    capsys.readouterr()
    assert main(["experiments"]) == 0
    assert capsys.readouterr() == ("", "")


def test_experiments_command_matches_the_folder(capsys):
    # the sweeps, then the sets of sensitivity studies (pmsim sensitivity NAME)
    table = {**experiments(), **spec_mod.studies()}
    capsys.readouterr()
    assert main(["experiments"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(table)
    for line, path in zip(lines, table.values()):
        assert line.rstrip().endswith(preset_question(path).strip()), line


_REPO_EXPERIMENTS = experiments()


@pytest.mark.parametrize(
    "name",
    list(_REPO_EXPERIMENTS)
    or [pytest.param(None, marks=pytest.mark.skip(reason="experiments/ holds no experiment yet"))],
)
def test_every_repository_experiment_plans(name):
    e = load_experiment(str(_REPO_EXPERIMENTS[name]))
    assert e.name == name
    assert e.question, f"experiments/{name}.yaml: its first comment line should state its question"
    runs = plan_runs(e)
    assert (
        len(runs)
        == sum(not e.excluded(d, p) for p in points(e) for d in e.designs) * e.replications
    )
    assert len({r.run_id for r in runs}) == len(runs)


def test_code_digest_covers_the_model_not_the_result_readers(tmp_path, monkeypatch):
    """A figure or report change must not make a resumed sweep rerun its runs; a model change must."""
    from pmsim import version

    for rel, text in (
        ("sync/lock.py", "x = 1"),
        ("data/costs.yaml", "a: 1"),
        ("plots/fig.py", "y = 1"),
        ("report/page.py", "z = 1"),
    ):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(version, "PACKAGE", tmp_path)
    digest = version.code_digest.__wrapped__
    before = digest()
    (tmp_path / "plots/fig.py").write_text("y = 2")
    (tmp_path / "report/page.py").write_text("z = 2")
    assert digest() == before
    for rel in ("sync/lock.py", "data/costs.yaml"):
        (tmp_path / rel).write_text("changed")
        assert digest() != before, rel
        before = digest()


@pytest.mark.parametrize("value", [1.5, -0.1, "2%"])
def test_bad_practical_difference_is_refused_in_one_line(value):
    with pytest.raises(ConfigError) as err:
        load_experiment(exp(grid={"machine.cores": [1, 2]}, practical_difference=value))
    one_line(str(err.value))
    assert "practical_difference" in str(err.value)


def test_practical_difference_defaults_to_2_percent():
    assert load_experiment(exp(grid={"machine.cores": [1, 2]})).practical_difference == 0.02


def test_workload_overrides_apply_to_their_workload_only():
    runs = plan(
        exp(
            grid={"workload": ["read_hits", "punch_hole"]},
            workload_overrides={"punch_hole": {"request_pages": 8}},
        )
    )
    pages = {r.workload: r.spec.request_pages for r in runs}
    assert pages == {"read_hits": 1, "punch_hole": 8}
    # a preset the experiment does not run is ignored: a cut-down copy of an experiment loads
    plan(exp(workload_overrides={"cold_misses": {"duration": "5ms"}}))


@pytest.mark.parametrize(
    "wo, words",
    [
        ({"read_hit": {"duration": "5ms"}}, ["workload_overrides.read_hit", "no such workload"]),
        ({"read_hits": {"seed": 3}}, ["workload_overrides.read_hits.seed"]),
        ({"read_hits": {"no_such_key": 3}}, ["no_such_key"]),
    ],
)
def test_bad_workload_overrides_are_refused_in_one_line(wo, words):
    with pytest.raises(ConfigError) as err:
        plan(exp(grid={"workload": ["read_hits", "punch_hole"]}, workload_overrides=wo))
    one_line(str(err.value))
    for w in words:
        assert w in str(err.value)
