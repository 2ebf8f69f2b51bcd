"""Fidelity beyond the page map: the syscall layer moves the bottleneck, every sleep pays the
same kthread block/restart cost, Akaros's own stores, and costs that are one physical quantity
move together (derived costs)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pmsim.costs import CostTable, cost_params
from pmsim.kernel.system import Kernel
from pmsim.machine import Machine
from pmsim.storage import WHAT_IF
from pmsim.workload.load import load_spec, presets, read_workload
from pmsim.workload.runner import run_workload

SHORT = ["duration=2ms", "warmup=0.5ms"]


# --------------------------------------------------------------- the syscall layer
@pytest.fixture(scope="module")
def at_32_cores():
    """read hits at 32 cores: 32 single-thread processes, and one process of 32 threads
    sharing its fd, on both designs."""
    out = {}
    for preset, shape in (
        ("read_hits_procs", ["processes.0.count=32", "processes.0.threads=1"]),
        ("read_hits", ["processes.0.count=1", "processes.0.threads=32"]),
    ):
        spec = load_spec(preset, ["machine.cores=32", *shape, *SHORT])
        for design in ("old", "new"):
            out[preset, design] = run_workload(spec, design).summary
    return out


def test_new_wins_by_10x_across_processes(at_32_cores):
    ratio = (
        at_32_cores["read_hits_procs", "new"]["total_ops_per_s"]
        / at_32_cores["read_hits_procs", "old"]["total_ops_per_s"]
    )
    assert ratio >= 10, ratio


def test_threads_of_one_process_bottleneck_on_the_fd_table(at_32_cores):
    new, old = at_32_cores["read_hits", "new"], at_32_cores["read_hits", "old"]
    assert new["total_ops_per_s"] / old["total_ops_per_s"] <= 3
    waits = {
        name: lock["wait_us_mean"] * lock["acquisitions"] for name, lock in new["locks"].items()
    }
    assert max(waits, key=waits.get) in ("fdt_lock", "chan_lock"), waits


def _one_thread_reads_and_writes(private: bool) -> tuple[float, dict]:
    """One process of one thread reads and writes 40 pages (misses, hits) on two cores' worth
    of machine; returns its clock at the end and its fd table's and chan's lock statistics."""
    m = Machine(cores=2, seed=3)
    k = Kernel(m, "new")
    f = k.file("f", 64)
    k.warm(f, range(0, 64, 2))
    p = k.process("p", cores=[0])
    th = m.thread("t", 0, p)
    if private:
        p.fdt.make_private(th)

    def body():
        for i in range(40):
            yield from (k.write if i % 3 == 0 else k.read)(th, f, i)
        yield from th.exit()

    m.env.process(body())
    m.run(until=1e9)
    locks = {
        name: (st.acquisitions, st.contended, st.wait.mean(), st.hold.mean())
        for name, st in m.recorder.locks.items()
        if name in ("fdt_lock", "chan_lock")
    }
    return th.now, locks


def test_a_private_fd_table_costs_what_the_locked_path_costs():
    """A single-thread process's fd table and chans are charged without sync points: the same
    times and lock statistics as the locked path (up to float rounding: the same costs are
    added in another order)."""
    t_private, private = _one_thread_reads_and_writes(True)
    t_locked, locked = _one_thread_reads_and_writes(False)
    assert t_private == pytest.approx(t_locked, rel=1e-12)
    assert private.keys() == locked.keys() == {"fdt_lock", "chan_lock"}
    for name in private:
        assert private[name][:2] == locked[name][:2] == (40 if name == "fdt_lock" else 80, 0)
        assert private[name][2:] == pytest.approx(locked[name][2:], rel=1e-12)


def test_kernel_threads_skip_the_syscall_layer():
    """A thread without a process (a daemon) reads the file directly: no fd-table lock."""
    m = Machine(cores=1)
    k = Kernel(m, "new")
    f = k.file("f", 8)
    k.warm(f, range(8))
    th = m.thread("kt", 0)
    m.env.process(k.read(th, f, 0))
    m.run(until=1e6)
    assert m.recorder.locks.get("fdt_lock") is None


def test_per_thread_fds_still_share_the_fd_table_lock():
    spec = load_spec(
        "read_hits",
        ["machine.cores=4", "processes.0.threads=4", "processes.0.fd=per_thread", *SHORT],
    )
    locks = run_workload(spec, "new").summary["locks"]
    assert locks["fdt_lock"]["contended_fraction"] > 0
    # every thread its own chan: c->lock is never contended
    assert locks["chan_lock"]["contended_fraction"] == 0


# --------------------------------------------------------------- one block/restart cost
def _sleeper_core_useful(scenario, switch: float) -> dict[str, float]:
    """Run ``scenario(machine, kernel)`` to completion with ``kthread_switch_ns`` = ``switch``;
    return each thread's core's useful time."""
    m = Machine(
        cores=2, costs=CostTable({"kthread_switch_ns": switch, "nvme_latency_sigma": 0}), seed=1
    )
    k = Kernel(m, "new")
    threads = scenario(m, k)
    m.run(until=5e6)
    assert m.finished >= {th.name for th in threads}  # every sleeper woke and finished
    return {th.name: th.core.useful for th in threads}


def _finish(m, th, gen):
    """Run ``gen`` on ``th`` as a kernel path, then end the thread (its work all synced)."""

    def body():
        th.kernel_enter()
        yield from gen
        yield from th.kernel_exit()
        yield from th.exit()
        m.finished.add(th.name)

    if not hasattr(m, "finished"):
        m.finished = set()
    m.env.process(body())


def _qlock_wait(m, k):
    q = m.qlock("Q")
    h, w = m.thread("h", 0), m.thread("w", 1)

    def holder():
        yield from q.acquire(h)
        h.pending += 10_000
        yield from q.release(h)

    def waiter():
        yield m.env.timeout(100)
        yield from q.acquire(w)
        yield from q.release(w)

    _finish(m, h, holder())
    _finish(m, w, waiter())
    return [w]


def _page_lock_wait(m, k):
    """A misses page 0 (an NVMe read: A sleeps on IO); B finds it locked and sleeps on its
    page lock until A's unlock_page."""
    f = k.file("f", 8, "nvme")
    a, b = m.thread("A", 0), m.thread("B", 1)

    def later():
        yield m.env.timeout(10_000)
        yield from k.read(b, f, 0)

    _finish(m, a, k.read(a, f, 0))
    _finish(m, b, later())
    return [a, b]


