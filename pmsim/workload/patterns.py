"""Access patterns: which page of a range each operation of one thread goes to.

A chooser draws from its thread's own random stream in blocks, so one draw
costs a list pop. ``disjoint`` and ``sequential`` use the thread's global index
``g`` of ``n_threads``: thread g owns (or starts at) slice g of the range.
``zipf`` ranks pages by popularity P(rank k) ~ 1/k^theta and scatters the ranks
over the range with one fixed permutation per range (the same for every
thread), so popular pages do not all share slot cache lines. The random patterns take
``repeat``: each page drawn is used that many times in a row.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_BLOCK = 4096


@lru_cache(maxsize=16)
def _zipf_table(extent: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """(CDF over ranks, rank -> index permutation) for ``extent`` items."""
    weights = np.arange(1, extent + 1, dtype=float) ** -theta
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    perm = np.random.default_rng(np.random.SeedSequence([extent, int(theta * 1e6)])).permutation(
        extent
    )
    return cdf, perm


def chooser(pattern, extent: int, step: int, g: int, n_threads: int, rng: np.random.Generator):
    """A zero-argument function returning the next index in ``[0, extent)``.

    ``step``: how far a sequential cursor moves per operation (the request size).
    """
    kind = pattern.kind
    if kind == "hot_page":
        page = pattern.page
        return lambda: page
    if kind == "sequential":
        cursor = [g * extent // n_threads]

        def sequential() -> int:
            i = cursor[0]
            cursor[0] = (i + step) % extent
            return i

        return sequential
    if kind == "uniform":
        lo, hi = 0, extent
        draw = lambda: rng.integers(lo, hi, _BLOCK)  # noqa: E731
    elif kind == "disjoint":
        lo, hi = g * extent // n_threads, (g + 1) * extent // n_threads
        draw = lambda: rng.integers(lo, hi, _BLOCK)  # noqa: E731
    elif kind == "zipf":
        cdf, perm = _zipf_table(extent, float(pattern.theta))
        draw = lambda: perm[np.minimum(np.searchsorted(cdf, rng.random(_BLOCK)), extent - 1)]  # noqa: E731
    else:
        raise ValueError(f"unknown pattern {kind!r}")
    repeat = pattern.repeat
    return _blocks(draw) if repeat == 1 else _repeated(_blocks(draw), repeat)


def _repeated(nxt, repeat: int):
    """Each index ``nxt`` draws, ``repeat`` times in a row: bursts of accesses to one page
    (a structure updated field by field), what a stale TLB entry's cached D needs to matter."""
    state = [0, 0]  # index, uses left

    def burst() -> int:
        if not state[1]:
            state[0], state[1] = nxt(), repeat
        state[1] -= 1
        return state[0]

    return burst


def _blocks(draw):
    buf: list[int] = []

    def nxt() -> int:
        if not buf:
            buf.extend(draw()[::-1].tolist())
        return buf.pop()

    return nxt


def op_chooser(weights: dict[str, float], rng: np.random.Generator):
    """A zero-argument function returning the next operation name, drawn by weight."""
    names = list(weights)
    if len(names) == 1:
        only = names[0]
        return lambda: only
    p = np.array([weights[n] for n in names], dtype=float)
    p /= p.sum()
    return _blocks(lambda: np.array(names, dtype=object)[rng.choice(len(names), _BLOCK, p=p)])
