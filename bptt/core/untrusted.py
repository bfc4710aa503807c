"""Reading files that may come from someone else: a run folder handed over, a data file downloaded.

Every reader here checks before it trusts:

- links: a file is opened with O_NOFOLLOW unless the caller named it itself (a path typed on the
  command line may be a link; one read out of a run folder may not), and anything but a regular
  file (a FIFO, a device such as /dev/zero, a folder) is refused before a byte is read;
- sizes: every read has a bound, named by the caller (`read_bytes`, `read_json`, `iter_lines`);
- depth: JSON nested deeper than the caller allows is refused before it is parsed, so no decoder or
  later walk over it recurses without bound;
- npz members: each member's .npy header (shape, dtype, order) is read and checked, against the
  zip entry's declared size and against what the caller expects, before any data is read; nothing
  holding Python objects is ever loaded, so no file can run code.

A refusal is an `UntrustedFileError` (a ValueError) naming the file and what is wrong with it.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import zipfile
from typing import IO, Any, Callable, Iterator, Mapping, NamedTuple

import numpy as np
from numpy.typing import NDArray

MAX_NPY_HEADER = 10_000  # numpy's own default bound on a .npy header
MAX_NPZ_MEMBERS = 10_000  # more arrays than any checkpoint or data file holds
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[^\[\]{}]+")


class UntrustedFileError(ValueError):
    """A file refused before (or while) it was read.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    problem : str
        What is wrong, completing "PATH: ...".
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path, self.problem = os.fspath(path), problem
        super().__init__(f"{self.path}: {problem}")


