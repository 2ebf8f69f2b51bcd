"""What the figures read from a :class:`~pmsim.sweeps.api.SweepResult`: one workload's
factor points and how they map onto an x axis and lines, metrics from the aggregate, and
the per-run tables (only runs whose status is ``ok``: failed runs are left out)."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pmsim.errors import ConfigError
from pmsim.sweeps.tables import aggregate


def ok_summary(result, workload: str) -> pd.DataFrame:
    s = result.summary
    s = s[s["workload"] == workload]
    return s[s["status"] == "ok"] if "status" in s else s


def workloads(result) -> list[str]:
    """Workloads with at least one ok run, in the summary's (the experiment's) order."""
    s = result.summary
    if "status" in s:
        s = s[s["status"] == "ok"]
    return list(dict.fromkeys(s["workload"]))


def designs(result, workload: str) -> list[str]:
    """Designs with ok runs of ``workload``, in the experiment's order."""
    have = set(ok_summary(result, workload)["design"])
    return [d for d in result.experiment.designs if d in have]


_CACHE: dict[int, dict] = {}


def _cache(result) -> dict:
    """Tables read once per result (each per-run table is one file per run): dropped with
    the result. Callers filter, never modify, what they get."""
    key = id(result)
    if key not in _CACHE:
        _CACHE[key] = {}
        weakref.finalize(result, _CACHE.pop, key, None)
    return _CACHE[key]


def run_table(result, name: str, workload: str | None = None) -> pd.DataFrame:
    """A per-run table of the ok runs (empty if the sweep has no such table)."""
    cache = _cache(result)
    if name not in cache:
        try:
            cache[name] = result.table(name)
        except (ConfigError, FileNotFoundError):
            cache[name] = pd.DataFrame()
    df = cache[name]
    if workload is not None and not df.empty:
        df = df[df["workload"] == workload]
    return df


