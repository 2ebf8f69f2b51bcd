"""Semantics of the sync primitives on small scripted scenarios, with exact simulated times.

Every scenario sets the costs it depends on to round numbers (``COSTS``) so the expected
times below can be checked by hand; times are in ns.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import simpy

from pmsim.costs import CostTable
from pmsim.errors import InvariantViolation
from pmsim.machine import Machine
from pmsim.process import Process
from pmsim.rng import RandomStreams
from pmsim.storage import BackingStore
from pmsim.sync.tlb import TlbShootdown
from pmsim.units import Distribution

COSTS = {
    "lock_pair_uncontended_ns": 10,
    "cacheline_transfer_ns": 50,
    "cacheline_transfer_remote_socket_ns": 150,
    "ticket_handoff_per_waiter_ns": 120,
    "ttas_handoff_factor": 0.5,  # TTAS hand-offs as the ticket model here (c*k/2)
    "spinlock_handoff_ns": 60,
    "cas_uncontended_ns": 5,
    "cas_remote_ns": 100,
    "cas_remote_socket_ns": 400,
    "contended_atomic_per_contender_ns": 20,
    "kthread_switch_ns": 2000,  # save_kthread_ctx or restart_kthread
    "kmsg_send_ns": 200,
    "qlock_sleep_wake_us": 5,  # 5000 ns
    "ipi_send_ns": 300,
    "ipi_latency_ns": 400,
    "ipi_receive_cycles": 1000,
    "cpu_clock_ghz": 2,  # 1000 cycles = 500 ns
    "tlb_flush_local_ns": 100,  # handler = 500 + 100 = 600 ns
    "call_rcu_ns": 100,
    "page_zero_4k_ns": 250,
    "tmpfs_readpage_sleep_us": 1,  # 1000 ns
}
PAIR, XFER, XFER_SOCK = 10, 50, 150
TICKET_C, MCS_H = 120, 60
SAVE = 2000 + 10  # qlock slow path: save_kthread_ctx + sem spinlock pair
CS, KMSG, REMOTE_WAKE, IPI_SEND, IPI_LATENCY = 2000, 200, 5000, 300, 400
HANDLER = 600
MS = 1e6


def machine(cores=4, sockets=1, seed=0, **kw) -> Machine:
    overrides = dict(COSTS)
    overrides.update(kw.pop("costs", {}))
    return Machine(cores=cores, sockets=sockets, costs=CostTable(overrides), seed=seed, **kw)


def test_cost_constants_match_the_table():
    c = CostTable(COSTS)
    assert c.ns("ipi_receive_cycles") + c.ns("tlb_flush_local_ns") == HANDLER
    assert c.ns("kthread_switch_ns") + c.ns("lock_pair_uncontended_ns") == SAVE
    assert c.ns("qlock_sleep_wake_us") == REMOTE_WAKE


# =========================================================================== spinlocks
def _spin_scenario(kind, arrivals=(100, 200, 300), hold=1000, seed=0, cores=4, sockets=1):
    """Holder h on core 0 takes the lock at 0 and holds ``hold``; w_i on core i+1 arrive at
    ``arrivals[i]``. Returns (machine, lock, log of (name, time the lock was taken), threads)."""
    m = machine(cores=cores, sockets=sockets, seed=seed)
    lock = m.spinlock("L", kind)
    log = []

    def user(th, arrive):
        yield m.env.timeout(arrive)
        th.kernel_enter()
        yield from lock.acquire(th)
        log.append((th.name, th.now))
        th.pending += hold
        yield from lock.release(th)
        yield from th.kernel_exit()

    ths = [m.thread("h", 0)] + [m.thread(f"w{i + 1}", i + 1) for i in range(len(arrivals))]
    for th, t in zip(ths, (0,) + tuple(arrivals)):
        m.env.process(user(th, t))
    return m, lock, log, ths


@pytest.mark.parametrize("kind", ["ticket", "mcs"])
def test_fifo_spinlocks_serve_in_arrival_order(kind):
    m, lock, log, ths = _spin_scenario(kind)
    m.run(until=10_000)
    if kind == "ticket":  # hand-off = c * k / 2, k = 3, 2, 1 spinners at the releases
        gaps = [TICKET_C * 3 / 2, TICKET_C * 2 / 2, TICKET_C * 1 / 2]
    else:  # one line transfer per hand-off, whatever k
        gaps = [MCS_H] * 3
    expected, t = [("h", PAIR)], PAIR + 1000
    for i, g in enumerate(gaps):
        t += g
        expected.append((f"w{i + 1}", t))
        t += 1000
    assert log == expected
    assert lock.holder is None
    st = m.recorder.locks["L"]
    assert st.acquisitions == 4 and st.contended == 3 and st.max_queue == 3
    assert st.kind == kind


def test_fifo_spinlocks_with_reversed_core_order():
    """Order is by arrival, not by core number."""
    m = machine()
    lock = m.spinlock("L", "ticket")
    log = []

    def user(th, arrive):
        yield m.env.timeout(arrive)
        yield from lock.acquire(th)
        log.append(th.name)
        th.pending += 1000
        yield from lock.release(th)

    for core, arrive in [(0, 0), (3, 100), (1, 200), (2, 300)]:
        m.env.process(user(m.thread(f"c{core}", core), arrive))
    m.run(until=10_000)
    assert log == ["c0", "c3", "c1", "c2"]


def _ttas_expected_order(seed, n_waiters):
    rng = RandomStreams(seed).get("spinlock.L")
    waiting = [f"w{i + 1}" for i in range(n_waiters)]
    order = []
    while waiting:
        i = int(rng.integers(len(waiting))) if len(waiting) > 1 else 0
        order.append(waiting.pop(i))
    return order


def test_ttas_winner_is_drawn_from_the_lock_stream():
    arrivals = (100, 200, 300, 400)
    orders = set()
    for seed in range(12):
        m, lock, log, _ = _spin_scenario("ttas", arrivals, seed=seed, cores=5)
        m.run(until=20_000)
        names = [n for n, _ in log]
        assert names[0] == "h"
        assert names[1:] == _ttas_expected_order(seed, 4)
        # Hand-off cost is per spinner at the release, whoever wins: k = 4, 3, 2, 1.
        times = [t for _, t in log]
        assert times[1] == PAIR + 1000 + TICKET_C * 4 / 2
        for i, k in enumerate((3, 2, 1)):
            assert times[i + 2] - times[i + 1] == 1000 + TICKET_C * k / 2
        orders.add(tuple(names[1:]))
    assert any(o != ("w1", "w2", "w3", "w4") for o in orders), (
        "TTAS should not be FIFO for every seed"
    )


def test_ttas_stream_is_independent_of_other_streams():
    m1, _, log1, _ = _spin_scenario("ttas", (100, 200, 300, 400), seed=3, cores=5)
    m1.rng("something.else").random(1000)
    m1.run(until=20_000)
    m2, _, log2, _ = _spin_scenario("ttas", (100, 200, 300, 400), seed=3, cores=5)
    m2.run(until=20_000)
    assert log1 == log2


def _hammer(kind, n=4, hold=100, until=400_000, seed=1):
    m = machine(cores=n, seed=seed)
    lock = m.spinlock("L", kind)
    winners = []

    def loop(th):
        while True:
            th.kernel_enter()
            yield from lock.acquire(th)
            winners.append(th.name)
            th.pending += hold
            yield from lock.release(th)
            yield from th.kernel_exit()

    for i in range(n):
        m.env.process(loop(m.thread(f"t{i}", i)))
    m.run(until=until)
    return m, winners


def test_ttas_is_unfair_but_everyone_wins_sometimes():
    m, winners = _hammer("ttas")
    n = len(winners)
    assert n > 1000
    counts = Counter(winners)
    assert set(counts) == {"t0", "t1", "t2", "t3"}
    for name, c in counts.items():
        assert c > 0.15 * n, (name, c, n)
    # Not a rotation: some thread wins again while others have waited longer (A, B, A).
    assert any(a == c for a, c in zip(winners, winners[2:]))
    assert winners[:400] != [winners[i % 4] for i in range(400)]
    # Compare: the ticket lock is a strict rotation.
    _, fifo = _hammer("ticket", until=200_000)
    assert fifo[:400] == [f"t{i % 4}" for i in range(400)]


def test_uncontended_acquire_costs_a_lock_pair_plus_a_line_transfer_if_remote():
    m = machine(cores=3)
    lock = m.spinlock("L", "ttas")
    costs = []

    def seq():
        a, b = ths[0], ths[1]
        for th, at in [(a, 0), (a, 100), (b, 200), (b, 300), (a, 400), (ths[2], 500)]:
            yield m.env.timeout(at - m.env.now)
            yield from lock.acquire(th)
            costs.append(th.pending)
            yield from lock.release(th)  # syncs the acquire cost
            assert m.env.now == at + costs[-1]

    ths = [m.thread(f"t{i}", i) for i in range(3)]
    m.env.process(seq())
    m.run(until=1000)
    assert costs == [PAIR, PAIR, PAIR + XFER, PAIR, PAIR + XFER, PAIR + XFER]


@pytest.mark.parametrize("kind", ["ttas", "ticket", "mcs"])
def test_uncontended_acquire_across_sockets(kind):
    m = machine(cores=2, sockets=2)
    lock = m.spinlock("L", kind)
    a, b = m.thread("a", 0), m.thread("b", 1)
    seen = []

    def seq():
        yield from lock.acquire(a)
        yield from lock.release(a)
        yield from lock.acquire(b)
        seen.append(b.pending)
        yield from lock.release(b)

    m.env.process(seq())
    m.run(until=1000)
    assert seen == [PAIR + XFER_SOCK]


def test_mcs_handoff_across_sockets_is_a_remote_line_transfer():
    m, lock, log, _ = _spin_scenario("mcs", arrivals=(100,), cores=2, sockets=2)
    m.run(until=10_000)
    assert log == [("h", PAIR), ("w1", PAIR + 1000 + XFER_SOCK)]


def test_ticket_handoff_scales_with_spinners():
    for n in (1, 2, 5):
        m, lock, log, _ = _spin_scenario(
            "ticket", arrivals=tuple(100 * (i + 1) for i in range(n)), cores=n + 1
        )
        m.run(until=100_000)
        assert log[1][1] - (PAIR + 1000) == TICKET_C * n / 2


def test_spin_time_is_accounted_exactly_and_cpu_fractions_sum_to_one():
    m, lock, log, ths = _spin_scenario("ticket")
    m.run(until=5000)
    acq = dict(log)
    # w_i spins from its arrival until the hand-off reaches it.
    assert m.cores[0].spin == 0
    for i, arrive in enumerate((100, 200, 300)):
        assert m.cores[i + 1].spin == acq[f"w{i + 1}"] - arrive
    assert [c.spin for c in m.cores[1:]] == [1090, 2110, 3070]  # hand-offs c*k/2: 180, 120, 60
    assert [c.useful for c in m.cores] == [PAIR + 1000, 1000, 1000, 1000]
    cpu = m.recorder.cpu()
    total = 5000 * 4
    assert cpu["spin"] == pytest.approx((1090 + 2110 + 3070) / total)
    assert cpu["useful"] == pytest.approx((PAIR + 4000) / total)
    assert cpu["ipi"] == 0
    assert sum(cpu.values()) == pytest.approx(1.0)
    assert cpu["idle"] == pytest.approx(1 - (PAIR + 4000 + 6270) / total)
    for row in m.recorder.per_core():
        assert row["useful"] + row["spin"] + row["ipi"] + row["idle"] == pytest.approx(1.0)
    st = m.recorder.locks["L"]
    assert st.wait.mean() == pytest.approx((PAIR + 1090 + 2110 + 3070) / 4)
    assert st.hold.mean() == pytest.approx(1000)


def test_spin_meter_mid_spin():
    """The meter counts a spin in progress up to now."""
    m, lock, log, ths = _spin_scenario("ticket")
    m.run(until=600)
    assert m.recorder.per_core()[1]["spin"] == pytest.approx((600 - 100) / 600)
    assert m.recorder.per_core()[0]["useful"] == pytest.approx(600 / 600)


def test_spinner_keeps_its_core():
    """While w1 spins on core 1, another thread of core 1 cannot run; it runs when w1's kernel path ends."""
    m, lock, log, ths = _spin_scenario("ticket")
    x = m.thread("x", 1)  # created after w1, which owns core 1
    done = {}

    def other():
        yield from x.block(m.env.timeout(500))  # wakes while w1 spins (100..1070)
        x.pending += 50
        yield from x.sync()
        done["x"] = m.env.now
        yield from x.kernel_exit()

    m.env.process(other())
    m.run(until=10_000)
    w1_release = dict(log)["w1"] + 1000
    assert done["x"] == w1_release + 50
    # w1 got its core back once x's kernel path ended.
    assert m.cores[1].thread is ths[1]


