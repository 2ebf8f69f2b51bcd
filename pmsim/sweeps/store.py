"""A sweep's folder: each finished run written at once, so a killed sweep resumes.

::

    DIR/manifest.json               the experiment, and every run with its resolved workload
    DIR/summary.parquet             one row per run (status ok or failed)
    DIR/aggregate.parquet           mean and 95% CI per design, factor point and metric
    DIR/differences.parquet         each design minus the first, paired by seed: mean and 95% CI
    DIR/provenance.parquet          wall time, host and versions per run (not results)
    DIR/runs/<table>/<run_id>.parquet   per-run tables: ops, locks, cores, counters,
                                    timeseries, run, summary, provenance
    DIR/runs/failed/<run_id>.json   a run that raised: its error and traceback

Only a folder whose manifest pmsim sweep wrote (its ``format`` marker) is ever resumed or
cleared, and one sweep at a time holds it (an flock the OS drops when the process ends).
Every file is written under a hidden temporary name and renamed, so a crash never
leaves half a file. A run is finished when its ``runs/summary`` file exists (written
last), and the sweep's tables when the manifest, written after them, holds their digest.
On resume, files of unfinished runs and of runs no longer in the experiment
are removed, and failed runs run again (a failure may have been the machine's).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import traceback
from pathlib import Path

import pandas as pd

from pmsim.errors import ConfigError
from pmsim.sweeps.tables import aggregate, concat_rows, differences, flatten
from pmsim.version import code_digest

RUN_TABLES = (
    "ops",
    "locks",
    "lock_holders",
    "cores",
    "counters",
    "timeseries",
    "op_timeseries",
    "latency",
    "intervals",
    "hazards",
    "run",
    "lockstat",
    "lines",
    "blame",
    "breakdown",
)
SWEEP_TABLES = ("summary", "aggregate", "differences", "provenance")
# The finished runs' per-run tables gathered into one file each under DIR/tables/ (``run``
# repeats the summary, so it stays per run): what a results folder without runs/ keeps.
TABLES = "tables"
# (``hazards`` stays per run: its numbers are in the summary as ``hazards.<name>.*``, and a
# results folder gathered before the hazard oracle existed stays readable.)
GATHERED = tuple(t for t in RUN_TABLES if t not in ("run", "hazards"))
# Tables added after results were committed (issue 16: where the time went): a results folder
# without them is still whole, so the digest covers them only where they are.
LATER = ("lockstat", "lines", "blame", "breakdown")
TOP_FILES = ("manifest.json", *(f"{t}.parquet" for t in SWEEP_TABLES), TABLES)
# The manifest's marker: a folder is a sweep's (so it may be resumed or cleared) only when its
# manifest says so; anything else with files in it is someone's data.
FORMAT = "pmsim-sweep/1"
LOCK_FILE = ".pmsim.lock"  # only where a folder cannot be locked itself (NFS)
MISSING = "no result: the run's files are gone (removed while the sweep ran?); rerun to redo it"


def _flock(fd: int, folder: Path) -> int:
    """``fd`` locked exclusively, or a ConfigError if another sweep holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            f"--out: {str(folder)!r} is in use by another sweep running now; wait for it to end "
            "or give another folder"
        ) from None
    return fd


