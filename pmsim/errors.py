"""The one exception type users see: bad input, reported in one line."""


class ConfigError(ValueError):
    """Bad user input (a key, a value, a duration, a workload).

    The command line prints ``str(error)`` on one line and exits with status 2;
    the message always names the offending key or text and its value.
    """


def one_line(text: str) -> str:
    """``text`` with line breaks and other unprintable characters escaped (a key may hold them)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InvariantViolation(AssertionError):
    """A model invariant (an assertion of the C code) failed during simulation."""


def violation(machine, thread, page, msg: str) -> InvariantViolation:
    """The exception for a failed assertion: it names the simulated time, the operation, the
    design and the page (``-`` when none applies)."""
    t = machine.env.now
    op = getattr(thread, "op", None)
    page = "-" if page is None else page
    return InvariantViolation(f"t={t:.0f}ns op={op} design={machine.design} page={page}: {msg}")
