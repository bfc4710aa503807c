"""Reading a run folder back for figures and analysis: its settings, summary and logs as arrays
(`read_run`), no model."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.types import Array, IntArray
from .files import CONFIG, DH_NORMS, METRICS, SUMMARY, read_json
from .folder import existing_folder
from .logs import read_jsonl


@dataclass
class Run:
    """A run folder's logs and settings, as `read_run` returns them (numbers only, no model).

    Attributes
    ----------
    path : str
        The folder.
    config : dict
        config.json as written ({} if absent).
    summary : dict
        summary.json ({} if absent, e.g. a run still going).
    metrics : list of dict
        One record per logged step.
    dh_steps : ndarray, shape (R,), or None
        The step of each dh_norms record.
    dh_norms : ndarray, shape (R, W), or None
        One row per record, W the longest window; shorter windows (e.g. a TBPTT run's last one) are
        padded with NaN at the start, so that the last column is always the window's last step. For a
        stacked run, the top layer's forward direction.
    dh_layers : ndarray, shape (R, L, directions, W), or None
        A stacked run's records, every layer and direction (padded like dh_norms); None for a cell.
    """

    path: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    dh_steps: IntArray | None = None
    dh_norms: Array | None = None
    dh_layers: Array | None = None

    def column(self, key: str) -> Array | None:
        """One metric over the logged steps (NaN where a record lacks it or holds null), None if no
        record has it (e.g. eval_loss exists only on evaluation steps)."""
        if not any(key in m for m in self.metrics):
            return None
        return np.array([np.nan if m.get(key) is None else m[key] for m in self.metrics], float)

    @property
    def steps(self) -> IntArray:
        """(S,) the step of each metrics record."""
        return np.array([m["step"] for m in self.metrics], int)

    @property
    def clipping(self) -> tuple[str, float | None]:
        """(mode, threshold) from config.json: ("norm", max norm), ("value", max ``|element|``) or ("none", None)."""
        mode = self.config.get("clip", "none")
        if mode not in ("norm", "value"):
            return "none", None
        return mode, float(self.config["clip_threshold"]) if "clip_threshold" in self.config else None


def read_run(path: str | os.PathLike[str]) -> Run:
    """Read a run folder's logs and settings back.

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
        If the folder or metrics.jsonl is missing, a file is not valid JSON (a log's broken last
        line aside), or a record lacks what its log promises.
    """
    path = os.fspath(path)
    folder = existing_folder(path)
    metrics_path = folder / METRICS
    if not metrics_path.exists():
        raise ValueError(f"{path!r} is not a run folder: it has no {METRICS}")
    metrics = read_jsonl(metrics_path)
    if not metrics or not all(isinstance(m, dict) and "step" in m for m in metrics):
        raise ValueError(f"{metrics_path}: expected one JSON object with a 'step' per line")
    config = read_json(folder / CONFIG) if (folder / CONFIG).exists() else {}
    summary = read_json(folder / SUMMARY) if (folder / SUMMARY).exists() else {}
    run = Run(path, config, summary, metrics)
    dh_path = folder / DH_NORMS
    records = read_jsonl(dh_path) if dh_path.exists() else []
    if records:
        if not all(isinstance(r, dict) and "step" in r and isinstance(r.get("dh_norms"), list) and r["dh_norms"]
                   for r in records):
            raise ValueError(f"{dh_path}: expected one {{'step': int, 'dh_norms': [float, ...]}} per line")
        values = [np.array(r["dh_norms"], dtype=float) for r in records]  # null -> nan
        if len({v.ndim for v in values}) != 1 or values[0].ndim not in (1, 3):
            raise ValueError(f"{dh_path}: every record's dh_norms must be a list of numbers (a cell) "
                             "or of layers of directions of numbers (a stack)")
        width = max(v.shape[-1] for v in values)
        run.dh_steps = np.array([r["step"] for r in records], int)
        padded = np.full((len(values),) + values[0].shape[:-1] + (width,), np.nan)
        for row, v in zip(padded, values):
            row[..., width - v.shape[-1]:] = v
        if padded.ndim == 4:
            run.dh_layers, run.dh_norms = padded, padded[:, -1, 0]
        else:
            run.dh_norms = padded
    return run
