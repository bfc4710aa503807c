"""Generate text from a run trained on the chars task: feed each sampled character back in.

Needs only the run folder (config.json and checkpoint.npz, which stores the vocabulary), not the
training text.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.readout import Linear
from ..cells.registry import make_cell
from .trainer import load_config


def load_char_model(run_dir):
    """(cell, readout, vocab) of a chars run, weights from its checkpoint."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if config.task != "chars":
        raise ValueError(f"sampling needs a run of the chars task; {run_dir} trained {config.task!r}")
    path = run_dir / "checkpoint.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        vocab = str(arrays["vocab"])
    except Exception as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
    dtype = np.dtype(config.dtype)
    cell = make_cell(config.cell, len(vocab), config.hidden, seed=0, dtype=dtype)
    readout = Linear(config.hidden, len(vocab), seed=0, dtype=dtype)
    cell.load_params({k[len("param/cell."):]: v for k, v in arrays.items() if k.startswith("param/cell.")})
    for name in readout.params:
        readout.params[name] = arrays[f"param/readout.{name}"].astype(dtype)
    return cell, readout, vocab


def sample(run_dir, length: int = 200, *, temperature: float = 1.0, prime: str = "", seed: int = 0) -> str:
    """`length` characters sampled after `prime` (which is returned too) at the given temperature."""
    if length < 1:
        raise ValueError(f"length must be a positive integer, got {length}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    cell, readout, vocab = load_char_model(run_dir)
    lookup = {ch: i for i, ch in enumerate(vocab)}
    unknown = sorted(set(prime) - set(vocab))
    if unknown:
        raise ValueError(f"prime has characters the model never saw: {unknown!r}")
    rng = np.random.default_rng(seed)
    eye = np.eye(len(vocab), dtype=cell.dtype)
    state = cell.initial_state(1)
    codes = [lookup[ch] for ch in prime] or [int(rng.integers(len(vocab)))]
    out = list(prime) if prime else [vocab[codes[0]]]
    for code in codes[:-1]:  # read the prime, all but its last character
        state, _ = cell.step_forward(eye[code][None], state)
    current = codes[-1]
    for _ in range(length):
        state, _ = cell.step_forward(eye[current][None], state)
        logits, _ = readout.forward(cell.unpack_state(state)[0])
        z = logits[0].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        current = int(rng.choice(len(vocab), p=p / p.sum()))
        out.append(vocab[current])
    return "".join(out)


