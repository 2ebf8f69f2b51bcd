"""One look for every figure: a fixed colour per design, linestyles for other factors, and
figures built on their own Agg canvas (no pyplot state, so notebooks and batch jobs leak
nothing), legends below the axes where they cannot cover data."""

from __future__ import annotations

import itertools
import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    NullFormatter,
    NullLocator,
)

# Okabe-Ito colours (colour-blind safe): the OLD family warm, the NEW family cool.
DESIGN_COLORS = {
    "old": "#D55E00",
    "new": "#0072B2",
    "new_batched_wb": "#009E73",
    "new_sync_shootdown": "#56B4E9",
    "old_mcs": "#E69F00",
    "old_remove_contig": "#CC79A7",
}
# For designs not above, handed out in name order, never reusing a colour already taken.
EXTRA_COLORS = [
    "#000000",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
    "#17BECF",
    "#9467BD",
    "#E377C2",
    "#1F3A93",
]
LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3))]
MARKERS = ["o", "s", "^", "D", "v", "P"]
CI_ALPHA = 0.18
# Shading of daemon activity on timelines (not design colours).
INTERVAL_COLORS = {"fsync": "#F0E442", "reclaim": "#CC99FF"}
UNITS = {"_us": "µs", "_ns": "ns", "_ms": "ms", "_s": "s"}


def design_colors(designs) -> dict[str, str]:
    """Design name -> colour: the fixed mapping, then further colours for unknown designs
    (sorted by name, so the same designs always get the same colours)."""
    out = {d: DESIGN_COLORS[d] for d in designs if d in DESIGN_COLORS}
    free = [c for c in EXTRA_COLORS if c not in out.values()]
    for i, d in enumerate(sorted(set(designs) - set(out))):
        out[d] = free[i % len(free)]
    return out


def layered(i: int, n: int) -> dict:
    """Line width and marker size of the ``i``-th of ``n`` designs: earlier designs drawn
    wider, so where two designs coincide the first shows as an outline around the next."""
    k = (n - 1 - i) / max(n - 1, 1)
    return {"lw": 1.4 + 1.6 * k, "ms": 4 + 3 * k}


def tint(color: str, amount: float) -> tuple:
    """``color`` mixed with white (``amount`` 1 is the colour itself)."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(color))
    return tuple(1 - amount * (1 - rgb))


def new_figure(nrows=1, ncols=1, *, width=None, height=None, **kw):
    """A Figure on an Agg canvas with constrained layout and a grid of axes (2-D array)."""
    width = width or 3.6 * ncols + 1.0
    height = height or 2.6 * nrows + 1.1
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def factor_label(key: str) -> str:
    """Axis text for a factor key, with its unit when the key's name gives one."""
    if key == "machine.cores":
        return "cores"
    if key.endswith(".threads"):
        return "threads per process" if key.startswith("processes.") else "threads"
    for suffix, unit in UNITS.items():
        if key.endswith(suffix):
            return f"{key} ({unit})"
    return key


def factor_slug(key: str | None) -> str:
    """A file-name word for a factor (``cores``, ``files_0_dirty``); ``point`` for none."""
    if key is None:
        return "point"
    if key == "machine.cores":
        return "cores"
    return re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")


def format_value(key: str, v) -> str:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if key == "machine.cores":
        return f"{v} cores"
    if key.endswith(".threads"):
        return f"{v} threads"
    return f"{key}={v}"


def point_text(point: dict) -> str:
    """``{'machine.cores': 64, 'x': 1}`` -> ``'64 cores, x=1'``."""
    return ", ".join(format_value(k, v) for k, v in point.items())


def design_handles(colors: dict[str, str], marker="o") -> list:
    return [Line2D([], [], color=c, marker=marker, label=d) for d, c in colors.items()]


def design_patches(colors: dict[str, str]) -> list:
    return [Patch(facecolor=c, edgecolor=c, label=d) for d, c in colors.items()]


