"""Training on toy sequence tasks, one job per module: settings and their checks (config), a run's
settings in its folder and the fingerprint a resume checks (run_config; the folder's other files are
`bptt.runs`), the loop (trainer), tasks, optimizers, clipping, initialisations and sampling; sweeps
of many runs: the spec and its grid (sweep_spec), the loop that runs them and writes their folders
(sweep), where they run (sweep_engine), what a worker runs (sweep_worker) and results.csv,
summary.md and figures (sweep_results)."""
