"""The run folder: its files, their formats, and how they are written and read back::

    config.json      every setting (a TrainConfig), indented JSON
    metrics.jsonl    one JSON object per update: step, loss, grad_norm (before clipping), clipped,
                     lr, elapsed (seconds); eval_* keys on evaluation steps; skipped on skipped steps
    dh_norms.jsonl   every `record_every` updates: {"step", "dh_norms": norm of dL/dh_t per step of
                     that update's window}
    summary.json     the final held-out metrics next to the task's baseline
    checkpoint.npz   the training state (`Checkpoint`): weights, optimizer state, data RNG state,
                     position in the current batch, step and counters; the vocabulary for chars;
                     the fingerprint of the settings and data a resume must find unchanged
    .lock            the one-writer lock (not part of the run: readers ignore it)

Writing: a whole file goes to a temporary file in the same folder, is fsynced and renamed over the
old one, so no reader ever sees half of it; the logs grow by one flushed line at a time. A number
that is not finite is written as null.

Reading the logs, one policy for every reader (the trainer resuming, `read_run`, `bptt plot`): a
broken last line, which is what a kill in the middle of a write leaves, is dropped; a broken line
before it is a ValueError naming the file and the line. Resuming truncates both logs to the
checkpoint's step, so the steps replayed after it are logged once.

One run per folder, one writer at a time: `new_run_dir` creates a folder no other run has (an
exclusive mkdir); `lock_run_folder` takes the folder's OS lock (the file .lock, holding the writer's
process id), which a writer holds for the whole run and the system drops when it dies; under it,
`claim_run_folder` refuses a folder that already holds a run unless told to delete it, and the
temporaries of a writer killed mid-write are swept. Readers take no lock: every file they read is
whole. An OSError while writing becomes a `RunWriteError` naming the file; a temporary file is
removed when its write fails. Files and folders follow the process's umask.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..core.types import Array, IntArray, Params, Parts
from .config import TrainConfig
from .folder_lock import FolderLock

CONFIG = "config.json"
METRICS = "metrics.jsonl"
DH_NORMS = "dh_norms.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.npz"
LOGS = (METRICS, DH_NORMS)
RUN_FILES = (CONFIG, METRICS, DH_NORMS, SUMMARY, CHECKPOINT)  # any one of them makes a folder a run
LOCK = ".lock"  # the one-writer lock, holding the writer's process id; not part of the run
DEFAULT_PARENT = "runs"  # where runs without an `out` go, relative to the working directory
# settings a resume may change: steps extends the run, out follows a moved folder, text and data a moved
# file (the file's content is checked through its hash instead)
UNCHECKED_SETTINGS = ("steps", "out", "text", "data")


# ---------------------------------------------------------------------- errors
class RunWriteError(OSError):
    """A file or folder of a run could not be written.

    Constructed like OSError(errno, strerror, filename), with `filename` the file or folder meant
    (never a temporary name); its text is "cannot write FILENAME: STRERROR".
    """

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked; `path` is the folder. The subclasses say why."""


class RunExistsError(RunFolderError):
    """A new run was asked for in a folder that already holds a run.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    files : sequence of str
        The run's files found there (names from RUN_FILES).
    """

    def __init__(self, path: str | os.PathLike[str], files: Iterable[str]) -> None:
        self.path, self.files = os.fspath(path), tuple(files)
        super().__init__(self.path, self.files)

    def __str__(self) -> str:
        return (f"run folder {self.path} already holds a run ({', '.join(self.files)}): continue it with "
                f"train(resume={self.path!r}), give another out, or pass overwrite=True to delete its files first")


class RunLockedError(RunFolderError):
    """Another process (or another lock in this one) is writing the run folder.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    pid : int or None
        The holder's process id, None if it wrote none.
    """

    def __init__(self, path: str | os.PathLike[str], pid: int | None) -> None:
        self.path, self.pid = os.fspath(path), pid
        super().__init__(self.path, pid)

    def __str__(self) -> str:
        holder = "another process" if self.pid is None else f"process {self.pid}"
        return f"run folder {self.path} is being written by {holder}; one writer at a time"