def test_thread_on_a_busy_core_waits_for_it():
    """A second thread on a core runs only when the first gives the core up (here: kernel_exit)."""
    m = machine(cores=1)
    a, b = m.thread("a", 0), m.thread("b", 0)
    log = []

    def run(th, work):
        th.kernel_enter()
        th.pending += work
        yield from th.sync()
        log.append((th.name, m.env.now))
        yield from th.kernel_exit()

    m.env.process(run(b, 100))
    m.env.process(run(a, 300))
    m.run(until=1000)
    assert log == [("a", 300), ("b", 400)]
    assert m.cores[0].useful == 400


def test_spinlock_release_by_non_holder_raises():
    m = machine()
    lock = m.spinlock("L", "ttas")
    a, b = m.thread("a", 0), m.thread("b", 1)

    def bad():
        yield from lock.acquire(a)
        yield from lock.release(b)

    m.env.process(bad())
    with pytest.raises(InvariantViolation, match="L: released by b, held by a"):
        m.run(until=100)


# =========================================================================== qlock
def _qlock_scenario(
    wake="waker_core",
    arrivals=(100, 200, 300),
    h_hold=10_000,
    hold=1000,
    h_after=0,
    cores=4,
    late=None,
):
    """h (core 0) takes the qlock at 0 and holds it ``h_hold``; then works ``h_after`` more in the
    kernel before kernel_exit. w_i (core i+1) arrive at ``arrivals[i]`` and hold ``hold``.
    ``late`` = (core, time): one more thread arriving then."""
    m = machine(cores=cores, qlock_wake=wake)
    q = m.qlock("Q")
    log = []

    def user(th, arrive, hold_ns, after=0):
        yield m.env.timeout(arrive)
        th.kernel_enter()
        yield from q.acquire(th)
        log.append((th.name, "acq", th.now))
        th.pending += hold_ns
        yield from q.release(th)
        log.append((th.name, "rel", th.now))
        th.pending += after
        yield from th.kernel_exit()
        log.append((th.name, "exit", th.now))  # the thread's clock: its kernel path ends there

    m.env.process(user(m.thread("h", 0), 0, h_hold, h_after))
    for i, t in enumerate(arrivals):
        m.env.process(user(m.thread(f"w{i + 1}", i + 1), t, hold))
    if late is not None:
        m.env.process(user(m.thread("x", late[0]), late[1], hold))
    return m, q, log


def _acq(log):
    return [(n, t) for n, e, t in log if e == "acq"]


