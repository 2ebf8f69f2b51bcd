"""``pmsim sensitivity``: how much each cost moves each design's metrics, and in what share of
the plausible cost space a verdict (NEW faster than OLD, ...) holds. See docs/sweeps.md."""