def open_regular(path: str | os.PathLike[str], *, follow_links: bool = False) -> IO[bytes]:
    """Open a regular file for reading in binary mode, refusing a link (unless `follow_links`) and
    anything that is not a regular file, without blocking on a FIFO.

    Parameters
    ----------
    path : str or os.PathLike
    follow_links : bool
        Whether the last component may be a symbolic link (for a path the user gave).

    Returns
    -------
    file object
        Open in "rb" mode; the caller closes it.

    Raises
    ------
    UntrustedFileError
        If it is a link (with follow_links false), a FIFO, a device, a folder or a socket.
    OSError
        If it cannot be opened (missing, no permission), as the OS says.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> os.symlink("/dev/zero", os.path.join(folder, "config.json"))
    >>> try:
    ...     open_regular(os.path.join(folder, "config.json"))
    ... except UntrustedFileError as exc:
    ...     print(exc.problem)
    is a symbolic link; files read from here must be regular files, not links
    >>> open_regular("/dev/zero", follow_links=True)
    Traceback (most recent call last):
    ...
    bptt.core.untrusted.UntrustedFileError: /dev/zero: is not a regular file (it is a character device)
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            raise UntrustedFileError(path, "is a symbolic link; files read from here must be regular files, "
                                           "not links") from exc
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UntrustedFileError(path, f"is not a regular file (it is {_kind(mode)})")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_writable(path: str | os.PathLike[str], *, append: bool = False) -> int:
    """Open (creating it if missing) a file that this process writes into a folder it may not own:
    a lock file, a log. A link is refused, and so is anything but a regular file or a file with other
    hard links, so that no one who prepared the folder can make the write land in a file of theirs
    or of yours elsewhere.

    Parameters
    ----------
    path : str or os.PathLike
    append : bool
        Open for appending (a log) instead of reading and writing at any offset (a lock file).

    Returns
    -------
    int
        The file descriptor, open for reading and writing (or appending), close-on-exec; the caller
        closes it. A new file gets mode 0666 less the umask.

    Raises
    ------
    UntrustedFileError
        If it is a symbolic link, not a regular file, or has more than one link.
    OSError
        If it cannot be opened or created, as the OS says.

    Examples
    --------
    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> mine = os.path.join(folder, "notes.txt")
    >>> with open(mine, "w") as f:
    ...     _ = f.write("keep me")
    >>> os.symlink(mine, os.path.join(folder, ".lock"))
    >>> try:
    ...     open_writable(os.path.join(folder, ".lock"))
    ... except UntrustedFileError as exc:
    ...     print(exc.problem)
    is a symbolic link; this file is written, and a link would send the writes elsewhere
    >>> with open(mine) as f:
    ...     f.read()
    'keep me'
    """
    flags = (os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
             | getattr(os, "O_BINARY", 0) | (os.O_WRONLY | os.O_APPEND if append else os.O_RDWR))
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedFileError(path, "is a symbolic link; this file is written, and a link would send the "
                                           "writes elsewhere") from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFileError(path, f"is not a regular file (it is {_kind(info.st_mode)}); remove it")
        if info.st_nlink > 1:
            raise UntrustedFileError(path, f"has {info.st_nlink} hard links; this file is written, and another "
                                           "name for it would see the writes: remove it")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a link")):
        if test(mode):
            return name
    return "not a file"


def read_bytes(path: str | os.PathLike[str], limit: int, *, follow_links: bool = False) -> bytes:
    """The whole of a regular file of at most `limit` bytes.

    Raises
    ------
    UntrustedFileError
        If it is larger than `limit`, or not a regular file (see `open_regular`).
    OSError
        If it cannot be opened or read.
    """
    with open_regular(path, follow_links=follow_links) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UntrustedFileError(path, f"is larger than {limit:,} bytes, the most this file may hold")
    return data


def json_depth(data: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (0 for a bare number or string).

    Examples
    --------
    >>> json_depth(b'{"a": [1, [2, "]]]"]]}'), json_depth(b"3")
    (3, 0)
    """
    brackets = _BRACKETS.sub(b"", _STRING.sub(b"", data))
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def loads_json(data: bytes, *, max_depth: int, where: str | os.PathLike[str]) -> Any:
    """Parse JSON text after checking that it nests at most `max_depth` deep.

    Parameters
    ----------
    data : bytes
        UTF-8 JSON text.
    max_depth : int
        The deepest nesting allowed (1: a flat object or list).
    where : str
        The file (and line) to name in a refusal.

    Raises
    ------
    UntrustedFileError
        If it nests deeper, is not UTF-8, or is not valid JSON.
    """
    # an upper bound first: most texts hold fewer brackets than the depth allowed, and need no scan
    if data.count(b"[") + data.count(b"{") > max_depth and json_depth(data) > max_depth:
        raise UntrustedFileError(where, f"JSON nested more than {max_depth} levels deep; this file holds at most "
                                        f"{max_depth}")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UntrustedFileError(where, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise UntrustedFileError(where, f"not valid JSON ({exc.msg})") from exc


def read_json(path: str | os.PathLike[str], *, limit: int, max_depth: int, follow_links: bool = False) -> Any:
    """A JSON file of at most `limit` bytes, nested at most `max_depth` deep.

    Raises
    ------
    UntrustedFileError
        If it is too large, too deep, not UTF-8 JSON, or not a regular file.
    OSError
        If it cannot be opened or read.
    """
    return loads_json(read_bytes(path, limit, follow_links=follow_links), max_depth=max_depth, where=path)


def iter_lines(f: IO[bytes], *, max_line: int, where: str | os.PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its end) of an open binary file, streamed, each at most `max_line` bytes.

    The last line is yielded even without a final newline.

    Raises
    ------
    UntrustedFileError
        Naming the line that is longer than `max_line`.
    """
    for number, line in enumerate(iter(lambda: f.readline(max_line + 2), b""), 1):
        if len(line) > max_line + 1 or (len(line) == max_line + 1 and not line.endswith(b"\n")):
            raise UntrustedFileError(where, f"line {number} is longer than {max_line:,} bytes, the most a line "
                                            "of this file may hold")
        yield number, line.rstrip(b"\r\n")


class NpyMember(NamedTuple):
    """One array of an npz file, as its header describes it (no data read).

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy.dtype
    nbytes : int
        The bytes of its data.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


class Npz:
    """An npz file opened for checked reading: its members' headers are read (and checked against
    the zip's declared sizes) when it is opened; an array's data only by `read`.

    Parameters
    ----------
    path : str or os.PathLike
    follow_links : bool
        Whether the file may be a symbolic link (a path the user gave).
    max_bytes : int
        The most data all members together may declare.

    Attributes
    ----------
    members : dict of str to NpyMember
        Every array by its name (the key given to numpy.savez).

    Raises
    ------
    UntrustedFileError
        If it is not a regular file, not a zip of .npy files, holds an array of Python objects,
        declares data that its header does not account for, or more than `max_bytes` in all.
    OSError
        If it cannot be opened.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(path, inputs=np.zeros((4, 3, 2)), lengths=np.arange(4))
    >>> with Npz(path, max_bytes=10**6) as data:
    ...     data.members["inputs"].shape, data.read("lengths", shape=(4,), kinds="iu").tolist()
    ((4, 3, 2), [0, 1, 2, 3])
    """

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int, follow_links: bool = False) -> None:
        self.path = os.fspath(path)
        self._file = open_regular(path, follow_links=follow_links)
        try:
            self._zip = zipfile.ZipFile(self._file)
            self.members = self._headers(max_bytes)
        except zipfile.BadZipFile as exc:
            self._file.close()
            raise UntrustedFileError(path, f"not an npz file ({exc})") from exc
        except BaseException:
            self._file.close()
            raise

    def _headers(self, max_bytes: int) -> dict[str, NpyMember]:
        infos = self._zip.infolist()
        if len(infos) > MAX_NPZ_MEMBERS:
            raise UntrustedFileError(self.path, f"holds {len(infos):,} arrays, more than {MAX_NPZ_MEMBERS:,}")
        members, total = {}, 0
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise UntrustedFileError(self.path, f"member {info.filename!r} is not a .npy array")
            name = info.filename[: -len(".npy")]
            with self._zip.open(info) as f:
                member, header_bytes = self._header(name, f)
            if info.file_size != header_bytes + member.nbytes:
                raise UntrustedFileError(self.path, f"array {name!r} declares {info.file_size:,} bytes, but its "
                                                    f"header ({member.shape}, {member.dtype}) accounts for "
                                                    f"{header_bytes + member.nbytes:,}")
            total += member.nbytes
            if total > max_bytes:
                raise UntrustedFileError(self.path, f"its arrays hold more than {max_bytes:,} bytes, the most "
                                                    "this file may hold")
            members[name] = member
        return members

    def _header(self, name: str, f: IO[bytes]) -> tuple[NpyMember, int]:
        try:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, fortran_order, dtype = read_header(f, max_header_size=MAX_NPY_HEADER)
        except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile) as exc:
            raise UntrustedFileError(self.path, f"array {name!r} has no valid .npy header ({exc})") from exc
        if dtype.hasobject:
            raise UntrustedFileError(self.path, f"array {name!r} holds Python objects ({dtype}); only arrays of "
                                                "numbers and text are read (no pickle)")
        if fortran_order:
            raise UntrustedFileError(self.path, f"array {name!r} is stored in Fortran order; expected C order")
        return NpyMember(tuple(shape), dtype, math.prod(shape) * dtype.itemsize), f.tell()

    def read(self, name: str, *, shape: tuple[int | None, ...] | None = None, kinds: str | None = None,
             dtype: np.dtype | None = None) -> NDArray[Any]:
        """The array `name`, after checking its header against what is expected.

        Parameters
        ----------
        name : str
        shape : tuple of int or None, optional
            The expected shape; None in a position allows any size there.
        kinds : str, optional
            The allowed dtype kinds (numpy's ``dtype.kind``), e.g. "f" for floats, "iu" for integers.
        dtype : numpy.dtype, optional
            The exact dtype expected.

        Raises
        ------
        UntrustedFileError
            Naming the array, what its header says and what was expected; or if its data is cut short.
        """
        if name not in self.members:
            raise UntrustedFileError(self.path, f"has no array {name!r}")
        member = self.members[name]
        check_member(self.path, name, member, shape=shape, kinds=kinds, dtype=dtype)
        try:
            with self._zip.open(f"{name}.npy") as f:
                return np.lib.format.read_array(f, allow_pickle=False, max_header_size=MAX_NPY_HEADER)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise UntrustedFileError(self.path, f"array {name!r} cannot be read ({exc})") from exc

    def read_rows(self, name: str, rows: int, *, shape: tuple[int | None, ...] | None = None,
                  kinds: str | None = None) -> Iterator[NDArray[Any]]:
        """The array `name` in pieces along its first axis, after the same checks as `read`: a caller
        that copies each piece elsewhere (e.g. turns it time-major) never holds the array twice.

        Parameters
        ----------
        name : str
        rows : int
            The most entries of the first axis a piece holds.
        shape, kinds
            As `read`.

        Yields
        ------
        ndarray
            Read-only pieces of shape (rows, ...) (the last one shorter), in order.

        Raises
        ------
        UntrustedFileError
            As `read`.
        """
        if name not in self.members:
            raise UntrustedFileError(self.path, f"has no array {name!r}")
        member = self.members[name]
        check_member(self.path, name, member, shape=shape, kinds=kinds)
        if not member.shape:
            raise UntrustedFileError(self.path, f"array {name!r} is a scalar; expected an array of rows")
        row_shape = member.shape[1:]
        row_bytes = math.prod(row_shape) * member.dtype.itemsize
        try:
            with self._zip.open(f"{name}.npy") as f:
                self._header(name, f)
                for start in range(0, member.shape[0], max(1, rows)):
                    count = min(max(1, rows), member.shape[0] - start)
                    data = f.read(count * row_bytes)
                    if len(data) != count * row_bytes:
                        missing = start + len(data) // max(1, row_bytes)
                        raise UntrustedFileError(self.path, f"array {name!r} is cut short: its row {missing} of "
                                                            f"{member.shape[0]} is missing")
                    yield np.frombuffer(data, member.dtype).reshape((count, *row_shape))
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            if isinstance(exc, UntrustedFileError):
                raise
            raise UntrustedFileError(self.path, f"array {name!r} cannot be read ({exc})") from exc

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def __enter__(self) -> "Npz":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_member(path: str, name: str, member: NpyMember, *, shape: tuple[int | None, ...] | None = None,
                 kinds: str | None = None, dtype: np.dtype | None = None) -> None:
    """Refuse an npz member whose header is not what is expected (see `Npz.read`)."""
    if shape is not None and (len(shape) != len(member.shape)
                              or any(s is not None and s != m for s, m in zip(shape, member.shape))):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise UntrustedFileError(path, f"array {name!r} has shape {member.shape}, expected {want}")
    if kinds is not None and member.dtype.kind not in kinds:
        raise UntrustedFileError(path, f"array {name!r} has dtype {member.dtype}, expected "
                                       f"{' or '.join(_KIND_NAMES.get(k, k) for k in kinds)}")
    if dtype is not None and member.dtype != np.dtype(dtype):
        raise UntrustedFileError(path, f"array {name!r} has dtype {member.dtype}, expected {np.dtype(dtype)}")


_KIND_NAMES = {"f": "floating point", "i": "signed integer", "u": "unsigned integer", "b": "boolean",
               "U": "text", "S": "bytes"}


def read_text_file(path: str | os.PathLike[str], limit: int, *, follow_links: bool = True) -> str:
    """A UTF-8 text file of at most `limit` bytes (a training text, a spec).

    Raises
    ------
    UntrustedFileError
        If it is not a regular file (e.g. /dev/zero, a FIFO), larger than `limit`, or not UTF-8.
    OSError
        If it cannot be opened or read.
    """
    data = read_bytes(path, limit, follow_links=follow_links)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UntrustedFileError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
