"""The hazard oracle (pmsim/hazards.py): each race built on a scripted timeline, caught exactly;
the variants that close each window report zero; runs with no race report zero.

Timelines are deterministic: threads pinned to cores, fixed start times, and where a step
must land inside a window a probe starts it from the event that opens the window.
"""

from __future__ import annotations

import pytest

from pmsim import probes
from pmsim.costs import CostTable
from pmsim.hazards import HAZARDS
from pmsim.kernel.system import Kernel
from pmsim.kernel.vm import PROT_READ, PROT_WRITE, Vmr
from pmsim.machine import Machine
from pmsim.workload.load import load_spec
from pmsim.workload.runner import run_workload

RW = PROT_READ | PROT_WRITE
COSTS = {"nvme_latency_sigma": 0, "gtfs_latency_sigma": 0, "gtfs_rpc_write_ms": 0.002}


def setup(design, cores=3, store="gtfs", warm=range(8), costs=None):
    m = Machine(cores=cores, costs=CostTable({**COSTS, **(costs or {})}), seed=1)
    k = Kernel(m, design)
    f = k.file("f", 64, store)
    k.warm(f, warm)
    return m, k, f


def hazard(m, name):
    st = m.recorder.hazards.get(name)
    return st.count if st is not None else 0


def counts(m):
    return {h: hazard(m, h) for h in HAZARDS}


# ============================================================== lost_dirty: the stale TLB
def stale_tlb_store(design, second_pass=True):
    """Process P (cores 0, 1, multicore) maps pages 0..7 shared and writable. At 0, S (core
    1) stores to page 0: its TLB caches D. At 1 us, W (core 2) fsyncs: mark_and_clear_dirty_ptes
    clears the PTE's D, the shootdown goes out, page 0 is written. 1 ns after that writepage
    starts, S stores again. At 300 us W fsyncs again."""
    m, k, f = setup(design)
    p = k.process("P", [0, 1], "RUNNING_M")
    vmr = k.map_now(p, f, 0, 8, RW, True)
    k.prefault(vmr, range(8))
    s, w = m.thread("S", 1, p), m.thread("W", 2)
    seen = {}

    def store():
        yield from k.touch(s, vmr, 0, True)

    page = f.pm.tree.slots[0].page

    def wb(orig, th):  # the RPC of a writepage, which has taken its copy (page.wb_at)
        if "tw" not in seen:
            seen["tw"] = page.wb_at
            seen["flush"] = max(t for t, _ in m.cores[1].tlb_flushes or [(0.0, None)])

            def again():
                yield m.env.timeout(max(0.0, page.wb_at + 1 - m.env.now))
                yield from k.touch(s, vmr, 0, True)
                seen["ts"] = s.now

            m.env.process(again())
        yield from orig(th)

    probes.attach(f.store, "writepage", wb)

    def fsyncs():
        yield m.env.timeout(1000)
        yield from k.fsync(w, f)
        if second_pass:
            yield m.env.timeout(300_000 - m.env.now)
            yield from k.fsync(w, f)

    m.env.process(store())
    m.env.process(fsyncs())
    m.run(1e6)
    return m, f, seen


def test_new_loses_a_store_through_a_stale_tlb_entry():
    m, f, seen = stale_tlb_store("new")
    assert seen["ts"] > seen["tw"] and seen["ts"] < seen["flush"]  # inside the window
    assert counts(m) == {**dict.fromkeys(HAZARDS, 0), "lost_dirty": 1}
    st = m.recorder.hazards["lost_dirty"]
    assert dict(st.where) == {"writeback": 1}
    first = st.first
    assert first.thread == "W" and first.core == 2
    whats = [s.what for s in first.trail]
    assert whats[0].startswith("pte_clear_dirty on page 0")
    assert any(w.startswith("shootdown of P") for w in whats)
    assert any("store through core 1's TLB entry (D cached)" in w for w in whats)
    assert whats[-1].startswith("writeback: skips the page as clean")
    # the window: from the losing store to the pass that skipped it
    assert first.window == pytest.approx(seen["flush"] - seen["tw"])  # open: write to flush
    assert first.waited == pytest.approx(first.t - seen["ts"], abs=200)  # until a pass skipped it
    page = f.pm.tree.slots[0].page
    assert page.version == 2 and f.disk[0] == 1  # the second store never reached the store


def test_new_without_a_second_pass_reports_nothing_yet():
    m, _, _ = stale_tlb_store("new", second_pass=False)
    assert counts(m)["lost_dirty"] == 0  # the store is unseen, not yet skipped by a pass


