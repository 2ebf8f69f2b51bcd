"""pmsim: a discrete-event performance simulator of the Akaros page map (OLD vs NEW design)."""

from pmsim.version import __version__

__all__ = ["__version__", "sweep"]


def __getattr__(name):
    # pmsim.sweep(...) for notebooks, imported on first use (it brings pandas and the runner).
    if name == "sweep":
        from pmsim.sweeps.api import sweep

        return sweep
    raise AttributeError(f"module 'pmsim' has no attribute {name!r}")
