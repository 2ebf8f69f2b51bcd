"""A sweep's tables: one summary row per run, the mean and 95% CI per design and point, and
the paired difference of each design from the first one.

Summary columns are the run's identity (``run_id``, ``design``, ``workload``,
``replication``, ``seed``, one column per factor), ``status`` and ``error``, then
the run's summary flattened into dotted names (``total_ops_per_s``,
``ops.read.latency_us.p99``, ``locks.pm_qlock.wait_us_mean``, ``cpu.spin``).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
from scipy import stats

from pmsim.sweeps import verdicts

IDENT = ("run_id", "design", "workload", "replication", "seed")
STATUS = ("status", "error")
# Summary entries that restate the run's identity.
_SKIP = {"design", "workload", "seed"}


def canonical(obj) -> str:
    """Compact JSON with sorted keys, mapping keys of any type written as strings."""

    def norm(o):
        if isinstance(o, dict):
            return {str(k): norm(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [norm(v) for v in o]
        return o

    return json.dumps(norm(obj), sort_keys=True, separators=(",", ":"), default=str)


def factor_value(v):
    """A factor value as a table cell: scalars as they are, anything else as canonical JSON."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return canonical(v)


def flatten(summary: dict, prefix: str = "") -> dict:
    """``{"ops": {"read": {"count": 3}}}`` -> ``{"ops.read.count": 3}`` (numbers, and the
    booleans saying a number is only a lower bound: ``..._is_lower_bound``)."""
    out = {}
    for k, v in summary.items():
        if not prefix and k in _SKIP:
            continue
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}."))
        elif isinstance(v, bool):
            if name.endswith(BOUND):
                out[name] = v
        elif isinstance(v, (int, float)):
            out[name] = v
    return out


BOUND = "_is_lower_bound"


def bound_column(metric: str) -> str:
    """The summary column saying whether ``metric`` is only a lower bound in a run:
    ``ops.read.latency_us.p99`` -> ``ops.read.latency_us.p99_is_lower_bound``."""
    return metric + BOUND


def concat_rows(frames: list[pd.DataFrame], factors: list[str]) -> pd.DataFrame:
    """Runs' one-row frames as one table, identity columns first; a factor column holding
    both numbers and strings becomes strings (Parquet wants one type per column)."""
    if not frames:
        return pd.DataFrame(columns=[*IDENT, *factors, *STATUS])
    df = pd.concat(frames, ignore_index=True, sort=False)
    for c in factors:
        if c in df and df[c].dtype == object and len({type(v) for v in df[c].dropna()}) > 1:
            df[c] = df[c].map(lambda v: v if v is None else str(v))
    first = [c for c in (*IDENT, *factors, *STATUS) if c in df]
    return df[first + [c for c in df.columns if c not in first]]


def group_keys(factors: list[str]) -> list[str]:
    return ["design", "workload", *[f for f in factors if f != "workload"]]


def _long(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The ok runs' metrics as rows: the identity ``keys``, ``replication``, metric, value."""
    if "status" in summary:
        summary = summary[summary["status"] == "ok"]
    ids = [*keys, "replication"]
    skip = set(ids) | set(IDENT) | set(STATUS)
    metrics = [
        c
        for c in summary.columns
        if c not in skip
        and not c.endswith(BOUND)
        and pd.api.types.is_numeric_dtype(summary[c])
        and not pd.api.types.is_bool_dtype(summary[c])
    ]
    if summary.empty or not metrics:
        return pd.DataFrame(columns=[*ids, "metric", "value"])
    return summary.melt(id_vars=ids, value_vars=metrics, var_name="metric").dropna(subset=["value"])


def _mean_ci(long: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    """n, mean, std and the Student-t 95% interval of ``value`` per group (NaN for n = 1)."""
    if long.empty:
        return pd.DataFrame(columns=cols)
    out = (
        long.groupby(by, sort=False, dropna=False)["value"]
        .agg(n="count", mean="mean", std="std")
        .reset_index()
    )
    n = out["n"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        tq = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)), math.nan)
        half = tq * out["std"].to_numpy() / np.sqrt(n)
    out["ci95_low"] = out["mean"] - half
    out["ci95_high"] = out["mean"] + half
    out["ci95_half"] = half
    return out[cols]


