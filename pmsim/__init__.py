"""pmsim: a discrete-event performance simulator of the Akaros page map (OLD vs NEW design)."""

__version__ = "0.1.0"
