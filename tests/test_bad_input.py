"""Hostile input: YAML that would expand to gigabytes or recurse without end, workloads that
passed validation and crashed mid-run, a full disk, unreadable paths, and a crash pmsim did not
expect. Each ends with one line and a status (2 for bad input, 1 for the machine or a bug),
never a traceback, and leaves nothing half-written."""

from __future__ import annotations

import errno
from pathlib import Path

import pandas as pd
import pytest
import yaml

import pmsim
from pmsim.cli import main
from pmsim.errors import ConfigError
from pmsim.sweeps import store as store_mod

QUICK = ["--set", "duration=1ms", "--set", "warmup=0.1ms", "--set", "machine.cores=2"]


def one_line_error(capsys, status: int, got: int) -> str:
    err = capsys.readouterr().err
    assert got == status, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --- YAML ------------------------------------------------------------------------------------------

BOMB = """mix: {read: 1}
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
"""


@pytest.mark.parametrize("where", ["workload", "experiment", "set"])
def test_yaml_aliases_are_refused(tmp_path, capsys, where):
    if where == "workload":
        (tmp_path / "bomb.yaml").write_text(BOMB)
        got = main(["run", str(tmp_path / "bomb.yaml")])
    elif where == "experiment":
        (tmp_path / "bomb.yaml").write_text("designs: [new]\nworkload: read_hits\n" + BOMB[15:])
        got = main(["sweep", str(tmp_path / "bomb.yaml"), "--out", str(tmp_path / "o")])
    else:
        got = main(["run", "read_hits", "--set", "name=&a [*a, *a]"])
    err = one_line_error(capsys, 2, got)
    assert "alias *a (aliases are not allowed)" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["workload", "set"])
def test_deeply_nested_yaml_is_refused(tmp_path, capsys, where):
    deep = "[" * 5000 + "]" * 5000
    if where == "workload":
        (tmp_path / "deep.yaml").write_text(f"mix: {{read: 1}}\nname: {deep}\n")
        got = main(["run", str(tmp_path / "deep.yaml")])
    else:
        got = main(["run", "read_hits", "--set", f"name={deep}"])
    assert "nested more than 64 levels deep" in one_line_error(capsys, 2, got)


# --- workloads that crashed mid-run ------------------------------------------------------------------


@pytest.mark.parametrize(
    "sets, needle",
    [
        (
            ["pattern.kind=disjoint", "churn.pages=4090"],
            "workload: pattern disjoint: file 'data' (as churn blocks start) has 7 pages, fewer "
            "than the 16 threads",
        ),
        (
            ["pattern.kind=hot_page", "pattern.page=100", "churn.pages=4090"],
            "workload: pattern.page (100) is past the end of file 'data' (as churn blocks start)",
        ),
    ],
)
def test_churn_range_is_checked_against_the_pattern(capsys, sets, needle):
    args = sum((["--set", s] for s in sets), [])
    err = one_line_error(capsys, 2, main(["run", "mmap_churn", *args, *QUICK]))
    assert needle in err


def test_open_loop_arrivals_need_a_positive_mean(capsys):
    sets = ["loop.kind=open", "loop.think=null", "loop.arrivals=const:0ns"]
    args = sum((["--set", s] for s in sets), [])
    err = one_line_error(capsys, 2, main(["run", "read_hits", *args, *QUICK]))
    assert "workload loop.arrivals: the mean interarrival must be > 0, got const:0ns" in err


def test_a_sweep_refuses_them_before_anything_runs(tmp_path):
    exp = {
        "name": "crashy",
        "workload": "mmap_churn",
        "designs": ["new"],
        "grid": {"churn.pages": [16, 4090]},
        "overrides": {"pattern": {"kind": "disjoint"}, "duration": "1ms", "warmup": "0.1ms"},
    }
    with pytest.raises(ConfigError, match=r"at churn.pages=4090: .*pattern disjoint"):
        pmsim.sweep(exp, tmp_path / "o", workers=1, progress=False)
    assert not (tmp_path / "o").exists()