def _lower_bounds(summary: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group and metric with a ``_is_lower_bound`` column: in how many ok runs it was
    only a lower bound (something still in progress at the end older than it could see)."""
    if "status" in summary:
        summary = summary[summary["status"] == "ok"]
    cols = [c for c in summary.columns if c.endswith(BOUND)]
    if summary.empty or not cols:
        return pd.DataFrame(columns=[*keys, "metric", "lower_bound"])
    long = summary.melt(id_vars=keys, value_vars=cols, var_name="metric", value_name="b")
    long["metric"] = long["metric"].str[: -len(BOUND)]
    long["b"] = long["b"].fillna(False).astype(bool)
    return (
        long.groupby([*keys, "metric"], sort=False, dropna=False)["b"]
        .sum()
        .astype(int)
        .rename("lower_bound")
        .reset_index()
    )


# The summary column a run sets to 1 when its measured window is not steady (pmsim.workload.steady).
UNSTEADY = "steady.unsteady"
UNDERPOWERED_HALF = 0.5  # a 95% half-width above half the mean: too few replications to say much


def aggregate(summary: pd.DataFrame, factors: list[str]) -> pd.DataFrame:
    """Per design, workload, factor point and metric: runs, mean, standard deviation and the
    95% confidence interval of the mean (Student t over the replications; NaN for one run);
    ``lower_bound``, the runs in which the value was only a lower bound; ``split``, the
    replications' clusters where they form two (pmsim.sweeps.verdicts.split), and ``flags``:
    ``bimodal`` (a split), ``censored`` (a lower bound in some run), ``unsteady`` (some run's
    window was not steady), ``underpowered`` (one run: no interval; or a 95% half-width over half
    the mean, so the interval reaches 0 or beyond for a positive quantity). Identical
    replications (a deterministic point) have a zero-width interval and are not flagged."""
    keys = group_keys(factors)
    cols = [*keys, "metric", "n", "mean", "std", "ci95_low", "ci95_high", "ci95_half"]
    long = _long(summary, keys)
    out = _mean_ci(long, [*keys, "metric"], cols)
    out = _bootstrap_percentiles(long, [*keys, "metric"], out)
    bounds = _lower_bounds(summary, keys)
    if not out.empty and not bounds.empty:
        out = out.merge(bounds, on=[*keys, "metric"], how="left", sort=False)
    out["lower_bound"] = out["lower_bound"].fillna(0).astype(int) if "lower_bound" in out else 0
    out["split"] = _splits(long, [*keys, "metric"], out)
    out["unread_costs"] = _unread(summary, keys, out)
    unsteady = _unsteady(summary, keys, out)
    out["flags"] = [
        ",".join(
            name
            for name, on in (
                ("bimodal", bool(sp)),
                ("censored", lb > 0),
                ("unsteady", us),
                ("underpowered", n < 2 or not abs(half) <= UNDERPOWERED_HALF * abs(mean)),
            )
            if on
        )
        for sp, lb, us, n, half, mean in zip(
            out["split"], out["lower_bound"], unsteady, out["n"], out["ci95_half"], out["mean"]
        )
    ]
    return out


# Percentiles (ops.read.latency_us.p99, locks.pm_qlock.wait_us_p99, timings.pte_walk.us_p99):
# their replications are skewed and bounded below, so their interval is a bootstrap's.
PERCENTILE = re.compile(r"(?:\.p\d+|_p\d+)$")
BOOTSTRAP = 2000


def _bootstrap_percentiles(long: pd.DataFrame, by: list[str], out: pd.DataFrame) -> pd.DataFrame:
    """For percentile metrics, the 95% interval of the mean over replications by a percentile
    bootstrap (2,000 resamples, a fixed seed: the same tables give the same interval) instead
    of Student t, whose symmetric interval runs below 0 for a skewed p99 (468.7 +- 800.3).
    It lies within the replications' range; with few replications it is about that range
    (and undercovers: the ``underpowered`` flag and the replication dots say so).
    ``ci_method`` says which interval a row has."""
    out = out.copy()
    out["ci_method"] = "t"
    if out.empty:
        return out
    pick = out["metric"].str.contains(PERCENTILE) & (out["n"] >= 2)
    if not pick.any():
        return out
    wanted = {_key(k) for k in out.loc[pick, by].itertuples(index=False, name=None)}
    found = {}
    sub = long[long["metric"].str.contains(PERCENTILE)]
    for key, g in sub.groupby(by, sort=False, dropna=False):
        if _key(key) not in wanted:
            continue
        v = g["value"].to_numpy(dtype=float)
        rng = np.random.default_rng(20261205)
        means = v[rng.integers(0, v.size, (BOOTSTRAP, v.size))].mean(axis=1)
        found[_key(key)] = np.quantile(means, [0.025, 0.975])
    rows = [found.get(_key(k)) for k in out[by].itertuples(index=False, name=None)]
    has = np.array([r is not None for r in rows]) & pick.to_numpy()
    lo = np.array([r[0] if r is not None else np.nan for r in rows])
    hi = np.array([r[1] if r is not None else np.nan for r in rows])
    out["ci95_low"] = np.where(has, lo, out["ci95_low"])
    out["ci95_high"] = np.where(has, hi, out["ci95_high"])
    out["ci95_half"] = np.where(has, (hi - lo) / 2, out["ci95_half"])
    out["ci_method"] = np.where(has, "bootstrap", "t")
    return out


def _splits(long: pd.DataFrame, by: list[str], out: pd.DataFrame) -> list[str]:
    """Per row of ``out``: the replications' split, described, or ''."""
    if out.empty:
        return []
    found = {}
    for key, g in long.groupby(by, sort=False, dropna=False):
        if len(g) >= 3:
            parts = verdicts.split(g["value"].to_numpy(dtype=float))
            if parts is not None:
                found[_key(key)] = verdicts.describe_split(parts)
    return [found.get(_key(k), "") for k in out[by].itertuples(index=False, name=None)]


def _key(k) -> tuple:
    """A group key with NaN made comparable (NaN != NaN)."""
    return tuple("<nan>" if isinstance(v, float) and math.isnan(v) else v for v in k)


UNREAD = "unread_costs"  # summary column of an experiment that sets costs (pmsim.sweeps.reads)


def _unread(summary: pd.DataFrame, keys: list[str], out: pd.DataFrame) -> list[str]:
    """Per row of ``out``: the costs its experiment sets that the design does not read at that
    point (its result is the same at every value of them, from one run), or ''."""
    if out.empty or UNREAD not in summary:
        return [""] * len(out)
    found = {
        _key(k): ",".join(sorted({c for v in g[UNREAD].dropna() for c in str(v).split(",") if c}))
        for k, g in summary.groupby(keys, sort=False, dropna=False)
    }
    return [found.get(_key(k), "") for k in out[keys].itertuples(index=False, name=None)]


def _unsteady(summary: pd.DataFrame, keys: list[str], out: pd.DataFrame) -> list[bool]:
    """Per row of ``out``: whether some ok run of its design and point was not steady."""
    if out.empty or UNSTEADY not in summary:
        return [False] * len(out)
    ok = summary[summary["status"] == "ok"] if "status" in summary else summary
    bad = {
        _key(k)
        for k, g in ok.groupby(keys, sort=False, dropna=False)
        if (g[UNSTEADY].fillna(0) > 0).any()
    }
    return [_key(k) in bad for k in out[keys].itertuples(index=False, name=None)]


def differences(
    summary: pd.DataFrame,
    factors: list[str],
    baseline: str,
    practical: float = verdicts.PRACTICAL,
) -> pd.DataFrame:
    """Per design other than ``baseline``, point and metric: the mean of (design - baseline)
    over the replications, each pair run with the same seed, and its 95% interval. Where
    the designs respond alike to the same random inputs, this interval is narrower than
    the two designs' own. ``baseline_mean`` gives the scale, ``relative`` the mean difference
    over it; ``pairs_higher`` / ``pairs_lower`` count the pairs each way and ``sign_p`` is the
    two-sided sign test; ``verdict`` (pmsim.sweeps.verdicts.verdict, with ``practical`` the
    smallest difference that matters, as a fraction of the baseline) is ``higher``, ``lower``,
    ``negligible``, ``no difference`` or ``inconclusive (underpowered)``."""
    keys = group_keys(factors)
    point = keys[1:]
    cols = [
        "design",
        "baseline",
        *point,
        "metric",
        "n",
        "mean",
        "std",
        "ci95_low",
        "ci95_high",
        "ci95_half",
        "baseline_mean",
        "relative",
        "pairs_higher",
        "pairs_lower",
        "sign_p",
        "verdict",
    ]
    long = _long(summary, keys)
    base = long[long["design"] == baseline].drop(columns="design")
    other = long[long["design"] != baseline]
    pairs = other.merge(base, on=[*point, "replication", "metric"], suffixes=("", "_base"))
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    pairs["value"] = pairs["value"] - pairs["value_base"]
    by = ["design", *point, "metric"]
    out = _mean_ci(pairs, by, by + ["n", "mean", "std", "ci95_low", "ci95_high", "ci95_half"])
    g = pairs.assign(up=pairs["value"] > 0, down=pairs["value"] < 0).groupby(
        by, sort=False, dropna=False
    )
    out["baseline_mean"] = g["value_base"].mean().to_numpy()
    out["pairs_higher"] = g["up"].sum().astype(int).to_numpy()
    out["pairs_lower"] = g["down"].sum().astype(int).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["relative"] = out["mean"] / out["baseline_mean"].abs()
    out["sign_p"] = [
        verdicts.sign_test(h, lo) for h, lo in zip(out["pairs_higher"], out["pairs_lower"])
    ]
    out["verdict"] = [
        verdicts.verdict(lo, hi, m, b, practical)
        for lo, hi, m, b in zip(
            out["ci95_low"], out["ci95_high"], out["mean"], out["baseline_mean"]
        )
    ]
    out.insert(1, "baseline", baseline)
    return out[cols]