def test_qlock_fifo_and_waker_core_wakeups():
    m, q, log = _qlock_scenario()
    m.run(until=100_000)
    # h: fast path (lock pair). Its qunlock at 10010 hands off to w1 and costs a kmsg send;
    # h's kernel path ends at 10210, and w1 restarts a context switch later.
    t = PAIR + 10_000 + KMSG
    expected = [("h", PAIR)]
    for w in ("w1", "w2", "w3"):
        t += CS
        expected.append((w, t))
        t += 1000 + KMSG if w != "w3" else 1000
    assert _acq(log) == expected
    assert expected[1:] == [("w1", 12_210), ("w2", 15_410), ("w3", 18_610)]
    assert q.holder is None and q.nr_signals == 1 and not q.waiters
    st = m.recorder.locks["Q"]
    assert st.acquisitions == 4 and st.contended == 3 and st.max_queue == 3
    # the longest wait: w3, from its request at 300 to 18610
    assert st.wait.quantile(1.0) == pytest.approx(18_610 - 300)


def test_qlock_queue_time_integrates_the_waiters():
    """queue_time(t): the number of waiters integrated over time (the time series' mean queue)."""
    m, q, log = _qlock_scenario()
    m.run(until=100_000)
    acq = dict(_acq(log))
    pops = [PAIR + 10_000, acq["w1"] + 1000, acq["w2"] + 1000]  # each qunlock hands the lock on
    expected = (
        1 * (200 - 100)
        + 2 * (300 - 200)
        + 3 * (pops[0] - 300)
        + 2 * (pops[1] - pops[0])
        + (pops[2] - pops[1])
    )
    assert q.queue_time(100_000) == pytest.approx(expected)
    assert q.queue_time(100_000) == q.queue_time(50_000)  # nobody waits after the last hand-off


def test_qlock_wakee_waits_for_the_wakers_kernel_path_not_the_qunlock():
    m, q, log = _qlock_scenario(arrivals=(100,), h_after=3000)
    m.run(until=100_000)
    h_rel = [t for n, e, t in log if (n, e) == ("h", "rel")][0]
    h_exit = [t for n, e, t in log if (n, e) == ("h", "exit")][0]
    assert h_rel == PAIR + 10_000 + KMSG  # the send is charged to the waker
    assert h_exit == PAIR + 10_000 + KMSG + 3000
    assert _acq(log)[1] == ("w1", h_exit + CS)
    assert _acq(log)[1][1] != PAIR + 10_000 + CS  # not qunlock + restart


def test_qlock_wakee_runs_when_the_waker_blocks():
    """Blocking also passes smp_idle, so the deferred wakeup is sent then."""
    m = machine(cores=2)
    q = m.qlock("Q")
    h, w = m.thread("h", 0), m.thread("w", 1)
    t_w = {}

    def holder():
        h.kernel_enter()
        yield from q.acquire(h)
        h.pending += 10_000
        yield from q.release(h)  # at 10010 (+ kmsg 200)
        h.pending += 500
        yield from h.block(m.env.timeout(50_000))  # blocks at 10710

    def waiter():
        yield m.env.timeout(100)
        w.kernel_enter()
        yield from q.acquire(w)
        t_w["acq"] = w.now  # woken at the waker's block, then restart_kthread (CS)

    m.env.process(holder())
    m.env.process(waiter())
    m.run(until=100_000)
    assert t_w["acq"] == PAIR + 10_000 + KMSG + 500 + CS


def test_qlock_remote_ipi_wakeup():
    m, q, log = _qlock_scenario(wake="remote_ipi", arrivals=(100,), h_after=3000)
    m.run(until=100_000)
    h_rel = [t for n, e, t in log if (n, e) == ("h", "rel")][0]
    # The waker pays the kmsg and the IPI send; the wakee is woken qlock_sleep_wake_us after
    # qunlock and then restarts (restart_kthread, CS), as every sleep does.
    assert h_rel == PAIR + 10_000 + KMSG + IPI_SEND
    assert _acq(log)[1] == ("w1", PAIR + 10_000 + REMOTE_WAKE + CS)


def test_machine_policy_and_per_lock_policy():
    m = machine(qlock_wake="remote_ipi")
    assert m.qlock("a").wake == "remote_ipi"
    assert m.qlock("b", wake="waker_core").wake == "waker_core"


def test_qlock_direct_handoff_no_barging():
    """x arrives after the qunlock, while w1 is being woken: the lock looks free but x queues."""
    m, q, log = _qlock_scenario(arrivals=(100,), late=(2, 10_500))
    m.run(until=100_000)
    acq = _acq(log)
    assert [n for n, _ in acq] == ["h", "w1", "x"]
    w1_acq = 12_210
    assert acq[1] == ("w1", w1_acq)
    w1_rel = w1_acq + 1000 + KMSG
    w1_exit = w1_rel
    assert acq[2] == ("x", w1_exit + CS)
    st = m.recorder.locks["Q"]
    assert st.contended == 2


@pytest.mark.parametrize("wake", ["waker_core", "remote_ipi"])
def test_qlock_sem_up_during_the_context_save(wake):
    """w fails its trydown at 100 and saves its context (2010 ns); h's qunlock at 1010 comes
    meanwhile, before w queued itself: no kernel message, and w takes the lock when its save
    is done (2110), however long h's kernel path or the wake-up latency."""
    m = machine(cores=2, qlock_wake=wake)
    q = m.qlock("Q")
    h, w = m.thread("h", 0), m.thread("w", 1)
    t = {}

    def holder():
        h.kernel_enter()
        yield from q.acquire(h)
        h.pending += 1000
        yield from q.release(h)
        t["h_rel"] = h.now
        h.pending += 5000
        yield from h.kernel_exit()

    def waiter():
        yield m.env.timeout(100)
        w.kernel_enter()
        yield from q.acquire(w)
        t["w_acq"] = m.env.now
        assert q.holder is w and q.nr_signals == 0
        w.pending += 100
        yield from q.release(w)
        yield from w.kernel_exit()

    m.env.process(holder())
    m.env.process(waiter())
    m.run(until=100_000)
    assert t["h_rel"] == PAIR + 1000  # no kmsg (nor IPI) sent
    assert t["w_acq"] == 100 + SAVE
    st = m.recorder.locks["Q"]
    # its wait ends once it has restarted (restart_kthread, CS), as after any sleep
    assert st.contended == 1 and st.wait.quantile(1.0) == pytest.approx(SAVE + CS)
    assert q.nr_signals == 1 and q.holder is None


def test_context_save_occupies_the_core():
    """w blocks on the qlock at 100; its context save runs until 2110. A thread of the same
    core that wakes up at 500 gets the core only when the save is done."""
    m = machine(cores=2)
    q = m.qlock("Q")
    h, w, y = m.thread("h", 0), m.thread("w", 1), m.thread("y", 1)
    t = {}

    def holder():
        yield from q.acquire(h)
        h.pending += 10_000
        yield from q.release(h)
        yield from h.kernel_exit()

    def waiter():
        yield m.env.timeout(100)
        w.kernel_enter()
        yield from q.acquire(w)
        t["w_acq"] = w.now

    def other():
        yield from y.block(m.env.timeout(500))
        y.pending += 50
        yield from y.sync()
        t["y"] = m.env.now
        yield from y.block(simpy.Event(m.env))

    m.env.process(holder())
    m.env.process(waiter())
    m.env.process(other())
    m.run(until=100_000)
    assert t["y"] == 100 + SAVE + 50
    assert t["w_acq"] == PAIR + 10_000 + KMSG + CS
    assert m.cores[1].useful == SAVE + 50


