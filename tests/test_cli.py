"""Command-line behaviour shared by every subcommand: a closed pipe, and generated bad input
to every command (one line, status 2, never a traceback)."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pmsim.cli import build_parser, main


def test_a_closed_pipe_ends_quietly():
    # `pmsim costs | head -1`: the reader goes away; pmsim must not print a traceback.
    p = subprocess.Popen(
        [sys.executable, "-m", "pmsim", "costs"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    p.stdout.close()
    err = p.stderr.read().decode()
    rc = p.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert rc == 141


# --- generated bad input: every command, one line and status 2, never a traceback ---------------

COMMANDS = [
    "lockbench",
    "validate",
    "run",
    "sweep",
    "plot",
    "report",
    "experiments",
    "designs",
    "workloads",
    "costs",
]
FOLDER = Path(tempfile.mkdtemp(prefix="pmsim-cli-"))  # the generated files, gone at exit
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)


class Validated(BaseException):
    """Raised where a command would start simulating: its input passed every check."""


def _options(command: str) -> dict[str, bool]:
    """The command's options, each with whether it takes a value."""
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {
        o: a.nargs != 0 for a in sub._actions for o in a.option_strings if o not in ("-h", "--help")
    }


_words = st.sampled_from(
    ["0", "-1", "1", "2", "3", "1e9", "nan", "inf", "-inf", "true", "null", "", " ", "x", "[]",
     "{}", "[1, [2]]", "{a: 1}", "&a [*a]", "10us", "-5ms", "1ms", "20", "exp:1us", "exp:-1us",
     "const:0ns", "uniform:2us:1us", "lognormal:1us:0", "ttas", "qlock", "mcs", "old", "new",
     "read_hits", "quick", "nope", "a=b", "=", "machine.cores=0", "duration=0ms",
     "processes.0.threads=-3", "pattern.kind=zipf", "files.0.pages=1e3", "cpu_clock_ghz=0",
     "loop.arrivals=exp:0ns", "mix.read=-1", "x.y.z=1", "\x00", "a\nb", "\x1e", "é", "--", "/", ".."]
)  # fmt: skip
_text = st.text(max_size=12)
_key = st.sampled_from(
    ["machine", "machine.cores", "files", "files.0.pages", "processes.0.threads", "mix",
     "mix.read", "mix.mmap_munmap", "pattern", "pattern.kind", "pattern.page", "churn.pages",
     "loop", "loop.kind", "loop.arrivals", "duration", "warmup", "seed", "name", "daemons",
     "request_pages", "touch_stores", "typo", "cacheline_transfer_ns"]
)  # fmt: skip
_yaml_value = st.recursive(
    st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.booleans(), st.none(), _text, _words),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_key | _text, inner, max_size=3),
    max_leaves=6,
)


@st.composite
def _yaml_file(draw, experiment: bool) -> str:
    if experiment:
        keys = ["name", "workload", "designs", "grid", "zip", "overrides", "exclude",
                "replications", "seed", "out", "question", "typo"]  # fmt: skip
        raw = draw(st.dictionaries(st.sampled_from(keys), _yaml_value, max_size=6))
        if draw(st.booleans()):  # mostly valid, one thing wrong
            raw = {"workload": "read_hits", "designs": ["new"], "overrides": {"duration": "1ms"},
                   **raw}  # fmt: skip
    else:
        raw = draw(st.dictionaries(_key, _yaml_value, max_size=6))
    text = yaml.safe_dump(raw) if draw(st.booleans()) else draw(st.sampled_from(
        ["", "- 1", "a: [", "a: &x 1\nb: *x", "a: 1\na: 2", "\t", "mix: {read: 1}\nname: " + "[" * 5000 + "]" * 5000]
    ))  # fmt: skip
    path = FOLDER / f"{draw(st.integers(0, 10**9))}.yaml"
    path.write_text(text)
    return str(path)


@st.composite
def _argv(draw, command: str) -> list[str]:
    """Mostly well-formed command lines (so most reach the checks past argparse), each with
    values drawn from odd, out-of-range and malformed ones."""
    argv = [command]
    if command in ("run", "sweep"):
        argv.append(
            draw(st.sampled_from(["read_hits", "quick", "nope", "x.yaml"]) | _yaml_file(command == "sweep"))
        )  # fmt: skip
    if command in ("plot", "report"):
        argv.append(draw(st.sampled_from([str(FOLDER), str(FOLDER / "none"), "", "/"])))
    value = _words | _text | st.builds(lambda k, v: f"{k}={v}", _key, _words)
    if command == "lockbench":  # its required options, mostly well-formed
        dist = st.sampled_from(["exp:1us", "const:0ns", "exp:0ns", "uniform:1us:2us", "1us"])
        argv += ["--lock", draw(st.sampled_from(["ttas", "ticket", "mcs", "qlock"]) | value)]
        argv += ["--threads", draw(st.sampled_from(["1", "4", "0", "-2", "100000"]) | value)]
        argv += ["--hold", draw(dist | value)]
        argv += [draw(st.sampled_from(["--think", "--arrivals"])), draw(dist | value)]
    options = _options(command)
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 9)) == 0:  # something argparse refuses
            argv += draw(st.sampled_from([["--bogus"], ["-x", "1"], ["--out"]]) | st.tuples(value))
        elif options:
            option = draw(st.sampled_from(sorted(options)))
            argv += [option, draw(value)] if options[option] else [option]
    if command in ("run", "sweep") and "--out" not in argv:
        argv += ["--out", str(FOLDER / "out" / str(draw(st.integers(0, 10**9))))]
    return argv


@pytest.fixture
def stubbed(monkeypatch):
    """Every command stops with :class:`Validated` where it would start its real work."""
    from pmsim import lockbench, validate
    from pmsim.sweeps import api
    from pmsim.workload import runner

    def checked_lockbench(spec):
        spec.check()
        raise Validated

    def stop(*a, **kw):
        raise Validated

    monkeypatch.setattr(lockbench, "run_lockbench", checked_lockbench)
    monkeypatch.setattr(validate, "run_validation", stop)
    monkeypatch.setattr(runner, "run_workload", stop)
    monkeypatch.setattr(api, "open_executor", stop)
    monkeypatch.chdir(FOLDER)


@pytest.mark.parametrize("command", COMMANDS)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_bad_input_is_one_line_and_status_2(stubbed, capsys, command, data):
    """60 generated command lines per command (600 in all): each either passes its checks (or
    is a listing, status 0) or stops with one line naming the problem, status 2. Never a
    traceback, an internal error or another status."""
    argv = data.draw(_argv(command))
    try:
        status = main(argv)
    except Validated:
        event("passed its checks")
        return
    out, err = capsys.readouterr()
    event(f"status {status}: {err.split(':')[2].split()[0] if err.count(':') > 2 else '-'}")
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if status == 0:
        assert err == "", (argv, err)
        return
    assert status == 2, (argv, status, err)
    assert err.startswith("pmsim: error: ") and len(err.splitlines()) == 1, (argv, err)
    assert os.path.isdir(FOLDER)