def test_sync_shootdown_closes_the_stale_tlb_window():
    m, f, seen = stale_tlb_store("new_sync_shootdown")
    assert seen["flush"] <= seen["tw"]  # the flush was handled before the write started
    assert counts(m) == dict.fromkeys(HAZARDS, 0)
    assert f.disk[0] == 2  # the second pass wrote the second store


def test_a_lost_store_freed_by_reclaim_is_read_back_stale():
    """NEW: after the stale-TLB store, P unmaps (munmap sees D clear), reclaim frees page 0
    unwritten (lost_dirty, origin free), and a read() of it reads the older data back from
    the store (stale_read)."""
    m, k, f = setup("new")
    p = k.process("P", [0, 1], "RUNNING_M")
    vmr = k.map_now(p, f, 0, 8, RW, True)
    k.prefault(vmr, range(8))
    s, w, u = m.thread("S", 1, p), m.thread("W", 2), m.thread("U", 0, p)
    page = f.pm.tree.slots[0].page

    def wb(orig, th):
        if page.wb_at >= 0 and not hasattr(wb, "done"):
            wb.done = True

            def again():
                yield m.env.timeout(max(0.0, page.wb_at + 1 - m.env.now))
                yield from k.touch(s, vmr, 0, True)

            m.env.process(again())
        yield from orig(th)

    probes.attach(f.store, "writepage", wb)

    def script():
        yield from k.touch(s, vmr, 0, True)
        yield m.env.timeout(1000 - m.env.now)
        yield from k.fsync(w, f)
        yield m.env.timeout(100_000 - m.env.now)
        yield from k.munmap(u, vmr)
        yield m.env.timeout(200_000 - m.env.now)
        yield from k.reclaim(w)
        yield m.env.timeout(300_000 - m.env.now)
        yield from k.read(w, f, 0)

    m.env.process(script())
    m.run(1e6)
    c = counts(m)
    assert c == {**dict.fromkeys(HAZARDS, 0), "lost_dirty": 1, "stale_read": 1}
    assert dict(m.recorder.hazards["lost_dirty"].where) == {"free": 1}
    stale = m.recorder.hazards["stale_read"].first
    assert stale.thread == "W"
    assert "frees the page unwritten" in stale.trail[-2].what
    assert stale.trail[-1].what.startswith("readpage of page 0 returns v1, last store made v2")


# ============================================================== lost_dirty: munmap's RMW
def munmap_window(store_at=None):
    """OLD: P maps pages 0..7; S (core 1) loads page 0 at 0, so its TLB caches D clear; U
    (core 0) munmaps at 4 us. With ``store_at``, S stores to page 0 then. (P's vcore list
    holds core 0 only, so the shootdown's handler time is not charged to S's clock.)"""
    m, k, f = setup("old", costs={"pte_walk_ns_per_entry": 50})
    p = k.process("P", [0], "RUNNING_M")
    vmr = k.map_now(p, f, 0, 8, RW, True)
    k.prefault(vmr, range(8))
    s, u = m.thread("S", 1, p), m.thread("U", 0, p)
    pte = vmr.ptes[0]

    def load_then_store():
        yield from k.touch(s, vmr, 0, False)
        yield from s.sync()
        if store_at is not None:
            yield m.env.timeout(store_at - m.env.now)
            yield from k.touch(s, vmr, 0, True)

    def unmap():
        yield m.env.timeout(4000)
        yield from k.munmap(u, vmr)

    m.env.process(load_then_store())
    m.env.process(unmap())
    m.run(1e5)
    return m, pte.rmw


def test_munmap_plain_write_erases_a_d_set_in_its_window():
    """A store whose time falls between __munmap_pte's read of the PTE and its write (the
    event order ran the munmap first) sets D, which the write erases."""
    _, (t_read, t_write) = munmap_window()
    m, _ = munmap_window((t_read + t_write) / 2)
    assert counts(m) == {**dict.fromkeys(HAZARDS, 0), "lost_dirty": 1}
    st = m.recorder.hazards["lost_dirty"]
    assert dict(st.where) == {"munmap": 1}
    assert st.first.window == pytest.approx(t_write - t_read)
    assert st.first.waited == pytest.approx((t_write - t_read) / 2)


