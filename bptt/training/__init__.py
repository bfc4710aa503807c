"""Training on toy sequence tasks and a user's own, one job per module: settings and their checks
(config), a run's settings in its folder and the fingerprint a resume checks (run_config; the folder's
other files are `bptt.runs`), the loop (trainer), tasks and data files, optimizers, clipping,
initialisations and sampling. Sweeps of many runs build on it in `bptt.sweep`."""
