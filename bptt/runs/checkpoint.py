"""The checkpoint of a run folder, checkpoint.npz: the training state a run needs to continue
exactly where it stopped (`Checkpoint`), in one schema, loaded without pickle.

A checkpoint may come from someone else, so `read_checkpoint` reads it as untrusted input
(`bptt.core.untrusted.Npz`): the file is not read through a link; every array's .npy header is read
first and checked against the schema and, given a `CheckpointLayout` built from config.json, against
the shape and dtype the model and optimizer need, before any array's data is read; the JSON texts in
it (the RNG states, the latest metrics, the fingerprint) are bounded, parsed with a depth limit and
checked for type and value. Arrays of Python objects are refused: nothing in a checkpoint runs code.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ..core.types import Array, Params, Parts
from ..core.untrusted import Npz, UntrustedFileError, check_member, loads_json
from .atomic import atomic_write
from .files import CHECKPOINT
from .logs import MAX_STEP

MAX_CHECKPOINT_BYTES = 1 << 32  # data of all arrays, when no layout says what to expect (4 GiB)
MAX_STATE_TEXT = 1 << 16  # characters of a JSON text in a checkpoint (bptt writes at most a few thousand)
MAX_STATE_DEPTH = 3  # those texts nest at most two deep (an RNG state, a fingerprint's settings)
MAX_EVAL_KEYS = 64  # held-out metrics in last_eval (bptt writes two or three)
MAX_VOCAB = 1 << 16  # characters in a chars run's vocabulary, each an input and an output of the model
# the bit generator of numpy's default_rng, which every RNG state in a checkpoint comes from
BIT_GENERATOR = type(np.random.default_rng(0).bit_generator)


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
_COUNTS = ("step", "window", "skipped", "clipped")  # integer scalars
_TEXTS = {"rng_state": MAX_STATE_TEXT, "last_eval": MAX_STATE_TEXT, "fingerprint": MAX_STATE_TEXT,
          "model_rng_state": MAX_STATE_TEXT, "vocab": MAX_VOCAB}  # text scalars and their most characters
_NAME = re.compile(r"(param|optim|carry)/(.+)")


@dataclass(frozen=True)
class CheckpointLayout:
    """What a checkpoint must hold for one model, built from its config.json: every array's shape
    and dtype, so that a checkpoint is checked against them before any of its data is read.

    Parameters
    ----------
    params : dict of str to tuple of int
        The shape of each parameter, keyed like `model_params` ("cell.weight_hh", ...).
    dtype : numpy dtype
        The run's floating-point type: of the parameters, the optimizer's state and the carry.
    slots : tuple of str or None
        The optimizer's state slots (Adam's ("m", "v")): each "optim/<slot>/<param>" has its
        parameter's shape. None: the optimizer's state is not read (e.g. for sampling).
    carry : tuple of tuple of int, or None
        The shape of each part of the state carried into the next window, e.g. ((N, H), (N, H))
        for an LSTM. None: not read.

    Examples
    --------
    >>> import bptt
    >>> from bptt.training.trainer import TrainingRun
    >>> layout = TrainingRun(bptt.TrainConfig(cell="lstm", hidden=3, batch_size=2)).checkpoint_layout()
    >>> layout.params["cell.weight_hh"], layout.slots, layout.carry
    ((12, 3), ('m', 'v'), ((2, 3), (2, 3)))
    """

    params: Mapping[str, tuple[int, ...]]
    dtype: DTypeLike
    slots: tuple[str, ...] | None = None
    carry: tuple[tuple[int, ...], ...] | None = None


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
    # C order, as the reader requires: a state may be a transposed view of a gate-major tape
    arrays = {key: np.asarray(value, order="C") for key, value in arrays.items()}
    # the type checker matches **arrays against savez's allow_pickle too; no key here is "allow_pickle"
    atomic_write(Path(run_dir) / CHECKPOINT, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def read_checkpoint(run_dir: str | os.PathLike[str], layout: CheckpointLayout | None = None) -> Checkpoint:
    """Read a run folder's checkpoint.npz, checking it before and after reading.

    Parameters
    ----------
    run_dir : str or os.PathLike
    layout : CheckpointLayout, optional
        The shapes and dtype config.json implies. Every array's header is checked against it before
        any data is read, and the optimizer's state or the carry are read only if it asks for them.
        Without it the arrays are checked only for their kind (floats, integers, text) and for
        MAX_CHECKPOINT_BYTES in all.

    Returns
    -------
    Checkpoint
        With `path` set to the file read.

    Raises
    ------
    ValueError
        Naming the file and what is wrong: missing, a link, not a regular file, truncated or not an
        npz file ("cannot read checkpoint ..."); an array the schema lacks or does not know, or whose
        shape or dtype is not the layout's; a count, RNG state, metric or fingerprint of the wrong
        type or outside its range; a text beyond its bound.

    Examples
    --------
    >>> import tempfile, pathlib, bptt
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> _ = bptt.train(bptt.TrainConfig(task="parity", steps=3, seq_len=6, hidden=4, out=str(folder)))
    >>> checkpoint = read_checkpoint(folder)
    >>> checkpoint.step, sorted(checkpoint.params)[:2]
    (3, ['cell.bias_hh', 'cell.bias_ih'])
    >>> layout = CheckpointLayout({name: value.shape for name, value in checkpoint.params.items()}, "float32")
    >>> try:
    ...     read_checkpoint(folder, layout)
    ... except ValueError as exc:
    ...     print(str(exc).split(": ", 1)[1])
    array 'param/cell.weight_ih' has dtype float64, expected float32
    """
    path = Path(run_dir) / CHECKPOINT
    with _open(path, MAX_CHECKPOINT_BYTES if layout is None else _expected_bytes(layout)) as npz:
        _check_headers(npz, layout)
        return _read(npz, layout)


def _expected_bytes(layout: CheckpointLayout) -> int:
    """The most data a checkpoint of `layout` holds: its arrays, the optimizer's, the carry's, the texts."""
    itemsize = np.dtype(layout.dtype).itemsize
    weights = sum(math.prod(shape) for shape in layout.params.values())
    carry = sum(math.prod(shape) for shape in layout.carry or ())
    return (itemsize * (weights * (1 + len(layout.slots or ())) + carry)
            + 4 * sum(_TEXTS.values()) + 8 * (len(_COUNTS) + 2))


def _check_headers(npz: Npz, layout: CheckpointLayout | None) -> None:
    """Refuse, from the headers alone, a checkpoint that is not of the schema or of `layout`."""
    path, members = npz.path, npz.members
    unknown = [name for name in members if name not in _REQUIRED and name not in _TEXTS and name != "elapsed"
               and not _NAME.fullmatch(name)]
    if unknown:
        raise UntrustedFileError(path, f"holds the array {unknown[0]!r}, which is no part of a checkpoint")
    missing = [key for key in _REQUIRED if key not in members]
    if not any(k.startswith("param/") for k in members):
        missing.insert(0, "param/<name>")
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}: it is not a checkpoint of bptt train")
    carry = [f"carry/{i}" for i in range(sum(k.startswith("carry/") for k in members))]
    if not all(k in members for k in carry):
        found = sorted(k for k in members if k.startswith("carry/"))
        raise ValueError(f"checkpoint {path} has the state parts {found}, expected {carry}")
    for name in _COUNTS:
        check_member(path, name, members[name], shape=(), kinds="iu")
    check_member(path, "elapsed", members["elapsed"], shape=(), kinds="fiu")
    check_member(path, "optim/t", members["optim/t"], shape=(), kinds="iu")
    for name, most in _TEXTS.items():
        if name in members:
            check_member(path, name, members[name], shape=(), kinds="U")
            if members[name].dtype.itemsize > 4 * most:
                raise UntrustedFileError(path, f"array {name!r} holds {members[name].dtype.itemsize // 4:,} "
                                               f"characters, more than {most:,}")
    arrays = [name for name in members if _NAME.fullmatch(name) and name != "optim/t"]
    if layout is None:
        for name in arrays:
            check_member(path, name, members[name], kinds="f")
        return
    dtype = np.dtype(layout.dtype)
    params = {name[len("param/"):] for name in members if name.startswith("param/")}
    if params != set(layout.params):
        raise ValueError(f"checkpoint {path} does not match its config.json: it holds parameters {sorted(params)}, "
                         f"the model has {sorted(layout.params)}")
    for name in arrays:
        kind, rest = name.split("/", 1)
        if kind == "param":
            shape = layout.params[rest]
        elif kind == "optim":
            slot, _, param = rest.partition("/")
            if layout.slots is None:
                continue  # not read
            if slot not in layout.slots or param not in layout.params:
                raise UntrustedFileError(path, f"holds the optimizer state {name!r}; the optimizer of its config.json "
                                               f"keeps {', '.join(layout.slots) or 'none'} for each parameter")
            shape = layout.params[param]
        else:
            if layout.carry is None:
                continue  # not read
            if len(carry) != len(layout.carry):
                raise UntrustedFileError(path, f"carries a state of {len(carry)} parts; the model's has "
                                               f"{len(layout.carry)}")
            shape = layout.carry[int(rest)]
        check_member(path, name, members[name], shape=shape, dtype=dtype)


def _scalars(npz: Npz) -> dict[str, Any]:
    """The checkpoint's counts and texts, read and checked (its headers checked first)."""
    path = npz.path
    read = {name: npz.read(name) for name in (*_COUNTS, "elapsed", *_TEXTS) if name in npz.members}
    step, window, skipped, clipped = (int(read[name]) for name in _COUNTS)
    elapsed = float(read["elapsed"])
    if not 0 <= step <= MAX_STEP or window < -1 or not 0 <= skipped <= step or not 0 <= clipped <= step:
        raise UntrustedFileError(path, f"counts out of range: step {step}, window {window}, skipped {skipped}, "
                                       f"clipped {clipped} (expected 0 <= skipped, clipped <= step, window >= -1)")
    if not 0 <= elapsed < math.inf:
        raise UntrustedFileError(path, f"elapsed is {elapsed}, expected a finite number of seconds")
    texts = {name: str(read[name]) for name in _TEXTS if name in read}
    vocab = texts.get("vocab")
    if vocab is not None and (not vocab or len(set(vocab)) != len(vocab)):
        raise UntrustedFileError(path, "its vocab must be a string of distinct characters, one per input")
    fingerprint = _json_text(path, texts, "fingerprint")
    if fingerprint is not None:
        _check_fingerprint(path, fingerprint)
    return dict(
        step=step, window=window, elapsed=elapsed, skipped=skipped, clipped=clipped,
        rng_state=_generator_state(path, texts, "rng_state"),
        last_eval=_metrics(path, _json_text(path, texts, "last_eval")),
        vocab=vocab,
        fingerprint=fingerprint,
        model_rng_state=_generator_state(path, texts, "model_rng_state") if "model_rng_state" in texts else None,
    )


