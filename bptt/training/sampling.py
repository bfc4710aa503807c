"""Generate text from a run trained on the chars task: feed each sampled character back in.

Needs only the run folder (config.json and checkpoint.npz, which stores the vocabulary), not the
training text.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..cells.cell import Cell
from ..cells.stack import Stack
from ..core.readout import Linear
from ..core.truncation import model_params
from ..core.unroll import forward
from ..runs.checkpoint import CheckpointLayout, checkpoint_info, read_checkpoint
from ..runs.files import CHECKPOINT
from .run_config import check_size, load_config
from .trainer import make_model


def load_char_model(run_dir: str | os.PathLike[str]) -> tuple[Cell | Stack, Linear, str]:
    """The model of a chars run, with its checkpoint's weights.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder of the chars task.

    Returns
    -------
    tuple
        (cell, readout, vocab): the cell and Linear readout, and the vocabulary (a str, one
        character per input and output index).

    Raises
    ------
    ValueError
        If the run is not of the chars task, or its config or checkpoint cannot be read or disagree.
    """
    config = load_config(run_dir)
    if config.task != "chars":
        raise ValueError(f"sampling needs a run of the chars task; {run_dir} trained {config.task!r}")
    path = Path(run_dir) / CHECKPOINT
    vocab = checkpoint_info(run_dir).vocab  # the model's size: read (and checked) before the weights
    if vocab is None:
        raise ValueError(f"checkpoint {path} has no vocabulary ('vocab'), which a chars run stores")
    if config.bidirectional:
        raise ValueError(f"{run_dir} is bidirectional: generating reads one character at a time, "
                         "and a reverse direction would need the characters not written yet")
    check_size(config, path, input_size=len(vocab))
    dtype = np.dtype(config.dtype)
    cell = make_model(config, len(vocab), 0, dtype)
    width = config.proj_size or config.hidden
    readout = Linear(width, len(vocab), seed=0, dtype=dtype)
    params = model_params(cell, readout)
    layout = CheckpointLayout({name: value.shape for name, value in params.items()}, dtype)  # weights only
    checkpoint = read_checkpoint(run_dir, layout)
    checkpoint.load_params(params)
    if hasattr(cell, "eval"):
        cell.eval()  # no dropout while generating
    return cell, readout, vocab


def sample(run_dir: str | os.PathLike[str], length: int = 200, *, temperature: float = 1.0, prime: str = "",
           seed: int = 0) -> str:
    """Characters sampled from a chars run, each fed back in as the next input.

    Parameters
    ----------
    run_dir : str or os.PathLike
        A run folder of the chars task.
    length : int
        Characters to generate after the prime.
    temperature : float
        Softmax temperature, > 0: below 1 is more conservative.
    prime : str
        Text read before generating, returned too ("" : one character drawn uniformly starts it).
    seed : int
        Seed of the sampler.

    Returns
    -------
    str
        The prime (or the drawn first character) followed by `length` sampled characters.

    Raises
    ------
    ValueError
        On a bad length or temperature, a prime with characters outside the vocabulary, or a run
        that `load_char_model` rejects.
    """
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
        state = forward(cell, eye[code][None, None], state)[1].final_state
    current = codes[-1]
    for _ in range(length):
        hs, tape = forward(cell, eye[current][None, None], state)  # one step
        state = tape.final_state
        logits, _ = readout.forward(hs[0])
        z = logits[0].astype(np.float64) / temperature
        p = np.exp(z - z.max())
        current = int(rng.choice(len(vocab), p=p / p.sum()))
        out.append(vocab[current])
    return "".join(out)
