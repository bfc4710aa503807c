"""The type aliases the package shares: arrays, states, parameters, caches and seeds.

Letters: N batch, H hidden size.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
from numpy.typing import NDArray

Array: TypeAlias = NDArray[np.floating[Any]]  # a float array, float32 or float64 like the cell that made it
IntArray: TypeAlias = NDArray[np.integer[Any]]  # an integer array: lengths, batch sizes, row orders
Parts: TypeAlias = tuple[Array, ...]  # a state as its parts, each (N, H): (h,) for RNN and GRU, (h, c) for LSTM
State: TypeAlias = Array | Parts  # a state as the caller sees it: the bare h (RNN, GRU), or the tuple (h, c) (LSTM)
Params: TypeAlias = dict[str, Array]  # parameters by name, or their gradients or tangents
StepCache: TypeAlias = Any  # one step's cache: the cell's own NamedTuple (RNNCache, LSTMCache, ...), one type per cell
ModelTape: TypeAlias = Any  # a composite model's own tape (a Stack's StackTape), which the core hands back to it
Seed: TypeAlias = int | np.random.SeedSequence | np.random.Generator | None  # seeds weights (None: fresh entropy)