def test_qlock_blocked_waiter_gives_its_core_up():
    m = machine(cores=2)
    q = m.qlock("Q")
    h, w, y = m.thread("h", 0), m.thread("w", 1), m.thread("y", 1)
    t = {}

    def holder():
        h.kernel_enter()
        yield from q.acquire(h)
        h.pending += 10_000
        yield from q.release(h)
        yield from h.kernel_exit()

    def waiter():
        w.pending += 100  # user work on core 1
        yield from w.sync()
        w.kernel_enter()
        yield from q.acquire(w)
        t["w_acq"] = w.now

    def other():
        y.pending += 1000  # needs core 1, owned by w until it sleeps at 100 + 2010
        yield from y.sync()
        t["y_done"] = m.env.now
        yield from y.block(simpy.Event(m.env))  # y is done; leave the core

    m.env.process(holder())
    m.env.process(waiter())
    m.env.process(other())
    m.run(until=100_000)
    assert t["y_done"] == 100 + SAVE + 1000
    assert t["w_acq"] == PAIR + 10_000 + KMSG + CS
    assert m.cores[1].thread is w
    assert m.cores[1].useful == 100 + SAVE + 1000


def test_qlock_release_without_holding_raises():
    m = machine()
    q = m.qlock("Q")
    a = m.thread("a", 0)

    def bad():
        yield from q.release(a)

    m.env.process(bad())
    with pytest.raises(InvariantViolation, match="Q: qunlock by a, held by None"):
        m.run(until=100)


def test_qlock_release_by_another_thread_raises():
    m = machine()
    q = m.qlock("Q")
    a, b = m.thread("a", 0), m.thread("b", 1)

    def bad():
        yield from q.acquire(a)
        yield from q.release(b)

    m.env.process(bad())
    with pytest.raises(InvariantViolation, match="held by a"):
        m.run(until=100)


def test_qlock_uncontended_costs():
    m = machine(cores=2)
    q = m.qlock("Q")
    a, b = m.thread("a", 0), m.thread("b", 1)
    seen = []

    def seq():
        for th in (a, a, b):
            yield from q.acquire(th)
            seen.append(th.pending)
            yield from q.release(th)

    m.env.process(seq())
    m.run(until=1000)
    assert seen == [PAIR, PAIR, PAIR + XFER]


# =========================================================================== cache line
def test_cacheline_local_remote_and_socket_costs():
    m = machine(cores=3, sockets=1)
    line = m.cacheline("C")
    a, b = m.thread("a", 0), m.thread("b", 1)
    lat = []

    def seq():
        for th, op in [(a, "rmw"), (a, "rmw"), (b, "rmw"), (b, "cas"), (a, "cas"), (a, "cas")]:
            t0 = m.env.now
            if op == "rmw":
                line.rmw(th)
            else:
                ok, _ = line.cas(th)
                assert ok
            yield from th.sync()
            lat.append(m.env.now - t0)
            yield m.env.timeout(1000)  # let the line go idle

    m.env.process(seq())
    m.run(until=100_000)
    # first touch is a miss; then local; remote blind RMW; local CAS; remote CAS; local CAS
    assert lat == [XFER, 5, XFER, 5, 100, 5]


def test_cacheline_remote_socket_costs():
    m = machine(cores=2, sockets=2)
    line = m.cacheline("C")
    a, b = m.thread("a", 0), m.thread("b", 1)
    lat = []

    def seq():
        for th, op in [(a, "rmw"), (b, "rmw"), (a, "cas"), (a, "cas"), (b, "cas")]:
            t0 = m.env.now
            line.rmw(th) if op == "rmw" else line.cas(th)
            yield from th.sync()
            lat.append(m.env.now - t0)
            yield m.env.timeout(1000)

    m.env.process(seq())
    m.run(until=100_000)
    assert lat == [XFER, XFER_SOCK, 400, 5, 400]


def test_cacheline_fifo_service():
    """Simultaneous requests are served in arrival order, one occupancy apart."""
    m = machine(cores=4)
    line = m.cacheline("C")
    done = {}

    def one(th, at):
        yield m.env.timeout(at)
        line.cas(th)
        yield from th.sync()
        done[th.name] = m.env.now

    for i, at in enumerate([0, 0, 0, 10]):
        m.env.process(one(m.thread(f"t{i}", i), at))
    m.run(until=10_000)
    # starts 0, 20, 40, 60 (t3 arrived at 10 and queued); latency of a remote CAS is 100
    assert done == {"t0": 100, "t1": 120, "t2": 140, "t3": 160}


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_cacheline_hammering_serialises_at_the_occupancy(n):
    m = machine(cores=n)
    line = m.cacheline("C")
    ops = 10
    done = {}

    def hammer(th):
        for _ in range(ops):
            line.rmw(th)
            yield from th.sync()
        done[th.name] = m.env.now

    for i in range(n):
        m.env.process(hammer(m.thread(f"t{i}", i)))
    m.run(until=100_000)
    if n == 1:  # a miss, then local hits
        assert done == {"t0": XFER + (ops - 1) * 5}
    elif n * 20 >= XFER:
        # thread i's k-th RMW starts at 20 * (n*k + i): the line serves one every 20 ns
        assert done == {f"t{i}": 20 * (n * (ops - 1) + i) + XFER for i in range(n)}
    else:  # two threads: each waits for its own transfer latency
        last = max(done.values())
        assert last == pytest.approx(ops * XFER + 20, abs=20)
    if n >= 4:
        assert max(done.values()) / (n * ops) == pytest.approx(20, rel=0.1)


def _two_cores_one_line():
    """A machine with threads a (core 0) and b (core 1) and one cache line "C"."""
    m = machine(cores=2)
    return m, m.cacheline("C"), m.thread("a", 0), m.thread("b", 1)


def test_cas_fails_when_another_write_was_serialized_after_the_read():
    m, line, a, b = _two_cores_one_line()
    res = {}

    def reader():
        read_at = m.env.now  # a reads the word at 0
        a.pending += 100  # ... computes the new value
        yield from a.sync()
        ok, start = line.cas(a, 0, read_at)
        res["first"] = (ok, start)
        yield from a.sync()
        res["t_first"] = m.env.now
        ok, start2 = line.cas(a, 0, start)  # retry with the value read at the failed attempt
        res["retry"] = (ok, start2)
        yield from a.sync()
        res["t_retry"] = m.env.now

    def writer():
        yield m.env.timeout(50)
        ok, start = line.cas(b, 0)
        res["b"] = (ok, start)
        yield from b.sync()

    m.env.process(reader())
    m.env.process(writer())
    m.run(until=10_000)
    assert res["b"] == (True, 50)
    assert res["first"] == (False, 100)  # b's write at 50 is after a's read at 0
    assert res["t_first"] == 200  # the failed attempt still costs a remote CAS
    assert res["retry"] == (True, 200)
    assert res["t_retry"] == 205  # the line is local now
    assert m.recorder.counters["cas_failures.C"] == 1


def test_write_to_another_word_costs_but_does_not_fail_the_cas():
    m, line, a, b = _two_cores_one_line()
    res = {}

    def reader():
        read_at = m.env.now
        a.pending += 100
        yield from a.sync()
        res["a"] = line.cas(a, 0, read_at)
        yield from a.sync()
        res["t"] = m.env.now

    def writer():
        yield m.env.timeout(50)
        line.rmw(b, 1)  # same line, another word
        yield from b.sync()

    m.env.process(reader())
    m.env.process(writer())
    m.run(until=10_000)
    assert res["a"] == (True, 100)
    assert res["t"] == 200  # a remote CAS: b had the line
    assert m.recorder.counters["cas_failures.C"] == 0


