"""The core that every other part builds on: input checks, the step contract and the unroller
(forward, backward), truncation, readout, losses and the diagnostics of gradient flow; and what the
other layers share beyond the model: the resolver of MODULE:CLASS names (import_path) and the readers
of files from someone else (untrusted)."""
