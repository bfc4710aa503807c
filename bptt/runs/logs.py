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

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .atomic import RunWriteError, atomic_write, writing
from .files import DH_NORMS, LOGS, METRICS, json_safe


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
            self._metrics = open(self._metrics_path, "a")
        try:
            with writing(self._dh_norms_path):
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


