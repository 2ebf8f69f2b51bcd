"""``pmsim lockbench``: the command line and JSON keys external checks rely on."""

import json
import subprocess
import sys

import pytest

from pmsim.cli import main

KEYS = {
    "throughput_per_s",
    "mean_wait_s",
    "mean_hold_s",
    "lock_utilization",
    "acquisitions",
    "mean_spinning_cores",
    "ci95_throughput_per_s",
    "provenance",
}


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "pmsim", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("lock", ["ttas", "ticket", "mcs", "qlock"])
def test_json_keys_and_consistency(lock, capsys):
    rc = main(
        [
            "lockbench",
            "--lock",
            lock,
            "--threads",
            "4",
            "--hold",
            "exp:1us",
            "--think",
            "exp:4us",
            "--duration",
            "5ms",
            "--warmup",
            "1ms",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert KEYS <= out.keys()
    window = 4e-3
    assert out["throughput_per_s"] == pytest.approx(out["acquisitions"] / window)
    # Utilization law: U = X * S (hold is what the lock is held for).
    assert out["lock_utilization"] == pytest.approx(
        out["throughput_per_s"] * out["mean_hold_s"], rel=0.02
    )
    if lock == "qlock":
        assert out["mean_spinning_cores"] == 0.0  # qlock waiters sleep
    else:
        assert out["mean_spinning_cores"] > 0.0
    assert set(out["provenance"]) >= {"wall_s"}
    assert sum(out["cpu"].values()) == pytest.approx(1.0)


def test_same_seed_same_result_and_different_seed_differs(capsys):
    args = [
        "lockbench",
        "--lock",
        "ttas",
        "--threads",
        "6",
        "--hold",
        "exp:1us",
        "--think",
        "exp:3us",
        "--duration",
        "4ms",
        "--warmup",
        "1ms",
        "--json",
    ]
    outs = []
    for seed in ("5", "5", "6"):
        assert main(args + ["--seed", seed]) == 0
        d = json.loads(capsys.readouterr().out)
        d.pop("provenance")
        outs.append(d)
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]


def test_open_loop_and_cores(capsys):
    rc = main(
        [
            "lockbench",
            "--lock",
            "mcs",
            "--threads",
            "8",
            "--cores",
            "2",
            "--hold",
            "const:1us",
            "--arrivals",
            "exp:4us",
            "--duration",
            "10ms",
            "--warmup",
            "1ms",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cores"] == 2 and out["mode"] == "open"
    # ~1 request per 4 us over 9 ms
    assert 1800 < out["acquisitions"] < 2700


def test_ideal_then_set_is_the_bw_lock(capsys):
    rc = main(
        [
            "lockbench",
            "--lock",
            "ticket",
            "--threads",
            "4",
            "--hold",
            "exp:400ns",
            "--think",
            "exp:3us",
            "--ideal",
            "--set",
            "ticket_handoff_per_waiter_ns=100",
            "--duration",
            "3ms",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    overridden = out["costs_overridden"]
    assert overridden["ticket_handoff_per_waiter_ns"] == 100
    assert overridden["lock_pair_uncontended_ns"] == 0 and overridden["kthread_switch_ns"] == 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lock", "spin", "--threads", "2", "--hold", "exp:1us", "--think", "exp:1us"], "spin"),
        (
            ["--lock", "mcs", "--threads", "0", "--hold", "exp:1us", "--think", "exp:1us"],
            "--threads",
        ),
        (["--lock", "mcs", "--threads", "2", "--hold", "exp:1qs", "--think", "exp:1us"], "exp:1qs"),
        (["--lock", "mcs", "--threads", "2", "--hold", "exp:1us"], "--think"),
        (
            [
                "--lock",
                "mcs",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--arrivals",
                "exp:1us",
            ],
            "--arrivals",
        ),
        (
            [
                "--lock",
                "mcs",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--set",
                "nope_ns=3",
            ],
            "nope_ns",
        ),
        (
            [
                "--lock",
                "mcs",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--set",
                "cas_remote_ns=-4",
            ],
            "-4",
        ),
        (
            [
                "--lock",
                "mcs",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--duration",
                "1ms",
                "--warmup",
                "2ms",
            ],
            "--warmup",
        ),
        (
            [
                "--lock",
                "mcs",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--duration",
                "soon",
            ],
            "soon",
        ),
        # a cost this lock never reads would be silently ignored: refuse it
        (
            [
                "--lock",
                "mcs",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--set",
                "ticket_handoff_per_waiter_ns=100",
            ],
            "ticket_handoff_per_waiter_ns",
        ),
        (
            [
                "--lock",
                "qlock",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--set",
                "nvme_read_4k_us=9",
            ],
            "nvme_read_4k_us",
        ),
        (
            [
                "--lock",
                "ttas",
                "--threads",
                "2",
                "--hold",
                "exp:1us",
                "--think",
                "exp:1us",
                "--wake",
                "remote_ipi",
            ],
            "--wake",
        ),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, needle):
    r = run_cli("lockbench", *args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_validate_cli_quick_subset_exit_code():
    r = run_cli("validate", "--quick")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 failed" in r.stdout.splitlines()[-1]