def test_a_crash_pmsim_did_not_expect_is_one_line_and_its_traceback_is_kept(
    monkeypatch, capsys, tmp_path
):
    from pmsim.workload import runner

    def broken(spec, design):
        raise IndexError("index 4140 is out of bounds")

    monkeypatch.setattr(runner, "run_workload", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    err = one_line_error(capsys, 1, main(["run", "read_hits"]))
    assert err.startswith("pmsim: internal error (a bug, please report it): IndexError: index")
    kept = Path(err.rsplit("traceback in ", 1)[1].strip())
    assert kept.parent == tmp_path and "in broken" in kept.read_text()


# --- a full disk, unreadable paths ---------------------------------------------------------------------


def _full_disk_after(monkeypatch, writes: int):
    """Let ``writes`` files be written, then fail as a full disk does (the next is half done)."""
    real, count = store_mod._atomic, [0]

    def atomic(path, write):
        count[0] += 1
        if count[0] > writes:

            def half(tmp):
                tmp.write_bytes(b"half a file")
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

            return real(path, half)
        return real(path, write)

    monkeypatch.setattr(store_mod, "_atomic", atomic)


EXP = {
    "name": "disk",
    "workload": "read_hits",
    "designs": ["old", "new"],
    "overrides": {"machine.cores": 2, "duration": "1ms", "warmup": "0.2ms"},
    "replications": 2,
}


# The manifest; mid-run (a run writes 12 files); the sweep's tables at the end (after 49).
@pytest.mark.parametrize("writes", [0, 17, 55])
def test_a_full_disk_is_one_line_and_a_resume_is_identical(tmp_path, monkeypatch, capsys, writes):
    path = tmp_path / "disk.yaml"
    path.write_text(yaml.safe_dump(EXP))
    out = tmp_path / "out"
    args = ["sweep", str(path), "--out", str(out), "--workers", "1", "--quiet"]
    _full_disk_after(monkeypatch, writes)
    err = one_line_error(capsys, 1, main(args))
    assert err.startswith("pmsim: error: no space left on the device writing ")
    assert "run the same command again" in err
    assert not [p for p in out.rglob(".*")], "a temporary file was left"
    monkeypatch.undo()
    assert main(args) == 0
    capsys.readouterr()
    clean = pmsim.sweep(path, tmp_path / "clean", workers=1, progress=False)
    for name in ("summary", "aggregate", "differences"):
        assert (out / f"{name}.parquet").read_bytes() == (
            clean.out / f"{name}.parquet"
        ).read_bytes()


def test_a_full_disk_in_pmsim_run_out(tmp_path, monkeypatch, capsys):
    def full(self, path, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    got = main(["run", "read_hits", *QUICK, "--out", str(tmp_path / "run")])
    assert one_line_error(capsys, 1, got).startswith("pmsim: error: no space left on the device")
    assert list(tmp_path.iterdir()) == []


def test_unreadable_paths_are_one_line(tmp_path, monkeypatch, capsys):
    done = pmsim.sweep(
        {**EXP, "replications": 1, "designs": ["new"]}, tmp_path / "s", workers=1, progress=False
    )
    real = Path.read_text

    def denied(self, *a, **kw):
        if self.name == "manifest.json":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", denied)
    err = one_line_error(capsys, 2, main(["report", str(done.out), "--no-figures"]))
    assert err == f"pmsim: error: {done.out / 'manifest.json'}: permission denied\n"
    got = main(["sweep", "quick", "--out", str(done.out), "--workers", "1"])
    assert one_line_error(capsys, 2, got).endswith("manifest.json: permission denied\n")
    monkeypatch.undo()

    def no_listing(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", no_listing)
    got = main(["sweep", "quick", "--out", str(done.out), "--workers", "1"])
    assert one_line_error(capsys, 2, got) == f"pmsim: error: {done.out}: permission denied\n"


# --- messages that misled ----------------------------------------------------------------------------


def test_a_folder_given_as_a_workload_or_an_experiment_says_so(tmp_path, capsys, monkeypatch):
    from pmsim.sweeps.spec import load_experiment
    from pmsim.workload.load import load_spec

    folder = tmp_path / "runs.yaml"
    folder.mkdir()
    err = one_line_error(capsys, 2, main(["run", str(folder)]))
    assert "is a folder, not a workload file" in err  # it said "no such file"
    err = one_line_error(capsys, 2, main(["sweep", str(tmp_path)]))
    assert "is a folder, not an experiment file" in err  # it said "unknown name"
    # A folder named as a preset (pmsim run read_hits --out read_hits) leaves the preset be.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "read_hits").mkdir()
    (tmp_path / "quick").mkdir()
    assert load_spec("read_hits").name == "read_hits"
    assert load_experiment("quick").name == "quick"


def test_a_negative_duration_is_called_negative(capsys):
    err = one_line_error(capsys, 2, main(["run", "read_hits", "--set", "duration=-1ms"]))
    assert "workload duration: duration '-1ms' is negative" in err  # it said "malformed"


def test_a_bad_run_out_is_refused_before_the_run(tmp_path, monkeypatch, capsys):
    from pmsim.workload import runner

    def no_run(spec, design):
        raise AssertionError("ran")

    monkeypatch.setattr(runner, "run_workload", no_run)
    (tmp_path / "notes.txt").write_text("mine")
    err = one_line_error(capsys, 2, main(["run", "read_hits", "--out", str(tmp_path)]))
    assert "not a folder pmsim run wrote" in err
    err = one_line_error(capsys, 2, main(["run", "read_hits", "--out", "/dev/null"]))
    assert "exists and is not a folder" in err


@pytest.mark.parametrize(
    "sets, needle",
    [
        (["pattern.repeat=0"], "pattern.repeat: input should be greater than or equal to 1, got 0"),
        (["pattern.kind=hot_page", "pattern.repeat=2"], "repeat"),
    ],
)
def test_a_bad_pattern_repeat_is_one_line(capsys, sets, needle):
    args = sum((["--set", s] for s in sets), [])
    err = one_line_error(capsys, 2, main(["run", "read_hits", *args, *QUICK]))
    assert needle in err
