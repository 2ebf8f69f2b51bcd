"""Tests for pmsim.analytic: published tables and independent cross-checks."""

import heapq
import math
import random
from collections import deque

import numpy as np
import pytest

from pmsim.analytic import (
    bw_ticket_chain,
    closed_lock_exact,
    laplace_const,
    laplace_exp,
    md1,
    mg1_wq,
    mm1,
    mm1n_exact,
    mva_repairman,
)

# --------------------------------------------------------------------------
# machine repairman: MVA and M/M/1//N closed form (S = 1, Z = 10)
# --------------------------------------------------------------------------

REPAIRMAN_TABLE = [  # N, X, R
    (1, 0.0909, 1.000),
    (2, 0.1803, 1.091),
    (4, 0.3533, 1.321),
    (8, 0.6617, 2.090),
    (11, 0.8368, 3.146),
    (16, 0.9777, 6.365),
    (24, 0.9999, 14.002),
    (32, 1.0000, 22.000),
    (64, 1.0000, 54.000),
]


@pytest.mark.parametrize("solver", [mva_repairman, mm1n_exact])
@pytest.mark.parametrize("n,x_pub,r_pub", REPAIRMAN_TABLE)
def test_repairman_table(solver, n, x_pub, r_pub):
    x, r = solver(n, 1.0, 10.0)
    assert abs(x - x_pub) <= 0.5e-4 + 1e-12  # 4 decimals shown
    assert abs(r - r_pub) <= 0.5e-3 + 1e-12  # 3 decimals shown


def test_repairman_n16_six_digits():
    x_mva, _ = mva_repairman(16, 1.0, 10.0)
    x_cf, _ = mm1n_exact(16, 1.0, 10.0)
    x_bw = bw_ticket_chain(16, 1.0, 10.0, 0.0)["X"]
    for x in (x_mva, x_cf, x_bw):
        assert abs(x - 0.977698) <= 0.5e-6


@pytest.mark.parametrize(
    "n,s,z",
    [
        (1, 1.0, 10.0),
        (7, 3.0, 5.0),
        (11, 400.0, 3200.0),
        (64, 400.0, 12800.0),
        (256, 400.0, 12800.0),
    ],
)
def test_mva_equals_closed_form(n, s, z):
    a, b = mva_repairman(n, s, z), mm1n_exact(n, s, z)
    assert a == pytest.approx(b, rel=1e-11)
    assert bw_ticket_chain(n, s, z, 0.0)["X"] == pytest.approx(a[0], rel=1e-11)


def test_repairman_zero_think_time():
    assert mm1n_exact(5, 2.0, 0.0) == pytest.approx((0.5, 10.0))
    assert mva_repairman(5, 2.0, 0.0) == pytest.approx((0.5, 10.0))


def test_mm1n_no_overflow_and_saturation():
    x, r = mm1n_exact(256, 1.0, 10.0)
    assert math.isfinite(x) and math.isfinite(r)
    assert x == pytest.approx(1.0, rel=1e-12)
    assert r == pytest.approx(256 - 10.0, rel=1e-12)


# --------------------------------------------------------------------------
# open queues (S = 1)
# --------------------------------------------------------------------------

OPEN_TABLE = [  # rho, MM1 W, Wq, p99, MD1 Wq, W
    (0.5, 2.000, 1.000, 9.210, 0.500, 1.500),
    (0.8, 5.000, 4.000, 23.026, 2.000, 3.000),
    (0.9, 10.000, 9.000, 46.052, 4.500, 5.500),
    (0.95, 20.000, 19.000, 92.103, 9.500, 10.500),
]


@pytest.mark.parametrize("rho,w,wq,p99,dwq,dw", OPEN_TABLE)
def test_open_queue_table(rho, w, wq, p99, dwq, dw):
    tol = 0.5e-3 + 1e-12
    m = mm1(rho, 1.0)
    assert abs(m["W"] - w) <= tol
    assert abs(m["Wq"] - wq) <= tol
    assert abs(m["p99_W"] - p99) <= tol
    assert m["rho"] == pytest.approx(rho)
    assert m["L"] == pytest.approx(rho * m["W"])  # Little
    assert m["Lq"] == pytest.approx(rho * m["Wq"])
    d = md1(rho, 1.0)
    assert abs(d["Wq"] - dwq) <= tol
    assert abs(d["W"] - dw) <= tol
    assert d["Lq"] == pytest.approx(rho * d["Wq"])
    # P-K with scv = 1 is M/M/1
    assert mg1_wq(rho, 1.0, 1.0) == pytest.approx(m["Wq"], rel=1e-12)


