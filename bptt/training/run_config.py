"""A run's settings in its folder: config.json written from a TrainConfig and loaded back checked,
and the fingerprint of settings and data that a resumed run must find unchanged."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..runs.atomic import atomic_write, writing
from ..runs.files import CONFIG, LOGS, json_safe, read_json, write_json
from ..runs.folder import RunFolderError, existing_folder
from .config import TrainConfig

# settings a resume may change: steps extends the run, out follows a moved folder, text a moved file
# (the text's content is checked through its hash instead)
UNCHECKED_SETTINGS = ("steps", "out", "text")


class RunChangedError(RunFolderError):
    """A resume refused: config.json or the training text is not what the checkpoint was trained on.

    Parameters
    ----------
    path : str or os.PathLike
        The folder.
    changes : sequence of str
        One line per difference, naming the setting or the file.
    """

    def __init__(self, path: str | os.PathLike[str], changes: Iterable[str]) -> None:
        self.path, self.changes = os.fspath(path), tuple(changes)
        super().__init__(self.path, self.changes)

    def __str__(self) -> str:
        return (f"cannot resume {self.path}: it no longer matches its checkpoint: {'; '.join(self.changes)}. "
                "Put back what changed, or start a new run with the new settings or data")


def start_run_folder(run_dir: str | os.PathLike[str], config: TrainConfig) -> Path:
    """Create a run folder (and its parents) holding config.json and two empty logs.

    `train` calls it holding the folder's lock, after `claim_run_folder`.

    Parameters
    ----------
    run_dir : str or os.PathLike
    config : TrainConfig
        The run's settings, validated.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    RunWriteError
        If the folder or a file cannot be written.
    """
    folder = Path(run_dir)
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    write_config(folder, config)
    for name in LOGS:
        atomic_write(folder / name, lambda f: None)
    return folder


def write_config(run_dir: str | os.PathLike[str], config: TrainConfig) -> None:
    """Write config.json (atomically): every field of `config`, indented JSON.

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing folder.
    config : TrainConfig
    """
    write_json(Path(run_dir) / CONFIG, dataclasses.asdict(config))


def load_config(run_dir: str | os.PathLike[str]) -> TrainConfig:
    """The validated TrainConfig of a run folder's config.json.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    TrainConfig

    Raises
    ------
    ValueError
        If the folder or the file is missing, the file is not a JSON object of known settings, or a
        setting is outside what it allows (the message names config.json and the setting).
    """
    path = existing_folder(run_dir) / CONFIG
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object of settings, got {type(raw).__name__}")
    unknown = set(raw) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{path} has unknown settings {sorted(unknown)}")
    try:
        return TrainConfig(**raw).validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def run_fingerprint(config: TrainConfig, data: Mapping[str, Any]) -> dict[str, Any]:
    """What a resumed run must find as it was: its settings and its training data.

    Parameters
    ----------
    config : TrainConfig
        The run's settings; those in UNCHECKED_SETTINGS (steps, out, text) are left out.
    data : dict
        The task's `data_fingerprint`, e.g. {"text": path, "text_sha256": hex digest} for chars.

    Returns
    -------
    dict
        {"settings": {...}, "data": {...}}, as JSON holds it (non-finite numbers as None), so that a
        fingerprint read back from a checkpoint compares equal to a fresh one.
    """
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in UNCHECKED_SETTINGS}
    return json.loads(json.dumps(json_safe({"settings": settings, "data": dict(data)}), default=os.fspath))


def fingerprint_changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How `current` differs from `recorded`, one line per setting or file that changed.

    Only what both fingerprints hold is compared, so a setting added to TrainConfig later does not
    count as a change; the text's path is shown, its hash compared.

    Parameters
    ----------
    recorded : dict
        The checkpoint's fingerprint.
    current : dict
        `run_fingerprint` of config.json and the data as they are now.

    Returns
    -------
    list of str
        Empty if nothing changed.
    """
    changes = []
    old, new = recorded.get("settings", {}), current.get("settings", {})
    for key in old:
        if key in new and old[key] != new[key]:
            changes.append(f"{key} was {old[key]!r}, config.json now says {new[key]!r}")
    old, new = recorded.get("data", {}), current.get("data", {})
    if "text_sha256" in old and "text_sha256" in new and old["text_sha256"] != new["text_sha256"]:
        changes.append(f"the text file {new.get('text')!r} is not the text the run trained on (SHA-256 "
                       f"{old['text_sha256'][:12]}... then, {new['text_sha256'][:12]}... now)")
    return changes


