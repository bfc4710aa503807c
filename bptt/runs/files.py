"""The files of a run folder, their names, and the JSON files among them::

    config.json      every setting (a TrainConfig), indented JSON
    metrics.jsonl    one JSON object per update (see `bptt.runs.logs`)
    dh_norms.jsonl   every `record_every` updates, the norm of dL/dh_t per step of that update's window
    summary.json     the final held-out metrics next to the task's baseline
    checkpoint.npz   the training state (see `bptt.runs.checkpoint`)
    .lock            the one-writer lock (not part of the run: readers ignore it)

A number that is not finite is written as null.

A run folder may come from someone else, so its readers trust nothing in it: every file is opened
without following a link and must be a regular file (`bptt.core.untrusted`), and the JSON files are
read with the bounds below, checked for their types before use.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..core.untrusted import UntrustedFileError, read_json as read_untrusted_json
from .atomic import atomic_write

CONFIG = "config.json"
METRICS = "metrics.jsonl"
DH_NORMS = "dh_norms.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.npz"
LOGS = (METRICS, DH_NORMS)
RUN_FILES = (CONFIG, METRICS, DH_NORMS, SUMMARY, CHECKPOINT)  # any one of them makes a folder a run
LOCK = ".lock"  # the one-writer lock, holding the writer's process id; not part of the run

MAX_JSON_BYTES = 1 << 20  # config.json or summary.json: bptt writes about 1 KiB; 1 MiB is room for any setting
MAX_JSON_DEPTH = 8  # both are flat objects (depth 1); deeper nesting is refused before it is parsed
MAX_JSON_KEYS = 1000  # settings or summary entries (bptt writes about 40 and 15)


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


def write_json(path: Path, value: object) -> None:
    """Write `value` (atomically) as indented JSON, non-finite numbers as null, paths as strings."""
    text = json.dumps(json_safe(value), indent=2, default=os.fspath) + "\n"
    atomic_write(path, lambda f: f.write(text.encode()))


def read_json(path: str | os.PathLike[str]) -> Any:
    """The JSON value in a file of a run folder, read as untrusted input.

    Parameters
    ----------
    path : str or os.PathLike
        E.g. RUN_DIR/config.json.

    Returns
    -------
    The decoded value.

    Raises
    ------
    ValueError
        Naming the file: it cannot be read, is a link or not a regular file, holds more than
        MAX_JSON_BYTES, nests deeper than MAX_JSON_DEPTH, or is not UTF-8 JSON.
    """
    try:
        return read_untrusted_json(path, limit=MAX_JSON_BYTES, max_depth=MAX_JSON_DEPTH)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_object(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """A JSON object of a run folder (`read_json`), checked to be one of at most MAX_JSON_KEYS entries.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        What the object holds, for a refusal ("settings", "results").

    Raises
    ------
    ValueError
        As `read_json`, or naming the file if it holds something other than such an object.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "summary.json")
    >>> with open(path, "w") as f:
    ...     _ = f.write("[1, 2]")
    >>> try:
    ...     read_object(path, "results")
    ... except ValueError as exc:
    ...     print(str(exc).replace(path, "summary.json"))
    summary.json: expected a JSON object of results, got a list
    """
    value = read_json(path)
    if not isinstance(value, dict):
        raise UntrustedFileError(path, f"expected a JSON object of {what}, got {_a(value)}")
    if len(value) > MAX_JSON_KEYS:
        raise UntrustedFileError(path, f"holds {len(value):,} {what}, more than {MAX_JSON_KEYS:,}")
    return value


def _a(value: object) -> str:
    """'a list', 'a string', ...: the JSON type of `value`, for a message."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false", int: "an integer",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_number(value: object, where: str | os.PathLike[str], key: str, *, null: bool = True) -> float:
    """`value` as a float, if it is a JSON number (or null, read as NaN, when `null`).

    Raises
    ------
    ValueError
        Naming `where` and `key` if it is anything else (a string, a list, true or false).

    Examples
    --------
    >>> check_number(0.5, "metrics.jsonl, line 3", "loss"), check_number(None, "metrics.jsonl, line 3", "loss")
    (0.5, nan)
    >>> check_number("low", "metrics.jsonl, line 3", "loss")
    Traceback (most recent call last):
    ...
    bptt.core.untrusted.UntrustedFileError: metrics.jsonl, line 3: 'loss' is a string, expected a number or null
    """
    if value is None and null:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UntrustedFileError(where, f"{key!r} is {_a(value)}, expected a number" + (" or null" if null else ""))
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float
        raise UntrustedFileError(where, f"{key!r} is an integer too large for a number") from None


SUMMARY_COUNTS = ("steps", "clipped_steps", "skipped_steps")  # non-negative integers in summary.json
SUMMARY_TEXT = ("task", "cell")


def read_summary(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """summary.json of a run folder, checked: {} if the run has none (yet).

    Results (eval_*, baseline_*, wall_seconds) must be numbers or null, counts non-negative
    integers, task and cell strings; other entries are not looked at. Values are returned as the
    file holds them.

    Raises
    ------
    ValueError
        Naming summary.json and the entry that is wrong, or as `read_object`.

    Examples
    --------
    >>> import tempfile, os, json
    >>> folder = tempfile.mkdtemp()
    >>> read_summary(folder)
    {}
    >>> with open(os.path.join(folder, "summary.json"), "w") as f:
    ...     json.dump({"steps": 10, "eval_loss": None, "baseline_loss": 0.69}, f)
    >>> read_summary(folder)["baseline_loss"]
    0.69
    """
    path = Path(run_dir) / SUMMARY
    if not os.path.lexists(path):
        return {}
    summary = read_object(path, "results")
    for key, value in summary.items():
        if key.startswith(("eval_", "baseline_")) or key == "wall_seconds":
            check_number(value, path, key)
        elif key in SUMMARY_COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise UntrustedFileError(path, f"{key!r} is {value!r:.40}, expected a non-negative integer")
        elif key in SUMMARY_TEXT and not isinstance(value, str):
            raise UntrustedFileError(path, f"{key!r} is {_a(value)}, expected a string")
    return summary


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
    write_json(Path(run_dir) / SUMMARY, summary)
    return summary