# --------------------------------------------------------------------------
# Boyd-Wickizer et al. 2012 ticket-lock model, s = 400
# --------------------------------------------------------------------------

BW_NS = [1, 8, 16, 20, 24, 28, 32, 40, 48]
BW_TABLE = [  # c, z, speedups at BW_NS, peak value, decimals of peak, argmax n
    (100, 12800, [1.0, 7.6, 14.6, 16.8, 15.0, 10.3, 8.1, 6.1, 5.0], 16.86, 2, 21),
    (100, 25600, [1.0, 7.8, 15.6, 19.4, 23.1, 26.7, 29.6, 19.0, 11.6], 30.2, 1, 34),
    (200, 12800, [1.0, 7.5, 12.8, 9.3, 5.9, 4.7, 4.0, 3.1, 2.6], 12.85, 2, 16),
    (200, 25600, [1.0, 7.8, 15.5, 19.1, 22.1, 20.0, 10.7, 7.0, 5.5], 22.4, 1, 25),
    (0, 12800, [1.0, 7.7, 15.2, 18.8, 22.1, 25.2, 27.9, 31.1, 31.9], None, None, None),
]


@pytest.mark.parametrize("c,z,row,peak,dec,argmax", BW_TABLE)
def test_bw_speedup_table(c, z, row, peak, dec, argmax):
    s = 400.0
    sp = np.array([bw_ticket_chain(n, s, z, c)["speedup"] for n in range(1, 65)])
    for n, pub in zip(BW_NS, row):
        assert abs(sp[n - 1] - pub) <= 0.051, (n, sp[n - 1], pub)
    if peak is not None:
        assert int(np.argmax(sp)) + 1 == argmax
        assert abs(sp.max() - peak) <= 0.5 * 10.0 ** (-dec) + 1e-9


def test_bw_no_handoff_limit():
    # With speedup = E[n - k] the c = 0 curve saturates at z/s = 32 (Little:
    # E[thinkers] = X z -> z/s).  (s+z)/s = 33 would be the limit only if the
    # lock holder were also counted, which contradicts e.g. n = 48 -> 31.9.
    s, z = 400.0, 12800.0
    big = bw_ticket_chain(2000, s, z, 0.0)
    assert big["speedup"] == pytest.approx(z / s, rel=1e-9)
    assert big["speedup"] + 1.0 == pytest.approx((s + z) / s, rel=1e-9)
    sp = [bw_ticket_chain(n, s, z, 0.0)["speedup"] for n in (16, 32, 64, 128)]
    assert all(a < b for a, b in zip(sp, sp[1:])) and sp[-1] < z / s


def test_bw_consistency():
    r = bw_ticket_chain(40, 400.0, 12800.0, 100.0)
    p = r["P"]
    assert p.shape == (41,) and p.sum() == pytest.approx(1.0) and (p >= 0).all()
    # throughput balance: arrivals = departures; thinkers = X z
    assert r["speedup"] == pytest.approx(r["X"] * 12800.0, rel=1e-12)
    assert r["L"] + r["speedup"] == pytest.approx(40.0)


# --------------------------------------------------------------------------
# closed_lock_exact
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,s,z",
    [
        (1, 1.0, 10.0),
        (2, 400.0, 3200.0),
        (11, 1.0, 10.0),
        (11, 400.0, 3200.0),
        (16, 400.0, 3200.0),
        (64, 1.0, 10.0),
        (64, 400.0, 25600.0),
        (64, 40.0, 12800.0),
    ],
)
def test_closed_lock_ideal_exponential_is_mm1n(n, s, z):
    x, r = mm1n_exact(n, s, z)
    res = closed_lock_exact(n, z, s, laplace_exp(s), lambda j: 0.0)
    assert res["method"] == "quadrature"
    assert res["X"] == pytest.approx(x, rel=1e-9)
    assert res["R"] == pytest.approx(r, rel=1e-9)
    assert res["wait_mean"] == pytest.approx(r - s, rel=1e-9, abs=1e-9 * r)
    assert res["speedup"] == pytest.approx(x * z, rel=1e-9)
    assert res["utilization"] == pytest.approx(x * s, rel=1e-9)
    assert res["pi"].sum() == pytest.approx(1.0)