class RunChangedError(RunFolderError):
    """A resume refused: config.json or the training text is not what the checkpoint was trained on.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    changes : sequence of str
        One line per difference, naming the setting or the file.
    """

    def __init__(self, path: str | os.PathLike[str], changes: Iterable[str]) -> None:
        self.path, self.changes = os.fspath(path), tuple(changes)
        super().__init__(self.path, self.changes)

    def __str__(self) -> str:
        return (f"cannot resume {self.path}: it no longer matches its checkpoint: {'; '.join(self.changes)}. "
                "Put back what changed, or start a new run with the new settings or data")


@contextlib.contextmanager
def _writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError raised inside into a RunWriteError naming `path`."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as exc:
        raise RunWriteError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc


# ---------------------------------------------------------------------- writing and reading files
def _temporary_beside(path: Path) -> tuple[Path, int]:
    """A new file .<name>.<random>.tmp next to `path`, open for writing; mode 0666 less the umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue


def _is_temporary(name: str, files: Iterable[str] | None) -> bool:
    if files is None:
        return name.startswith(".") and name.endswith(".tmp")
    return name.endswith(".tmp") and any(name.startswith(f".{file}.") for file in files)


def remove_temporaries(folder: Path, files: Iterable[str] | None = RUN_FILES) -> None:
    """Remove the temporaries that interrupted `atomic_write`s of `files` left in `folder`
    (.<file>.<random>.tmp; with files None, every hidden .tmp file: a folder one writer owns
    whole). Only a writer holding the folder's lock may call it.

    Raises
    ------
    RunWriteError
        Naming a temporary that cannot be removed.
    """
    for path in folder.iterdir():
        if _is_temporary(path.name, files):
            with _writing(path):
                path.unlink()


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write `path` through a temporary file in the same folder, fsync, then rename: never a truncated file.

    The one way any module writes a whole file of a run folder or a sweep folder. ``write`` gets the
    temporary file, open in binary mode. A failure removes the temporary file and raises
    `RunWriteError` naming `path`.
    """
    with _writing(path):
        tmp, fd = _temporary_beside(path)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def json_safe(value: object) -> Any:
    """`value` with every non-finite float (at any depth of dicts and lists) replaced by None.

    Parameters
    ----------
    value
        A JSON-able value: dict, list, tuple, str, int, float, bool or None.

    Returns
    -------
    The same structure (tuples as lists), as the files of a run folder hold it.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _write_json(path: Path, value: object) -> None:
    text = json.dumps(json_safe(value), indent=2, default=os.fspath) + "\n"  # paths as strings
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: Path) -> Any:
    """The JSON value in `path`; ValueError naming the file if it cannot be read or parsed."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg})") from exc


def _numbered_lines(path: str | os.PathLike[str]) -> list[tuple[int, object]]:
    """(line number, value) of each non-blank line of a JSON-lines file, under the one policy."""
    with open(path) as f:
        lines = [(number, line) for number, line in enumerate(f, 1) if line.strip()]
    records = []
    for i, (number, line) in enumerate(lines):
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break  # a write cut short by a kill
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
    return records


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSON-lines log.

    A broken last line (a run killed mid-write) is dropped; a broken line before it is an error.
    Blank lines are skipped.

    Parameters
    ----------
    path : str or os.PathLike
        The log, e.g. RUN_DIR/metrics.jsonl.

    Returns
    -------
    list
        One decoded JSON value per complete line, in order.

    Raises
    ------
    ValueError
        Naming the path and the line number of a broken line that is not the last.
    OSError
        If the file cannot be opened.
    """
    return [value for _, value in _numbered_lines(path)]


def _step_records(path: Path) -> list[dict[str, Any]]:
    """A log's records, each checked to be an object with an integer "step" (missing file: none)."""
    if not path.exists():
        return []
    try:
        records = _numbered_lines(path)
    except OSError as exc:  # e.g. no permission: a run that cannot be resumed, like a broken line
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    checked = []
    for number, record in records:
        if not (isinstance(record, dict) and isinstance(record.get("step"), int)):
            raise ValueError(f"{path}, line {number}: expected a JSON object with an integer 'step'")
        checked.append(record)
    return checked


