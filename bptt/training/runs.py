"""Read a training run folder back: config.json, metrics.jsonl (one JSON object per logged step),
summary.json and dh_norms.jsonl (one {"step", "dh_norms": [...]} per record of ||dL/dh_t||).

Only the reading lives here (numpy and json); the trainer writes these files and `bptt.plots` draws
them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

@dataclass
class Run:
    """A run folder's contents. metrics: one dict per logged step; dh_steps (R,), dh_norms (R, W):
    one row per record, W the longest window (shorter windows, e.g. a TBPTT run's last one, are
    padded with NaN at the start, so that the last column is always the window's last step)."""

    path: str
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    dh_steps: np.ndarray | None = None
    dh_norms: np.ndarray | None = None

    def column(self, key: str) -> np.ndarray | None:
        """One metric over the logged steps (NaN where a record lacks it or holds null), None if no
        record has it (e.g. eval_loss exists only on evaluation steps)."""
        if not any(key in m for m in self.metrics):
            return None
        return np.array([np.nan if m.get(key) is None else m[key] for m in self.metrics], float)

    @property
    def steps(self) -> np.ndarray:
        return np.array([m["step"] for m in self.metrics], int)

    @property
    def clipping(self) -> tuple[str, float | None]:
        """(mode, threshold) from config.json: ("norm", max norm), ("value", max |element|) or ("none", None)."""
        mode = self.config.get("clip", "none")
        if mode not in ("norm", "value"):
            return "none", None
        return mode, float(self.config["clip_threshold"]) if "clip_threshold" in self.config else None


def _read_jsonl(path: str) -> list:
    """The records of a JSON-lines log. A broken last line (a run killed mid-write) is dropped; a
    broken line before it is an error."""
    with open(path) as f:
        lines = [(number, line) for number, line in enumerate(f, 1) if line.strip()]
    records = []
    for i, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
    return records


def _read_json(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg})") from exc


def read_run(path) -> Run:
    """Read a run folder. metrics.jsonl is required; the other files are read when present."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"run folder {path!r} does not exist or is not a folder")
    metrics_path = os.path.join(path, "metrics.jsonl")
    if not os.path.exists(metrics_path):
        raise ValueError(f"{path!r} is not a run folder: it has no metrics.jsonl")
    metrics = _read_jsonl(metrics_path)
    if not metrics or not all(isinstance(m, dict) and "step" in m for m in metrics):
        raise ValueError(f"{metrics_path}: expected one JSON object with a 'step' per line")
    run = Run(path, _read_json(os.path.join(path, "config.json")), _read_json(os.path.join(path, "summary.json")),
              metrics)
    dh_path = os.path.join(path, "dh_norms.jsonl")
    if os.path.exists(dh_path):
        records = _read_jsonl(dh_path)
        if records:
            if not all(isinstance(r, dict) and "step" in r and isinstance(r.get("dh_norms"), list)
                       and r["dh_norms"] for r in records):
                raise ValueError(f"{dh_path}: expected one {{'step': int, 'dh_norms': [float, ...]}} per line")
            width = max(len(r["dh_norms"]) for r in records)
            run.dh_steps = np.array([r["step"] for r in records], int)
            run.dh_norms = np.full((len(records), width), np.nan)
            for row, r in zip(run.dh_norms, records):
                row[width - len(r["dh_norms"]):] = r["dh_norms"]
    return run
