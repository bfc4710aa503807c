"""The cells by name: the one registry that `bptt train --cell`, `bptt gradcheck --cell`, sweeps,
`Stack`, the benchmark and the tests all read.

    rnn        Elman RNN, tanh (PyTorch's nn.RNN)
    rnn-relu   Elman RNN, relu (nn.RNN(nonlinearity="relu"))
    lstm       LSTM (nn.LSTM)
    gru        GRU (nn.GRU)

Any other name is a cell an installed package registers in the entry-point group `bptt.cells`, or
MODULE:CLASS naming a `bptt.Cell` subclass importable on the Python path (`bptt.core.import_path`).
Such a class is built like the built-ins: ``cls(input_size, hidden_size, seed=..., dtype=...)``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.typing import DTypeLike

from ..core.import_path import ImportPathError, import_path_of, resolve
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
#: The names of the built-in cells, ``("rnn", "rnn-relu", "lstm", "gru")``; ``make_cell``, ``Stack``
#: and ``bptt train --cell`` take these, registered names and MODULE:CLASS.
CELL_NAMES = tuple(CELLS)
CELL_GROUP = "bptt.cells"  # the entry-point group where installed packages register cells
#: How a cell may be named, for the command line's help: the built-ins, entry points, MODULE:CLASS.
CELL_NAMING = ("rnn (tanh), rnn-relu, lstm, gru; a name an installed package registers in the entry-point "
               "group bptt.cells; or MODULE:CLASS naming a bptt.Cell subclass importable on the Python path "
               "(e.g. mycells:MGU with mycells.py on PYTHONPATH)")


def cell_factory(name: str) -> Callable[..., Cell]:
    """The constructor `name` stands for: a built-in's, or a registered or MODULE:CLASS Cell subclass
    that fills in the Cell contract (`Cell.check_class`).

    Raises
    ------
    bptt.core.import_path.ImportPathError
        (a ValueError) Naming the name, what was tried and why it failed, including what a class
        does not fill in of the Cell contract.

    Examples
    --------
    >>> cell_factory("bptt:GRU")
    <class 'bptt.cells.gru.GRU'>
    >>> try:
    ...     cell_factory("bptt:Cell")
    ... except ValueError as exc:
    ...     print(exc.problem[:52])
    Cell does not fill in the Cell contract: it must set
    """
    factory = resolve(name, kind="cell", builtins=CELLS, group=CELL_GROUP, base=Cell)
    if isinstance(factory, type) and issubclass(factory, Cell):  # resolve checked that it is
        try:
            factory.check_class()
        except TypeError as exc:
            raise ImportPathError("cell", name, str(exc), "a bptt.Cell subclass that fills in the contract "
                                  "(see bptt.Cell)") from exc
    return factory


def make_cell(name: str, input_size: int, hidden_size: int, *, proj_size: int = 0, seed: Seed = None,
              dtype: DTypeLike = np.float64) -> Cell:
    """The cell registered as `name`, initialised like PyTorch.

    Parameters
    ----------
    name : str
        One of CELL_NAMES: "rnn" (tanh), "rnn-relu", "lstm", "gru" (`bptt train --cell`'s names); a
        name registered in the entry-point group bptt.cells; or MODULE:CLASS naming a `bptt.Cell`
        subclass, e.g. "mycells:MGU".
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
        Naming the known cells and what was tried when `name` resolves to no cell, or to a class
        that does not fill in the Cell contract (`bptt.core.import_path.ImportPathError`), or if
        proj_size is given to a cell other than lstm.

    Examples
    --------
    >>> import bptt
    >>> bptt.make_cell("rnn-relu", 3, 8, seed=0)
    RNN(input_size=3, hidden_size=8, dtype=float64, nonlinearity='relu')
    """
    factory = cell_factory(name)
    if proj_size:
        if name != "lstm":
            raise ValueError(f"proj_size is only for the lstm cell (as in PyTorch), got cell {name!r} "
                             f"with proj_size={proj_size}")
        return LSTM(input_size, hidden_size, proj_size=proj_size, seed=seed, dtype=dtype)
    return factory(input_size, hidden_size, seed=seed, dtype=dtype)


def cell_name(cell: Cell) -> str:
    """The name of a cell instance that `make_cell` takes back: a built-in's name, else MODULE:CLASS."""
    if type(cell) is RNN:
        return "rnn" if cell.nonlinearity == "tanh" else "rnn-relu"
    for name, kind in (("lstm", LSTM), ("gru", GRU)):
        if type(cell) is kind:
            return name
    return import_path_of(type(cell))