def test_an_access_through_a_stale_tlb_entry_to_a_freed_page():
    """OLD: S (core 1) loads page 0, caching it in its TLB. U (core 0) munmaps P's mapping;
    P's vcore list holds core 0 only, so core 1's entry is never flushed (a flush still in
    flight). R punches page 0 out (no VMR maps it: freed). S's next load goes through its
    stale entry to the freed page: freed_while_mapped, origin tlb."""
    m, k, f = setup("old")
    p = k.process("P", [0], "RUNNING_M")
    vmr = k.map_now(p, f, 0, 8, RW, True)
    k.prefault(vmr, range(8))
    s, u, r = m.thread("S", 1, p), m.thread("U", 0, p), m.thread("R", 2)

    def script():
        yield from k.touch(s, vmr, 0, False)
        yield from s.sync()
        yield m.env.timeout(5000 - m.env.now)
        yield from k.munmap(u, vmr)
        yield from k.punch_hole(r, f, 0, 1)
        yield m.env.timeout(20_000 - m.env.now)
        yield from k.touch(s, vmr, 0, False)

    m.env.process(script())
    m.run(1e5)
    assert counts(m) == {**dict.fromkeys(HAZARDS, 0), "freed_while_mapped": 1}
    st = m.recorder.hazards["freed_while_mapped"]
    assert dict(st.where) == {"tlb": 1} and st.first.thread == "S"


# ============================================================== publish_race
def insert_window(design):
    """A read()s absent page 0 at 0 (core 0); B read()s it (core 1) starting when A's
    radix_insert publishes the item (found by a first run of A alone)."""

    def run(b_at):
        m, k, f = setup(design, warm=[63], store="tmpfs")
        a, b = m.thread("A", 0), m.thread("B", 1)
        published = []

        def ins(orig, th, index, page):
            ret = yield from orig(th, index, page)
            published.append(f.pm.tree.slots[index].published_at)
            return ret

        probes.attach(f.pm, "pm_insert_page", ins)

        def reader(th, at):
            if at:
                yield m.env.timeout(at)
            yield from k.read(th, f, 0)

        m.env.process(reader(a, 0))
        if b_at is not None:
            m.env.process(reader(b, b_at))
        m.run(1e6)
        return m, published

    _, published = run(None)
    t_pub = published[0]
    # B's pm_find_page reads the slot after the syscall entry and the RCU/lookup charge
    from pmsim.costs import CostTable as _C

    c = _C(COSTS)
    lead = (
        c.ns("syscall_entry_exit_ns")
        + c.ns("rcu_read_section_ns")
        + c.ns("radix_lookup_ns_per_level")
    )
    if design.startswith("old"):
        lead = c.ns("syscall_entry_exit_ns")
    return run(t_pub - lead + 1)


def test_new_lookup_in_the_insert_window_is_a_publish_race():
    m, _ = insert_window("new")
    assert counts(m) == {**dict.fromkeys(HAZARDS, 0), "publish_race": 1}
    first = m.recorder.hazards["publish_race"].first
    assert first.thread == "B"
    assert first.window > 0
    assert "assert fails" in first.trail[1].what


@pytest.mark.parametrize("design", ["old", "new_backptr_first"])
def test_old_and_the_backpointer_fix_have_no_publish_race(design):
    m, _ = insert_window(design)
    assert counts(m) == dict.fromkeys(HAZARDS, 0)


# ============================================================== aba_dangerous
def aba_run(design, punch_at=None, mmap_at=None):
    """R (core 0) punches a hole over page 0 (resident, unmapped) at ``punch_at``; M (process
    P, core 1) mmaps page 0 shared at ``mmap_at``; F (P, core 2) touches it as soon as the
    mmap returns. 20 read-only VMRs of Q over other pages make R's VMR scan slow. Returns the
    machine, when R's pm_has_vmr_with_page and M's pm_add_vmr started."""
    m, k, f = setup(design, cores=4, store="tmpfs", costs={"vmr_scan_ns_per_vmr": 400})
    p = k.process("P", [1, 2], "RUNNING_S")
    q = k.process("Q", [3], "RUNNING_S")
    for i in range(20):
        k.map_now(q, f, 8 + i, 1, PROT_READ, True)
    r, mth, fth = m.thread("R", 0), m.thread("M", 1, p), m.thread("F", 2, p)
    out, times = {}, {}

    def first(key):
        def probe(orig, th, *args):
            times.setdefault(key, th.now)
            return (yield from orig(th, *args))

        return probe

    probes.attach(f.pm, "pm_has_vmr_with_page", first("scan"))
    probes.attach(f.pm, "pm_add_vmr", first("add"))

    def punch():
        yield m.env.timeout(punch_at)
        yield from k.punch_hole(r, f, 0, 1)

    def mmap_then_fault():  # do_mmap's steps after the device hook (which takes f->qlock)
        yield m.env.timeout(mmap_at)
        vmr = Vmr(p, f, p.place(1), 1, 0, RW, True)
        yield from f.pm.pm_add_vmr(mth, vmr)
        f.pm.vmrs.insert(0, f.pm.vmrs.pop())  # (scripted: Q's VMRs joined the list after it)
        yield m.env.timeout(1000)  # (scripted: 1 us until vmr_insert gets a busy vmr_lock)
        yield from p.vmr_lock.acquire(mth)
        p.vmrs.append(vmr)
        p.vmr_history += 1
        vmr.ready = True
        vmr.ready_at = mth.now
        yield from p.vmr_lock.release(mth)
        out["vmr"] = vmr

    def fault():
        while "vmr" not in out:
            yield m.env.timeout(10)
        yield from k.touch(fth, out["vmr"], 0, False)

    if punch_at is not None:
        m.env.process(punch())
    if mmap_at is not None:
        m.env.process(mmap_then_fault())
        m.env.process(fault())
    m.run(1e6)
    return m, times


