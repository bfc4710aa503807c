"""Recurrent weight initialisations: each replaces part of a cell's default parameters in place.

A cell's constructor draws every parameter uniform in +-1/sqrt(H) (PyTorch's default, "default"
here). W_hh (G*H, H) stacks one (H, H) block per gate; each initialiser below sets every block::

    identity     W_hh blocks = I, b_ih = b_hh = 0   Le et al. 2015 (IRNN): with relu, a unit copies
                                                    its state forward until the inputs change it
    orthogonal   W_hh blocks = Q, Q^T Q = I         every singular value 1, drawn from `rng`

Letters: H hidden size, G gates per cell (RNN 1, GRU 3, LSTM 4).
"""

from __future__ import annotations

import numpy as np

from ..cells.cell import Cell
from ..cells.stack import Stack
from ..core.types import Array

INITS = ("default", "identity", "orthogonal")


def identity_init(cell: Cell) -> None:
    """Set every gate block of `cell.params["weight_hh"]` to the (H, H) identity and both biases to
    zero (Le et al. 2015's IRNN; meant for the relu RNN, allowed for any cell). W_ih is kept."""
    H, weight_hh = cell.hidden_size, cell.params["weight_hh"]
    for g in range(cell.gates):
        weight_hh[g * H : (g + 1) * H] = np.eye(H)
    cell.params["bias_ih"][...] = 0
    cell.params["bias_hh"][...] = 0


def random_orthogonal(rng: np.random.Generator, size: int) -> Array:
    """A (size, size) orthogonal matrix from the uniform (Haar) distribution, in float64.

    QR of a standard normal matrix, with each column of Q multiplied by the sign of R's diagonal
    entry (without that, Q is orthogonal but not uniformly distributed).
    """
    q, r = np.linalg.qr(rng.standard_normal((size, size)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def orthogonal_init(cell: Cell, rng: np.random.Generator) -> None:
    """Set every gate block of `cell.params["weight_hh"]` to its own random orthogonal (H, H) matrix
    from `rng`, one block after another in gate order. W_ih and the biases are kept."""
    H, weight_hh = cell.hidden_size, cell.params["weight_hh"]
    for g in range(cell.gates):
        weight_hh[g * H : (g + 1) * H] = random_orthogonal(rng, H)


def initialise(cell: Cell | Stack, init: str, rng: np.random.Generator | None = None) -> None:
    """Apply the initialisation named `init` (one of INITS) to `cell` in place; a Stack gets it in
    every (layer, direction), one after another.

    rng: the Generator that "orthogonal" draws from (needed only for it).
    """
    if init == "default":
        return
    if hasattr(cell, "layer_cells"):  # a Stack
        for row in cell.layer_cells():
            for layer_cell in row:
                initialise(layer_cell, init, rng)
        return
    if init == "identity":
        identity_init(cell)
    elif init == "orthogonal":
        if rng is None:
            raise ValueError("init 'orthogonal' needs a numpy Generator rng")
        orthogonal_init(cell, rng)
    else:
        raise ValueError(f"init must be one of {list(INITS)}, got {init!r}")
