"""Parameter sweeps: an experiment (YAML) expanded into runs, executed locally or on Dask,
each run written as it finishes, aggregated with confidence intervals."""