def test_cas_write_serialized_exactly_at_the_read_fails():
    m, line, a, b = _two_cores_one_line()
    res = {}

    def seq():
        line.rmw(b, 0)  # serialized at 0
        yield from b.sync()
        res["a"] = line.cas(a, 0, 0.0)[0]
        res["a2"] = line.cas(a, 0, 0.1)[0]

    m.env.process(seq())
    m.run(until=10_000)
    assert res == {"a": False, "a2": True}


# =========================================================================== TLB shootdowns
def _tlb_scenario(mode="async", state="RUNNING_M"):
    m = machine(cores=4)
    tlb = TlbShootdown(m, mode)
    proc = Process(m, "p", cores=[1, 2, 3], state=state)
    init = m.thread("init", 0, proc)
    x = m.thread("x", 1, proc)  # busy on core 1
    y = m.thread("y", 2, proc)  # busy on core 2, in a longer piece of work
    t = {}

    def initiator():
        init.kernel_enter()
        yield from tlb.shootdown(init, proc)
        t["init"] = init.now
        yield from init.kernel_exit()

    def worker(th, first, second):
        th.pending += first
        yield from th.sync()
        t[th.name + "1"] = m.env.now
        th.pending += second
        yield from th.sync()
        t[th.name + "2"] = m.env.now

    m.env.process(initiator())
    m.env.process(worker(x, 5000, 1000))
    m.env.process(worker(y, 8000, 0.5))
    return m, t


def test_tlb_shootdown_async():
    m, t = _tlb_scenario()
    m.run(until=20_000)
    # proc_lock (10), one IPI send per target (3 x 300), no waiting for the handlers.
    assert t["init"] == PAIR + 3 * IPI_SEND
    # Each running target thread loses exactly the handler time: the IPIs land during the
    # targets' first piece of work (the initiator sends them at once), which is stretched.
    assert t["x1"] == 5000 + HANDLER and t["x2"] == 5000 + HANDLER + 1000
    assert t["y1"] == 8000 + HANDLER and t["y2"] == 8000 + HANDLER + 0.5
    # Every target core accounts the handler, an idle one (core 3) included; the initiator none.
    assert [c.ipi for c in m.cores] == [0, HANDLER, HANDLER, HANDLER]
    assert m.cores[1].useful == 6000 and m.cores[3].useful == 0
    assert m.recorder.counters["tlb_shootdowns"] == 1
    assert m.recorder.counters["ipis"] == 3
    cpu = m.recorder.cpu()
    assert cpu["ipi"] == pytest.approx(3 * HANDLER / (4 * 20_000))
    assert sum(cpu.values()) == pytest.approx(1.0)
    assert m.recorder.per_core()[3]["idle"] == pytest.approx(1 - HANDLER / 20_000)
    assert m.recorder.locks["proc_lock"].acquisitions == 1


def test_tlb_shootdown_sync_waits_for_the_slowest_ack():
    m, t = _tlb_scenario("sync")
    m.run(until=20_000)
    # The last IPI is sent at 10 + 900; it arrives 400 later, its handler ends 600 after that.
    assert t["init"] == PAIR + 3 * IPI_SEND + IPI_LATENCY + HANDLER
    assert t["x2"] == 6000 + HANDLER
    assert m.recorder.counters["ipis"] == 3


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_tlb_flush_happens_when_the_handler_runs_not_when_sent(mode):
    """Each target's flush is pending from the send until its handler ends (send + latency +
    handler); a user access before then still hits its TLB entry, one after it misses."""
    from pmsim.sync.tlb import TlbEntry, flush_due

    m, _ = _tlb_scenario(mode)
    for core in m.cores:
        core.tlb[7] = TlbEntry(None, None, True)
    m.run(until=20_000)
    ends = [core.tlb_flushes[0][0] for core in m.cores[1:]]
    assert ends == [PAIR + k * IPI_SEND + IPI_LATENCY + HANDLER for k in (1, 2, 3)]
    core = m.cores[2]
    assert flush_due(core, ends[1] - 1) is None and 7 in core.tlb  # not yet handled
    assert flush_due(core, ends[1]) is not None and not core.tlb  # handled: flushed
    assert 7 in m.cores[0].tlb  # the sender's core is no target of this process


def test_tlb_shootdown_single_core_process_flushes_locally():
    m, t = _tlb_scenario(state="RUNNING_S")
    m.run(until=20_000)
    assert t["init"] == PAIR + 100  # proc_lock + one local flush
    assert t["x2"] == 6000 and t["y2"] == 8000.5  # nobody else is disturbed
    assert [c.ipi for c in m.cores] == [0, 0, 0, 0]
    assert m.recorder.counters["tlb_shootdowns"] == 1
    assert m.recorder.counters["ipis"] == 0


def test_tlb_shootdowns_serialise_on_proc_lock():
    m = machine(cores=4, spinlock_kind="ticket")
    tlb = TlbShootdown(m)
    proc = Process(m, "p", cores=[2, 3])
    a, b = m.thread("a", 0, proc), m.thread("b", 1, proc)
    t = {}

    def go(th, at):
        yield m.env.timeout(at)
        yield from tlb.shootdown(th, proc)
        t[th.name] = m.env.now

    m.env.process(go(a, 0))
    m.env.process(go(b, 5))
    m.run(until=20_000)
    assert t["a"] == PAIR + 2 * IPI_SEND
    # b spins from 5 until a's release (610) plus a one-spinner ticket hand-off (20).
    assert t["b"] == t["a"] + TICKET_C / 2 + 2 * IPI_SEND
    assert m.cores[1].spin == t["a"] + TICKET_C / 2 - 5
    assert m.cores[2].ipi == 2 * HANDLER
    assert m.recorder.counters["ipis"] == 4


# =========================================================================== backing stores
def _io_latencies(kind_mean_ns, sigma, seed, name, op, n):
    rng = RandomStreams(seed).get(f"io.{name}.{op}")
    return Distribution("lognormal", (kind_mean_ns, sigma), "x").sample(rng, 4096)[:n].tolist()


def test_hdd_queue_depth_one_serialises_two_readers():
    m = machine(cores=2, seed=5)
    disk = BackingStore(m, "disk", "hdd")
    c = m.costs
    l0, l1 = _io_latencies(
        c.ns("hdd_read_4k_ms"), c.value("hdd_latency_sigma"), 5, "disk", "read", 2
    )
    assert l0 != l1 and 1 * MS < l0 < 100 * MS
    done = {}

    def reader(th):
        yield from disk.readpage(th)
        done[th.name] = m.env.now

    m.env.process(reader(m.thread("r0", 0)))
    m.env.process(reader(m.thread("r1", 1)))
    m.run(until=1e9)
    assert done == {"r0": l0, "r1": l0 + l1}
    assert m.recorder.counters["io_reads"] == 2
    assert disk.busy_ns == pytest.approx(l0 + l1)


def test_nvme_serves_readers_in_parallel():
    m = machine(cores=2, seed=5)
    dev = BackingStore(m, "ssd", "nvme")
    c = m.costs
    l0, l1 = _io_latencies(
        c.ns("nvme_read_4k_us"), c.value("nvme_latency_sigma"), 5, "ssd", "read", 2
    )
    done = {}

    def reader(th):
        yield from dev.readpage(th)
        done[th.name] = m.env.now

    m.env.process(reader(m.thread("r0", 0)))
    m.env.process(reader(m.thread("r1", 1)))
    m.run(until=1e9)
    assert done == {"r0": l0, "r1": l1}


