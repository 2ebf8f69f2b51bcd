"""Golden runs: summaries and table digests of every preset on every design, at a small scale.

The fixture ``tests/data/golden_runs.json`` was taken with the model as it stood before a
refactor that must change no simulated number; ``tests/test_golden_runs.py`` compares the
current model against it, bit for bit. A change that is meant to move numbers regenerates it
(``python tests/golden_runs.py --write``) in the same commit and says why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "data" / "golden_runs.json"
SCALE = ["duration=4ms", "warmup=1ms"]
# Settings the presets leave at their defaults, each on a preset that exercises it.
EXTRA = {
    "read_hits@ticket": ("read_hits", ["machine.spinlock=ticket"], ("old",)),
    "read_hits@mcs": ("read_hits", ["machine.spinlock=mcs"], ("old", "new")),
    "read_hits@2sockets": ("read_hits", ["machine.sockets=2"], ("old", "new")),
    "punch_hole@remote_ipi": ("punch_hole", ["machine.qlock_wake=remote_ipi"], ("new",)),
    "cold_misses@open": (
        "cold_misses",
        ["loop.kind=open", "loop.think=null", "loop.arrivals=exp:20us"],
        ("old", "new"),
    ),
    "mixed@8cores": ("mixed", ["machine.cores=8"], ("new", "new_batched_wb")),
}


def cases() -> dict[str, tuple[str, list[str], str]]:
    """Case id -> (preset, overrides, design) for every preset on every design that offers its
    operations, and the extra settings above."""
    from pmsim.designs import designs
    from pmsim.workload.load import load_spec, presets

    out = {}
    for preset in presets():
        ops = load_spec(preset).operations()
        for name, cls in designs().items():
            if ops <= cls.entry_points:
                out[f"{preset}/{name}"] = (preset, SCALE, name)
    for case, (preset, extra, names) in EXTRA.items():
        for name in names:
            out[f"{case}/{name}"] = (preset, SCALE + extra, name)
    return out


# Observation tables added after the fixture (lockstat, cache-line bounces, blame, latency
# breakdown: issue 16):
# they observe the run and are not in the fixture's digest, so the digest still proves that
# adding them moved no simulated number (tests/test_contention.py checks they are deterministic).
OBSERVATIONS = ("lockstat", "lines", "blame", "breakdown")


def tables_digest(tables) -> str:
    """SHA-256 over every table's columns and values (floats written exactly), the
    observation tables aside."""
    h = hashlib.sha256()
    for name in sorted(set(tables) - set(OBSERVATIONS)):
        df = tables[name]
        h.update(name.encode() + b"\0" + ",".join(map(str, df.columns)).encode() + b"\0")
        for col in df.columns:
            h.update(json.dumps(df[col].tolist()).encode() + b"\0")
    return h.hexdigest()


def digest(obj) -> str:
    """SHA-256 of a JSON-able object (floats written exactly, keys sorted)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def run_case(preset: str, overrides: list[str], design: str) -> dict:
    """The headline numbers (to read a difference), and digests of the whole summary and tables."""
    from pmsim.workload.load import load_spec
    from pmsim.workload.runner import run_workload

    res = run_workload(load_spec(preset, overrides), design)
    s = res.summary
    ops = {
        op: [o["count"], o["latency_us"]["mean"], o["latency_us"]["p99"]]
        for op, o in s["ops"].items()
    }
    return {
        "total_ops_per_s": s["total_ops_per_s"],
        "ops": ops,
        "summary": digest(s),
        "tables": tables_digest(res.tables),
    }


LOCKBENCH = {f"lockbench/{lock}": lock for lock in ("ttas", "ticket", "mcs", "qlock")}


def run_lockbench_case(lock: str) -> dict:
    """``pmsim lockbench`` of one lock kind, 12 threads on 8 cores (contended, cores shared)."""
    from pmsim.lockbench import LockBenchSpec, run_lockbench
    from pmsim.units import parse_dist

    res = run_lockbench(
        LockBenchSpec(
            lock=lock,
            threads=12,
            cores=8,
            hold=parse_dist("exp:400ns"),
            think=parse_dist("exp:2us"),
            duration=3e6,
            warmup=0.5e6,
        )
    )
    res.pop("provenance")
    return {"throughput_per_s": res["throughput_per_s"], "summary": digest(res)}


def current() -> dict:
    out = {case: run_case(*spec) for case, spec in cases().items()}
    out.update({case: run_lockbench_case(lock) for case, lock in LOCKBENCH.items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="regenerate the fixture")
    args = ap.parse_args()
    got = current()
    if args.write:
        FIXTURE.write_text(json.dumps(got, indent=0, sort_keys=True) + "\n")
        print(f"wrote {len(got)} cases to {FIXTURE}")
        return
    want = json.loads(FIXTURE.read_text())
    bad = [c for c in got if got[c] != want.get(c)]
    print(
        f"{len(got) - len(bad)} of {len(got)} cases identical" + (f"; differ: {bad}" if bad else "")
    )


if __name__ == "__main__":
    main()