def aba_timeline(design):
    """M's pm_add_vmr starts 30 ns before R's VMR scan and takes pm_lock first: the VMR is
    first on the list (Q's 20 are after it) and not ready when R's scan passes it; it becomes
    ready, and F faults the page in, while R scans Q's VMRs."""
    _, t_r = aba_run(design, punch_at=0.0)
    m, _ = aba_run(design, punch_at=0.0, mmap_at=t_r["scan"] - 30)
    return m


def test_new_remove_frees_a_page_a_late_vmr_mapped():
    m = aba_timeline("new")
    c = counts(m)
    assert c["aba_dangerous"] == 1 and c["freed_while_mapped"] == 1
    assert c["aba_find_put"] == 0


@pytest.mark.parametrize("design", ["old", "new_remove_cas_first"])
def test_old_and_the_cas_first_fix_free_no_mapped_page(design):
    m = aba_timeline(design)
    c = counts(m)
    assert c["aba_dangerous"] == 0 and c["freed_while_mapped"] == 0


# ============================================================== runs with no race
@pytest.mark.parametrize(
    "preset, design",
    [("read_hits", "new"), ("hot_page", "old"), ("punch_hole", "new"), ("mmap_churn", "new")],
)
def test_benign_presets_report_no_dangerous_hazard(preset, design):
    spec = load_spec(preset, ["duration=1ms", "warmup=0ms", "machine.cores=4"])
    summary = run_workload(spec, design).summary
    hz = summary["hazards"]
    assert set(hz) == set(HAZARDS)
    for name in ("lost_dirty", "stale_read", "freed_while_mapped", "publish_race", "aba_dangerous"):
        assert hz[name]["count"] == 0, (name, hz[name])
        assert hz[name]["per_s"] == 0.0


def test_summary_names_external_checks_read():
    spec = load_spec("read_hits", ["duration=200us", "warmup=0ms", "machine.cores=2"])
    res = run_workload(spec, "new")
    from pmsim.sweeps.tables import flatten

    flat = flatten(res.summary)
    for name in HAZARDS:
        assert f"hazards.{name}.count" in flat and f"hazards.{name}.per_s" in flat
    assert list(res.tables["hazards"]["hazard"]) == list(HAZARDS)


# ============================================================== the dirty_race workload
DIRTY_RACE = ["duration=4ms", "machine.costs.ipi_latency_ns=3000"]


def test_dirty_race_workload_loses_stores_under_new_only():
    """Stores on three cores in bursts, a writeback daemon: NEW loses some (each with a trail
    naming the clear, the shootdown, the store and the pass that skipped it); waiting for the
    acks loses none."""
    spec = load_spec("dirty_race", DIRTY_RACE)
    new = run_workload(spec, "new").summary
    lost = new["hazards"]["lost_dirty"]
    assert lost["count"] > 0 and lost["by_where"] == {"writeback": lost["count"]}
    assert lost["per_s"] == pytest.approx(lost["count"] / 4e-3)
    assert 0 < lost["window_ns_mean"] < 10_000  # open from a writepage to a flush: µs
    trail = new["hazard_first"]["lost_dirty"]["trail"]
    assert "pte_clear_dirty" in trail[0] and "shootdown of writer" in trail[1]
    assert any("writepage of page" in s for s in trail)
    assert (
        any("TLB entry (D cached)" in s for s in trail) and "skips the page as clean" in trail[-1]
    )
    sync = run_workload(spec, "new_sync_shootdown").summary
    assert sync["hazards"]["lost_dirty"]["count"] == 0
    assert sync["hazards"]["stale_read"]["count"] == 0


def test_dirty_race_without_writeback_on_old_reports_none():
    """OLD has no writeback: the same stores, no daemon, nothing lost."""
    spec = load_spec("dirty_race", [*DIRTY_RACE, "daemons=null"])
    hz = run_workload(spec, "old").summary["hazards"]
    assert {k: v["count"] for k, v in hz.items()} == dict.fromkeys(HAZARDS, 0)