def test_depth_limit_with_overridden_queue_depth():
    m = machine(cores=3, seed=2, costs={"nvme_queue_depth": 2, "nvme_latency_sigma": 0})
    dev = BackingStore(m, "ssd", "nvme")
    lat = dev.read()  # sigma 0: every draw is the mean (up to exp(log()) rounding)
    assert lat == pytest.approx(80_000, rel=1e-12)
    done = {}

    def reader(th):
        yield from dev.readpage(th)
        done[th.name] = m.env.now

    for i in range(3):
        m.env.process(reader(m.thread(f"r{i}", i)))
    m.run(until=1e9)
    assert done["r0"] == pytest.approx(lat) and done["r1"] == pytest.approx(lat)
    assert done["r2"] == pytest.approx(2 * lat)


def test_writepage_sleeps_the_caller_and_counts():
    m = machine(cores=1, seed=9)
    disk = BackingStore(m, "disk", "hdd")
    c = m.costs
    (w0,) = _io_latencies(
        c.ns("hdd_write_4k_ms"), c.value("hdd_latency_sigma"), 9, "disk", "write", 1
    )
    done = {}

    def writer(th):
        yield from disk.writepage(th)
        done["w"] = m.env.now

    m.env.process(writer(m.thread("w", 0)))
    m.run(until=1e9)
    assert done["w"] == w0
    assert m.recorder.counters["io_writes"] == 1 and m.recorder.counters["io_reads"] == 0


def test_io_caller_frees_its_core():
    m = machine(cores=1, seed=5)
    disk = BackingStore(m, "disk", "hdd")
    c = m.costs
    (l0,) = _io_latencies(
        c.ns("hdd_read_4k_ms"), c.value("hdd_latency_sigma"), 5, "disk", "read", 1
    )
    r, y = m.thread("r", 0), m.thread("y", 0)
    done = {}

    def reader():
        r.kernel_enter()
        r.pending += 300  # work before the IO
        yield from disk.readpage(r)
        done["r"] = r.now

    def other():
        y.pending += 1000  # needs core 0
        yield from y.sync()
        done["y"] = m.env.now
        yield from y.block(simpy.Event(m.env))

    m.env.process(reader())
    m.env.process(other())
    m.run(until=1e9)
    # r saves its context (CS) and sleeps; y runs; r restarts (CS) after the IO
    assert done["y"] == 300 + CS + 1000  # ran while r slept
    assert done["r"] == pytest.approx(300 + l0 + CS, rel=1e-15)
    assert m.cores[0].useful + r.pending == 1300 + 2 * CS  # (the restart is not synced yet)


def test_tmpfs_readpage_zeroes_then_sleeps_and_writepage_is_instant():
    m = machine(cores=1)
    fs = BackingStore(m, "t", "tmpfs")
    r, y = m.thread("r", 0), m.thread("y", 0)
    done = {}

    def reader():
        yield from fs.readpage(r)
        done["read"] = r.now
        yield from fs.writepage(r)
        done["write"] = r.now

    def other():
        y.pending += 100
        yield from y.sync()
        done["y"] = m.env.now
        yield from y.block(simpy.Event(m.env))

    m.env.process(reader())
    m.env.process(other())
    m.run(until=1e6)
    # page_zero_4k_ns, save_kthread_ctx, the sleep (tmpfs_readpage_sleep_us, from the
    # save's start: the timer runs while the context is saved), restart_kthread
    # (y takes the core once r has saved its context; r, woken, restarts after y's 100 ns)
    assert done["y"] == 250 + CS + 100  # the core is free once r has saved its context
    assert done["read"] == done["y"] + CS
    assert done["write"] == done["read"]
    assert m.recorder.counters["io_reads"] == 1 and m.recorder.counters["io_writes"] == 1
    assert fs.utilization(1e6, 1e6) == 0.0


def test_backing_store_utilization():
    m = machine(cores=1, seed=1, costs={"hdd_latency_sigma": 0, "hdd_read_4k_ms": 2})
    disk = BackingStore(m, "disk", "hdd")

    def reader(th):
        for _ in range(3):
            yield from disk.readpage(th)

    m.env.process(reader(m.thread("r", 0)))
    m.run(until=10 * MS)
    assert disk.busy_ns == pytest.approx(6 * MS)
    assert disk.utilization(10 * MS, 10 * MS) == pytest.approx(0.6)


def test_backing_store_utilization_counts_in_flight_io_only_up_to_the_end():
    """Two slots, one 2 ms IO issued at 1 ms, window [0, 2 ms]: busy 1 ms of 4 ms slot-time."""
    m = machine(
        cores=1, costs={"nvme_latency_sigma": 0, "nvme_read_4k_us": 2000, "nvme_queue_depth": 2}
    )
    disk = BackingStore(m, "disk", "nvme")

    def reader(th):
        yield m.env.timeout(1 * MS)
        yield from disk.readpage(th)

    m.env.process(reader(m.thread("r", 0)))
    m.run(until=2 * MS)
    assert disk.utilization(2 * MS, 2 * MS) == pytest.approx(0.25)


# =========================================================================== RCU
def _rcu_caller(m, th, at, fns, in_kernel_after=0.0, cost=0.0):
    """At ``at``, ``th`` enters the kernel, queues ``fns`` with call_rcu, works
    ``in_kernel_after`` more in the kernel, then leaves it."""
    rcu = m.start_rcu()

    def run():
        yield m.env.timeout(at)
        th.kernel_enter()
        for fn in fns:
            rcu.call_rcu(th, fn, cost)
        th.pending += in_kernel_after
        yield from th.kernel_exit()

    m.env.process(run())


def _recorder_fn(ran, name, m):
    return lambda: ran.append((name, m.env.now))


@pytest.mark.parametrize("cores", [1, 2, 4])
def test_lone_callback_runs_after_the_next_gp_tick(cores):
    """rcu_debug_tardy is off at Akaros HEAD: idle odd cores are expedited like the others."""
    m = machine(cores=cores)
    rcu = m.start_rcu()  # started at 0
    assert rcu.debug_tardy is False
    ran = []
    _rcu_caller(m, m.thread("t", 0), 1 * MS, [_recorder_fn(ran, "cb", m)])
    m.run(until=100 * MS)
    assert ran == [("cb", 25 * MS)]
    assert rcu.completed >= 1
    h = m.recorder.histograms["rcu_grace_period"]
    h.mean()  # fold the buffer
    assert h.min == 0 and h.max == 0


@pytest.mark.parametrize("cores, expected", [(1, 25 * MS), (2, 26 * MS), (4, 26 * MS)])
def test_debug_tardy_odd_cores_are_caught_by_the_tardy_poll(cores, expected):
    m = machine(cores=cores)
    rcu = m.start_rcu()
    rcu.debug_tardy = True  # as if flipped in the debugger
    ran = []
    _rcu_caller(m, m.thread("t", 0), 1 * MS, [_recorder_fn(ran, "cb", m)])
    m.run(until=100 * MS)
    assert ran == [("cb", expected)]


def test_debug_tardy_odd_core_reports_at_its_smp_idle_before_the_poll():
    """The last core to report wakes the GP kthread: no need to wait for the 1 ms poll."""
    m = machine(cores=2)
    rcu = m.start_rcu()
    rcu.debug_tardy = True
    ran = []
    _rcu_caller(m, m.thread("t", 0), 1 * MS, [_recorder_fn(ran, "cb", m)])
    u = m.thread("u", 1)

    def odd_core_user():  # odd core passes smp_idle at 25.3 ms
        yield m.env.timeout(25_000_000)
        u.kernel_enter()
        u.pending += 300_000
        yield from u.kernel_exit()

    m.env.process(odd_core_user())
    m.run(until=100 * MS)
    assert ran == [("cb", 25_300_000)]


