"""pmsim: a discrete-event performance simulator of the Akaros page map (OLD vs NEW design)."""

__version__ = "0.1.0"


def __getattr__(name):
    # pmsim.sweep(...) for notebooks, imported on first use (it brings pandas and the runner).
    if name == "sweep":
        from pmsim.sweeps.api import sweep

        return sweep
    raise AttributeError(f"module 'pmsim' has no attribute {name!r}")