def variant_handles(variants: list[dict]) -> list:
    """Grey legend entries naming each variant's linestyle (none for a single variant)."""
    if len(variants) < 2:
        return []
    return [
        Line2D(
            [],
            [],
            color="0.35",
            ls=LINESTYLES[i % len(LINESTYLES)],
            marker=MARKERS[i % len(MARKERS)],
            label=point_text(v),
        )
        for i, v in enumerate(variants)
    ]


def ci_handle(n_text: str = "") -> Patch:
    return Patch(facecolor="0.5", alpha=0.35, label=f"95% CI{n_text}")


def legend_below(fig, handles, ncols=None) -> None:
    """One legend for the figure, below every axes (constrained layout makes room), in as
    many columns as fit the figure's width."""
    if not handles:
        return
    ncols = min(ncols or len(handles), fitting_columns(fig, [h.get_label() for h in handles]))
    fig.legend(
        handles=handles, loc="outside lower center", ncols=ncols, frameon=False, fontsize="small"
    )


def fitting_columns(fig, labels: list[str], fontsize_pt: float = 8.3) -> int:
    """The most legend columns whose estimated width fits the figure (entries spread over
    the columns as matplotlib spreads them: the first ones one entry longer)."""
    em = fontsize_pt / 72
    widths = [
        (2.0 + 0.8 + 2.0 + 0.62 * max(len(t) for t in lab.split("\n"))) * em for lab in labels
    ]
    for ncols in range(len(labels), 0, -1):
        rows, big = divmod(len(labels), ncols)
        sizes = [rows + 1] * big + [rows] * (ncols - big)
        starts = np.cumsum([0, *sizes])
        total = sum(max(widths[a:b]) for a, b in itertools.pairwise(starts) if b > a)
        if total <= fig.get_figwidth() - 0.4:
            return ncols
    return 1


def suptitle(fig, text: str) -> None:
    """The figure's title, wrapped to its width."""
    import textwrap

    chars = int(fig.get_figwidth() * 72 / (12 * 0.55))
    fig.suptitle("\n".join(textwrap.wrap(text, chars, break_long_words=False)))


def x_axis(ax, values, *, numeric: bool, labels=None) -> None:
    """Factor values as ticks: log2 when positive and spanning a factor of 4 or more."""
    values = list(values)
    if not numeric:
        ax.set_xticks(
            range(len(values)), labels if labels is not None else [str(v) for v in values]
        )
        ax.set_xlim(-0.5, len(values) - 0.5)
        return
    vals = np.array(sorted({float(v) for v in values}))
    if len(vals) and vals.min() > 0 and vals.max() / vals.min() >= 4:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_locator(FixedLocator(vals))
    ax.set_xticklabels([f"{v:g}" for v in vals])


def log_if_wide(ax, values, axis="y", decades=2.0) -> bool:
    """Log scale when the positive values span more than ``decades`` decades."""
    v = np.asarray([x for x in np.ravel(values) if np.isfinite(x) and x > 0])
    if len(v) and v.max() / v.min() > 10**decades:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        plain_log_ticks(ax.yaxis if axis == "y" else ax.xaxis, v.max() / v.min())
        return True
    return False


def plain_log_ticks(axis, span: float) -> None:
    """Log ticks written as plain numbers (0.2, 1, 50): at 1-2-5 steps when the axis spans
    under 2.5 decades, at every digit under a factor of 4 (else only powers of ten would be
    labelled, too few to read)."""
    subs = tuple(range(1, 10)) if span < 4 else (1.0, 2.0, 5.0) if span < 300 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())
    if (
        len(subs) > 1
    ):  # labelled steps inside each decade already: minor ticks only cost drawing time
        axis.set_minor_locator(NullLocator())


def positive(a, floor):
    """Values clipped to ``floor`` (for intervals on a log axis, whose low end may be <= 0)."""
    return np.maximum(np.asarray(a, dtype=float), floor)