def test_callback_stamped_for_the_next_gp_after_a_gp_in_progress():
    """A callback queued during a GP waits for the following one (it may precede a reader)."""
    m = machine(cores=1)
    rcu = m.start_rcu()
    ran = []
    k = m.thread("k", 0)

    def stay_in_kernel():  # holds the 25 ms GP open until 27 ms
        yield m.env.timeout(24 * MS)
        k.kernel_enter()
        k.pending += 2 * MS
        yield from k.sync()
        rcu.call_rcu(k, _recorder_fn(ran, "late", m))  # at 26 ms: GP 1 still in progress
        k.pending += 1 * MS
        yield from k.kernel_exit()  # 27 ms + 100

    m.env.process(stay_in_kernel())
    m.run(until=100 * MS)
    assert rcu.gpnum >= 2
    # GP 1 ends at 27.0001 ms; the kthread sleeps 25 ms; GP 2 runs at 52.0001 ms.
    assert ran == [("late", 27 * MS + 100 + 25 * MS)]


@pytest.mark.parametrize("n, expected", [(10, 25 * MS), (11, 1 * MS + 11 * 100 + 5000)])
def test_more_than_thresh_callbacks_start_a_gp_at_once(n, expected):
    m = machine(cores=1)
    m.start_rcu()
    ran = []
    fns = [_recorder_fn(ran, f"cb{i}", m) for i in range(n)]
    _rcu_caller(m, m.thread("t", 0), 1 * MS, fns, in_kernel_after=5000)
    m.run(until=100 * MS)
    # with 11, the GP starts at 1 ms and ends when the caller leaves the kernel (smp_idle)
    assert ran == [(f"cb{i}", expected) for i in range(n)]


def test_thresh_is_a_cost_parameter():
    m = machine(cores=1, costs={"rcu_cb_thresh": 2})
    m.start_rcu()
    ran = []
    _rcu_caller(m, m.thread("t", 0), 1 * MS, [_recorder_fn(ran, i, m) for i in range(3)])
    m.run(until=10 * MS)
    assert [t for _, t in ran] == [1 * MS + 300] * 3


def test_a_core_in_the_kernel_stretches_the_gp():
    m = machine(cores=2)
    rcu = m.start_rcu()
    ran = []
    t = m.thread("t", 0)

    def long_kernel_path():
        t.pending += 20 * MS  # user time: a quiescent state
        yield from t.sync()
        t.kernel_enter()
        rcu.call_rcu(t, _recorder_fn(ran, "cb", m))
        t.pending += 9.5 * MS  # a long spinlocked walk, say
        yield from t.kernel_exit()

    m.env.process(long_kernel_path())
    m.run(until=100 * MS)
    end = 20 * MS + 100 + 9.5 * MS
    assert ran == [("cb", end)]
    h = m.recorder.histograms["rcu_grace_period"]
    assert h.quantile(1.0) == pytest.approx(end - 25 * MS)


def test_a_spinning_core_stretches_the_gp():
    m = machine(cores=2, spinlock_kind="ticket")
    rcu = m.start_rcu()
    lock = m.spinlock("L")
    h, s = m.thread("h", 0), m.thread("s", 1)
    ran = []

    def holder():  # user until 24 ms, then holds L in the kernel until 30 ms
        h.pending += 24 * MS
        yield from h.sync()
        h.kernel_enter()
        yield from lock.acquire(h)
        h.pending += 6 * MS - PAIR
        yield from lock.release(h)
        h.pending += 1 * MS  # h leaves the kernel at 31 ms
        yield from h.kernel_exit()

    def spinner():
        yield m.env.timeout(2 * MS)
        s.kernel_enter()
        rcu.call_rcu(s, _recorder_fn(ran, "cb", m))
        s.pending += 22 * MS
        yield from s.sync()  # 24 ms + 100
        yield from lock.acquire(s)  # spins until 30 ms + hand-off
        yield from lock.release(s)
        yield from s.kernel_exit()

    m.env.process(holder())
    m.env.process(spinner())
    m.run(until=100 * MS)
    # The GP at 25 ms waits for both cores: the spinner leaves the kernel at 30 ms + 20,
    # the holder at 31 ms, who reports last.
    assert ran == [("cb", 31 * MS)]
    assert m.cores[1].spin == pytest.approx(30 * MS + TICKET_C / 2 - (24 * MS + 100))


def test_synchronize_rcu_blocks_for_a_gp_and_frees_the_core():
    m = machine(cores=2)
    rcu = m.start_rcu()
    t, y = m.thread("t", 0), m.thread("y", 0)
    done = {}

    def sync_caller():
        yield m.env.timeout(1 * MS)
        t.kernel_enter()
        yield from rcu.synchronize_rcu(t)
        done["t"] = m.env.now
        yield from t.kernel_exit()

    def other():
        yield from y.block(m.env.timeout(2 * MS))
        y.pending += 1 * MS
        yield from y.sync()
        done["y"] = m.env.now
        yield from y.block(simpy.Event(m.env))

    m.env.process(sync_caller())
    m.env.process(other())
    m.run(until=100 * MS)
    assert done["y"] == 3 * MS  # core 0 was free while t slept
    assert done["t"] == 25 * MS
    assert m.recorder.counters["rcu_callbacks"] == 1


def test_callbacks_run_in_order_on_core_0():
    m = machine(cores=3)
    rcu = m.start_rcu()
    ran = []
    a, b, z = m.thread("a", 1), m.thread("b", 2), m.thread("z", 0)

    def queue(th, items):
        yield m.env.timeout(1 * MS)
        th.kernel_enter()
        for name, cost in items:
            rcu.call_rcu(th, _recorder_fn(ran, name, m), cost)
        yield from th.kernel_exit()
        yield from th.sync()

    def core0_user():  # user work on core 0 across the GP
        z.pending += 30 * MS
        yield from z.sync()
        z.pending += 1000
        yield from z.sync()
        ran.append(("z", m.env.now))

    m.env.process(queue(b, [("b1", 2000), ("b2", 500)]))
    m.env.process(queue(a, [("a1", 1000)]))
    m.env.process(core0_user())
    m.run(until=100 * MS)
    # The management kthread walks the cores in order, each core's list in FIFO order;
    # each callback's cost elapses before it returns.
    assert ran[:3] == [("a1", 25 * MS + 1000), ("b1", 25 * MS + 3000), ("b2", 25 * MS + 3500)]
    # Core 0's running thread loses the callbacks' time at its next sync.
    assert ran[3] == ("z", 30 * MS + 1000 + 3500)
    assert m.cores[0].useful == 30 * MS + 1000 + 3500
    assert [m.cores[1].useful, m.cores[2].useful] == [100, 200]  # their call_rcu costs


def test_callbacks_pending_bytes():
    m = machine(cores=1)
    rcu = m.start_rcu()
    t = m.thread("t", 0)

    def run():
        yield m.env.timeout(1 * MS)
        for _ in range(3):
            rcu.call_rcu(t, None, 0.0, 512)
        assert rcu.pending_bytes == 1536
        yield from t.kernel_exit()

    m.env.process(run())
    m.run(until=30 * MS)
    assert rcu.pending_bytes == 0 and rcu.max_pending_bytes == 1536


