"""Writing whole files so that no reader ever sees half of one: a temporary file in the same folder,
fsynced, then renamed over the old one; the temporaries a killed writer left are swept by the
next writer; an OSError while writing becomes a `RunWriteError` naming the file meant.

Files and folders follow the process's umask.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator


class RunWriteError(OSError):
    """A file or folder of a run could not be written.

    Constructed like OSError(errno, strerror, filename), with `filename` the file or folder meant
    (never a temporary name); its text is "cannot write FILENAME: STRERROR".
    """

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError raised inside into a RunWriteError naming `path`."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as exc:
        raise RunWriteError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc


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


def remove_temporaries(folder: Path, files: Iterable[str] | None) -> None:
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
            with writing(path):
                path.unlink()


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write `path` through a temporary file in the same folder, fsync, then rename: never a truncated file.

    The one way any module writes a whole file of a run folder or a sweep folder. ``write`` gets the
    temporary file, open in binary mode. A failure removes the temporary file and raises
    `RunWriteError` naming `path`.
    """
    with writing(path):
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
