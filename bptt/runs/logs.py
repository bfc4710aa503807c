"""The logs of a run folder, metrics.jsonl and dh_norms.jsonl: written one flushed line at a time,
read back under one policy::

    metrics.jsonl    one JSON object per update: step, loss, grad_norm (before clipping), clipped,
                     lr, elapsed (seconds); eval_* keys on evaluation steps; skipped on skipped steps
    dh_norms.jsonl   every `record_every` updates: {"step", "dh_norms": norm of dL/dh_t per step of
                     that update's window}

Reading, one policy for every reader (the trainer resuming, `read_run`, `bptt plot`): a broken last
line, which is what a kill in the middle of a write leaves, is dropped; a broken line before it is a
ValueError naming the file and the line. Resuming truncates both logs to the checkpoint's step, so
the steps replayed after it are logged once.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple, Sequence, cast

import numpy as np
from numpy.typing import ArrayLike

from ..core.untrusted import UntrustedFileError, json_depth, open_regular, open_writable
from .atomic import RunWriteError, atomic_write, writing
from .files import DH_NORMS, LOGS, METRICS, json_safe


MAX_LOG_LINE = 1 << 20  # bytes of one log line: a stacked run's dh_norms record of 8 layers x 2 x 4,000 steps fits
MAX_LOG_DEPTH = 4  # metrics records are flat objects; a stacked run's dh_norms nest four deep
MAX_STEP = 2**63 - 1  # a step must fit numpy's int64


_BLOCK = 1 << 20  # bytes read and parsed at a time


Line = tuple[int, Any, bytes]  # (line number, decoded value, the line's bytes)


class Block(NamedTuple):
    """Consecutive non-blank lines of a log, decoded: `numbers[i]` is the line number of `values[i]`,
    decoded from `lines[i]`."""

    numbers: Sequence[int]
    values: list[Any]
    lines: list[bytes]

    def at(self, i: int) -> Line:
        return self.numbers[i], self.values[i], self.lines[i]


def _blocks(path: str | os.PathLike[str]) -> Iterator[tuple[int, list[bytes]]]:
    """(number of the first line, lines without their ends) of a file, about _BLOCK bytes at a time;
    a line longer than MAX_LOG_LINE is refused. The file is opened as untrusted (no link, regular)."""
    try:
        f = open_regular(path)
    except OSError as exc:  # e.g. no permission: a run that cannot be read, like a broken line
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with f:
        number, rest = 1, b""
        while True:
            data = f.read(_BLOCK)
            lines = (rest + data).split(b"\n")
            rest = lines.pop() if data else b""  # a line still going on, unless the file has ended
            for i in ([i for i, line in enumerate(lines) if len(line) > MAX_LOG_LINE]
                      if lines and max(map(len, lines)) > MAX_LOG_LINE else []):
                raise UntrustedFileError(path, f"line {number + i} is longer than {MAX_LOG_LINE:,} bytes, the most "
                                               "a line of a log may hold")
            if len(rest) > MAX_LOG_LINE:
                raise UntrustedFileError(path, f"line {number + len(lines)} is longer than {MAX_LOG_LINE:,} bytes, "
                                               "the most a line of a log may hold")
            if lines:
                yield number, lines
                number += len(lines)
            if not data:
                return


def _flat_objects(lines: list[bytes]) -> list[Any] | None:
    """The values of `lines` parsed in one call, if each line is a flat JSON object (what metrics
    lines are); None if that cannot be told at once, and the lines are parsed one by one.

    Safe without a depth check: with no "[" at all, as many "{" as lines, and every line starting
    with one, each line holds exactly one "{", so nothing nests; a count that differs from the lines'
    (a line holding two values, or a string running over a line end) falls back too."""
    joined = b"\n".join(lines)
    if joined.count(b"[") or not joined.count(b"{") == joined.startswith(b"{") + joined.count(b"\n{") == len(lines):
        return None
    try:
        values = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:  # a broken line somewhere: found line by line
        return None
    return values if len(values) == len(lines) else None


def _decoded(path: str | os.PathLike[str]) -> Iterator[Block]:
    """Each block's non-blank lines decoded, under the one policy: a line that is not valid JSON is
    an error unless it is the last, which is dropped; a line nested deeper than MAX_LOG_DEPTH is an
    error wherever it is, refused before it is parsed."""
    torn: tuple[int, str] | None = None  # (line number, problem) of a line that is not valid JSON
    for first, lines in _blocks(path):
        values = _flat_objects(lines)
        if values is not None:
            if torn is not None:
                raise UntrustedFileError(f"{path}, line {torn[0]}", f"not valid JSON ({torn[1]})")
            yield Block(range(first, first + len(lines)), values, lines)
            continue
        block = Block([], [], [])
        for number, line in enumerate(lines, first):
            if not line.strip():
                continue
            if torn is not None:
                raise UntrustedFileError(f"{path}, line {torn[0]}", f"not valid JSON ({torn[1]})")
            # bracket count first: a line that cannot nest deeper than allowed needs no scan
            if line.count(b"[") + line.count(b"{") > MAX_LOG_DEPTH and json_depth(line) > MAX_LOG_DEPTH:
                raise UntrustedFileError(f"{path}, line {number}", f"JSON nested more than {MAX_LOG_DEPTH} levels "
                                                                  "deep; a log line holds at most that")
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                torn = (number, exc.msg)
            except ValueError as exc:  # not UTF-8, or an integer of thousands of digits
                torn = (number, str(exc))
            else:
                cast(list[int], block.numbers).append(number)
                block.values.append(value)
                block.lines.append(line)
        if block.values:
            yield block


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """The records of a JSON-lines log, whatever they hold.

    A broken last line (a run killed mid-write) is dropped; a broken line before it is an error.
    Blank lines are skipped. The file is read as untrusted input: not through a link, each line at
    most MAX_LOG_LINE bytes and MAX_LOG_DEPTH deep. `record_blocks` streams the records and checks them.

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
        Naming the path and the line number of a broken line that is not the last, or of a line
        beyond the bounds; or if the file cannot be read, is a link or is not a regular file.
    """
    return [value for block in _decoded(path) for value in block.values]


def record_blocks(path: str | os.PathLike[str]) -> Iterator[Block]:
    """The records of a log, streamed a block at a time and checked: each block a `Block` of line numbers,
    records and the lines' bytes.

    Every record must be a JSON object with an integer "step" in [0, MAX_STEP]; the reading policy
    and bounds are those of `read_jsonl`. A missing log has no records.

    Parameters
    ----------
    path : str or os.PathLike

    Raises
    ------
    ValueError
        As `read_jsonl`, or naming the line of a record without an integer step.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
    >>> with open(path, "w") as f:
    ...     _ = f.write('{"step": 1, "loss": 0.5}\\n\\n{"step": 2, "loss": 0.4}\\n{"step": 3, "lo')
    >>> [(list(block.numbers), [record["step"] for record in block.values]) for block in record_blocks(path)]
    [([1, 3], [1, 2])]
    """
    if not os.path.lexists(path):
        return
    for block in _decoded(path):
        records = block.values
        # type() is: a step is an int, not a bool or a float such as 1e300 (a C loop over the block)
        steps: list[Any] = list(map(dict.get, records, itertools.repeat("step"))) if set(map(type, records)) <= {dict} \
            else [r.get("step") if type(r) is dict else None for r in records]
        if not set(map(type, steps)) <= {int} or (steps and not 0 <= min(steps) <= max(steps) <= MAX_STEP):
            i = next(i for i, step in enumerate(steps) if type(step) is not int or not 0 <= step <= MAX_STEP)
            number, record, _ = block.at(i)
            got = f"got {record!r:.60}" if not isinstance(record, dict) else f"its step is {record.get('step')!r:.40}"
            raise UntrustedFileError(f"{path}, line {number}", "expected a JSON object with an integer 'step' "
                                                               f"in [0, 2**63); {got}")
        yield block


def iter_records(path: str | os.PathLike[str]) -> Iterator[Line]:
    """The records of a log one by one, as `record_blocks` checks them: (line number, record, line)."""
    for block in record_blocks(path):
        yield from zip(block.numbers, block.values, block.lines)


def _open_log(path: Path) -> IO[str]:
    """A log open for appending text, never through a link or into a file with another name."""
    return os.fdopen(open_writable(path, append=True), "a", encoding="utf-8")


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
        with writing(self._metrics_path):
            self._metrics = _open_log(self._metrics_path)
        try:
            with writing(self._dh_norms_path):
                self._dh_norms = _open_log(self._dh_norms_path)
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
        with writing(self._metrics_path):
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
        with writing(self._dh_norms_path):
            self._dh_norms.write(line)
            self._dh_norms.flush()

    def close(self) -> None:
        """Close both files (both are closed even if the first fails to flush)."""
        try:
            with writing(self._metrics_path):
                self._metrics.close()
        finally:
            with writing(self._dh_norms_path):
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

    Both logs are checked whole (`record_blocks`) before either is rewritten (atomically, line by
    line as it was written), so a broken log changes nothing; neither is held in memory.

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
    for name in LOGS:
        for _ in record_blocks(folder / name):
            pass

    def kept(path: Path, f: IO[bytes]) -> None:
        for block in record_blocks(path):
            f.writelines(line + b"\n" for record, line in zip(block.values, block.lines) if record["step"] <= last_step)

    for name in LOGS:
        atomic_write(folder / name, functools.partial(kept, folder / name))
