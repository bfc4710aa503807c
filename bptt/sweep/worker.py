"""What a sweep's worker runs: one stretch of one run, from plain data to plain data.

`run_chunk(chunk)` trains a run in a temporary folder of its own, from the files the sweep sends
(none for a new run) to its first checkpoint after `chunk.sync_seconds` of training, or to its end,
and returns the run's files as bytes. Nothing assumes that the worker shares a filesystem with the
machine running the sweep: the chars text travels with the chunk too. Stopping at a checkpoint
and resuming from it is the trainer's exact resume, so a run cut into any number of chunks, on any
workers, ends with the weights of one uninterrupted `bptt train`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.config import TrainConfig
from ..training.run_folder import CONFIG, RUN_FILES, write_config
from ..training.trainer import train

# set in a local pool's worker processes by `init_local_worker`
_LOCAL_NAME: str | None = None
_STOP: Any = None  # a multiprocessing.Event: the sweep asks running chunks to hand their run back now


@dataclass
class Chunk:
    """A stretch of one run to train.

    Attributes
    ----------
    name : str
        The run's name in the sweep (its folder name).
    config : dict
        Its TrainConfig fields (`out` is replaced by the worker's temporary folder).
    files : dict of str to bytes
        The run's files so far (metrics.jsonl, dh_norms.jsonl, checkpoint.npz); empty for a new run.
    text : bytes or None
        The contents of the chars task's text file, for workers that cannot read it.
    sync_seconds : float
        Train for at least this long, then stop at the next checkpoint and send the files back.
    dest : str
        Where the sweep keeps the run, to name in messages instead of the temporary folder.
    """

    name: str
    config: dict
    files: dict = field(default_factory=dict)
    text: bytes | None = None
    sync_seconds: float = 20.0
    dest: str = ""


@dataclass
class ChunkResult:
    """What came back from a chunk.

    Attributes
    ----------
    name : str
        The run's name.
    status : str
        "paused" (a checkpoint to continue from), "done" (summary.json written) or "failed".
    files : dict of str to bytes
        The run's files other than config.json, as they are now (empty if no run was started).
    summary : dict or None
        summary.json, when done.
    error : str or None
        When failed: the exception's type and message.
    worker : str
        The worker that ran it.
    """

    name: str
    status: str
    files: dict
    summary: dict | None = None
    error: str | None = None
    worker: str = ""


class _Pause(Exception):
    """Raised from the training callback to stop at a checkpoint and hand the run back."""


def init_local_worker(stop: Any, counter: Any) -> None:
    """Set up a local pool's worker process: its name ("local-<n>") and the sweep's stop event.

    Ctrl-C reaches every process of the terminal's group; the worker ignores it and lets the sweep
    stop it through `stop`, so that a chunk always comes back whole.
    """
    global _LOCAL_NAME, _STOP
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with counter.get_lock():
        counter.value += 1
        _LOCAL_NAME = f"local-{counter.value}"
    _STOP = stop
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the sweep that started it is gone (killed outright, it cannot say so)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def worker_name() -> str:
    """This worker's name: "local-<n>" in a local pool, the Dask worker's name, else host:pid."""
    if _LOCAL_NAME is not None:
        return _LOCAL_NAME
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _text_here(config: dict, text: bytes | None, folder: Path) -> str | None:
    """The path this worker trains on: the given one if it holds the same text, else a copy."""
    path = config.get("text")
    if path is None or text is None:
        return path
    try:
        if hashlib.sha256(Path(path).read_bytes()).digest() == hashlib.sha256(text).digest():
            return path  # same text at the same path: the run is the one `bptt train` would make
    except OSError:
        pass
    copy = folder / "text" / Path(path).name
    copy.parent.mkdir()
    copy.write_bytes(text)
    return str(copy)


def run_chunk(chunk: Chunk) -> ChunkResult:
    """Train one stretch of a run in a temporary folder and return its files.

    Parameters
    ----------
    chunk : Chunk

    Returns
    -------
    ChunkResult
        Every failure of the run itself (bad settings, a task that cannot be built, a non-finite
        loss, an error writing the temporary folder) comes back as status "failed" with its message;
        only the loss of the worker itself is left to the caller.
    """
    worker = worker_name()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bptt-sweep-") as tmp:
        folder = Path(tmp) / "run"
        config: TrainConfig | None = None

        def pause(step: int, record: dict) -> None:
            if _STOP is not None and _STOP.is_set():
                raise _Pause  # the log past the last checkpoint is replayed on resume
            assert config is not None  # train() calls back only once it runs
            target = config.target_loss
            reached = (target is not None and record.get("eval_loss") is not None and record["eval_loss"] <= target)
            if (step % config.checkpoint_every == 0 and step < config.steps and not reached
                    and time.monotonic() - started >= chunk.sync_seconds):
                raise _Pause  # just after a checkpoint: nothing is lost

        status, summary, error = "done", None, None
        try:
            settings = dict(chunk.config, out=str(folder))
            settings["text"] = _text_here(chunk.config, chunk.text, Path(tmp))
            config = TrainConfig(**settings)
            if chunk.files:
                folder.mkdir()
                for name, data in chunk.files.items():
                    (folder / name).write_bytes(data)
                write_config(folder, config)
                summary = train(resume=folder, callback=pause)
            else:
                summary = train(config, callback=pause)
        except _Pause:
            status = "paused"
        except Exception as exc:  # the run's own failure: the sweep records it and goes on
            status = "failed"
            error = f"{type(exc).__name__}: {exc}".replace(str(folder), chunk.dest or chunk.name)
        files = {}
        if folder.is_dir():
            files = {name: (folder / name).read_bytes() for name in RUN_FILES
                     if name != CONFIG and (folder / name).is_file()}
    return ChunkResult(chunk.name, status, files, summary, error, worker)


def chunk_config(config: TrainConfig) -> dict:
    """A TrainConfig as the plain dict a Chunk carries."""
    return dataclasses.asdict(config)
