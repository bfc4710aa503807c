"""The checkpoint of a run folder, checkpoint.npz: the training state a run needs to continue
exactly where it stopped (`Checkpoint`), in one schema, loaded without pickle."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

from ..core.types import Array, Params, Parts
from .atomic import atomic_write
from .files import CHECKPOINT


@dataclass
class Checkpoint:
    """The training state in checkpoint.npz: what a run needs to continue exactly where it stopped.

    Each attribute is stored under the key(s) given after it; the schema is that of every checkpoint
    `bptt train` has written.

    Attributes
    ----------
    params : dict of str to ndarray
        The weights keyed like `model_params` ("cell.<name>", "readout.<name>"): param/<name>.
    optimizer : dict of str to ndarray
        `Optimizer.state_arrays()`, "<slot>/<name>" and "t": optim/<slot>/<name>, optim/t.
    step : int
        Updates done: step.
    window : int
        Index of the next window of the current batch, -1 between batches: window.
    elapsed : float
        Seconds of training so far: elapsed.
    skipped, clipped : int
        Updates skipped (non-finite) and clipped so far: skipped, clipped.
    rng_state : dict
        The data RNG's `bit_generator.state`, from before the current batch was drawn when
        window >= 0: rng_state (as JSON text).
    carry : tuple of ndarray, each (N, H)
        The state at the start of window `window` (h first, then c for an LSTM); empty for the zero
        state: carry/0, carry/1, ...
    last_eval : dict
        The latest held-out metrics: last_eval (as JSON text).
    vocab : str or None
        The chars task's vocabulary: vocab.
    fingerprint : dict or None
        What a resume must find unchanged (`run_fingerprint`): fingerprint (as JSON text). None in
        checkpoints written before it was recorded, which resume unchecked.
    model_rng_state : dict or None
        A Stack's dropout RNG `bit_generator.state`, so a resumed run draws the same masks:
        model_rng_state (as JSON text); None for a single cell.
    path : str or None
        Where it was read from; not stored.
    """

    params: Params
    optimizer: dict[str, NDArray[Any]]
    step: int
    window: int
    elapsed: float
    skipped: int
    clipped: int
    rng_state: Mapping[str, Any]
    carry: Parts = ()
    last_eval: dict[str, float] = field(default_factory=dict)
    vocab: str | None = None
    fingerprint: dict[str, Any] | None = None
    model_rng_state: Mapping[str, Any] | None = None
    path: str | None = None

    def load_params(self, params: Mapping[str, Array]) -> None:
        """Copy the saved weights into the live arrays `params` (keyed like `model_params`).

        Nothing is copied unless every name and shape matches.

        Raises
        ------
        ValueError
            Naming the checkpoint and the parameter that is missing, extra or of another shape.
        """
        where = f"checkpoint {self.path} does not match its config.json"
        if set(params) != set(self.params):
            raise ValueError(f"{where}: it holds parameters {sorted(self.params)}, the model has {sorted(params)}")
        for name, value in params.items():
            saved = self.params[name]
            if saved.shape != value.shape:
                raise ValueError(f"{where}: parameter {name} has shape {saved.shape}, config expects {value.shape}")
        for name, value in params.items():
            value[...] = self.params[name]


_REQUIRED = ("optim/t", "step", "window", "elapsed", "skipped", "clipped", "rng_state", "last_eval")


def write_checkpoint(run_dir: str | os.PathLike[str], checkpoint: Checkpoint) -> None:
    """Write checkpoint.npz (atomically) in the schema of `Checkpoint`.

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing folder.
    checkpoint : Checkpoint
        Its arrays are written as they are at the call (the live weights may be passed).
    """
    arrays: dict[str, NDArray[Any]] = {f"param/{k}": v for k, v in checkpoint.params.items()}
    arrays.update({f"optim/{k}": v for k, v in checkpoint.optimizer.items()})
    arrays["step"] = np.array(checkpoint.step)
    arrays["window"] = np.array(checkpoint.window)
    arrays["elapsed"] = np.array(checkpoint.elapsed)
    arrays["skipped"] = np.array(checkpoint.skipped)
    arrays["clipped"] = np.array(checkpoint.clipped)
    arrays["rng_state"] = np.array(json.dumps(checkpoint.rng_state))
    for i, part in enumerate(checkpoint.carry):
        arrays[f"carry/{i}"] = part
    arrays["last_eval"] = np.array(json.dumps(checkpoint.last_eval))
    if checkpoint.vocab is not None:
        arrays["vocab"] = np.array(checkpoint.vocab)
    if checkpoint.fingerprint is not None:
        arrays["fingerprint"] = np.array(json.dumps(checkpoint.fingerprint))
    if checkpoint.model_rng_state is not None:
        arrays["model_rng_state"] = np.array(json.dumps(checkpoint.model_rng_state))
    # the type checker matches **arrays against savez's allow_pickle too; no key here is "allow_pickle"
    atomic_write(Path(run_dir) / CHECKPOINT, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def read_checkpoint(run_dir: str | os.PathLike[str]) -> Checkpoint:
    """Read a run folder's checkpoint.npz.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    Checkpoint
        With `path` set to the file read.

    Raises
    ------
    ValueError
        If the file is missing, truncated or not an npz file ("cannot read checkpoint ..."), or lacks
        a key of the schema.
    """
    path = Path(run_dir) / CHECKPOINT
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:  # closed even if np.load fails
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # a missing, truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    missing = [key for key in _REQUIRED if key not in arrays]
    if not any(k.startswith("param/") for k in arrays):
        missing.insert(0, "param/<name>")
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: it is not a checkpoint of bptt train")
    carry = [f"carry/{i}" for i in range(sum(k.startswith("carry/") for k in arrays))]
    if not all(k in arrays for k in carry):
        found = sorted(k for k in arrays if k.startswith("carry/"))
        raise ValueError(f"checkpoint {path} has the state parts {found}, expected {carry}")
    try:
        return Checkpoint(
            params={k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")},
            optimizer={k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")},
            step=int(arrays["step"]),
            window=int(arrays["window"]),
            elapsed=float(arrays["elapsed"]),
            skipped=int(arrays["skipped"]),
            clipped=int(arrays["clipped"]),
            rng_state=json.loads(str(arrays["rng_state"])),
            carry=tuple(arrays[k] for k in carry),
            last_eval=json.loads(str(arrays["last_eval"])),
            vocab=str(arrays["vocab"]) if "vocab" in arrays else None,
            fingerprint=json.loads(str(arrays["fingerprint"])) if "fingerprint" in arrays else None,
            model_rng_state=json.loads(str(arrays["model_rng_state"])) if "model_rng_state" in arrays else None,
            path=str(path),
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc


