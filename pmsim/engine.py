"""The simulation engine: SimPy, and the only module that touches SimPy's internals.

The model's hot paths need three things SimPy's public API makes slow or impossible, and this
module provides them over SimPy's own data structures, so nothing else reads or writes a private
name of SimPy's:

- **the clock** as a plain attribute (:attr:`Environment.now`; SimPy's is a property, five times
  slower to read, and the model reads it several times per operation);
- **triggering an event at a time** with one heap entry (:func:`trigger_at`; SimPy needs an
  extra ``Timeout`` whose callback succeeds the event);
- **re-arming a processed event**, so a thread's work timeout is one event object reused
  (:func:`spent_event`, :meth:`Environment.rearm`).

Each line that repeats a SimPy line names it, as SimPy labels its own inlined code. The layout
these lines assume (a heap entry is ``(time, priority, event id, event)``; an event's state is
``callbacks``, ``_ok``, ``_value``; a processed event has ``callbacks`` None) is that of SimPy
4.1: ``pyproject.toml`` pins that series, importing this module under another series fails, and
``tests/test_engine.py`` fails loudly if SimPy's code behind these lines changes.
"""

from __future__ import annotations

from heapq import heappop, heappush

import simpy
from simpy.core import BoundClass, EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, Event, EventPriority

SIMPY_SERIES = "4.1"  # the SimPy minor version this module's inlined lines were written against

if not simpy.__version__.startswith(SIMPY_SERIES + "."):
    raise ImportError(
        f"pmsim.engine inlines SimPy {SIMPY_SERIES}'s event queue; SimPy {simpy.__version__} is "
        f"installed (pip install 'simpy=={SIMPY_SERIES}.*')"
    )


class Environment(simpy.Environment):
    """SimPy's environment with the clock as a plain attribute, a run loop without a call per
    event, and a re-arm for spent events."""

    now: float = 0.0  # shadows SimPy's ``now`` property: the clock, a plain attribute

    def __init__(self, initial_time: float = 0.0):
        super().__init__(initial_time)
        self.now = self._now
        # BoundClass.bind_early binds only the instance's own class's event aliases (timeout,
        # event, process, ...): bind SimPy's too, or each ``env.timeout`` builds a MethodType.
        for name, obj in vars(simpy.Environment).items():
            if type(obj) is BoundClass:
                setattr(self, name, getattr(self, name))

    def run(self, until: float | Event | None = None):
        """``simpy.core.Environment.run`` (SimPy 4.1.2) with ``step`` written into its loop."""
        if until is not None:
            if not isinstance(until, Event):
                at = float(until)
                if at <= self.now:
                    raise ValueError(
                        f"until ({at}) must be greater than the current simulation time"
                    )
                until = Event(self)
                until._ok = True
                until._value = None
                self.schedule(until, URGENT, at - self.now)
            elif until.callbacks is None:
                return until.value
            until.callbacks.append(StopSimulation.callback)
        queue = self._queue
        try:
            while True:
                # Environment.step
                try:
                    now, _, _, event = heappop(queue)
                except IndexError:
                    raise EmptySchedule from None
                self._now = self.now = now  # (SimPy's step sets _now alone)
                callbacks, event.callbacks = event.callbacks, None
                try:
                    for callback in callbacks:
                        callback(event)
                except StopSimulation:
                    event.callbacks = callbacks[callbacks.index(callback) + 1 :]
                    self.schedule(event, EventPriority(-1))
                    raise
                if not event._ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
        except StopSimulation as exc:
            return exc.args[0]
        except EmptySchedule:
            if until is not None:
                raise RuntimeError(
                    f'No scheduled events left but "until" event was not triggered: {until}'
                ) from None
        return None

    def step(self) -> None:
        """``simpy.core.Environment.step``, keeping :attr:`now` equal to SimPy's clock."""
        super().step()
        self.now = self._now

    def rearm(self, event: Event, delay: float) -> None:
        """Schedule a processed event (:func:`spent_event`) again, ``delay`` ns from now, with
        the outcome it had: the heap entry of ``self.timeout(delay)`` (the same time, priority and
        the next event id), without building a new Timeout."""
        event.callbacks = []
        heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), event))  # schedule()


def trigger_at(env: Environment, event: Event, delay: float, value=None) -> None:
    """Succeed ``event`` with ``value`` after ``delay`` ns, as one scheduled entry."""
    event._ok = True  # Event.succeed: the outcome ...
    event._value = value
    env.schedule(event, NORMAL, delay)  # ... and the schedule entry, ``delay`` from now


def spent_event(env: Environment) -> Event:
    """An event in the state SimPy leaves a processed Timeout in (``callbacks`` None, ok, value
    None): yielding it resumes the yielding process at once, and :meth:`Environment.rearm`
    schedules it again."""
    event = Event(env)
    event._ok = True
    event._value = None
    event.callbacks = None
    return event
