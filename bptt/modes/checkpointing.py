"""Memory-saving BPTT: keep the state every k steps, recompute each segment's caches on the way back.

The full tape holds every step's cache (inputs, states, gate values): O(T) caches. Here the forward
pass keeps only the state at the start of each segment of k steps (plus the hidden states hs, which
the loss needs anyway). The reverse sweep walks the segments last to first; for each it reruns the
forward pass from its checkpoint to rebuild that segment's caches, sweeps back through them and drops
them. Peak cache memory is O(T/k + k) states instead of O(T) caches, smallest near k = sqrt(T), for
one extra forward pass. The gradients are those of `bptt.backward` to float64 round-off (the sums
over time are formed per segment, so their order differs).

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import ArrayLike

from ..cells.cell import Cell
from ..cells.stack import Stack, StackTape
from ..core.checks import check_positive_int
from ..core.types import Array, Params, State
from ..core.unroll import Gradients, backward, check_backward_inputs, check_weights_unchanged, forward


@dataclass(frozen=True, repr=False)
class CheckpointTape:
    """What the checkpointed reverse sweep needs: the inputs and one state every k steps.

    `forward_checkpointed` makes it and `backward_checkpointed` consumes it.

    Attributes
    ----------
    xs : ndarray, shape (T, N, D)
        The inputs.
    every : int
        k, the segment length.
    checkpoints : list of state
        `checkpoints[s]` is the state before step s*k, packed like a state.
    final_state : ndarray (N, H), or tuple for LSTM
        The state after the last step.
    cell : Cell
        The cell that ran.
    weights : dict of ndarray
        A copy of the cell's parameters as the forward pass saw them.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(2, 3, seed=0)
    >>> hs, tape = bptt.forward_checkpointed(cell, np.ones((10, 1, 2)), every=3)
    >>> len(tape), len(tape.checkpoints)
    (10, 4)
    """

    xs: Array
    every: int
    checkpoints: list[State]
    final_state: State
    cell: Cell
    weights: Params  # a copy of the cell's parameters as the forward pass saw them

    def __len__(self) -> int:
        return len(self.xs)

    @property
    def batch_size(self) -> int:
        return self.xs.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes held between the passes: the checkpoints plus the inputs (counted like `Tape.nbytes`)."""
        return self.xs.nbytes + sum(part.nbytes for state in self.checkpoints for part in state)

    def __repr__(self) -> str:
        return (f"CheckpointTape({type(self.cell).__name__}, T={len(self)}, every={self.every}, "
                f"{len(self.checkpoints)} checkpoints, {self.nbytes / 2**20:.2f} MiB)")


def default_every(T: int) -> int:
    """k = round(sqrt(T)): balances T/k checkpoints against one segment of k caches."""
    return max(1, round(math.sqrt(T)))


@overload
def forward_checkpointed(cell: Stack, xs: ArrayLike, state0: State | None = None,
                         every: int | None = None) -> tuple[Array, StackTape[CheckpointTape]]: ...


@overload
def forward_checkpointed(cell: Cell, xs: ArrayLike, state0: State | None = None,
                         every: int | None = None) -> tuple[Array, CheckpointTape]: ...