# ---------------------------------------------------------------------- the folder, its lock and its settings
def _existing_folder(run_dir: str | os.PathLike[str]) -> Path:
    folder = Path(run_dir)
    if not folder.is_dir():
        raise ValueError(f"run folder {str(run_dir)!r} does not exist or is not a folder")
    return folder


def new_run_dir(parent: str | os.PathLike[str], stem: str) -> Path:
    """Create a folder for a new run, with a name no other run has: parent/<stem>-<time>-<suffix>.

    The time is YYYYmmdd-HHMMSS.mmm and the suffix four random hex digits; the folder is made with
    an exclusive mkdir, and a name already taken (by a run started in the same millisecond, in this
    process or another) is tried again with a new suffix. So N calls give N folders.

    Parameters
    ----------
    parent : str or os.PathLike
        Where the folder goes (created if missing), e.g. DEFAULT_PARENT.
    stem : str
        The readable start of the name, e.g. "adding-gru": a folder name, no path separator.

    Returns
    -------
    Path
        The new, empty folder.

    Raises
    ------
    ValueError
        If `stem` is empty or holds a path separator.
    RunWriteError
        If the parent or the folder cannot be created.

    Examples
    --------
    >>> import tempfile
    >>> parent = tempfile.mkdtemp()
    >>> a, b = new_run_dir(parent, "adding-gru"), new_run_dir(parent, "adding-gru")
    >>> a != b and a.is_dir() and b.is_dir() and a.name.startswith("adding-gru-")
    True
    """
    separators = {sep for sep in (os.sep, os.altsep) if sep is not None}
    if not isinstance(stem, str) or stem in ("", ".", "..") or any(sep in stem for sep in separators):
        raise ValueError(f"stem must be a folder name without a path separator, e.g. 'adding-gru'; got {stem!r}")
    parent = Path(parent)
    with _writing(parent):
        parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        folder = parent / f"{stem}-{stamp}-{secrets.token_hex(2)}"
        with _writing(folder):
            try:
                folder.mkdir()
            except FileExistsError:  # taken in this millisecond: draw another suffix
                continue
        return folder
    raise RunWriteError(errno.EEXIST, "a hundred names in a row were taken", os.fspath(parent / f"{stem}-*"))


def lock_run_folder(run_dir: str | os.PathLike[str], *, create: bool = False) -> FolderLock:
    """Take a run folder's one-writer lock, and remove the temporaries a killed writer left there.

    The lock is an OS lock on the file .lock in the folder: the system drops it when the holder
    exits or is killed, so it never goes stale. Hold it for the whole of a write (`train` does, from
    the folder's first file to the summary) and `release()` it after; it is a context manager too.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run folder.
    create : bool
        Create the folder (and its parents) if missing; otherwise it must exist.

    Returns
    -------
    FolderLock
        Held; `release()` or leave its `with` block to give it up.

    Raises
    ------
    RunLockedError
        If another process, or another lock in this one, holds it; with the holder's process id.
    ValueError
        If the folder does not exist and `create` is false.
    RunWriteError
        If the folder or its lock file cannot be created.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with lock_run_folder(folder):
    ...     try:
    ...         lock_run_folder(folder)
    ...     except RunLockedError as exc:
    ...         exc.pid == os.getpid()
    True
    """
    folder = Path(run_dir)
    if create:
        with _writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
    else:
        _existing_folder(folder)
    lock = FolderLock(folder / LOCK)
    with _writing(lock.path):
        taken = lock.try_acquire()
    if not taken:
        raise RunLockedError(folder, lock.holder())
    try:
        remove_temporaries(folder)
    except BaseException:
        lock.release()
        raise
    return lock


