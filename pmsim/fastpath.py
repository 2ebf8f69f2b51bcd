"""Fast paths: hand-flattened copies of a chain of model functions, declared and checked.

The hottest step of a run (NEW's read hit) would spend a good part of its time building
generators and calling small functions. A fast path is a method that does what a *general*
method does, for the common case, with the bodies of the functions the general method calls
copied in. It is declared with :func:`fast_path`, which names the general method it stands in
for and every function whose body it copies, as the functions themselves. When an object is
built, :func:`install` binds the fast path in its place only if each of those names still
resolves, on that object, to the function the fast path copied: a design that overrides one
(or uses a radix tree whose ``lookup_ns`` differs) runs the general path, with no flag to
remember. A probe (:mod:`pmsim.probes`) turns an object's fast paths off before it wraps
anything, so what it wraps is always called. ``tests/test_fast_paths.py`` checks every fast
path against its general path, time for time and state for state.
"""

from __future__ import annotations

from collections.abc import Callable


class FastPath:
    """A method declared as a specialisation of ``replaces`` that copies the bodies of
    ``inlines`` (name on the object -> the function copied; a dotted name ``tree.lookup_ns``
    resolves on the object's ``tree``)."""

    def __init__(self, fn: Callable, replaces: str, inlines: dict[str, Callable]):
        self.fn = fn
        self.replaces = replaces
        self.inlines = dict(inlines)
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, owner=None):
        return self if obj is None else self.fn.__get__(obj, owner)

    def eligible(self, obj) -> bool:
        """Does every inlined name resolve, on ``obj``, to the function this path copied?"""
        return all(_resolve(obj, path) is fn for path, fn in self.inlines.items())


def fast_path(replaces: str, inlines: dict[str, Callable]):
    """Declare the decorated method a fast path standing in for method ``replaces``, copying
    the bodies of ``inlines`` (see :class:`FastPath`)."""

    def wrap(fn):
        return FastPath(fn, replaces, inlines)

    return wrap


def _resolve(obj, path: str):
    """The function ``path`` names on ``obj``, looked up on the class of the object that holds
    it (an instance attribute set later is a probe's business, see :func:`disable`)."""
    *owners, name = path.split(".")
    for owner in owners:
        obj = getattr(obj, owner)
    return getattr(type(obj), name, None)


def declared(cls) -> list[FastPath]:
    """The fast paths ``cls`` and its bases declare, nearest first, one per replaced method."""
    seen, out = set(), []
    for klass in cls.__mro__:
        for value in vars(klass).values():
            if isinstance(value, FastPath) and value.replaces not in seen:
                seen.add(value.replaces)
                out.append(value)
    return out


def install(obj) -> list[str]:
    """Bind, on ``obj``, each declared fast path that is eligible in place of the method it
    replaces. Returns the names of the methods replaced."""
    replaced = []
    for path in declared(type(obj)):
        if path.eligible(obj):
            obj.__dict__[path.replaces] = path.fn.__get__(obj, type(obj))
            replaced.append(path.replaces)
    return replaced


def active(obj) -> list[str]:
    """The methods of ``obj`` a fast path stands in for now."""
    return [p.replaces for p in declared(type(obj)) if _bound_fn(obj, p.replaces) is p.fn]


def disable(obj) -> None:
    """Turn ``obj``'s fast paths off: from now on its general methods run."""
    for path in declared(type(obj)):
        if _bound_fn(obj, path.replaces) is path.fn:
            del obj.__dict__[path.replaces]


def _bound_fn(obj, name: str):
    bound = vars(obj).get(name)
    return getattr(bound, "__func__", None)