def forward_checkpointed(cell: Cell | Stack, xs: ArrayLike, state0: State | None = None, every: int | None = None
                         ) -> tuple[Array, CheckpointTape | StackTape[CheckpointTape]]:
    """Like `bptt.forward`, keeping one state every `every` steps instead of every step's cache.

    Memory between the passes falls from T caches to T/k states plus the inputs; the reverse
    sweep pays for it by running the forward pass a second time, one segment at a time.

    Parameters
    ----------
    cell : Cell or Stack
        The cell to run. A Stack keeps each layer's inputs and, per (layer, direction), its
        checkpoints (a StackTape of CheckpointTapes).
    xs : array_like, shape (T, N, D)
        The inputs.
    state0 : ndarray (N, H), tuple for LSTM, or None
        The start state; None starts from zeros.
    every : int, optional
        k, the segment length; default round(sqrt(T)), which balances T/k checkpoints against
        one segment of k caches.

    Returns
    -------
    hs : ndarray, shape (T, N, H)
        The hidden states h_1 .. h_T, equal to `bptt.forward`'s.
    tape : CheckpointTape
        For `backward_checkpointed`.

    Raises
    ------
    ValueError
        If xs is not (T, N, D) with the cell's D, or `every` is not a positive integer.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(2, 3, seed=0)
    >>> xs = np.random.default_rng(0).normal(size=(50, 4, 2))
    >>> hs, tape = bptt.forward_checkpointed(cell, xs)
    >>> hs_full, tape_full = bptt.forward(cell, xs)
    >>> bool(np.array_equal(hs, hs_full)), tape.every, tape.nbytes < tape_full.nbytes
    (True, 7, True)
    """
    if isinstance(cell, Stack):
        every = None if every is None else check_positive_int("every", every)
        return cell.run_layers(xs, state0, lambda c, x, s: forward_checkpointed(c, x, s, every))
    cell.check_params()
    xs = cell.check_inputs(xs)
    T, N, _ = xs.shape
    every = default_every(T) if every is None else check_positive_int("every", every)
    state = cell.pack_state(cell.start_state(state0, N))
    hs = np.empty((T, N, cell.output_size), cell.dtype)
    checkpoints = []
    for start in range(0, T, every):
        checkpoints.append(state)
        hs[start : start + every], segment = forward(cell, xs[start : start + every], state)
        # copy: the final state is a view into the segment's tape, which is dropped here
        state = cell.pack_state(tuple(part.copy() for part in cell.unpack_state(segment.final_state)))
    return hs, CheckpointTape(xs, every, checkpoints, state, cell, {k: p.copy() for k, p in cell.params.items()})


def backward_checkpointed(cell: Cell | Stack, tape: CheckpointTape | StackTape[CheckpointTape],
                          dhs: ArrayLike | None, dstate_final: State | None = None) -> Gradients:
    """Reverse sweep over a CheckpointTape; same arguments and result as `bptt.backward`.

    Each segment's caches are recomputed from its checkpoint just before it is swept, so at most
    one segment's caches are alive at a time.

    Parameters
    ----------
    cell : Cell or Stack
        The cell that made the tape, with the same parameters.
    tape : CheckpointTape, or StackTape for a Stack
        From `forward_checkpointed`.
    dhs : array_like, shape (T, N, H), or None
        dL/dh_t from the loss at each step; None for zeros.
    dstate_final : ndarray (N, H), tuple for LSTM, or None
        dL/d(final state) from beyond the sequence; None for zeros.

    Returns
    -------
    Gradients
        params, dxs, dstate0 and dh_norms, equal to `bptt.backward`'s up to round-off.

    Raises
    ------
    ValueError
        If the tape is not from `forward_checkpointed` with this cell, the cell's parameters have
        changed since, or dhs / dstate_final have the wrong shape.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(2, 3, seed=0)
    >>> xs = np.random.default_rng(0).normal(size=(20, 1, 2))
    >>> hs, tape = bptt.forward_checkpointed(cell, xs, every=5)
    >>> grads = bptt.backward_checkpointed(cell, tape, np.ones_like(hs))
    >>> reference = bptt.backward(cell, bptt.forward(cell, xs)[1], np.ones_like(hs))
    >>> bool(np.allclose(grads.params["weight_hh"], reference.params["weight_hh"], rtol=1e-12))
    True
    """
    if isinstance(cell, Stack):
        return cell.sweep_layers(tape, dhs, dstate_final, lambda c, t, d, f: (backward_checkpointed(c, t, d, f), None))
    if not isinstance(tape, CheckpointTape) or tape.cell is not cell:
        raise ValueError(f"tape must come from forward_checkpointed with this {type(cell).__name__}")
    check_weights_unchanged(cell, tape.weights, "bptt.forward_checkpointed")
    xs = tape.xs
    T, N, _ = xs.shape
    dhs, carry = check_backward_inputs(cell, T, N, dhs, dstate_final)
    grads = {name: np.zeros_like(p) for name, p in cell.params.items()}
    dxs = np.empty_like(xs)
    dh_norms = np.empty(T)
    dstate = cell.pack_state(carry)
    for s in range(len(tape.checkpoints) - 1, -1, -1):
        steps = slice(s * tape.every, (s + 1) * tape.every)
        _, segment = forward(cell, xs[steps], tape.checkpoints[s])  # recompute this segment's caches
        swept = backward(cell, segment, None if dhs is None else dhs[steps], dstate)
        for name, g in swept.params.items():
            grads[name] += g  # shared weights: the segments' gradients add up
        dxs[steps], dh_norms[steps], dstate = swept.dxs, swept.dh_norms, swept.dstate0
    return Gradients(grads, dxs, dstate, dh_norms)
