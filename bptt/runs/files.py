"""The files of a run folder, their names, and the JSON files among them::

    config.json      every setting (a TrainConfig), indented JSON
    metrics.jsonl    one JSON object per update (see `bptt.runs.logs`)
    dh_norms.jsonl   every `record_every` updates, the norm of dL/dh_t per step of that update's window
    summary.json     the final held-out metrics next to the task's baseline
    checkpoint.npz   the training state (see `bptt.runs.checkpoint`)
    .lock            the one-writer lock (not part of the run: readers ignore it)

A number that is not finite is written as null.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write

CONFIG = "config.json"
METRICS = "metrics.jsonl"
DH_NORMS = "dh_norms.jsonl"
SUMMARY = "summary.json"
CHECKPOINT = "checkpoint.npz"
LOGS = (METRICS, DH_NORMS)
RUN_FILES = (CONFIG, METRICS, DH_NORMS, SUMMARY, CHECKPOINT)  # any one of them makes a folder a run
LOCK = ".lock"  # the one-writer lock, holding the writer's process id; not part of the run


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