def _read(npz: Npz, layout: CheckpointLayout | None) -> Checkpoint:
    """The checkpoint's arrays read (those the layout asks for) and its scalars checked."""
    scalars = _scalars(npz)
    names = [name for name in npz.members if _NAME.fullmatch(name)
             and not (layout is not None and ((layout.slots is None and name.startswith("optim/") and name != "optim/t")
                                              or (layout.carry is None and name.startswith("carry/"))))]
    read = {name: npz.read(name) for name in names}
    carry = [f"carry/{i}" for i in range(sum(k.startswith("carry/") for k in read))]
    return Checkpoint(
        params={k[len("param/"):]: v for k, v in read.items() if k.startswith("param/")},
        optimizer={k[len("optim/"):]: v for k, v in read.items() if k.startswith("optim/")},
        carry=tuple(read[k] for k in carry),
        path=npz.path,
        **scalars,
    )


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says of itself, read without its arrays (`checkpoint_info`).

    Attributes
    ----------
    step : int
        Updates done.
    vocab : str or None
        A chars run's vocabulary: the model's input and output size is its length.
    fingerprint : dict or None
        The settings and data the run trained on (`run_fingerprint`), None in old checkpoints.
    """

    step: int
    vocab: str | None
    fingerprint: dict[str, Any] | None


def checkpoint_info(run_dir: str | os.PathLike[str]) -> CheckpointInfo:
    """A run folder's checkpoint.npz, its counts and texts only: what a reader needs before it can
    build the model to check the arrays against (`read_checkpoint` with a `CheckpointLayout`).

    Every array's header is checked against the schema; no array's data is read.

    Raises
    ------
    ValueError
        As `read_checkpoint`.

    Examples
    --------
    >>> import tempfile, pathlib, bptt
    >>> text = pathlib.Path(tempfile.mkdtemp()) / "t.txt"
    >>> _ = text.write_text("abcabcabd " * 30)
    >>> folder = text.parent / "run"
    >>> _ = bptt.train(bptt.TrainConfig(task="chars", text=str(text), steps=2, seq_len=8, hidden=4, out=str(folder)))
    >>> info = checkpoint_info(folder)
    >>> info.step, info.vocab, sorted(info.fingerprint)
    (2, ' abcd', ['data', 'settings'])
    """
    path = Path(run_dir) / CHECKPOINT
    with _open(path, MAX_CHECKPOINT_BYTES) as npz:
        _check_headers(npz, None)
        scalars = _scalars(npz)
    return CheckpointInfo(scalars["step"], scalars["vocab"], scalars["fingerprint"])


def _open(path: Path, max_bytes: int) -> Npz:
    """The checkpoint open for checked reading; its refusals name it as a checkpoint."""
    try:
        return Npz(path, max_bytes=max_bytes)
    except UntrustedFileError as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc.problem}") from None
    except OSError as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from exc


def _json_text(path: str, texts: Mapping[str, str], name: str) -> Any:
    """The JSON text `name` decoded (depth-checked), or None if the checkpoint has none."""
    if name not in texts:
        return None
    return loads_json(texts[name].encode(), max_depth=MAX_STATE_DEPTH, where=f"{path} ({name})")


def _generator_state(path: str, texts: Mapping[str, str], name: str) -> dict[str, Any]:
    """An RNG state that numpy's default bit generator accepts as it is (tried on a fresh one)."""
    state = _json_text(path, texts, name)
    try:
        if not isinstance(state, dict) or state.get("bit_generator") != BIT_GENERATOR.__name__:
            raise TypeError
        BIT_GENERATOR().state = state
    except (TypeError, ValueError, KeyError, OverflowError):
        raise UntrustedFileError(path, f"its {name} is not a state of numpy's {BIT_GENERATOR.__name__} "
                                       f"generator: {json.dumps(state)[:80]}") from None
    return state