@dataclass
class Layout:
    """How one workload's factor points map onto a figure: ``x`` the factor along the x axis
    (None: points side by side), ``variants`` the factors drawn as separate lines, ``points``
    the distinct values of the factors that vary, in the experiment's order."""

    workload: str
    x: str | None
    numeric: bool
    variants: list[str]
    varying: list[str]
    points: pd.DataFrame

    def variant_values(self) -> list[dict]:
        if not self.variants:
            return [{}]
        return self.points[self.variants].drop_duplicates().to_dict("records")

    def place(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` (with factor columns) plus ``_x`` (its x position) and ``_v`` (variant index)."""
        df = df.copy()
        if self.x is not None:
            df["_x"] = df[self.x].astype(float)
        elif self.varying:
            pos = self.points.assign(_x=np.arange(len(self.points), dtype=float))
            df = df.merge(pos, on=self.varying, how="inner")
        else:
            df["_x"] = 0.0
        if self.variants:
            var = pd.DataFrame(self.variant_values()).assign(_v=lambda d: np.arange(len(d)))
            df = df.merge(var, on=self.variants, how="inner")
        else:
            df["_v"] = 0
        return df.sort_values(["_v", "_x"], kind="stable")

    def xticks(self) -> tuple[list, list[str]]:
        """x positions and their labels."""
        if self.x is not None:
            vals = sorted(set(self.points[self.x].astype(float)))
            return vals, [f"{v:g}" for v in vals]
        if not self.varying:
            return [0.0], [self.workload]
        labels = [
            "\n".join(str(v) for v in row)
            for row in self.points[self.varying].itertuples(index=False)
        ]
        return list(range(len(labels))), labels

    def xlabel(self) -> str:
        from pmsim.plots.style import factor_label

        if self.x is not None:
            return factor_label(self.x)
        return " / ".join(factor_label(k) for k in self.varying) or "workload"

    def default_point(self) -> dict:
        """The point with the most cores (the last such), else the last point."""
        if not self.varying:
            return {}
        pts = self.points
        if "machine.cores" in self.varying:
            pts = pts[pts["machine.cores"] == pts["machine.cores"].max()]
        return {k: _scalar(v) for k, v in pts.iloc[-1].items()}

    def points_list(self) -> list[dict]:
        return [{k: _scalar(v) for k, v in r.items()} for r in self.points.to_dict("records")]


def _scalar(v):
    return v.item() if isinstance(v, np.generic) else v


def factors(result) -> list[str]:
    """The experiment's factor columns other than ``workload``."""
    return [f for f in result.experiment.factors if f != "workload" and f in result.summary]


def layout(result, workload: str, x: str | None = None) -> Layout:
    """The x factor is ``x`` if given, else ``machine.cores`` if it varies, else the first
    numeric factor that varies; factors that vary but are not fixed by x become variants."""
    s = ok_summary(result, workload)
    varying = [f for f in factors(result) if s[f].nunique(dropna=False) > 1]
    points = s[varying].drop_duplicates().reset_index(drop=True)
    if x is None:
        if "machine.cores" in varying:
            x = "machine.cores"
        else:
            x = next((f for f in varying if pd.api.types.is_numeric_dtype(s[f])), None)
    elif x not in varying:
        raise ValueError(
            f"{x!r} is not a factor that varies for workload {workload!r} (those are {varying})"
        )
    variants = []
    if x is not None:
        variants = [
            f for f in varying if f != x and points.groupby(x)[f].nunique(dropna=False).max() > 1
        ]
    return Layout(workload, x, x is not None, variants, varying, points)


def _is_null(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def select_point(df: pd.DataFrame, point: dict) -> pd.DataFrame:
    """Rows of ``df`` at ``point`` (factor -> value)."""
    mask = np.ones(len(df), dtype=bool)
    for k, v in point.items():
        # a factor set to null (``daemons: null``) reads back as NaN, which equals nothing
        hit = df[k].isna() if _is_null(v) else df[k] == v
        mask &= hit.to_numpy()
    return df[mask]


def metric(result, workload: str, name: str) -> pd.DataFrame:
    """The aggregate rows (mean, CI, n per design and point) of one metric of one workload."""
    cache = _cache(result)
    if "by_metric" not in cache:
        a = result.aggregate
        cache["by_metric"] = {k: g for k, g in a.groupby(["workload", "metric"], sort=False)}
        cache["empty"] = a.iloc[:0]
    return cache["by_metric"].get((workload, name), cache["empty"])


def has_metric(result, workload: str, name: str) -> bool:
    return not metric(result, workload, name).empty


def derived(result, workload: str, name: str, values: pd.Series) -> pd.DataFrame:
    """Mean and 95% CI over replications of a per-run quantity (``values`` indexed like the
    summary), in the aggregate's shape, so the same line drawing applies."""
    s = ok_summary(result, workload)
    keep = [
        c
        for c in ("run_id", "design", "workload", "replication", "seed", *factors(result))
        if c in s
    ]
    df = s[keep].assign(**{name: values.reindex(s.index)})
    return aggregate(df, factors(result)).query("metric == @name")


def workload_ops(result, workload: str) -> list[str]:
    """The workload's operations that completed at least once (``miss`` last if present)."""
    a = result.aggregate
    a = a[
        (a["workload"] == workload) & a["metric"].str.match(r"ops\.[^.]+\.count$") & (a["mean"] > 0)
    ]
    ops = list(dict.fromkeys(a["metric"].str.split(".").str[1]))
    return sorted(ops, key=lambda o: o == "miss")


def measured_seconds(s: pd.DataFrame) -> pd.Series:
    return (s["duration_ms"] - s["warmup_ms"]) / 1e3


def metric_prefix(result, workload: str, prefix: str) -> pd.DataFrame:
    """The aggregate rows of ``workload`` whose metric starts with ``prefix``."""
    a = result.aggregate
    return a[(a["workload"] == workload) & a["metric"].str.startswith(prefix)]
