"""A run's settings in its folder: config.json written from a TrainConfig and loaded back checked,
and the fingerprint of settings and data that a resumed run must find unchanged."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..runs.atomic import atomic_write, writing
from ..core.untrusted import UntrustedFileError
from ..runs.files import CONFIG, LOGS, json_safe, read_object, write_json
from ..runs.folder import RunFolderError, existing_folder
from .config import TrainConfig

# settings a resume may change: steps extends the run, out follows a moved folder, text and data a moved
# file (the file's content is checked through its hash instead)
UNCHECKED_SETTINGS = ("steps", "out", "text", "data")


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
    """The validated TrainConfig of a run folder's config.json, read as untrusted input.

    The file is read within the bounds of `bptt.runs.files.read_json` (no link, at most
    MAX_JSON_BYTES, nested at most MAX_JSON_DEPTH deep), every setting is checked by
    `TrainConfig.validate`, and the sizes it asks for by `check_size`. A `cell` or `task` named
    MODULE:CLASS is imported to check it: a run folder is as trusted as the code it names.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    TrainConfig

    Raises
    ------
    ValueError
        If the folder or the file is missing, the file is not a JSON object of known settings, a
        setting is outside what it allows, or the run is larger than a reader may build (the message
        names config.json and the setting).
    """
    path = existing_folder(run_dir) / CONFIG
    if not os.path.lexists(path):
        raise ValueError(f"{run_dir} holds no run: it has no {CONFIG}")
    raw = read_object(path, "settings")
    unknown = set(raw) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{path} has unknown settings {sorted(unknown)}")
    try:
        config = TrainConfig(**raw).validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    check_size(config, path)
    return config


MAX_RUN_VALUES = 1 << 31  # numbers a run read back from a folder may ask for (16 GiB of float64): see check_size


def model_values(config: TrainConfig, input_size: int | None = None) -> int:
    """An upper estimate of the numbers that building `config`'s model and evaluating it on the
    held-out set hold: the weights (four gate blocks a layer and direction, at most) and, per step
    of a batch, each layer's gates and states, which the backward pass keeps.

    Parameters
    ----------
    config : TrainConfig
    input_size : int, optional
        The task's input size D (default: taken as large as the hidden size).

    Returns
    -------
    int

    Examples
    --------
    >>> model_values(TrainConfig(hidden=32, seq_len=30, eval_size=500)) < 10**7
    True
    """
    directions = 2 if config.bidirectional else 1
    width = config.hidden * directions
    inputs = max(input_size or 0, width)
    weights = config.layers * directions * 4 * config.hidden * (inputs + config.hidden + 2)
    steps = max(config.eval_size, config.batch_size) * config.seq_len
    return weights + steps * (inputs + config.layers * directions * 6 * config.hidden)


def check_size(config: TrainConfig, where: str | os.PathLike[str], input_size: int | None = None) -> None:
    """Refuse a config read from a folder whose model and held-out pass would hold more than
    MAX_RUN_VALUES numbers (`model_values`), before anything is built: a crafted config.json cannot
    make a reader allocate without bound.

    Raises
    ------
    ValueError
        Naming `where` and the sizes.

    Examples
    --------
    >>> check_size(TrainConfig(), "config.json")
    >>> check_size(TrainConfig(hidden=10**6), "config.json")
    Traceback (most recent call last):
    ...
    bptt.core.untrusted.UntrustedFileError: config.json: asks for about 8.1e+12 numbers (hidden 1000000, ...
    """
    values = model_values(config, input_size)
    if values > MAX_RUN_VALUES:
        raise UntrustedFileError(where, f"asks for about {values:.2g} numbers (hidden {config.hidden}, layers "
                                        f"{config.layers}, seq_len {config.seq_len}, eval_size {config.eval_size}, "
                                        f"batch_size {config.batch_size}"
                                        + (f", {input_size} inputs" if input_size else "")
                                        + f"), more than the {MAX_RUN_VALUES:,} a run read back may hold")


def run_fingerprint(config: TrainConfig, data: Mapping[str, Any]) -> dict[str, Any]:
    """What a resumed run must find as it was: its settings and its training data.

    Parameters
    ----------
    config : TrainConfig
        The run's settings; those in UNCHECKED_SETTINGS (steps, out, text, data) are left out.
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
    for file, what in (("text", "the text"), ("data", "the data")):  # chars' text file, the data task's .npz
        key = f"{file}_sha256"
        if key in old and key in new and old[key] != new[key]:
            changes.append(f"the {file} file {new.get(file)!r} is not {what} the run trained on (SHA-256 "
                           f"{old[key][:12]}... then, {new[key][:12]}... now)")
    return changes