def test_rcu_invariants_under_load():
    """gpnum - completed stays 0 or 1, and every callback runs after a whole GP that began
    after it was queued, in per-core FIFO order."""
    m = machine(cores=4, costs={"rcu_gp_min_period_ms": 2})
    rcu = m.start_rcu()
    rng = np.random.default_rng(3)
    violations = []
    ran = []

    def cb(core, seq, queued):
        def fn():
            ran.append((core, seq))
            if not (rcu.gp_started_at >= queued):
                violations.append(("early", core, seq, queued, rcu.gp_started_at))

        return fn

    def worker(th, core):
        seq = 0
        while True:
            th.pending += float(rng.exponential(200_000))  # user
            yield from th.sync()
            th.kernel_enter()
            for _ in range(int(rng.integers(1, 5))):
                rcu.call_rcu(th, cb(core, seq, m.env.now), 100.0)
                seq += 1
            th.pending += float(rng.exponential(300_000))  # kernel
            yield from th.kernel_exit()

    def monitor():
        while True:
            d = rcu.gpnum - rcu.completed
            if d not in (0, 1):
                violations.append(("gpnum", m.env.now, d))
            yield m.env.timeout(10_000)

    for i in range(4):
        m.env.process(worker(m.thread(f"w{i}", i), i))
    m.env.process(monitor())
    m.run(until=60 * MS)
    assert violations == []
    assert m.recorder.counters["rcu_grace_periods"] > 10
    assert len(ran) > 100
    for core in range(4):
        seqs = [s for c, s in ran if c == core]
        assert seqs == list(range(len(seqs)))


def test_rcu_asserts_gpnum_completed():
    m = machine(cores=1)
    rcu = m.start_rcu()

    def corrupt():
        yield m.env.timeout(1 * MS)
        rcu.gpnum += 1  # a GP "in progress" that nobody runs

    m.env.process(corrupt())
    with pytest.raises(InvariantViolation, match="gpnum"):
        m.run(until=30 * MS)


def test_rcu_read_section_costs_and_counts():
    m = machine(cores=1, costs={"rcu_read_section_ns": 0.5})
    t = m.thread("t", 0)
    for _ in range(4):
        m.start_rcu().read_section(t)
    assert t.pending == 2.0
    assert m.rcu.read_sections == 4


def test_machine_determinism():
    def once():
        m, _ = _hammer("ttas", until=50_000, seed=11)
        return m.cores[0].spin, m.cores[3].useful

    assert once() == once()
    assert not math.isnan(once()[0])


def test_blocking_while_holding_a_spinlock_is_an_invariant_violation():
    """Akaros's pre_block_check: a kthread must not sleep with a spinlock held."""
    from pmsim.errors import InvariantViolation

    m = Machine(cores=1)
    th = m.thread("t", 0)
    lock = m.spinlock("pm_lock", "ttas")

    def body():
        yield from lock.acquire(th)
        yield from th.block(m.env.timeout(10))

    m.env.process(body())
    with pytest.raises(InvariantViolation, match="spinlock"):
        m.run(until=100)


def test_cas_loops_on_one_word_all_complete_and_contention_costs_retries():
    """N threads incrementing one word with CAS loops: every increment lands exactly once,
    a lone thread never retries, and contended threads do."""

    def run(n):
        m = machine(cores=n)
        line = m.cacheline("slot")
        attempts = []

        def body(th):
            for _ in range(20):
                attempts.append((yield from line.cas_loop(th, 3)))
                th.pending += 30
                yield from th.sync()

        for i in range(n):
            m.env.process(body(m.thread(f"t{i}", i)))
        m.run(until=10_000_000)
        return attempts, m

    alone, m1 = run(1)
    assert alone == [1] * 20 and m1.recorder.counters["cas_failures.slot"] == 0
    many, m8 = run(8)
    assert len(many) == 160
    assert max(many) > 1 and m8.recorder.counters["cas_failures.slot"] == sum(many) - 160


def test_a_second_thread_on_a_core_cannot_spin_until_it_has_the_core():
    """Threads sharing a core: the one that is not running waits for the core before it
    may spin, so its spin time starts only when it gets the core."""
    m = machine(cores=2)
    lock = m.spinlock("L", "ticket")
    a = m.thread("a", 0)  # runs on core 0
    b = m.thread("b", 0)  # shares core 0 with a
    h = m.thread("h", 1)  # holds the lock
    t = {}

    def holder():
        yield from lock.acquire(h)
        h.pending += 10_000
        yield from lock.release(h)

    def runner():
        a.pending += 3_000  # busy on core 0, no kernel path end
        yield from a.sync()
        yield from a.kernel_exit()  # lets b have core 0
        a.pending += 1
        yield from a.sync()

    def spinner():
        yield from lock.acquire(b)
        t["b"] = m.env.now

    m.env.process(holder())
    m.env.process(runner())
    m.env.process(spinner())
    m.run(until=100_000)
    assert m.cores[0].spin == pytest.approx(t["b"] - 3_000)


# ============================================== hand-offs and what is in progress at the end
def test_qlock_handoff_is_the_kmsg_and_the_restart():
    """Each hand-off runs from the qunlock (10010, 13210, 16410) to the wakee running: the
    waker's kmsg send, then the wakee's restart on the waker's core (2200 ns each); the
    lock's utilisation counts the holds and the hand-offs."""
    m, q, log = _qlock_scenario()
    m.run(until=100_000)
    st = m.recorder.locks["Q"]
    assert st.handoff.count == 3
    assert st.handoff.mean() == pytest.approx(KMSG + CS)
    s = st.summary()
    assert s["handoff_us_mean"] == pytest.approx((KMSG + CS) / 1e3)
    busy = 10_000 + 3 * 1000 + 3 * (KMSG + CS)  # holds (h's counted from its fast path) + hand-offs
    assert s["utilization"] == pytest.approx(busy / 100_000, rel=1e-3)
    assert s["waiting_at_end"] == 0 and not s["wait_us_max_is_lower_bound"]


@pytest.mark.parametrize("kind", ["ticket", "mcs"])
def test_spinlock_handoff_is_the_line_passing(kind):
    m, lock, log, ths = _spin_scenario(kind)
    m.run(until=10_000)
    st = m.recorder.locks["L"]
    gaps = [TICKET_C * 3 / 2, TICKET_C * 2 / 2, TICKET_C / 2] if kind == "ticket" else [MCS_H] * 3
    assert st.handoff.count == 3
    assert st.handoff.mean() == pytest.approx(sum(gaps) / 3)
    assert st.summary()["handoff_us_mean"] == pytest.approx(sum(gaps) / 3 / 1e3)


def test_qlock_waits_and_hold_still_going_at_the_end_are_censored():
    """The run ends at 5000 while h holds the qlock (since 10) and w1..w3 (queued at 100, 200,
    300) wait: no wait completed, so the wait p99 and max are the oldest wait, 4900, marked
    lower bounds; the hold max is h's 4990 so far, a lower bound too."""
    m, q, log = _qlock_scenario()
    m.run(until=5000)
    st = m.recorder.locks["Q"]
    assert st.wait.count == 1  # h's own uncontended acquisition, wait 10
    s = st.summary()
    assert s["waiting_at_end"] == 3
    assert s["wait_us_max"] == pytest.approx(4.9) and s["wait_us_max_is_lower_bound"]
    # 1 completed wait of 10 ns and 3 censored at 4700..4900: KM never reaches 0.99
    assert s["wait_us_p99"] == pytest.approx(4.9) and s["wait_us_p99_is_lower_bound"]
    assert s["hold_us_max"] == pytest.approx(4.99) and s["hold_us_max_is_lower_bound"]


def test_spinlock_wait_in_a_handoff_at_the_end_is_censored():
    """A ticket lock handed on at the end's instant: the wakee has not run yet, so its wait
    (from its request) is still going and the hand-off is in progress."""
    m, lock, log, ths = _spin_scenario("ticket")
    h_rel = PAIR + 1000
    m.run(until=h_rel + 1)  # w1's hand-off (60 ns) has begun, w2 and w3 spin
    st = m.recorder.locks["L"]
    waits, holds, handoffs = st.in_progress(m.env.now)
    assert len(waits) == 3 and holds == [] and handoffs == [pytest.approx(1.0)]
    s = st.summary()
    assert s["waiting_at_end"] == 3 and s["wait_us_max_is_lower_bound"]
