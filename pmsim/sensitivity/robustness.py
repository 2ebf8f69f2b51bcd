"""A set of sensitivity studies asked together: ``experiments/robustness.yaml``.

::

    # How robust is each verdict? ...          <- the question: the first comment line
    kind: sensitivity
    samples: 8                                 # per study unless it says otherwise
    sobol_samples: 16                          # Sobol base samples (default: samples)
    seed: 1
    out: results/robustness
    studies:
      - name: read_hits_procs_16
        workload: read_hits_procs
        designs: [old, new]
        set: {machine.cores: 16, processes.0.count: 16, duration: 4ms}

Each study runs into ``OUT/<name>/`` (resumable: its stages are sweeps); ``OUT/robustness.json``
gathers their rankings and verdicts for the report's "How robust is each verdict" section.
"""

from __future__ import annotations

import json
from pathlib import Path

from pmsim.errors import ConfigError

KIND = "sensitivity"
STUDY_KEYS = {"name", "workload", "designs", "set", "samples", "sobol_samples", "keep", "seed"}


def is_studies_file(arg: str) -> bool:
    """Whether ``arg`` names a studies file (an experiment name or YAML path whose
    ``kind`` is ``sensitivity``) rather than a workload."""
    from pmsim.sweeps.spec import studies

    path = studies().get(arg) or (Path(arg) if arg.endswith((".yaml", ".yml")) else None)
    if path is None or not Path(path).is_file():
        return False
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("kind") == KIND


def load_studies(arg: str) -> tuple[dict, Path]:
    import yaml

    from pmsim.sweeps.spec import studies

    path = Path(studies().get(arg) or arg)
    raw = yaml.safe_load(path.read_text())
    unknown = set(raw) - {"kind", "samples", "sobol_samples", "keep", "seed", "out", "studies"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{path}: unknown key {key!r}, got {raw[key]!r}")
    studies = raw.get("studies")
    if not isinstance(studies, list) or not studies:
        raise ConfigError(f"{path}: studies: a list of studies, got {studies!r}")
    for i, s in enumerate(studies):
        if not isinstance(s, dict) or not {"name", "workload", "designs"} <= set(s):
            raise ConfigError(f"{path}: studies.{i}: needs name, workload, designs, got {s!r}")
        bad = set(s) - STUDY_KEYS
        if bad:
            k = sorted(bad)[0]
            raise ConfigError(f"{path}: studies.{i}.{k}: unknown key, got {s[k]!r}")
    return raw, path


def run_studies(arg: str, out=None, **run) -> list[dict]:
    """Run (or resume) every study of the file; write OUT/robustness.json; return the results."""
    from pmsim.sensitivity.study import run_study
    from pmsim.sweeps.store import write_text
    from pmsim.workload.load import preset_question

    raw, path = load_studies(arg)
    out = Path(out or raw.get("out") or Path("sensitivity") / path.stem)
    results = []
    for s in raw["studies"]:
        r = run_study(
            s["workload"],
            list(s["designs"]),
            dict(s.get("set") or {}),
            int(s.get("samples", raw.get("samples", 8))),
            out / s["name"],
            sobol_samples=s.get("sobol_samples", raw.get("sobol_samples")),
            seed=int(s.get("seed", raw.get("seed", 1))),
            keep=int(s.get("keep", raw.get("keep", 6))),
            name=f"{path.stem}_{s['name']}",
            **run,
        )
        results.append({"name": s["name"], **r})
    summary = {
        "question": preset_question(path),
        "studies": [
            {
                k: r[k]
                for k in ("name", "workload", "designs", "sets", "samples", "ranking", "verdicts")
            }
            for r in results
        ],
    }
    write_text(json.dumps(summary, indent=1, default=str), out / "robustness.json")
    return results
