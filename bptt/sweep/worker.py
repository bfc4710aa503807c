"""What a sweep's worker runs: one stretch of one run, from plain data to plain data.

`run_chunk(chunk)` trains a run in a temporary folder of its own, from the files the sweep sends
(none for a new run) to its first checkpoint after `chunk.sync_seconds` of training, or to its end,
and returns the run's files as bytes. Stopping at a checkpoint and resuming from it is the trainer's
exact resume, so a run cut into any number of chunks, on any workers, ends with the weights of one
uninterrupted `bptt train`.

Nothing assumes that the worker shares a filesystem with the machine running the sweep. The files a
run reads (`INPUT_FILES`: the TrainConfig fields that name one) go with each chunk as an `InputFile`:
the path the spec gives and the SHA-256 of what the sweep read there, with the bytes themselves when
the worker may be elsewhere (Dask). A worker trains on the path itself when it holds those bytes, as
`bptt train` would, and on a copy of the bytes otherwise.

The temporary folder goes where the next sweep or worker finds and removes what a killed worker left:
under the sweep's DIR/.workers for a local worker (`Chunk.scratch`), in the Dask worker's own local
directory on a cluster (which Dask purges of dead workers' folders), else in the system's temporary
folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.config import SettingError, TrainConfig
from ..runs.files import CONFIG, RUN_FILES
from ..training.run_config import write_config
from ..training.trainer import train

INPUT_FILES = {  # TrainConfig field -> what the file is: the files a run reads, which travel with its chunks
    "text": "the chars task's text",
    "data": "the data task's .npz file",
}
MAX_INPUT_BYTES = 1 << 32  # 4 GiB: an input file sent to Dask workers is held whole (local workers read the path)
TEMPORARY_PREFIX = "bptt-sweep-"

# set in a local pool's worker processes by `init_local_worker`
_LOCAL_NAME: str | None = None
_STOP: Any = None  # a multiprocessing.Event: the sweep asks running chunks to hand their run back now


@dataclass(frozen=True)
class InputFile:
    """A file a run reads, as the sweep read it.

    Attributes
    ----------
    path : str
        As the spec gives it (relative to the folder `bptt sweep` runs in).
    sha256 : str
        The hex SHA-256 of its contents when the sweep started.
    size : int
        Its size in bytes.
    data : bytes or None
        The contents, for a worker that may not see the file; None for local workers, which read
        `path` and check it against `sha256`.
    """

    path: str
    sha256: str
    size: int
    data: bytes | None = field(default=None, repr=False)


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
    inputs : dict of str to InputFile
        The files the run reads, by TrainConfig field (`INPUT_FILES`).
    sync_seconds : float
        Train for at least this long, then stop at the next checkpoint and send the files back.
    dest : str
        Where the sweep keeps the run, to name in messages instead of the temporary folder.
    scratch : str or None
        The folder to train in (a temporary folder is made inside it); None: the Dask worker's local
        directory, or the system's temporary folder.
    """

    name: str
    config: dict
    files: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    sync_seconds: float = 20.0
    dest: str = ""
    scratch: str | None = None


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


def _dask_directory() -> str | None:
    """The local directory of the Dask worker running this, if any: Dask removes the folders of
    workers that died when the next one starts on the machine."""
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except (ImportError, ValueError, AttributeError):
        return None


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _inputs_here(inputs: dict, folder: Path) -> dict:
    """field -> the path this worker trains on: the spec's path if it holds the bytes the sweep read
    (then the run is the one `bptt train` would make), else a copy of the bytes sent.

    Raises
    ------
    ValueError
        If the file differs from what the sweep read and no copy came with the chunk.
    """
    paths = {}
    for name, given in inputs.items():
        if _sha256(given.path) == given.sha256:
            paths[name] = given.path
        elif given.data is not None:
            copy = folder / "inputs" / name / (Path(given.path).name or name)
            copy.parent.mkdir(parents=True)
            copy.write_bytes(given.data)
            paths[name] = str(copy)
        else:
            raise ValueError(f"{given.path} ({INPUT_FILES.get(name, name)}) is not what it was when the sweep "
                             f"started (sha256 {given.sha256[:12]}...): put it back, or start the sweep again")
    return paths


def run_chunk(chunk: Chunk, data: dict | None = None) -> ChunkResult:
    """Train one stretch of a run in a temporary folder and return its files.

    Parameters
    ----------
    chunk : Chunk
    data : dict of str to bytes, optional
        The contents of input files sent apart from the chunk (Dask scatters each file once), by
        field; they take the place of `chunk.inputs[field].data`.

    Returns
    -------
    ChunkResult
        Every failure of the run itself (bad settings, a cell or task the worker cannot import, a
        non-finite loss, an error writing the temporary folder) comes back as status "failed" with
        its message; only the loss of the worker itself is left to the caller.
    """
    worker = worker_name()
    started = time.monotonic()
    if data:
        chunk = dataclasses.replace(chunk, inputs={name: dataclasses.replace(given, data=data.get(name, given.data))
                                                   for name, given in chunk.inputs.items()})
    parent = chunk.scratch or _dask_directory()
    if parent is not None:
        os.makedirs(parent, exist_ok=True)
    label = re.sub(r"[^A-Za-z0-9._-]", "_", worker)[:40]
    tmp = tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{label}-", dir=parent)
    try:
        return _train_in(chunk, Path(tmp), worker, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _train_in(chunk: Chunk, tmp: Path, worker: str, started: float) -> ChunkResult:
    folder = tmp / "run"
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
        settings.update(_inputs_here(chunk.inputs, tmp))
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
        for name, given in chunk.inputs.items():
            error = error.replace(str(tmp / "inputs" / name / (Path(given.path).name or name)), given.path)
        if isinstance(exc, SettingError) and exc.setting in ("cell", "task"):  # the sweep found it: the worker not
            error += f" (on worker {worker}: a {exc.setting} named MODULE:CLASS must be importable there too)"
    files = {}
    if folder.is_dir():
        files = {name: (folder / name).read_bytes() for name in RUN_FILES
                 if name != CONFIG and (folder / name).is_file()}
    return ChunkResult(chunk.name, status, files, summary, error, worker)


def chunk_config(config: TrainConfig) -> dict:
    """A TrainConfig as the plain dict a Chunk carries."""
    return dataclasses.asdict(config)