def test_closed_lock_n1():
    res = closed_lock_exact(1, 3200.0, 400.0, laplace_const(400.0), lambda j: 100.0 * j)
    assert res["X"] == pytest.approx(1.0 / 3600.0, rel=1e-14)
    assert res["wait_mean"] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n", [2, 5, 9])
@pytest.mark.parametrize("hold", ["exp", "const", "twopoint"])
def test_closed_lock_laplace_path_matches_quadrature(n, hold):
    """The two numerical methods (alternating Laplace sum, positive quadrature)
    agree where the alternating sum is still accurate."""
    z, c = 3200.0, 100.0
    if hold == "exp":
        lap, mean = laplace_exp(400.0), 400.0
        plain = lambda lam: 1.0 / (1.0 + 400.0 * lam)  # noqa: E731
        quad = None
    elif hold == "const":
        lap, mean = laplace_const(400.0), 400.0
        plain = lambda lam: math.exp(-400.0 * lam)  # noqa: E731  (scalar only)
        quad = None
    else:  # 100 or 900 w.p. 1/2 each
        mean = 500.0
        plain = lambda lam: 0.5 * (np.exp(-100.0 * lam) + np.exp(-900.0 * lam))  # noqa: E731
        lap, quad = plain, ([100.0, 900.0], [0.5, 0.5])
    ticket = lambda j: c * j / 2.0  # noqa: E731
    a = closed_lock_exact(n, z, mean, lap, ticket, hold_quadrature=quad)
    b = closed_lock_exact(n, z, mean, plain, ticket)
    assert a["method"] == "quadrature" and b["method"] == "laplace"
    assert b["X"] == pytest.approx(a["X"], rel=1e-10)
    assert b["wait_mean"] == pytest.approx(a["wait_mean"], rel=1e-8)


def test_closed_lock_laplace_path_detects_cancellation():
    plain = lambda lam: 1.0 / (1.0 + 400.0 * np.asarray(lam))  # noqa: E731
    with pytest.raises(ValueError, match="precision"):
        closed_lock_exact(64, 3200.0, 400.0, plain, lambda j: 50.0 * j)


def _simulate_closed_lock(n, hold, z, c, services, seed, warmup=2000, batches=30):
    """Independent event simulation: constant hold, ticket hand-off c*j/2
    paid only when the releasing holder leaves j >= 1 waiters."""
    rng = random.Random(seed)
    expo = rng.expovariate
    rate = 1.0 / z
    think = sorted(expo(rate) for _ in range(n))  # next request times
    heapq.heapify(think)
    waiting = deque()  # request times of waiters, FIFO
    t = 0.0
    per = services // batches
    bt, bw = [], []
    t0 = wsum = 0.0
    total = warmup + per * batches
    heappop, heappush = heapq.heappop, heapq.heappush
    for k in range(total):
        if k >= warmup and (k - warmup) % per == 0:
            if k > warmup:
                bt.append((t - t0) / per)
                bw.append(wsum / per)
            t0, wsum = t, 0.0
        if waiting:
            j = len(waiting)
            ho = c * j / 2.0
            wsum += t + ho - waiting.popleft()
            end = t + ho + hold
        else:
            t = heappop(think)  # idle until the next request; no hand-off
            end = t + hold
        while think and think[0] <= end:
            waiting.append(heappop(think))
        heappush(think, end + expo(rate))
        t = end
    bt.append((t - t0) / per)
    bw.append(wsum / per)
    bt, bw = np.array(bt), np.array(bw)
    tq = 2.045  # Student t, 0.975 quantile, 29 d.o.f.
    cyc, cyc_hw = bt.mean(), tq * bt.std(ddof=1) / math.sqrt(batches)
    x = 1.0 / cyc
    return {
        "X": x,
        "X_hw": x * x * cyc_hw,  # delta method
        "wait": bw.mean(),
        "wait_hw": tq * bw.std(ddof=1) / math.sqrt(batches),
    }


