"""Reading a run folder back for figures and analysis: its settings, summary and logs as arrays
(`read_run`), no model.

The logs are streamed into columns, never held as records, so a long run's logs cost about eight
bytes per number kept: at most MAX_METRIC_COLUMNS columns of metrics, and at most MAX_DH_VALUES numbers
of dh_norms (a longer log is thinned to evenly spaced records, its last always kept). Everything read
is checked first (`bptt.runs.files`, `bptt.runs.logs`): a folder from someone else gives a ValueError
naming the file, the line and what is wrong, never an exception from deep inside numpy.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.types import Array, IntArray
from ..core.untrusted import UntrustedFileError
from .files import CONFIG, DH_NORMS, METRICS, check_number, read_object, read_summary
from .folder import existing_folder
from .logs import iter_records, record_blocks

MAX_METRIC_COLUMNS = 32  # distinct keys in metrics.jsonl: bptt writes ten at most; each costs 8 bytes a record
MAX_DH_VALUES = 1 << 24  # numbers of dh_norms.jsonl kept (128 MiB); a longer log is thinned, evenly
CONFIG_TYPES: dict[str, tuple[type, ...]] = {  # the settings read_run's users look at, and what each must be
    "task": (str,), "cell": (str,), "clip": (str,), "clip_threshold": (int, float), "seq_len": (int,),
    "hidden": (int,), "layers": (int,), "bidirectional": (bool,), "k1": (int, type(None)),
}


@dataclass
class Run:
    """A run folder's logs and settings, as `read_run` returns them (numbers only, no model).

    Attributes
    ----------
    path : str
        The folder.
    config : dict
        config.json as written ({} if absent); the entries in CONFIG_TYPES are checked.
    summary : dict
        summary.json ({} if absent, e.g. a run still going), checked by `read_summary`.
    steps : ndarray of int, shape (S,)
        The step of each metrics record, in the order logged.
    columns : dict of str to ndarray, each shape (S,)
        Every other key of metrics.jsonl as floats: NaN where a record lacks it or holds null,
        1.0 and 0.0 for true and false (e.g. "clipped").
    dh_steps : ndarray, shape (R,), or None
        The step of each dh_norms record kept.
    dh_norms : ndarray, shape (R, W), or None
        One row per record, W the longest window; shorter windows (e.g. a TBPTT run's last one) are
        padded with NaN at the start, so that the last column is always the window's last step. For a
        stacked run, the top layer's forward direction.
    dh_layers : ndarray, shape (R, L, directions, W), or None
        A stacked run's records, every layer and direction (padded like dh_norms); None for a cell.

    Examples
    --------
    >>> import tempfile, pathlib, bptt
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> _ = bptt.train(bptt.TrainConfig(task="adding", steps=4, seq_len=6, hidden=4, eval_every=2,
    ...                                 record_every=2, out=str(folder)))
    >>> run = read_run(folder)
    >>> run.steps.tolist(), run.column("eval_loss").shape, run.dh_norms.shape
    ([1, 2, 3, 4], (4,), (2, 6))
    """

    path: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    steps: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    columns: dict[str, Array] = field(default_factory=dict)
    dh_steps: IntArray | None = None
    dh_norms: Array | None = None
    dh_layers: Array | None = None

    def column(self, key: str) -> Array | None:
        """One metric over the logged steps, shape (S,) (NaN where a record lacks it or holds null),
        None if no record has it (e.g. eval_loss exists only on evaluation steps)."""
        return self.columns.get(key)

    @property
    def clipping(self) -> tuple[str, float | None]:
        """(mode, threshold) from config.json: ("norm", max norm), ("value", max ``|element|``) or ("none", None)."""
        mode = self.config.get("clip", "none")
        if mode not in ("norm", "value"):
            return "none", None
        return mode, float(self.config["clip_threshold"]) if "clip_threshold" in self.config else None


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a run folder's logs and settings back, checking everything read.

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
        Naming the file (and line): the folder or metrics.jsonl is missing; a file is a link, not a
        regular file, beyond its bounds or not valid JSON (a log's broken last line aside); a record
        or setting is not what its file promises.
    """
    path = os.fspath(path)
    folder = existing_folder(path)
    metrics_path = folder / METRICS
    if not os.path.lexists(metrics_path):
        raise ValueError(f"{path!r} is not a run folder: it has no {METRICS}")
    config = read_object(folder / CONFIG, "settings") if os.path.lexists(folder / CONFIG) else {}
    for key, types in CONFIG_TYPES.items():
        value = config.get(key)
        if key in config and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
            raise UntrustedFileError(folder / CONFIG, f"{key!r} is {value!r:.40}, not a setting bptt writes")
    if "clip_threshold" in config and not math.isfinite(check_number(config["clip_threshold"], folder / CONFIG,
                                                                     "clip_threshold", null=False)):
        raise UntrustedFileError(folder / CONFIG, "'clip_threshold' is not finite")
    steps, columns = _metric_columns(metrics_path)
    if not len(steps):
        raise ValueError(f"{metrics_path}: expected one JSON object with a 'step' per line; it holds none")
    run = Run(path, config, read_summary(folder), steps, columns)
    run.dh_steps, dh = _dh_rows(folder / DH_NORMS)
    if dh is not None:
        if dh.ndim == 4:
            run.dh_layers, run.dh_norms = dh, dh[:, -1, 0]
        else:
            run.dh_norms = dh
    return run


_NUMBER_TYPES = frozenset({float, int, bool, type(None)})  # what a metric may be: a number, true/false or null


def _metric_columns(path: Path) -> tuple[IntArray, dict[str, Array]]:
    """metrics.jsonl streamed into a step array and one float column per key, a block at a time."""
    steps = array("q")
    columns: dict[str, array[float]] = {}
    for block in record_blocks(path):
        records = block.values
        rows = len(steps)
        steps.extend(map(operator.itemgetter("step"), records))
        keys = set().union(*records) - {"step"}
        if keys - columns.keys():  # new columns, in the order they first appear
            for number, record in zip(block.numbers, records):
                for key in record:
                    if key in keys and key not in columns:
                        if len(columns) == MAX_METRIC_COLUMNS:
                            raise UntrustedFileError(f"{path}, line {number}", f"a key {key!r:.40} beyond the "
                                                                              f"{MAX_METRIC_COLUMNS} a metrics log "
                                                                              "may hold")
                        columns[key] = array("d", itertools.repeat(math.nan, rows))
        for key in keys:
            values = list(map(dict.get, records, itertools.repeat(key)))  # None where a record lacks it
            column = columns[key]
            try:
                if not set(map(type, values)) <= _NUMBER_TYPES:
                    raise TypeError
                column.frombytes(np.array(values, dtype=float).tobytes())  # null -> NaN, true -> 1.0
            except (TypeError, OverflowError):  # found again value by value, to name the line
                for number, value in zip(block.numbers, values):
                    if not isinstance(value, bool):
                        check_number(value, f"{path}, line {number}", key)
                raise
        for column in columns.values():  # keys this block lacked
            column.extend(itertools.repeat(math.nan, len(steps) - len(column)))
    return np.frombuffer(steps, np.int64) if steps else np.zeros(0, np.int64), {
        key: np.frombuffer(column, np.float64) for key, column in columns.items()}


def _thinned(kept: list[tuple[int, int, Array]], stride: int, row: int, extra: int = 0
             ) -> tuple[int, list[tuple[int, int, Array]]]:
    """Every other record of `kept` dropped (the stride doubled) until they and `extra` more, padded
    to `row` numbers each, hold at most MAX_DH_VALUES; at least one of them stays."""
    while len(kept) > 1 and (len(kept) + extra) * row > MAX_DH_VALUES:
        stride *= 2  # still evenly spaced: the records whose index is a multiple of the new stride
        kept = [k for k in kept if k[0] % stride == 0]
    return stride, kept


def _dh_rows(path: Path) -> tuple[IntArray | None, Array | None]:
    """dh_norms.jsonl streamed into (steps, rows padded at the start with NaN), thinned to at most
    MAX_DH_VALUES numbers: every `stride`-th record and the last."""
    kept: list[tuple[int, int, Array]] = []  # (index among the records, step, values)
    last: tuple[int, int, Array] | None = None
    stride, width, shape = 1, 0, None
    for index, (number, record, _) in enumerate(iter_records(path)):
        where = f"{path}, line {number}"
        values = record.get("dh_norms")
        if not isinstance(values, list) or not values:
            raise UntrustedFileError(where, "expected {'step': int, 'dh_norms': [float, ...]}")
        try:
            values = np.array(values, dtype=float)  # null -> nan
        except (ValueError, TypeError, OverflowError):
            raise UntrustedFileError(where, "every record's dh_norms must be a list of numbers (a cell) or of "
                                            "layers of directions of numbers (a stack), all of one length") from None
        if values.ndim not in (1, 3) or values.shape[-1] == 0 or (values.ndim == 3 and values.shape[1] not in (1, 2)):
            raise UntrustedFileError(where, "every record's dh_norms must be a list of numbers (a cell) or of "
                                            f"layers of directions of numbers (a stack); got shape {values.shape}")
        if shape is None:
            shape = values.shape[:-1]
        elif values.shape[:-1] != shape:
            raise UntrustedFileError(where, f"dh_norms of shape {values.shape}; the first record's was "
                                            f"{shape + ('W',)}")
        last = (index, record["step"], values)
        if index % stride:
            continue
        kept.append(last)
        width = max(width, values.shape[-1])
        stride, kept = _thinned(kept, stride, math.prod(shape) * width)
    if last is None:
        return None, None
    if kept[-1][0] != last[0]:  # the last record is always there (dh_layers shows it)
        width = max(width, last[2].shape[-1])
        stride, kept = _thinned(kept, stride, math.prod(shape or ()) * width, extra=1)
        kept.append(last)
    width = max(v.shape[-1] for _, _, v in kept)
    padded = np.full((len(kept),) + kept[0][2].shape[:-1] + (width,), np.nan)
    for row, (_, _, values) in zip(padded, kept):
        row[..., width - values.shape[-1]:] = values
    return np.array([step for _, step, _ in kept], np.int64), padded
