"""DIR/record.jsonl: one line per run a sweep finished, appended as it finishes.

A line is a JSON object ``{"run": NAME, "status": "done" | "failed", "error": TEXT | null,
"workers": [NAME, ...]}``. Appending one costs the same at any grid size (results.csv and
summary.md are written once, when the sweep ends or is interrupted). The run folders stay the truth
of what is done (summary.json); the record keeps what they cannot: which workers ran each run and
why a run failed. The next sweep into DIR reads it back, as it may come from someone else: lines of
at most `MAX_LINE` bytes, JSON at most 3 deep, values of the expected types; other lines are
skipped. When the sweep ends, the record is rewritten with the latest line of each run (and only if
that changes it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..core.untrusted import UntrustedFileError, iter_lines, loads_json, open_regular
from ..runs.atomic import RunWriteError, atomic_write

RECORD = "record.jsonl"
MAX_LINE = 1 << 16  # bytes: a run's name, an error message and its workers
MAX_ERROR = 4000  # characters of an error kept in the record and results.csv
MAX_WORKERS = 100  # worker names kept per run


@dataclass
class RunOutcome:
    """How a run of a sweep ended, or stands.

    Attributes
    ----------
    index : int
        The grid point's place in the spec's order.
    name : str
        Its folder name.
    status : str
        "done" or "failed" (a run without an outcome is pending).
    error : str or None
        Why it failed.
    summary : dict
        For a done run, the numbers of its summary.json that the results show.
    workers : list of str
        The workers that ran its chunks, in order.
    """

    index: int
    name: str
    status: str
    error: str | None = None
    summary: dict = field(default_factory=dict)
    workers: list = field(default_factory=list)


def _line(outcome: RunOutcome) -> bytes:
    error = None if outcome.error is None else outcome.error[:MAX_ERROR]
    entry = {"run": outcome.name, "status": outcome.status, "error": error,
             "workers": [str(w) for w in outcome.workers[:MAX_WORKERS]]}
    return (json.dumps(entry, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")


class Record:
    """DIR/record.jsonl open for appending, by the process holding the sweep's lock.

    Parameters
    ----------
    out : str or os.PathLike
        DIR.

    Raises
    ------
    RunWriteError
        If the file cannot be opened (or is a link, or not a regular file).
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.path = Path(out) / RECORD
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as exc:
            raise RunWriteError(exc.errno, exc.strerror or str(exc), os.fspath(self.path)) from exc
        self._file: IO[bytes] | None = os.fdopen(fd, "ab", buffering=0)

    def add(self, outcome: RunOutcome) -> None:
        """Append `outcome`'s line (one write; the file's length grows by that line only).

        Raises
        ------
        RunWriteError
            Naming the record, e.g. on a full disk.
        """
        if self._file is None:
            raise ValueError(f"{self.path} is closed")
        try:
            self._file.write(_line(outcome))
        except OSError as exc:
            raise RunWriteError(exc.errno, exc.strerror or str(exc), os.fspath(self.path)) from exc

    def close(self) -> None:
        """Close the file (nothing if closed)."""
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError:
                pass


def read_record(out: str | os.PathLike) -> dict:
    """The latest line of each run in DIR/record.jsonl; {} without a readable record.

    Parameters
    ----------
    out : str or os.PathLike
        DIR.

    Returns
    -------
    dict
        Run name -> {"status": str, "error": str or None, "workers": list of str}. Lines that are not
        such an object (too deep, other types, not JSON, not UTF-8) are skipped; a line longer than
        `MAX_LINE` ends the reading there.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> record = Record(out)
    >>> record.add(RunOutcome(0, "seed=0", "failed", "TrainingStopped: step 3", workers=["local-1"]))
    >>> record.add(RunOutcome(0, "seed=0", "done", workers=["local-2"]))
    >>> record.close()
    >>> with (out / RECORD).open("ab") as f:
    ...     _ = f.write(b'[[[[[[]]]]]]\\n{"run": 5}\\n\\xff\\n')
    >>> read_record(out)
    {'seed=0': {'status': 'done', 'error': None, 'workers': ['local-2']}}
    """
    path = Path(out) / RECORD
    found: dict = {}
    try:
        with open_regular(path) as f:
            for _, raw in iter_lines(f, max_line=MAX_LINE, where=path):
                try:
                    entry = loads_json(raw, max_depth=3, where=path)
                except (ValueError, UnicodeDecodeError):
                    continue
                if _valid(entry):
                    found[entry["run"]] = {"status": entry["status"], "error": entry["error"],
                                           "workers": list(entry["workers"])}
    except (OSError, UntrustedFileError, UnicodeDecodeError):
        return found
    return found


def _valid(entry: object) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("run"), str) and entry.get("status") in ("done", "failed")
            and (entry.get("error") is None or isinstance(entry.get("error"), str))
            and isinstance(entry.get("workers"), list) and all(isinstance(w, str) for w in entry["workers"]))


def rewrite_record(out: str | os.PathLike, outcomes: Iterable[RunOutcome]) -> None:
    """Rewrite DIR/record.jsonl with one line per run, the `outcomes` in order (the lines of runs
    that have none now are dropped), only if that changes the file.

    Raises
    ------
    RunWriteError
        Naming the record.
    """
    path = Path(out) / RECORD
    data = b"".join(_line(outcome) for outcome in outcomes)
    try:
        with open_regular(path) as f:
            if f.read(len(data) + 1) == data:
                return
    except (OSError, UntrustedFileError):
        pass
    atomic_write(path, lambda f: f.write(data))
