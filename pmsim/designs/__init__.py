"""The page-map designs: every module here that defines ``DESIGN`` is one, by its ``name``.

Adding a variant is adding a module (see docs/designs.md); nothing else changes.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from pmsim.errors import ConfigError


@cache
def designs() -> dict:
    """name -> PageMap subclass, for every module of this package that defines ``DESIGN``."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        cls = getattr(importlib.import_module(f"{__name__}.{info.name}"), "DESIGN", None)
        if cls is not None:
            if cls.name in found:
                raise RuntimeError(f"design name {cls.name!r} defined twice")
            found[cls.name] = cls
    return dict(sorted(found.items()))


def get_design(name: str):
    """The design class called ``name``; an unknown name is a ConfigError."""
    from pmsim.costs import did_you_mean

    table = designs()
    if name not in table:
        raise ConfigError(
            f"design: unknown {name!r}{did_you_mean(name, table)} (one of {', '.join(table)})"
        )
    return table[name]
