"""Probes: wrap a named function of a model object (or class) from outside the model.

Tests that observe or break a page-map function, and tracing, attach here instead of assigning
attributes by hand. ``attach(target, name, wrapper)`` replaces ``target.name`` by a function
that calls ``wrapper(original, *args, **kwargs)``, where ``original`` is what ``target.name``
was (bound, for an object; the plain function, taking ``self``, for a class). For a generator
function the wrapper is a generator function too::

    def lose_ref(original, th, index):
        page = yield from original(th, index)
        page.slot.refcnt -= 1
        return page

    probes.attach(pm, "pm_load_page", lose_ref)

On an object, the probe first turns the object's fast paths off (:mod:`pmsim.fastpath`), so the
wrapped function is called wherever the general path calls it. A class probe is seen by every
object built after it (an object's fast paths are chosen when it is built). A probe is removed
with :meth:`Probe.remove` or by leaving its ``with`` block (the object's fast paths stay off).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from pmsim import fastpath

_MISSING = object()


class Probe:
    """One function of one object or class, replaced by a wrapper around it."""

    def __init__(self, target, name: str, wrapper: Callable):
        if not callable(getattr(target, name, None)):
            raise AttributeError(f"probe: {target!r} has no function {name!r}")
        if not isinstance(target, type):
            fastpath.disable(target)
        self.target, self.name = target, name
        self._saved = vars(target).get(name, _MISSING)  # what to restore (the class's own entry)
        original = getattr(target, name)

        @functools.wraps(original)
        def probed(*args, **kwargs):
            return wrapper(original, *args, **kwargs)

        setattr(target, name, probed)

    def remove(self) -> None:
        """Put the original back."""
        if self._saved is _MISSING:
            delattr(self.target, self.name)
        else:
            setattr(self.target, self.name, self._saved)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def attach(target, name: str, wrapper: Callable) -> Probe:
    """Replace ``target.name`` by a call of ``wrapper(original, *args, **kwargs)``."""
    return Probe(target, name, wrapper)
