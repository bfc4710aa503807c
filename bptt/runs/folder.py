"""Who writes a run folder, and which folder a new run gets.

One run per folder, one writer at a time: `new_run_dir` creates a folder no other run has (an
exclusive mkdir); `lock_run_folder` takes the folder's OS lock (the file .lock, holding the writer's
process id), which a writer holds for the whole run and the system drops when it dies; under it,
`claim_run_folder` refuses a folder that already holds a run unless told to delete it, and the
temporaries of a writer killed mid-write are swept. Readers take no lock: every file they read is
whole.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import time
from pathlib import Path
from typing import Iterable

from .atomic import RunWriteError, remove_temporaries, writing
from .files import LOCK, RUN_FILES
from .lock import FolderLock

DEFAULT_PARENT = "runs"  # where runs without an `out` go, relative to the working directory


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



def existing_folder(run_dir: str | os.PathLike[str]) -> Path:
    """`run_dir` as a Path; ValueError if it is not an existing folder."""
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
    with writing(parent):
        parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        now = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        folder = parent / f"{stem}-{stamp}-{secrets.token_hex(2)}"
        with writing(folder):
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
        with writing(folder):
            folder.mkdir(parents=True, exist_ok=True)
    else:
        existing_folder(folder)
    lock = FolderLock(folder / LOCK)
    with writing(lock.path):
        taken = lock.try_acquire()
    if not taken:
        raise RunLockedError(folder, lock.holder())
    try:
        remove_temporaries(folder, RUN_FILES)
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
        with writing(folder / name):
            (folder / name).unlink()


