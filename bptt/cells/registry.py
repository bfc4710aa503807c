"""The cells by name: the one registry that `bptt train --cell`, `bptt gradcheck --cell`, the
benchmark and the tests all read.

    rnn        Elman RNN, tanh (PyTorch's nn.RNN)
    rnn-relu   Elman RNN, relu (nn.RNN(nonlinearity="relu"))
    lstm       LSTM (nn.LSTM)
    gru        GRU (nn.GRU)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.typing import DTypeLike

from ..core.types import Seed
from .cell import Cell
from .gru import GRU
from .lstm import LSTM
from .rnn import RNN

CELLS: dict[str, Callable[..., Cell]] = {
    "rnn": lambda input_size, hidden_size, **kw: RNN(input_size, hidden_size, "tanh", **kw),
    "rnn-relu": lambda input_size, hidden_size, **kw: RNN(input_size, hidden_size, "relu", **kw),
    "lstm": LSTM,
    "gru": GRU,
}
#: The names of the built-in cells, ``("rnn", "rnn-relu", "lstm", "gru")``: what ``make_cell``,
#: ``Stack`` and ``bptt train --cell`` accept.
CELL_NAMES = tuple(CELLS)


def make_cell(name: str, input_size: int, hidden_size: int, *, proj_size: int = 0, seed: Seed = None,
              dtype: DTypeLike = np.float64) -> Cell:
    """The cell registered as `name`, initialised like PyTorch.

    Parameters
    ----------
    name : str
        One of CELL_NAMES: "rnn" (tanh), "rnn-relu", "lstm", "gru" (`bptt train --cell`'s names).
    input_size, hidden_size : int
        D and H.
    proj_size : int
        An LSTM's projection size P (0: none); as in PyTorch, only the LSTM has one.
    seed : int, numpy.random.SeedSequence or Generator, optional
        Seeds the weights (a Generator: the cell takes its next draws).
    dtype : float64 (default) or float32

    Returns
    -------
    Cell

    Raises
    ------
    ValueError
        Naming the known cells when `name` is not one of them, or if proj_size is given to another cell.

    Examples
    --------
    >>> import bptt
    >>> bptt.make_cell("rnn-relu", 3, 8, seed=0)
    RNN(input_size=3, hidden_size=8, dtype=float64, nonlinearity='relu')
    """
    if name not in CELLS:
        raise ValueError(f"cell must be one of {list(CELL_NAMES)}, got {name!r}")
    if proj_size:
        if name != "lstm":
            raise ValueError(f"proj_size is only for the lstm cell (as in PyTorch), got cell {name!r} "
                             f"with proj_size={proj_size}")
        return LSTM(input_size, hidden_size, proj_size=proj_size, seed=seed, dtype=dtype)
    return CELLS[name](input_size, hidden_size, seed=seed, dtype=dtype)


def cell_name(cell: Cell) -> str:
    """The registry name of a cell instance: the inverse of `make_cell`."""
    if isinstance(cell, RNN):
        return "rnn" if cell.nonlinearity == "tanh" else "rnn-relu"
    for name, kind in (("lstm", LSTM), ("gru", GRU)):
        if isinstance(cell, kind):
            return name
    raise ValueError(f"{type(cell).__name__} is not a registered cell; known: {list(CELL_NAMES)}")
