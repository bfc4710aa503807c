"""Training on toy sequence tasks: settings, the run folder, the loop, tasks, optimizers, clipping,
initialisations and sampling."""