def _io_sleep(m, k):
    f = k.file("f", 8, "nvme")
    a = m.thread("A", 0)
    _finish(m, a, k.read(a, f, 0))
    return [a]


@pytest.mark.parametrize("scenario", [_qlock_wait, _page_lock_wait, _io_sleep])
def test_every_sleep_pays_one_save_and_one_restart(scenario):
    """Each of these threads sleeps once (qlock, page lock, IO): raising kthread_switch_ns by
    D adds exactly 2 D of work to its core (save_kthread_ctx and restart_kthread)."""
    base = _sleeper_core_useful(scenario, 100.0)
    more = _sleeper_core_useful(scenario, 350.0)
    for name in base:
        assert more[name] - base[name] == pytest.approx(2 * 250.0), name


# --------------------------------------------------------------- Akaros's stores
def test_presets_use_akaros_stores():
    for name in presets():
        raw, _ = read_workload(name)
        stores = {f.get("store", "tmpfs") for f in raw.get("files", [{}])}
        assert stores <= {"tmpfs", "gtfs"}, (name, stores)


def test_a_what_if_store_is_labelled():
    spec = load_spec("cold_misses", ["machine.cores=2", "files.0.store=nvme", *SHORT])
    summary = run_workload(spec, "new").summary
    assert summary["io"]["what_if_stores"] == ["nvme"] and "nvme" in WHAT_IF
    out = subprocess.run(
        [sys.executable, "-m", "pmsim", "run", "cold_misses", "--design", "new"]
        + [f"--set={s}" for s in ["machine.cores=2", "files.0.store=nvme", *SHORT]],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "what-if store: nvme" in out.stdout


def test_gtfs_fsync_sends_a_wstat_only_when_the_metadata_changed():
    m = Machine(cores=1)
    k = Kernel(m, "new")
    f = k.file("f", 8, "gtfs")
    k.warm(f, range(8))
    th = m.thread("t", 0)

    def body():
        yield from k.fsync(th, f)  # nothing changed yet: no RPC
        yield from k.write(th, f, 0)  # the mtime changes
        yield from k.fsync(th, f)  # one wstat
        yield from k.fsync(th, f)  # none

    m.env.process(body())
    m.run(until=1e8)
    assert m.recorder.counters.get("io_metadata") == 1


# --------------------------------------------------------------- derived costs
def test_derived_costs_follow_their_base_unless_set():
    params = cost_params()
    derived = [p for p in params.values() if p.derived_from]
    assert {p.name for p in derived} >= {
        "ticket_handoff_per_waiter_ns",
        "spinlock_handoff_ns",
        "cas_remote_ns",
    }
    for p in derived:
        base = params[p.derived_from]
        assert p.default == pytest.approx(p.factor * base.default), p.name
        assert p.range == pytest.approx((p.factor * base.range[0], p.factor * base.range[1]))
    moved = CostTable({"cacheline_transfer_ns": 30})
    assert moved.ns("ticket_handoff_per_waiter_ns") == 30 and moved.ns("cas_remote_ns") == 60
    assert moved.derived_overridden == []
    pinned = CostTable({"cacheline_transfer_ns": 30, "cas_remote_ns": 200})
    assert pinned.ns("cas_remote_ns") == 200 and pinned.derived_overridden == ["cas_remote_ns"]


def test_pmsim_costs_shows_what_a_cost_derives_from():
    out = subprocess.run(
        [sys.executable, "-m", "pmsim", "costs"], capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("cas_remote_ns "))
    assert "= 2 x cacheline_transfer_ns" in line


def test_old_contended_throughput_moves_with_the_line_transfer():
    tput = []
    for xfer in (30, 60, 140):
        spec = load_spec(
            "read_hits_procs",
            ["machine.cores=8", "processes.0.count=8", f"cacheline_transfer_ns={xfer}", *SHORT],
        )
        tput.append(run_workload(spec, "old").summary["total_ops_per_s"])
    assert tput[0] > tput[1] > tput[2], tput


@pytest.mark.parametrize("kind", ["ttas", "ticket", "mcs"])
def test_no_hand_off_is_cheaper_than_the_line_transfer(kind):
    m = Machine(cores=2, costs=CostTable({"cacheline_transfer_ns": 100}))
    lock = m.spinlock("L", kind)
    a, b = m.cores
    for k in range(1, 6):
        assert lock._handoff(k, a, b) >= 100