def _metrics(path: str, value: Any) -> dict[str, float]:
    """last_eval: names to numbers (null and NaN as NaN)."""
    if not isinstance(value, dict) or len(value) > MAX_EVAL_KEYS:
        raise UntrustedFileError(path, f"its last_eval must be an object of at most {MAX_EVAL_KEYS} metrics")
    metrics = {}
    for key, number in value.items():
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
            raise UntrustedFileError(path, f"its last_eval {key!r} is {number!r:.40}, expected a number")
        try:
            metrics[key] = math.nan if number is None else float(number)
        except OverflowError:
            raise UntrustedFileError(path, f"its last_eval {key!r} is an integer too large for a number") from None
    return metrics


def _check_fingerprint(path: str, fingerprint: Any) -> None:
    """{"settings": {...}, "data": {...}}, with a text's hash a string, as `run_fingerprint` writes it."""
    parts_ok = isinstance(fingerprint, dict) and all(isinstance(fingerprint.get(k, {}), dict)
                                                     for k in ("settings", "data"))
    hashes_ok = parts_ok and all(isinstance(fingerprint.get("data", {}).get(f"{file}_sha256", ""), str)
                                 for file in ("text", "data"))
    if not hashes_ok:
        raise UntrustedFileError(path, "its fingerprint must be an object of 'settings' and 'data' objects, "
                                       f"got {json.dumps(fingerprint)[:80]}")
