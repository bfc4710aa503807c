"""Training on toy sequence tasks, one job per module: settings and their checks (config), the run
folder's files (run_folder), the loop (trainer), tasks, optimizers, clipping, initialisations and
sampling. Sweeps of many runs build on it in `bptt.sweep`."""
