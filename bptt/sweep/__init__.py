"""Sweeps: many training runs from one TOML spec, on local processes or a Dask cluster, one job per
module: the spec and its grid (spec), the loop that runs them and writes their folders (run), where
they run (engines), what a worker runs (worker) and results.csv, summary.md and figures (results).

It builds on `bptt.training` (each grid point is an ordinary training run) and nothing imports it
but the command line."""
