"""The one exception type users see: bad input, reported in one line."""


class ConfigError(ValueError):
    """Bad user input (a key, a value, a duration, a workload).

    The command line prints ``str(error)`` on one line and exits with status 2;
    the message always names the offending key or text and its value.
    """


class InvariantViolation(AssertionError):
    """A model invariant (an assertion of the C code) failed during simulation."""
