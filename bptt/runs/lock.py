"""An exclusive lock on a file that the operating system drops when its holder dies.

`FolderLock(path)` locks the file at `path` (created if needed) with `flock` on POSIX or
`msvcrt.locking` on Windows. Both locks belong to the open file, not to a name or a flag on disk, so a
killed process never leaves a stale lock behind, and two ``FolderLock`` objects of one file exclude each other
even inside one process. The holder writes its process id into the file, so a refused process can
say who holds it; the file itself stays (deleting a lock file while others may have it open would
let two processes each lock a different file of the same name).

The folder may come from someone else, so the lock file is opened without following a link and must
be a regular file with no other name (`bptt.core.untrusted.open_writable`): a `.lock` that points at
a file of yours is refused, never emptied.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType

from ..core.untrusted import UntrustedFileError, open_writable, read_bytes

# each module exists on one platform only: None where it is missing
fcntl: ModuleType | None
msvcrt: ModuleType | None
try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None

# Windows locks forbid reading the locked bytes: lock one far past the process id the file holds.
_WINDOWS_LOCKED_BYTE = 1 << 30
_MAX_HOLDER_BYTES = 64  # a process id and a newline; a longer file names no holder


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if msvcrt is not None:
        os.lseek(fd, _WINDOWS_LOCKED_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    raise NotImplementedError("locking a run folder needs fcntl (POSIX) or msvcrt (Windows); this Python has neither")


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:
        os.lseek(fd, _WINDOWS_LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _write_at_start(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


class FolderLock:
    """An exclusive, non-blocking lock on one file, released by `release()` or by the holder's death.

    Parameters
    ----------
    path : str or os.PathLike
        The lock file, e.g. RUN_DIR/.lock; its folder must exist.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> first, second = FolderLock(os.path.join(folder, ".lock")), FolderLock(os.path.join(folder, ".lock"))
    >>> first.try_acquire(), second.try_acquire(), second.holder() == os.getpid()
    (True, False, True)
    >>> first.release(); second.try_acquire()
    True
    >>> second.release()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if no one holds it, and write this process's id into the file.

        Returns
        -------
        bool
            True if taken, False if another holder has it.

        Raises
        ------
        RuntimeError
            If this object already holds the lock.
        UntrustedFileError
            (a ValueError) If the lock file is a symbolic link, not a regular file, or has other hard
            links; naming it. Nothing is written then.
        OSError
            If the lock file cannot be created or written (e.g. a read-only folder).
        NotImplementedError
            On a platform with neither fcntl nor msvcrt.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this FolderLock")
        try:
            fd = open_writable(self.path)
        except UntrustedFileError as exc:  # say what to do: the lock file holds nothing of the run
            raise UntrustedFileError(self.path, f"{exc.problem}; it is only a lock file, not part of the run: "
                                                "remove it and try again") from None
        try:
            if not _try_lock(fd):
                os.close(fd)
                return False
            _write_at_start(fd, f"{os.getpid()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (nothing if not held); the file stays, emptied of the process id."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            _write_at_start(fd, b"")
        except OSError:
            pass  # a stale process id only makes a later refusal name the wrong process
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def holder(self, wait: float = 0.5) -> int | None:
        """The process id written by the current holder, or None if none is written.

        Parameters
        ----------
        wait : float
            Seconds to keep reading while the file is empty: a holder writes its id just after it
            takes the lock.

        Returns
        -------
        int or None
        """
        deadline = time.monotonic() + wait
        while True:
            try:  # a process id, read without following a link
                text = read_bytes(self.path, _MAX_HOLDER_BYTES).decode("ascii", errors="replace").strip()
            except (OSError, UntrustedFileError):
                text = ""
            if text.isdigit():
                return int(text)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"FolderLock({str(self.path)!r}, held={self.held})"
