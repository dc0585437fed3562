"""Data: feature batches checked against the spec, whylogs profiles of them, the reference profile, Dask."""
