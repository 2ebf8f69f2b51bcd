"""The Universal Scalability Law fit (pmsim.sweeps.usl): it recovers known sigma and kappa from
synthetic curves with noise, within its own 95% intervals; Amdahl is its kappa = 0 case; it fits
the committed results' curves."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmsim.sweeps import usl

ROOT = Path(__file__).resolve().parents[1]
CORES = np.array([1, 2, 4, 8, 16, 32, 64] * 3)


@pytest.mark.parametrize(
    "sigma, kappa", [(0.05, 0.001), (0.2, 0.0), (0.01, 0.0002), (0.3, 0.01), (0.0, 0.002)]
)
def test_recovers_known_sigma_and_kappa(sigma, kappa):
    """2% noise, 3 replications of 7 points: over 40 seeds the 95% intervals cover the truth
    in at least 80% of fits (a bounded fit's covariance interval is approximate; 95% nominal),
    and the median estimate is within 15% (or 0.003 absolute) of it."""
    covered, sig, kap = [], [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        x = usl.usl(CORES, 2e6, sigma, kappa) * (1 + 0.02 * rng.standard_normal(len(CORES)))
        f = usl.fit(CORES, x)
        covered.append(
            f.sigma_low - 1e-9 <= sigma <= f.sigma_high + 1e-9
            and f.kappa_low - 1e-9 <= kappa <= f.kappa_high + 1e-9
        )
        sig.append(f.sigma)
        kap.append(f.kappa)
    assert np.mean(covered) >= 0.8
    assert abs(np.median(sig) - sigma) <= max(0.15 * sigma, 0.003)
    assert abs(np.median(kap) - kappa) <= max(0.15 * kappa, 0.0002)


def test_exact_curve_gives_exact_peak_and_half_efficiency():
    f = usl.fit(CORES, usl.usl(CORES, 1e6, 0.05, 0.001))
    assert f.sigma == pytest.approx(0.05, rel=1e-4) and f.kappa == pytest.approx(0.001, rel=1e-3)
    assert f.peak_cores == pytest.approx(math.sqrt(0.95 / 0.001), rel=1e-3)
    assert f.peak_throughput == pytest.approx(usl.usl(f.peak_cores, 1e6, 0.05, 0.001), rel=1e-6)
    n = f.half_efficiency_cores
    assert 1 / (1 + 0.05 * (n - 1) + 0.001 * n * (n - 1)) == pytest.approx(0.5, rel=1e-3)


def test_amdahl_is_the_kappa_zero_case():
    x = usl.usl(CORES, 1e6, 0.1, 0.0)
    a, u = usl.fit(CORES, x, "amdahl"), usl.fit(CORES, x)
    assert a.kappa == 0 and a.sigma == pytest.approx(0.1, rel=1e-4)
    assert u.kappa == pytest.approx(0.0, abs=1e-8)
    assert math.isinf(a.peak_cores) and a.half_efficiency_cores == pytest.approx(11.0)
    assert usl.half_efficiency(0, 0) == math.inf


def test_too_few_points_give_no_fit():
    assert usl.fit([1, 2], [1.0, 2.0]) is None
    assert usl.fit([1, 2], [1.0, 1.9], "amdahl") is not None
    assert usl.fit([1, 2, 4], [0.0, 0.0, 0.0]) is None


@pytest.mark.parametrize("folder", ["design_review", "syscall_layer"])
def test_fits_the_committed_curves(folder):
    d = ROOT / "results" / folder
    info = json.loads((d / "manifest.json").read_text())
    t = usl.fit_table(pd.read_parquet(d / "summary.parquet"), info["factors"])
    curves = {(w, g) for w, g in zip(t["workload"], t["design"])}
    assert len(curves) >= 4 and set(t["model"]) == {"usl", "amdahl"}
    fitted = t[t["model"] == "usl"]
    assert (fitted["sigma"] >= 0).all() and (fitted["kappa"] >= 0).all()
    assert (fitted["rel_rmse"] < 0.5).all()
    assert np.isfinite(fitted["half_efficiency_cores"]).any()
    if folder == "syscall_layer":  # OLD's pm_lock bends the curve, NEW's reads scale
        old = fitted.set_index(["workload", "design"]).loc[("read_hits_procs", "old")]
        new = fitted.set_index(["workload", "design"]).loc[("read_hits_procs", "new")]
        assert old["half_efficiency_cores"] < 8 < 64 < new["half_efficiency_cores"]


def test_report_and_figure_show_the_fits(tmp_path):
    """The report's scalability section lists every curve's fit; the throughput figure draws it
    dashed; a robustness.json beside the results adds "How robust is each verdict"."""
    import shutil

    from pmsim.plots.scaling import throughput_vs_cores
    from pmsim.report import robustness as rb
    from pmsim.report.blocks import to_markdown
    from pmsim.sweeps.api import SweepResult

    res = SweepResult.load(ROOT / "results" / "syscall_layer")
    fig = throughput_vs_cores(res, "read_hits_procs")
    dashed = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("_usl")]
    assert {ln.get_label() for ln in dashed} == {"_usl old", "_usl new"}
    md = to_markdown(rb.scalability(res))
    assert "## Scalability fits" in md and md.count("`read_hits_procs`") == 2
    assert rb.robustness(res) == [] or rb.find_robustness(res) is not None
    copy = tmp_path / "results" / "syscall_layer"
    shutil.copytree(ROOT / "results" / "syscall_layer", copy)
    (tmp_path / "results" / "robustness").mkdir()
    verdict = {"name": "new faster than old (throughput)", "share": 0.75, "ci95_low": 0.5}
    verdict.update({"ci95_high": 0.9, "samples": 16, "hinges": ["cacheline_transfer_ns"]})
    study = {"workload": "read_hits_procs", "sets": {"machine.cores": 16}, "verdicts": [verdict]}
    study["ranking"] = {"old": {"total_ops_per_s": ["cacheline_transfer_ns"]}}
    (tmp_path / "results" / "robustness" / "robustness.json").write_text(
        json.dumps({"studies": [study]})
    )
    md = to_markdown(rb.robustness(SweepResult.load(copy)))
    assert "## How robust is each verdict" in md
    assert "new faster than old (throughput) | 75% [50%, 90%] | 16 | `cacheline_transfer_ns`" in md


def test_hazards_never_seen_fold_into_one_row(tmp_path):
    """ "Free of X" verdicts that held in every sample and hinge on nothing are one row; a
    hazard some sample saw keeps its own row, and a metric no cost moved has no ranking line."""
    import shutil

    from pmsim.report import robustness as rb
    from pmsim.report.blocks import to_markdown
    from pmsim.sweeps.api import SweepResult

    copy = tmp_path / "results" / "syscall_layer"
    shutil.copytree(ROOT / "results" / "syscall_layer", copy)
    (tmp_path / "results" / "robustness").mkdir()

    def free(design, hazard, share, hinges):
        return {
            "name": f"{design} free of {hazard} hazards",
            "metric": f"hazards.{hazard}.count",
            "share": share,
            "ci95_low": 0.89 if share == 1 else 0.4,
            "ci95_high": 1.0 if share == 1 else 0.8,
            "samples": 32,
            "hinges": hinges,
        }

    verdicts = [
        free("old", "lost_dirty", 1.0, []),
        free("new", "lost_dirty", 0.6, ["ipi_latency_ns"]),
        free("old", "publish_race", 1.0, []),
        free("new", "publish_race", 1.0, []),
    ]
    study = {"workload": "dirty_race", "sets": {}, "verdicts": verdicts}
    study["ranking"] = {"new": {"hazards.publish_race.count": [], "total_ops_per_s": ["x_ns"]}}
    (tmp_path / "results" / "robustness" / "robustness.json").write_text(
        json.dumps({"studies": [study]})
    )
    md = to_markdown(rb.robustness(SweepResult.load(copy)))
    assert "new free of lost_dirty hazards | 60% [40%, 80%] | 32 | `ipi_latency_ns`" in md
    folded = "old free of lost_dirty, publish_race; new free of publish_race (never seen in any"
    assert f"{folded} sample) | 100% [89%, 100%] | 32 | - |" in md
    assert md.count("free of") == 3  # the seen one, and the folded row's two designs
    assert "publish_race.count" not in md and "total_ops_per_s: `x_ns`" in md
