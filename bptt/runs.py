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

# Names a field may have in the files, first match wins.
GRAD_NORM_KEYS = ("grad_norm", "grad_norm_before_clip", "gradient_norm", "grad_norm_preclip", "norm")
CLIP_KEYS = ("clip", "clip_norm", "max_grad_norm", "clip_threshold", "grad_clip")


@dataclass
class Run:
    """A run folder's contents. metrics: one dict per logged step; dh_steps (R,), dh_norms (R, T)."""

    path: str
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)
    dh_steps: np.ndarray | None = None
    dh_norms: np.ndarray | None = None

    def column(self, *keys: str) -> np.ndarray | None:
        """One metric over the logged steps, under the first of `keys` the records use (None if absent)."""
        for key in keys:
            if self.metrics and all(key in m for m in self.metrics):
                return np.array([np.nan if m[key] is None else m[key] for m in self.metrics], float)
        return None

    @property
    def steps(self) -> np.ndarray:
        return np.array([m["step"] for m in self.metrics], int)

    @property
    def clip_threshold(self) -> float | None:
        """The clipping threshold from config.json (also looked for one level down), None if off."""
        for scope in (self.config, *[v for v in self.config.values() if isinstance(v, dict)]):
            for key in CLIP_KEYS:
                if key in scope:
                    value = scope[key]
                    return float(value) if value is not None and float(value) > 0 else None
        return None


def _read_jsonl(path: str) -> list:
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
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
            lengths = {len(r.get("dh_norms", ())) for r in records}
            if len(lengths) != 1 or 0 in lengths:
                raise ValueError(f"{dh_path}: every record needs a 'dh_norms' list of the same length, "
                                 f"got lengths {sorted(lengths)}")
            run.dh_steps = np.array([r["step"] for r in records], int)
            run.dh_norms = np.array([r["dh_norms"] for r in records], float)
    return run
