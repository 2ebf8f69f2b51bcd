"""``pmsim report RESULTS``: the design-review report of a finished sweep, in Markdown and
HTML, beside its figures (:mod:`pmsim.plots`). Every number comes from the sweep's files."""

from __future__ import annotations

from pathlib import Path

from pmsim.report.blocks import to_html, to_markdown
from pmsim.report.review import build
from pmsim.sweeps.api import SweepResult
from pmsim.sweeps.store import write_text


def write_report(results, out=None, figures: bool = True) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (and, with ``figures``, the standard figures
    under ``figures/``) into ``out`` (default: the results folder). Returns the two paths."""
    res = results if isinstance(results, SweepResult) else SweepResult.load(results)
    res.require_ok("pmsim report")
    out = Path(out) if out is not None else res.out
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if figures:
        from pmsim.plots import write_figures

        paths = [p for p in write_figures(res, out / "figures") if p.suffix == ".png"]
    blocks = build(res, paths, out)
    md, page = out / "report.md", out / "report.html"
    write_text(to_markdown(blocks), md)
    write_text(to_html(blocks, f"Design review: {res.experiment.name}"), page)
    return md, page
