"""Run folders, file by file, knowing nothing of training: atomic writes (atomic), the files' names
and JSON (files), who may write a folder (folder, with the OS lock in lock), the logs (logs), the
checkpoint's schema (checkpoint) and reading a run back (reader). `bptt.training` writes run folders
through these; config.json's settings and the fingerprint, which need a TrainConfig, are in
`bptt.training.run_config`."""

from .reader import Run, read_run

__all__ = ["Run", "read_run"]