def sweep_name(folder: Path) -> str | None:
    """The experiment name in ``folder``'s manifest if pmsim sweep wrote it (its format marker,
    experiment and code digest), else None."""
    try:
        info = json.loads((folder / "manifest.json").read_text())
    except (FileNotFoundError, IsADirectoryError, ValueError):  # ValueError: not JSON, not UTF-8
        return None
    if not isinstance(info, dict):
        return None
    # Manifests written before the marker (results/ of earlier versions) carry the version,
    # the run list and the totals: no other tool's manifest has all of those.
    legacy = "format" not in info and {"pmsim_version", "runs", "runs_total"} <= set(info)
    if info.get("format") != FORMAT and not legacy:
        return None
    name = (
        info.get("experiment", {}).get("name") if isinstance(info.get("experiment"), dict) else None
    )
    ok = isinstance(name, str) and name and isinstance(info.get("code_digest"), str)
    return name if ok else None


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``: readers see the whole file or none."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def tables_digest(folder: Path) -> str | None:
    """A digest of the result tables' bytes, None if one is missing. Not of the provenance:
    its wall times differ between runs of one sweep, and the manifest is a result too."""
    h = hashlib.blake2b(digest_size=8)
    for path in [
        *(f"{name}.parquet" for name in SWEEP_TABLES[:-1]),
        *(f"{TABLES}/{name}.parquet" for name in GATHERED if name not in LATER),
    ]:
        try:
            h.update((folder / path).read_bytes())
        except FileNotFoundError:
            return None
    for name in LATER:  # (named in the digest: a folder with them differs from one without)
        path = folder / TABLES / f"{name}.parquet"
        if path.is_file():
            h.update(name.encode() + path.read_bytes())
    return h.hexdigest()


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") and ".tmp-" in path.name


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    _atomic(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_arrow(table, path: Path) -> None:
    import pyarrow.parquet as pq

    _atomic(path, lambda tmp: pq.write_table(table, tmp))


def _with_ident(df: pd.DataFrame, ident: dict):
    """A run's table as Arrow, its design/workload/seed replaced by the run's identity and
    factors. Straight to Arrow: through pandas it took half the driver's time per run."""
    import pyarrow as pa

    table = pa.Table.from_pandas(
        df.drop(columns=["design", "workload", "seed"]), preserve_index=False
    )
    for i, (key, value) in enumerate(ident.items()):
        table = table.add_column(i, key, pa.array([value] * len(df)))
    return table


def write_text(text: str, path: Path) -> None:
    _atomic(path, lambda tmp: tmp.write_text(text))


class SweepStore:
    """The output folder of one experiment."""

    def __init__(self, out):
        self.dir = Path(out)
        self.runs = self.dir / "runs"
        self._lock_fd: int | None = None  # held from open() to unlock()

    # --- opening ------------------------------------------------------------------
    def check(self, exp=None, resume: bool = True) -> None:
        """Refuse a folder that is not a sweep's (a sweep may delete files in it) or, when
        resuming, holds another experiment, before anything is written."""
        d = self.dir
        for parent in d.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError(
                        f"--out: {str(parent)!r} is a file, so {str(d)!r} cannot be a folder"
                    )
                break
        if d.exists() and not d.is_dir():
            raise ConfigError(f"--out: {str(d)!r} exists and is not a folder")
        if not d.is_dir():
            return
        entries = list(d.iterdir())
        if all(e.name.startswith(".manifest.json.tmp-") or e.name == LOCK_FILE for e in entries):
            return  # new, or a sweep killed before its first manifest
        name = sweep_name(d)
        if name is None:
            raise ConfigError(
                f"--out: {str(d)!r} is not empty and is not a sweep's folder (no manifest.json "
                "written by pmsim sweep); give a new or empty folder"
            )
        if exp is not None and resume and name != exp.name:
            raise ConfigError(
                f"--out: {str(d)!r} holds the sweep of experiment {name!r}, not {exp.name!r} "
                "(give another folder, or --no-resume to replace it)"
            )

    def lock(self) -> None:
        """Take the folder for this sweep: a second sweep on it is refused. An flock on the
        folder itself, so the OS releases it when this process ends, even when killed; where a
        folder cannot be locked (NFS), on a file in it, :data:`LOCK_FILE`."""
        d = self.dir
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise ConfigError(f"--out: cannot write to {str(d)!r} ({e.strerror})") from None
        try:
            self._lock_fd = _flock(fd, d)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            fd = os.open(d / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._lock_fd = _flock(fd, d)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            os.close(fd)
            raise

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def open(self, exp, plans, resume: bool = True) -> set[str]:
        """Lock the folder and prepare it for ``plans``; return the ids of those already
        finished. The lock holds until :meth:`unlock`."""
        self.lock()
        try:
            return self._open(exp, plans, resume)
        except BaseException:
            self.unlock()
            raise

    def _open(self, exp, plans, resume: bool) -> set[str]:
        self.check(exp, resume)  # again, now that no other sweep can change the folder
        d = self.dir
        try:
            for entry in d.iterdir():  # what a killed sweep left half-written
                if _is_temporary(entry):
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            # The manifest first: a folder with runs/ always has its manifest.
            self.write_manifest(exp, plans)
            if not resume:
                shutil.rmtree(self.runs, ignore_errors=True)
                shutil.rmtree(d / TABLES, ignore_errors=True)
                for name in TOP_FILES[1:-1]:
                    (d / name).unlink(missing_ok=True)
            for table in (*RUN_TABLES, "summary", "provenance", "failed"):
                (self.runs / table).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):  # the machine's, not the input's
                raise
            raise ConfigError(f"--out: cannot write to {str(d)!r} ({e.strerror})") from None
        wanted = {p.run_id for p in plans}
        done = {p.stem for p in (self.runs / "summary").glob("*.parquet")} & wanted
        for entry in self.runs.iterdir():  # keep only the finished runs' files
            if not entry.is_dir():
                if entry.name.startswith("."):
                    entry.unlink()
                continue
            for f in entry.iterdir():
                if (
                    f.name.startswith(".")
                    or entry.name == "failed"
                    or f.name.split(".")[0] not in done
                ):
                    shutil.rmtree(f) if f.is_dir() else f.unlink()
        return done

    def write_manifest(
        self, exp, plans, status: dict | None = None, tables: str | None = None
    ) -> None:
        """The experiment and its runs; after a sweep, each run's status and the digest of the
        sweep's tables (a reader checks it: tables of a killed or running sweep do not pass)."""
        from pmsim.version import __version__

        runs = [
            {
                **p.ident,
                "point": p.point,
                **({"status": status.get(p.run_id, "missing")} if status is not None else {}),
                "spec": p.spec.model_dump(mode="json"),
            }
            for p in plans
        ]
        manifest = {
            "format": FORMAT,
            "experiment": exp.model_dump(mode="json", exclude={"base_dir"}),
            "pmsim_version": __version__,
            "code_digest": code_digest(),
            "factors": exp.factors,
            "designs": exp.designs,
            "runs_total": len(plans),
            "runs": runs,
        }
        if status is not None:
            manifest["runs_ok"] = sum(s == "ok" for s in status.values())
            manifest["runs_failed"] = sum(s == "failed" for s in status.values())
            manifest["runs_missing"] = sum(s == "missing" for s in status.values())
            manifest["tables_digest"] = tables
        write_text(json.dumps(manifest, indent=1, default=str), self.dir / "manifest.json")

    # --- one run ------------------------------------------------------------------------
    def write_run(self, plan, output: dict) -> None:
        """Write a finished run's tables, then its summary row (which marks it finished)."""
        import pyarrow as pa

        ident = plan.ident
        for name in RUN_TABLES:
            write_arrow(
                _with_ident(output["tables"][name], ident),
                self.runs / name / f"{plan.run_id}.parquet",
            )
        write_arrow(
            pa.Table.from_pylist([{"run_id": plan.run_id, **output["provenance"]}]),
            self.runs / "provenance" / f"{plan.run_id}.parquet",
        )
        row = {**ident, "status": "ok", "error": None, **plan.notes, **flatten(output["summary"])}
        write_arrow(pa.Table.from_pylist([row]), self.runs / "summary" / f"{plan.run_id}.parquet")
        (self.runs / "failed" / f"{plan.run_id}.json").unlink(missing_ok=True)

    def write_failure(self, plan, error: BaseException) -> str:
        """Record a run that raised; returns its one-line error."""
        line = " ".join(f"{type(error).__name__}: {error}".split())
        record = {
            **plan.ident,
            "error": line,
            "traceback": "".join(traceback.format_exception(error)),
        }
        write_text(
            json.dumps(record, indent=1, default=str), self.runs / "failed" / f"{plan.run_id}.json"
        )
        return line

    # --- the sweep's tables ----------------------------------------------------------------
    def finalize(self, exp, plans) -> dict[str, pd.DataFrame]:
        """Gather the runs' rows into summary, aggregate and provenance; rewrite the manifest."""
        rows, prov, status = [], [], {}
        for p in plans:
            done = self.runs / "summary" / f"{p.run_id}.parquet"
            failed = self.runs / "failed" / f"{p.run_id}.json"
            if done.is_file():
                rows.append(pd.read_parquet(done))
                prov.append(pd.read_parquet(self.runs / "provenance" / f"{p.run_id}.parquet"))
                status[p.run_id] = "ok"
            elif failed.is_file():
                err = json.loads(failed.read_text())["error"]
                rows.append(
                    pd.DataFrame([{**p.ident, "status": "failed", "error": err, **p.notes}])
                )
                status[p.run_id] = "failed"
            else:  # its files went while the sweep ran (deleted by hand, a full disk)
                rows.append(
                    pd.DataFrame([{**p.ident, "status": "missing", "error": MISSING, **p.notes}])
                )
                status[p.run_id] = "missing"
        factors = [f for f in exp.factors if f != "workload"]
        summary = concat_rows(rows, factors)
        agg = aggregate(summary, exp.factors)
        diff = differences(summary, exp.factors, exp.designs[0], exp.practical_difference)
        provenance = (
            pd.concat(prov, ignore_index=True) if prov else pd.DataFrame(columns=["run_id"])
        )
        tables = {
            "summary": summary,
            "aggregate": agg,
            "differences": diff,
            "provenance": provenance,
        }
        for name, df in tables.items():
            write_parquet(df, self.dir / f"{name}.parquet")
        from pmsim.sweeps.usl import fit_table

        fits = fit_table(summary, exp.factors)  # derived from the summary: not in the digest
        if len(fits):
            write_parquet(fits, self.dir / "usl.parquet")
        ok = [p.run_id for p in plans if status.get(p.run_id) == "ok"]
        (self.dir / TABLES).mkdir(exist_ok=True)
        for name in GATHERED:
            self._gather(name, ok, factors, self.dir / TABLES / f"{name}.parquet")
        self.write_manifest(
            exp, plans, status, tables_digest(self.dir)
        )  # last: the set is complete
        return tables

    def _gather(self, name: str, run_ids, factors, path: Path) -> None:
        """One table of the runs ``run_ids``, in that order, into ``path``: through Arrow, or
        pandas where a factor mixes numbers and strings across runs (Arrow cannot concatenate)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = [pq.read_table(self.runs / name / f"{r}.parquet") for r in run_ids]
        full = [t for t in parts if t.num_rows]  # empty tables carry no column types
        if not full:
            return write_arrow(
                parts[0] if parts else pa.table({"run_id": pa.array([], pa.string())}), path
            )
        try:
            write_arrow(pa.concat_tables(full, promote_options="permissive"), path)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            write_parquet(concat_rows([t.to_pandas() for t in full], factors), path)

    def table(self, name: str, run_ids) -> pd.DataFrame:
        """One per-run table (``ops``, ``locks``, ...) of the given runs: from DIR/tables/ once
        the sweep has finished, else from each run's file."""
        if name not in RUN_TABLES:
            raise ConfigError(f"table {name!r}: unknown (one of {', '.join(RUN_TABLES)})")
        gathered = self.dir / TABLES / f"{name}.parquet"
        if gathered.is_file():
            df = pd.read_parquet(gathered)
            return df[df["run_id"].isin(set(run_ids))].reset_index(drop=True)
        frames = [
            pd.read_parquet(f)
            for r in run_ids
            if (f := self.runs / name / f"{r}.parquet").is_file()
        ]
        full = [f for f in frames if len(f)]
        return pd.concat(full, ignore_index=True) if full else pd.DataFrame()
