"""The notebooks in notebooks/ run end to end, small (nbmake, PMSIM_NB_SCALE=small), and are
committed without outputs.

Each notebook runs in its own ``python -m pytest --nbmake`` so that a failing cell shows up as
this test's failure with the notebook's traceback, and so that the main run never collects
notebooks itself (pyproject's testpaths stay ``tests``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TAIL = 6000  # characters of the inner pytest's output shown on failure
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the kernel's coloured tracebacks


def test_the_notebooks_are_there():
    assert {"quickstart.ipynb", "design_review.ipynb"} <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(notebook):
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    dirty = [
        f"cell {i} ({cell.get('id', '?')})"
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code"
        and (
            cell.get("outputs")
            or cell.get("execution_count") is not None
            or "execution" in cell.get("metadata", {})
        )
    ]
    assert not dirty, (
        f"{notebook.relative_to(ROOT)} is committed with outputs, execution counts or "
        f"execution times in {', '.join(dirty)}: clear all outputs before committing"
    )
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", (
        f"{notebook.relative_to(ROOT)}: kernelspec must be python3 (nbmake runs that kernel)"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_small(notebook, tmp_path):
    env = dict(os.environ)
    # The kernel starts in notebooks/: put this checkout first, so its pmsim is the one run
    # whatever pmsim the environment has installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PMSIM_NB_SCALE"] = "small"
    env["TMPDIR"] = str(tmp_path)  # the design review's sweep folder (tempfile) lands here
    env.pop("PMSIM_NB_OUT", None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbmake",
        "--nbmake-timeout=200",
        "-p",
        "no:cacheprovider",
        "-q",
        str(notebook),
    ]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired as e:
        out = (
            (e.stdout or b"").decode(errors="replace")
            if isinstance(e.stdout, bytes)
            else (e.stdout or "")
        )
        pytest.fail(
            f"{notebook.name} did not finish in {e.timeout} s (small scale should take seconds):\n"
            f"{ANSI.sub('', out)[-TAIL:]}"
        )
    out = ANSI.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, (
        f"{notebook.name} failed at PMSIM_NB_SCALE=small (exit status "
        f"{proc.returncode}); rerun it with:\n  PMSIM_NB_SCALE=small {' '.join(cmd[:-1])} "
        f"{notebook.relative_to(ROOT)}\n--- output tail ---\n{out[-TAIL:]}"
    )