def release_run_folder(lock: FolderLock, remove_if_empty: bool = False) -> None:
    """Give up a run folder's lock. With `remove_if_empty`, a folder that holds nothing but its lock
    file goes away first, while the lock is still held: removed after the release, another process
    could take the lock in between and lose it to the removal.

    Parameters
    ----------
    lock : FolderLock
        From `lock_run_folder`.
    remove_if_empty : bool
        Remove the lock file and the folder if nothing else is in it (errors are ignored: the
        folder then stays, empty).
    """
    folder = lock.path.parent
    if remove_if_empty and [p.name for p in folder.iterdir()] == [lock.path.name]:
        with contextlib.suppress(OSError):
            lock.path.unlink()
            folder.rmdir()
    lock.release()


def run_files(run_dir: str | os.PathLike[str]) -> list[str]:
    """The files of a run that a folder holds.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    list of str
        The names from RUN_FILES present in the folder, in that order; [] for a missing folder.
    """
    folder = Path(run_dir)
    return [name for name in RUN_FILES if os.path.lexists(folder / name)]


def claim_run_folder(run_dir: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Make a folder ready for a new run: refuse the run it holds, or delete that run's files.

    Call it holding the folder's lock (`lock_run_folder`), so that no run appears between the check
    and the new run's first file. Files that are not a run's (e.g. figures) are left alone.

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing folder.
    overwrite : bool
        Delete the files of a run found there instead of refusing.

    Raises
    ------
    RunExistsError
        If the folder holds a run (any of RUN_FILES) and `overwrite` is false.
    RunWriteError
        If a file cannot be deleted.
    """
    folder = Path(run_dir)
    found = run_files(folder)
    if found and not overwrite:
        raise RunExistsError(folder, found)
    for name in found:
        with _writing(folder / name):
            (folder / name).unlink()


def start_run_folder(run_dir: str | os.PathLike[str], config: TrainConfig) -> Path:
    """Create a run folder (and its parents) holding config.json and two empty logs.

    `train` calls it holding the folder's lock, after `claim_run_folder`.

    Parameters
    ----------
    run_dir : str or os.PathLike
    config : TrainConfig
        The run's settings, validated.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    RunWriteError
        If the folder or a file cannot be written.
    """
    folder = Path(run_dir)
    with _writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, config)
    for name in LOGS:
        atomic_write(folder / name, lambda f: None)
    return folder


def write_config(run_dir: str | os.PathLike[str], config: TrainConfig) -> None:
    """Write config.json (atomically): every field of `config`, indented JSON.

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing folder.
    config : TrainConfig
    """
    _write_json(Path(run_dir) / CONFIG, dataclasses.asdict(config))


def load_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The validated TrainConfig of a run folder's config.json.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    TrainConfig

    Raises
    ------
    ValueError
        If the folder or the file is missing, the file is not a JSON object of known settings, or a
        setting is outside what it allows (the message names config.json and the setting).
    """
    path = _existing_folder(run_dir) / CONFIG
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object of settings, got {type(raw).__name__}")
    unknown = set(raw) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{path} has unknown settings {sorted(unknown)}")
    try:
        return TrainConfig(**raw).validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def write_summary(run_dir: str | os.PathLike[str], summary: dict[str, Any]) -> dict[str, Any]:
    """Write summary.json (atomically).

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing folder.
    summary : dict
        The final held-out metrics, baselines and counters.

    Returns
    -------
    dict
        The summary as written: non-finite numbers as None.
    """
    summary = json_safe(summary)
    _write_json(Path(run_dir) / SUMMARY, summary)
    return summary


# ---------------------------------------------------------------------- the logs
class Logs:
    """metrics.jsonl and dh_norms.jsonl of a run folder, open for appending one flushed line at a time.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A folder made by `start_run_folder` (or resumed, after `truncate_logs`).

    Raises
    ------
    RunWriteError
        From the constructor and every method, if a log cannot be opened, written or closed. A line
        cut short by a full disk is the broken last line every reader drops.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        folder = Path(run_dir)
        self._metrics_path, self._dh_norms_path = folder / METRICS, folder / DH_NORMS
        with _writing(self._metrics_path):
            self._metrics = open(self._metrics_path, "a")
        try:
            with _writing(self._dh_norms_path):
                self._dh_norms = open(self._dh_norms_path, "a")
        except BaseException:
            self._metrics.close()
            raise

    def write_metrics(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append one update's record to metrics.jsonl as one flushed line.

        Parameters
        ----------
        record : dict
            step, loss, grad_norm, clipped, lr, elapsed, and eval_* or skipped where they apply.

        Returns
        -------
        dict
            The record as written: non-finite numbers as None.
        """
        record = json_safe(record)
        with _writing(self._metrics_path):
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()
        return record

    def write_dh_norms(self, step: int, dh_norms: ArrayLike) -> None:
        """Append {"step": step, "dh_norms": [...]} to dh_norms.jsonl as one flushed line.

        Parameters
        ----------
        step : int
            The update.
        dh_norms : ndarray, shape (W,), or (L, directions, W) for a Stack
            Norm over the batch of dL/dh_t at each step of the update's window (per layer and
            direction for a Stack).
        """
        line = json.dumps({"step": step, "dh_norms": json_safe(np.asarray(dh_norms).tolist())}) + "\n"
        with _writing(self._dh_norms_path):
            self._dh_norms.write(line)
            self._dh_norms.flush()

    def close(self) -> None:
        """Close both files (both are closed even if the first fails to flush)."""
        try:
            with _writing(self._metrics_path):
                self._metrics.close()
        finally:
            with _writing(self._dh_norms_path):
                self._dh_norms.close()

    def __enter__(self) -> "Logs":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            self.close()
        except RunWriteError:
            if exc_type is None:
                raise  # otherwise the write that failed first is the one to report


def truncate_logs(run_dir: str | os.PathLike[str], last_step: int) -> None:
    """Keep only the log records of steps <= last_step: the ones a resumed run will not replay.

    Both logs are read before either is rewritten (atomically), so a broken log changes nothing.

    Parameters
    ----------
    run_dir : str or os.PathLike
    last_step : int
        The checkpoint's step.

    Raises
    ------
    ValueError
        If a log has a broken line before its last, or a record without an integer "step".
    """
    folder = Path(run_dir)
    kept = {name: [r for r in _step_records(folder / name) if r["step"] <= last_step] for name in LOGS}
    for name, records in kept.items():
        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write(folder / name, lambda f: f.write(text.encode()))


# ---------------------------------------------------------------------- the checkpoint
@dataclass
class Checkpoint:
    """The training state in checkpoint.npz: what a run needs to continue exactly where it stopped.

    Each attribute is stored under the key(s) given after it; the schema is that of every checkpoint
    `bptt train` has written.

    Attributes
    ----------
    params : dict of str to ndarray
        The weights keyed like `model_params` ("cell.<name>", "readout.<name>"): param/<name>.
    optimizer : dict of str to ndarray
        `Optimizer.state_arrays()`, "<slot>/<name>" and "t": optim/<slot>/<name>, optim/t.
    step : int
        Updates done: step.
    window : int
        Index of the next window of the current batch, -1 between batches: window.
    elapsed : float
        Seconds of training so far: elapsed.
    skipped, clipped : int
        Updates skipped (non-finite) and clipped so far: skipped, clipped.
    rng_state : dict
        The data RNG's `bit_generator.state`, from before the current batch was drawn when
        window >= 0: rng_state (as JSON text).
    carry : tuple of ndarray, each (N, H)
        The state at the start of window `window` (h first, then c for an LSTM); empty for the zero
        state: carry/0, carry/1, ...
    last_eval : dict
        The latest held-out metrics: last_eval (as JSON text).
    vocab : str or None
        The chars task's vocabulary: vocab.
    fingerprint : dict or None
        What a resume must find unchanged (`run_fingerprint`): fingerprint (as JSON text). None in
        checkpoints written before it was recorded, which resume unchecked.
    model_rng_state : dict or None
        A Stack's dropout RNG `bit_generator.state`, so a resumed run draws the same masks:
        model_rng_state (as JSON text); None for a single cell.
    path : str or None
        Where it was read from; not stored.
    """

    params: Params
    optimizer: dict[str, NDArray[Any]]
    step: int
    window: int
    elapsed: float
    skipped: int
    clipped: int
    rng_state: Mapping[str, Any]
    carry: Parts = ()
    last_eval: dict[str, float] = field(default_factory=dict)
    vocab: str | None = None
    fingerprint: dict[str, Any] | None = None
    model_rng_state: Mapping[str, Any] | None = None
    path: str | None = None

    def load_params(self, params: Mapping[str, Array]) -> None:
        """Copy the saved weights into the live arrays `params` (keyed like `model_params`).

        Nothing is copied unless every name and shape matches.

        Raises
        ------
        ValueError
            Naming the checkpoint and the parameter that is missing, extra or of another shape.
        """
        where = f"checkpoint {self.path} does not match its config.json"
        if set(params) != set(self.params):
            raise ValueError(f"{where}: it holds parameters {sorted(self.params)}, the model has {sorted(params)}")
        for name, value in params.items():
            saved = self.params[name]
            if saved.shape != value.shape:
                raise ValueError(f"{where}: parameter {name} has shape {saved.shape}, config expects {value.shape}")
        for name, value in params.items():
            value[...] = self.params[name]


_REQUIRED = ("optim/t", "step", "window", "elapsed", "skipped", "clipped", "rng_state", "last_eval")


def write_checkpoint(run_dir: str | os.PathLike[str], checkpoint: Checkpoint) -> None:
    """Write checkpoint.npz (atomically) in the schema of `Checkpoint`.

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing folder.
    checkpoint : Checkpoint
        Its arrays are written as they are at the call (the live weights may be passed).
    """
    arrays: dict[str, NDArray[Any]] = {f"param/{k}": v for k, v in checkpoint.params.items()}
    arrays.update({f"optim/{k}": v for k, v in checkpoint.optimizer.items()})
    arrays["step"] = np.array(checkpoint.step)
    arrays["window"] = np.array(checkpoint.window)
    arrays["elapsed"] = np.array(checkpoint.elapsed)
    arrays["skipped"] = np.array(checkpoint.skipped)
    arrays["clipped"] = np.array(checkpoint.clipped)
    arrays["rng_state"] = np.array(json.dumps(checkpoint.rng_state))
    for i, part in enumerate(checkpoint.carry):
        arrays[f"carry/{i}"] = part
    arrays["last_eval"] = np.array(json.dumps(checkpoint.last_eval))
    if checkpoint.vocab is not None:
        arrays["vocab"] = np.array(checkpoint.vocab)
    if checkpoint.fingerprint is not None:
        arrays["fingerprint"] = np.array(json.dumps(checkpoint.fingerprint))
    if checkpoint.model_rng_state is not None:
        arrays["model_rng_state"] = np.array(json.dumps(checkpoint.model_rng_state))
    # the type checker matches **arrays against savez's allow_pickle too; no key here is "allow_pickle"
    atomic_write(Path(run_dir) / CHECKPOINT, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def read_checkpoint(run_dir: str | os.PathLike[str]) -> Checkpoint:
    """Read a run folder's checkpoint.npz.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    Checkpoint
        With `path` set to the file read.

    Raises
    ------
    ValueError
        If the file is missing, truncated or not an npz file ("cannot read checkpoint ..."), or lacks
        a key of the schema.
    """
    path = Path(run_dir) / CHECKPOINT
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:  # closed even if np.load fails
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # a missing, truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    missing = [key for key in _REQUIRED if key not in arrays]
    if not any(k.startswith("param/") for k in arrays):
        missing.insert(0, "param/<name>")
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: it is not a checkpoint of bptt train")
    carry = [f"carry/{i}" for i in range(sum(k.startswith("carry/") for k in arrays))]
    if not all(k in arrays for k in carry):
        found = sorted(k for k in arrays if k.startswith("carry/"))
        raise ValueError(f"checkpoint {path} has the state parts {found}, expected {carry}")
    try:
        return Checkpoint(
            params={k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")},
            optimizer={k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")},
            step=int(arrays["step"]),
            window=int(arrays["window"]),
            elapsed=float(arrays["elapsed"]),
            skipped=int(arrays["skipped"]),
            clipped=int(arrays["clipped"]),
            rng_state=json.loads(str(arrays["rng_state"])),
            carry=tuple(arrays[k] for k in carry),
            last_eval=json.loads(str(arrays["last_eval"])),
            vocab=str(arrays["vocab"]) if "vocab" in arrays else None,
            fingerprint=json.loads(str(arrays["fingerprint"])) if "fingerprint" in arrays else None,
            model_rng_state=json.loads(str(arrays["model_rng_state"])) if "model_rng_state" in arrays else None,
            path=str(path),
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc


def run_fingerprint(config: TrainConfig, data: Mapping[str, Any]) -> dict[str, Any]:
    """What a resumed run must find as it was: its settings and its training data.

    Parameters
    ----------
    config : TrainConfig
        The run's settings; those in UNCHECKED_SETTINGS (steps, out, text) are left out.
    data : dict
        The task's `data_fingerprint`, e.g. {"text": path, "text_sha256": hex digest} for chars.

    Returns
    -------
    dict
        {"settings": {...}, "data": {...}}, as JSON holds it (non-finite numbers as None), so that a
        fingerprint read back from a checkpoint compares equal to a fresh one.
    """
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in UNCHECKED_SETTINGS}
    return json.loads(json.dumps(json_safe({"settings": settings, "data": dict(data)}), default=os.fspath))


def fingerprint_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How `current` differs from `recorded`, one line per setting or file that changed.

    Only what both fingerprints hold is compared, so a setting added to TrainConfig later does not
    count as a change; the text's path is shown, its hash compared.

    Parameters
    ----------
    recorded : dict
        The checkpoint's fingerprint.
    current : dict
        `run_fingerprint` of config.json and the data as they are now.

    Returns
    -------
    list of str
        Empty if nothing changed.
    """
    changes = []
    old, new = recorded.get("settings", {}), current.get("settings", {})
    for key in old:
        if key in new and old[key] != new[key]:
            changes.append(f"{key} was {old[key]!r}, config.json now says {new[key]!r}")
    old, new = recorded.get("data", {}), current.get("data", {})
    for file, what in (("text", "the text"), ("data", "the data")):  # chars' text file, the data task's .npz
        key = f"{file}_sha256"
        if key in old and key in new and old[key] != new[key]:
            changes.append(f"the {file} file {new.get(file)!r} is not {what} the run trained on (SHA-256 "
                           f"{old[key][:12]}... then, {new[key][:12]}... now)")
    return changes


# ---------------------------------------------------------------------- reading a run back
@dataclass
class Run:
    """A run folder's logs and settings, as `read_run` returns them (numbers only, no model).

    Attributes
    ----------
    path : str
        The folder.
    config : dict
        config.json as written ({} if absent).
    summary : dict
        summary.json ({} if absent, e.g. a run still going).
    metrics : list of dict
        One record per logged step.
    dh_steps : ndarray, shape (R,), or None
        The step of each dh_norms record.
    dh_norms : ndarray, shape (R, W), or None
        One row per record, W the longest window; shorter windows (e.g. a TBPTT run's last one) are
        padded with NaN at the start, so that the last column is always the window's last step. For a
        stacked run, the top layer's forward direction.
    dh_layers : ndarray, shape (R, L, directions, W), or None
        A stacked run's records, every layer and direction (padded like dh_norms); None for a cell.
    """

    path: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    dh_steps: IntArray | None = None
    dh_norms: Array | None = None
    dh_layers: Array | None = None

    def column(self, key: str) -> Array | None:
        """One metric over the logged steps (NaN where a record lacks it or holds null), None if no
        record has it (e.g. eval_loss exists only on evaluation steps)."""
        if not any(key in m for m in self.metrics):
            return None
        return np.array([np.nan if m.get(key) is None else m[key] for m in self.metrics], float)

    @property
    def steps(self) -> IntArray:
        """(S,) the step of each metrics record."""
        return np.array([m["step"] for m in self.metrics], int)

    @property
    def clipping(self) -> tuple[str, float | None]:
        """(mode, threshold) from config.json: ("norm", max norm), ("value", max ``|element|``) or ("none", None)."""
        mode = self.config.get("clip", "none")
        if mode not in ("norm", "value"):
            return "none", None
        return mode, float(self.config["clip_threshold"]) if "clip_threshold" in self.config else None


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a run folder's logs and settings back.

    Parameters
    ----------
    path : str or os.PathLike
        The run folder. metrics.jsonl is required; config.json, summary.json and dh_norms.jsonl are
        read when present.

    Returns
    -------
    Run

    Raises
    ------
    ValueError
        If the folder or metrics.jsonl is missing, a file is not valid JSON (a log's broken last
        line aside), or a record lacks what its log promises.
    """
    path = os.fspath(path)
    folder = _existing_folder(path)
    metrics_path = folder / METRICS
    if not metrics_path.exists():
        raise ValueError(f"{path!r} is not a run folder: it has no {METRICS}")
    metrics = read_jsonl(metrics_path)
    if not metrics or not all(isinstance(m, dict) and "step" in m for m in metrics):
        raise ValueError(f"{metrics_path}: expected one JSON object with a 'step' per line")
    config = read_json(folder / CONFIG) if (folder / CONFIG).exists() else {}
    summary = read_json(folder / SUMMARY) if (folder / SUMMARY).exists() else {}
    run = Run(path, config, summary, metrics)
    dh_path = folder / DH_NORMS
    records = read_jsonl(dh_path) if dh_path.exists() else []
    if records:
        if not all(isinstance(r, dict) and "step" in r and isinstance(r.get("dh_norms"), list) and r["dh_norms"]
                   for r in records):
            raise ValueError(f"{dh_path}: expected one {{'step': int, 'dh_norms': [float, ...]}} per line")
        values = [np.array(r["dh_norms"], dtype=float) for r in records]  # null -> nan
        if len({v.ndim for v in values}) != 1 or values[0].ndim not in (1, 3):
            raise ValueError(f"{dh_path}: every record's dh_norms must be a list of numbers (a cell) "
                             "or of layers of directions of numbers (a stack)")
        width = max(v.shape[-1] for v in values)
        run.dh_steps = np.array([r["step"] for r in records], int)
        padded = np.full((len(values),) + values[0].shape[:-1] + (width,), np.nan)
        for row, v in zip(padded, values):
            row[..., width - v.shape[-1]:] = v
        if padded.ndim == 4:
            run.dh_layers, run.dh_norms = padded, padded[:, -1, 0]
        else:
            run.dh_norms = padded
    return run