@pytest.mark.parametrize("n,seed", [(8, 12345), (14, 678)])
def test_closed_lock_matches_event_simulation(n, seed):
    s, z, c = 400.0, 3200.0, 100.0
    ticket = lambda j: c * j / 2.0  # noqa: E731
    exact = closed_lock_exact(n, z, s, laplace_const(s), ticket)
    sim = _simulate_closed_lock(n, s, z, c, services=300_000, seed=seed)
    # the simulation must be precise enough for the comparison to mean something
    assert sim["X_hw"] < 0.005 * sim["X"]
    assert abs(sim["X"] - exact["X"]) <= 4.0 * sim["X_hw"]
    assert abs(sim["wait"] - exact["wait_mean"]) <= 4.0 * sim["wait_hw"]
    # ... and it discriminates: ignoring the hand-off is detectably wrong
    ideal = closed_lock_exact(n, z, s, laplace_const(s), 0.0)
    assert abs(sim["X"] - ideal["X"]) > 4.0 * sim["X_hw"]
    # ... and so is the BW chain (it charges c*k/2 even on uncontended grabs
    # and assumes exponential service)
    assert abs(sim["X"] - bw_ticket_chain(n, s, z, c)["X"]) > 4.0 * sim["X_hw"]


@pytest.mark.parametrize("n", [64, 256])
def test_closed_lock_saturation(n):
    s, z, h = 400.0, 3200.0, 100.0
    res = closed_lock_exact(n, z, s, laplace_exp(s), lambda j: h)
    assert res["X"] == pytest.approx(1.0 / (s + h), rel=1e-9)
    assert res["utilization"] == pytest.approx(s / (s + h), rel=1e-9)
    assert res["idle_fraction"] < 1e-9
    assert res["R"] == pytest.approx(n * (s + h) - z, rel=1e-9)
    # constant hand-off == "constant"-valued handoff argument
    res2 = closed_lock_exact(n, z, s, laplace_exp(s), h)
    assert res2["X"] == pytest.approx(res["X"], rel=1e-12)


def test_closed_lock_ticket_worse_than_ideal_and_mcs():
    s, z, n = 400.0, 3200.0, 32
    lap = laplace_exp(s)
    ideal = closed_lock_exact(n, z, s, lap, 0.0)["X"]
    mcs = closed_lock_exact(n, z, s, lap, 50.0)["X"]
    ticket = closed_lock_exact(n, z, s, lap, lambda j: 100.0 * j / 2.0)["X"]
    assert ideal > mcs > ticket


# --------------------------------------------------------------------------
# invalid arguments
# --------------------------------------------------------------------------

LAP = laplace_exp(1.0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: mva_repairman(0, 1.0, 10.0),
        lambda: mva_repairman(-3, 1.0, 10.0),
        lambda: mva_repairman(2.5, 1.0, 10.0),
        lambda: mva_repairman(4, -1.0, 10.0),
        lambda: mva_repairman(4, 1.0, -10.0),
        lambda: mm1n_exact(0, 1.0, 10.0),
        lambda: mm1n_exact(4, -1.0, 10.0),
        lambda: mm1n_exact(4, 1.0, -1.0),
        lambda: mm1(1.0, 1.0),
        lambda: mm1(1.5, 1.0),
        lambda: mm1(-0.1, 1.0),
        lambda: mm1(0.5, -1.0),
        lambda: mg1_wq(1.0, 1.0, 0.5),
        lambda: mg1_wq(0.5, 1.0, -0.5),
        lambda: md1(2.0, 0.5),
        lambda: bw_ticket_chain(0, 400.0, 12800.0, 100.0),
        lambda: bw_ticket_chain(8, 400.0, -1.0, 100.0),
        lambda: bw_ticket_chain(8, 400.0, 12800.0, -100.0),
        lambda: closed_lock_exact(0, 10.0, 1.0, LAP, 0.0),
        lambda: closed_lock_exact(4, -10.0, 1.0, LAP, 0.0),
        lambda: closed_lock_exact(4, 10.0, -1.0, LAP, 0.0),
        lambda: closed_lock_exact(4, 10.0, 1.0, LAP, -1.0),
        lambda: closed_lock_exact(4, 10.0, 1.0, LAP, lambda j: -1.0 * j),
        lambda: closed_lock_exact(4, 10.0, 1.0, None, 0.0),
        lambda: closed_lock_exact(
            4, 10.0, 1.0, None, 0.0, hold_quadrature=([1.0, -1.0], [0.5, 0.5])
        ),
        lambda: laplace_exp(-1.0),
        lambda: laplace_const(-1.0),
    ],
)
def test_invalid_arguments(call):
    with pytest.raises(ValueError):
        call()
