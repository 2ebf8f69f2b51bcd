"""Simulated time is kept in nanoseconds; this module parses and prints it.

Durations are written ``400ns``, ``2us`` (or ``2µs``), ``1.5ms``, ``1s``.
Distributions are written ``const:T``, ``exp:MEAN``, ``uniform:LO:HI`` and
``lognormal:MEAN:SIGMA`` (SIGMA is the shape of the underlying normal, so the
mean stays MEAN whatever the tail).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from pmsim.errors import ConfigError

NS_PER = {
    "ns": 1.0,
    "us": 1e3,
    "µs": 1e3,
    "μs": 1e3,
    "ms": 1e6,
    "s": 1e9,
}  # micro sign and Greek mu
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ns|us|µs|μs|ms|s)\s*$")


def parse_time(text, what: str = "duration") -> float:
    """Return the duration ``text`` (e.g. ``"1.5ms"``) in nanoseconds.

    ``what`` names the setting in the error message.
    """
    if isinstance(text, bool) or not isinstance(text, str):
        raise ConfigError(f"{what}: malformed duration {text!r} (write e.g. 400ns, 2us, 1.5ms, 1s)")
    m = _DURATION.match(text)
    if not m:
        if _DURATION.match(text.strip().removeprefix("-")):  # well formed but for its sign
            raise ConfigError(f"{what}: duration {text!r} is negative (a time is >= 0)")
        raise ConfigError(f"{what}: malformed duration {text!r} (write e.g. 400ns, 2us, 1.5ms, 1s)")
    value = float(m.group(1)) * NS_PER[m.group(2)]
    if not math.isfinite(value):
        raise ConfigError(f"{what}: duration {text!r} is not finite")
    return value


def format_time(ns: float) -> str:
    """Print ``ns`` nanoseconds with the largest unit that keeps it >= 1."""
    for unit in ("s", "ms", "us"):
        if abs(ns) >= NS_PER[unit]:
            return f"{ns / NS_PER[unit]:.6g}{unit}"
    return f"{ns:.6g}ns"


class Sampler:
    """Draws from a distribution in blocks, so a draw costs a list pop, not a numpy call."""

    __slots__ = ("_dist", "_rng", "_block", "_buf")

    def __init__(self, dist: Distribution, rng: np.random.Generator, block: int = 4096):
        self._dist, self._rng, self._block = dist, rng, block
        self._buf: list[float] = []

    def __call__(self) -> float:
        buf = self._buf
        if not buf:
            buf.extend(self._dist.sample(self._rng, self._block)[::-1].tolist())
        return buf.pop()


@dataclass(frozen=True)
class Distribution:
    """A non-negative random duration in nanoseconds."""

    kind: str
    params: tuple[float, ...]
    text: str

    @property
    def mean(self) -> float:
        p = self.params
        if self.kind == "uniform":
            return (p[0] + p[1]) / 2
        return p[0]

    @property
    def scv(self) -> float:
        """Squared coefficient of variation Var/mean^2 (0 for a zero mean)."""
        p, m = self.params, self.mean
        if m == 0 or self.kind == "const":
            return 0.0
        if self.kind == "exp":
            return 1.0
        if self.kind == "uniform":
            return ((p[1] - p[0]) / m) ** 2 / 12
        return math.expm1(p[1] ** 2)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        p = self.params
        if self.kind == "const":
            return np.full(n, p[0])
        if self.kind == "exp":
            return rng.exponential(p[0], n) if p[0] > 0 else np.zeros(n)
        if self.kind == "uniform":
            return rng.uniform(p[0], p[1], n)
        mean, sigma = p
        if mean == 0:
            return np.zeros(n)
        return rng.lognormal(math.log(mean) - sigma * sigma / 2, sigma, n)

    def sampler(self, rng: np.random.Generator) -> Sampler:
        if self.kind == "const":
            value = self.params[0]
            return lambda: value  # type: ignore[return-value]
        return Sampler(self, rng)

    def laplace(self, lam):
        """E[exp(-lam * X)], for the exact queueing solutions of pmsim.analytic."""
        p = self.params
        lam = np.asarray(lam, dtype=float)
        if self.kind == "const":
            return np.exp(-lam * p[0])
        if self.kind == "exp":
            return 1.0 / (1.0 + lam * p[0])
        if self.kind == "uniform":
            lo, hi = p
            if hi == lo:
                return np.exp(-lam * lo)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = (np.exp(-lam * lo) - np.exp(-lam * hi)) / (lam * (hi - lo))
            return np.where(lam == 0, 1.0, out)
        # lognormal: Gauss-Hermite quadrature over the underlying normal
        mean, sigma = p
        if mean == 0:
            return np.ones_like(lam)
        x, w = np.polynomial.hermite_e.hermegauss(80)
        mu = math.log(mean) - sigma * sigma / 2
        vals = np.exp(mu + sigma * x)
        return (np.exp(-np.multiply.outer(lam, vals)) * w).sum(axis=-1) / math.sqrt(2 * math.pi)

    def __str__(self) -> str:
        return self.text


def parse_dist(text, what: str = "distribution") -> Distribution:
    """Parse ``const:T``, ``exp:MEAN``, ``uniform:LO:HI`` or ``lognormal:MEAN:SIGMA``."""
    if not isinstance(text, str):
        raise ConfigError(f"{what}: malformed distribution {text!r} (write e.g. exp:2us)")
    kind, _, rest = text.strip().partition(":")
    args = rest.split(":") if rest else []
    shapes = {"const": 1, "exp": 1, "uniform": 2, "lognormal": 2}
    if kind not in shapes or len(args) != shapes[kind]:
        raise ConfigError(
            f"{what}: malformed distribution {text!r} "
            "(write const:T, exp:MEAN, uniform:LO:HI or lognormal:MEAN:SIGMA)"
        )
    if kind == "lognormal":
        mean = parse_time(args[0], f"{what} {text!r} mean")
        try:
            sigma = float(args[1])
        except ValueError:
            raise ConfigError(
                f"{what}: malformed lognormal shape {args[1]!r} in {text!r}"
            ) from None
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ConfigError(f"{what}: lognormal shape must be >= 0 in {text!r}")
        params: tuple[float, ...] = (mean, sigma)
    else:
        params = tuple(parse_time(a, f"{what} {text!r}") for a in args)
    if kind == "uniform" and params[0] > params[1]:
        raise ConfigError(f"{what}: uniform low exceeds high in {text!r}")
    return Distribution(kind, params, text.strip())
