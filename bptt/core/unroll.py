"""Run a cell over a sequence, and sweep back through time.

`forward` runs the cell's Sequence one step at a time and keeps it as the tape; `backward` runs its
reverse Sweep from the last step to the first, carrying dL/dstate and adding each step's own loss
gradient as it goes. Both know the cell only through the contract in `sequence.py`: the built-in
cells bring a fast path there, any other cell runs its plain step pair.

`forward_stepwise` and `backward_stepwise` are the reference: a plain loop over the cell's plain step
pair (`step_forward`, `step_backward`) that accumulates the shared weights' gradients with +=,
nothing of the fast path. A test keeps the two equal to float64 round-off.

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, cast, overload

import numpy as np
from numpy.typing import ArrayLike

from .checks import check_array
from .packing import Packing
from .results import Result
from .scratch import scratch
from .sequence import CellContract, CompositeModel, Sequence
from .types import Array, IntArray, ModelTape, Params, Parts, State, StepCache

V = TypeVar("V")


@dataclass(frozen=True, repr=False)
class Tape:
    """What the reverse sweep needs from one forward pass: the cell's Sequence, run to the end.

    `bptt.forward` makes it and `bptt.backward` consumes it; build one only through `forward`.
    `tape.step(t)` is step t's cache as `cell.step_forward` would have returned it, `tape.hs` the
    hidden states, `tape.final_state` the state after the last step, `tape.state_at(k)` a copy of
    the state after k steps, `tape.nbytes` the memory it holds, `len(tape)` the number of steps T.

    Attributes
    ----------
    cell : Cell
        The cell that ran.
    sequence : Sequence
        The cell's record of the run (the fast path's buffers, or one cache per step).
    weights : dict of ndarray
        A copy of the cell's parameters as the forward pass saw them; `backward` refuses to run
        if the cell's parameters have changed since.
    packing : Packing or None
        The batch's lengths, sorted longest first; None when every sequence ran all T steps.
    outputs : ndarray, shape (T, N, H), or None
        With lengths, hs in the caller's order, zero past each sequence's length.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(2, 3, seed=0)
    >>> hs, tape = bptt.forward(cell, np.ones((5, 4, 2)), lengths=[5, 3, 5, 1])
    >>> len(tape), tape.batch_size, tape.step(2).gates.shape
    (5, 4, (4, 9))
    >>> bool(np.all(tape.hs[3:, 1] == 0)), bool(np.all(tape.final_state[1] == hs[2, 1]))
    (True, True)
    """

    cell: CellContract
    sequence: Sequence
    weights: Params  # a copy of the cell's parameters as the forward pass saw them
    packing: Packing | None = None  # the batch's lengths, sorted longest first (None: all run T steps)
    outputs: Array | None = None  # hs in the caller's order, zero past each length (with lengths)

    def __len__(self) -> int:
        return self.sequence.T

    @property
    def batch_size(self) -> int:
        return self.sequence.N

    @property
    def lengths(self) -> IntArray | None:
        """(N,) the sequences' lengths, or None when every sequence ran all T steps."""
        return None if self.packing is None else self.packing.lengths

    def step(self, t: int) -> StepCache:
        """The cache of step t (read-only views into the tape; with lengths, a copy in the caller's
        order whose rows of sequences that had ended are zero)."""
        cache = self.sequence.cache(t)
        if self.packing is not None:
            cache = type(cache)(*(self.packing.unsort(pad_rows(field, self.batch_size), axis=0) for field in cache))
        return type(cache)(*(read_only(field) for field in cache))

    @property
    def hs(self) -> Array:
        """(T, N, H) hidden states h_1 .. h_T, read-only (zero past each sequence's length)."""
        # outputs is set whenever packing is (`run_forward` makes both)
        return read_only(self.sequence.outputs if self.packing is None else cast(Array, self.outputs))

    @property
    def final_state(self) -> State:
        """The state after the last step (of each sequence's own last step, with lengths): an array,
        or a tuple for LSTM."""
        return self.state_at(len(self)) if self.packing is not None else self.cell.pack_state(
            self.sequence.state(len(self)))

    def state_at(self, k: int) -> State:
        """A copy of the state after the first k steps (k = 0: the start state), packed like a state;
        a sequence shorter than k steps gives its state after its last step."""
        parts = self.sequence.state(k)
        if self.packing is not None:
            return self.cell.pack_state(tuple(self.packing.unsort(part, axis=0) for part in parts))
        return self.cell.pack_state(tuple(np.array(part, copy=True) for part in parts))

    @property
    def nbytes(self) -> int:
        """Bytes held by the tape, each underlying buffer counted once (inputs included)."""
        return self.sequence.nbytes

    def __repr__(self) -> str:
        return (f"Tape({type(self.cell).__name__}, T={len(self)}, N={self.batch_size}, "
                f"{self.nbytes / 2**20:.2f} MiB)")


@dataclass(frozen=True, repr=False)
class Gradients(Result):
    """Result of a reverse sweep.

    Attributes
    ----------
    params : dict of ndarray
        dL/dtheta, keyed like `cell.params`.
    dxs : ndarray, shape (T, N, D)
        dL/dx_t.
    dstate0 : array (N, H), or tuple for LSTM
        dL/dstate_0, structured like a state.
    dh_norms : ndarray, shape (T,)
        Frobenius norm over the batch of the total dL/dh_t reaching step t: its own loss plus
        everything that flowed back from later steps (for LSTM, the h part).

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(2, 3, seed=0)
    >>> hs, tape = bptt.forward(cell, np.ones((6, 1, 2)))
    >>> grads = bptt.backward(cell, tape, np.ones_like(hs))
    >>> sorted(grads.params) == sorted(cell.params), grads.dxs.shape, len(grads.dstate0)
    (True, (6, 1, 2), 2)
    >>> params, dxs, dstate0, dh_norms = grads      # it unpacks like a tuple
    """

    params: Params
    dxs: Array
    dstate0: State
    dh_norms: Array


@overload
def forward(cell: CompositeModel, xs: ArrayLike, state0: State | None = None, *,
            lengths: ArrayLike | None = None) -> tuple[Array, ModelTape]: ...


@overload
def forward(cell: CellContract, xs: ArrayLike, state0: State | None = None, *,
            lengths: ArrayLike | None = None) -> tuple[Array, Tape]: ...


def forward(cell: CellContract | CompositeModel, xs: ArrayLike, state0: State | None = None, *,
            lengths: ArrayLike | None = None) -> tuple[Array, Tape | ModelTape]:
    """Run a cell over a batch of sequences and keep the tape for the reverse sweep.

    Parameters
    ----------
    cell : Cell
        Any cell (`bptt.RNN`, `bptt.LSTM`, `bptt.GRU` or your own).
    xs : array_like, shape (T, N, D)
        Inputs, time-major; cast to the cell's dtype (float64 input to a float32 cell is rounded).
    state0 : array (N, H), or tuple of them for LSTM's (h, c), optional
        The state before the first step; zeros if None.
    lengths : array_like of int, shape (N,), optional
        Each sequence's length, in 1..T, with PyTorch's packed-sequence semantics: steps past a
        sequence's length are not run, its outputs there are zero and carry no gradient, and its
        final state is its state after its own last step. None: every sequence runs T steps.

    Returns
    -------
    hs : ndarray, shape (T, N, H)
        The hidden states h_1 .. h_T, a read-only view into the tape (changing it would change what
        `backward` computes): copy it to change it.
    tape : Tape
        Every step's cache, for `backward`; `tape.step(t)` is step t's.

    Raises
    ------
    ValueError
        If xs, state0, lengths or the cell's parameters have the wrong shape or values, or hold
        NaN or inf.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(input_size=3, hidden_size=5, seed=0)
    >>> hs, tape = bptt.forward(cell, np.ones((7, 2, 3)))
    >>> hs.shape, len(tape)
    ((7, 2, 5), 7)
    """
    if isinstance(cell, CompositeModel):  # a Stack runs its layers itself, each through this function
        return cell.forward(xs, state0, lengths=lengths)
    return run_forward(cell, xs, state0, lengths, shortest=1)


def forward_window(cell: CellContract | CompositeModel, xs: ArrayLike, state0: State | None = None, *,
                   lengths: ArrayLike | None = None) -> tuple[Array, Tape | ModelTape]:
    """`forward` over a window cut from longer sequences: lengths (N,) in 0..T, where 0 is a sequence
    that ended before the window (its state passes through it unchanged)."""
    if isinstance(cell, CompositeModel):
        return cell.forward(xs, state0, lengths=lengths, shortest=0)
    return run_forward(cell, xs, state0, lengths, shortest=0)


def run_forward(cell: CellContract, xs: ArrayLike, state0: State | None, lengths: ArrayLike | None,
                shortest: int) -> tuple[Array, Tape]:
    """The forward pass of one cell; lengths checked in shortest..T."""
    cell.check_params()
    xs = cell.check_inputs(xs)
    T, N = xs.shape[:2]
    packing = Packing.of(lengths, T, N, shortest)
    state0 = cell.start_state(state0, N)
    if packing is None:
        sequence = cell.sequence(xs, state0)
    else:  # longest first: the sequences running at step t are the first batch_sizes[t] rows
        sequence = cell.sequence(packing.sort(xs), tuple(packing.sort(p, axis=0) for p in state0),
                                 packing.batch_sizes)
    step = sequence.step
    with np.errstate(over="ignore"):  # exp-based activations reach their limits through inf
        for t in range(T):
            step(t)
    outputs = None if packing is None else packing.unsort(packing.mask(sequence.outputs))
    tape = Tape(cell, sequence, {name: p.copy() for name, p in cell.params.items()}, packing, outputs)
    return tape.hs, tape


def backward(cell: CellContract | CompositeModel, tape: Tape | ModelTape, dhs: ArrayLike | None,
             dstate_final: State | None = None) -> Gradients:
    """The reverse sweep: gradients of the shared weights, the inputs and the initial state.

    Parameters
    ----------
    cell : Cell
        The cell that ran `forward` (the same object).
    tape : Tape
        From `forward(cell, ...)`.
    dhs : array_like, shape (T, N, H), or None
        dL/dh_t from the loss at each step (None: no loss on the outputs).
    dstate_final : array (N, H), or tuple for LSTM's (dh, dc), optional
        An extra gradient on the final state: a loss on it, or what a later chunk carries back.

    Returns
    -------
    Gradients
        `params` (dL/dtheta keyed like `cell.params`), `dxs` (T, N, D), `dstate0` and `dh_norms`
        (T,), the norm over the batch of the total dL/dh_t reaching each step.

    Raises
    ------
    ValueError
        If the tape came from another cell, the cell's weights changed since `forward` made the tape
        (the tape holds what the old weights computed), or dhs / dstate_final have the wrong shape.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(input_size=2, hidden_size=4, seed=0)
    >>> hs, tape = bptt.forward(cell, np.ones((10, 1, 2)))
    >>> dhs = np.zeros_like(hs); dhs[-1] = 1.0          # a loss on the last step only
    >>> grads = bptt.backward(cell, tape, dhs)
    >>> grads.params["weight_hh"].shape, grads.dh_norms.shape
    ((4, 4), (10,))
    >>> bool(grads.dh_norms[0] < grads.dh_norms[-1])     # the gradient shrinks going back in time
    True
    """
    if isinstance(cell, CompositeModel):  # a Stack sweeps its layers itself, each through sweep_back
        return cell.backward(tape, dhs, dstate_final)
    return sweep_back(cell, tape, dhs, dstate_final)[0]


def sweep_back(cell: CellContract, tape: Tape, dhs: ArrayLike | None,
               dstate_final: State | None = None) -> tuple[Gradients, Array]:
    """The reverse sweep of one cell. Returns its Gradients and the total dL/dh_t of every step,
    (T, N, H) in the caller's order, zero past each length (valid until the next sweep)."""
    check_tape(cell, tape)
    T, N, H = len(tape), tape.batch_size, cell.output_size
    dhs, dstate = check_backward_inputs(cell, T, N, dhs, dstate_final)
    packing = tape.packing
    if packing is not None:  # the sweep's rows are sorted; no gradient enters past a length
        dhs = None if dhs is None else packing.mask(packing.sort(dhs))
        dstate = tuple(packing.sort(part, axis=0) for part in dstate)
    sweep = tape.sequence.reverse()
    dh = scratch.get("dh", (T + 1, N, H), cell.dtype)  # dh[t + 1] becomes the total dL/dh_t
    dh[T] = dstate[0]
    dh_steps, losses, step = list(dh), (None if dhs is None else list(dhs)), sweep.step  # views built once
    for t in range(T - 1, -1, -1):
        after, out = dh_steps[t + 1], dh_steps[t]
        if losses is not None:
            after += losses[t]  # step t's own loss joins what flowed back from step t + 1
        dstate = step(t, (after, *dstate[1:]), out)  # dL/dh_{t-1} lands in dh[t]
        if dstate[0] is not out:  # a sweep that returned a new array instead of writing into out
            out[...] = dstate[0]
    params, dxs = sweep.gradients()
    if packing is None:
        dstate0 = cell.pack_state(tuple(part.copy() for part in dstate))
        return Gradients(params, dxs, dstate0, frobenius_norms(dh[1:])), dh[1:]
    dh_total = packing.mask(dh[1:])
    dstate0 = cell.pack_state(tuple(packing.unsort(part, axis=0) for part in dstate))
    return Gradients(params, packing.unsort(dxs), dstate0, frobenius_norms(dh_total)), packing.unsort(dh_total)


def forward_stepwise(cell: CellContract, xs: ArrayLike, state0: State | None = None
                     ) -> tuple[Array, list[StepCache], State]:
    """The reference forward pass: the cell's plain `step_forward`, T times, nothing of the fast path.

    Parameters
    ----------
    cell : Cell
    xs : array_like, shape (T, N, D)
    state0 : array (N, H), or tuple of them for LSTM, optional
        Zeros if None.

    Returns
    -------
    hs : ndarray, shape (T, N, H)
    caches : list of T caches
        What each `step_forward` returned, for `backward_stepwise`.
    final_state : array (N, H), or tuple for LSTM

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(3, 4, seed=0)
    >>> xs = np.random.default_rng(0).standard_normal((6, 2, 3))
    >>> hs, caches, final = bptt.forward_stepwise(cell, xs)
    >>> bool(np.allclose(hs, bptt.forward(cell, xs)[0], rtol=1e-13, atol=0))
    True
    """
    xs = cell.check_inputs(xs)
    state = cell.pack_state(cell.start_state(state0, xs.shape[1]))
    hs, caches = [], []
    for x in xs:
        state, cache = cell.step_forward(x, state)
        hs.append(cell.unpack_state(state)[0])
        caches.append(cache)
    return np.stack(hs), caches, state


def backward_stepwise(cell: CellContract, caches: list[StepCache], dhs: ArrayLike | None,
                      dstate_final: State | None = None) -> Gradients:
    """The reference reverse sweep: the cell's plain `step_backward` from the last step to the
    first, the shared weights' gradients accumulated with +=.

    Parameters
    ----------
    cell : Cell
    caches : list of T caches
        From `forward_stepwise`.
    dhs : array_like, shape (T, N, H), or None
    dstate_final : array (N, H), or tuple for LSTM, optional
        As for `backward`.

    Returns
    -------
    Gradients
        The same quantities as `backward`, to float64 round-off.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(2, 3, seed=0)
    >>> xs = np.random.default_rng(0).normal(size=(6, 2, 2))
    >>> hs, caches, _ = bptt.forward_stepwise(cell, xs)
    >>> slow = bptt.backward_stepwise(cell, caches, np.ones_like(hs))
    >>> fast = bptt.backward(cell, bptt.forward(cell, xs)[1], np.ones_like(hs))
    >>> bool(np.allclose(slow.params["weight_hh"], fast.params["weight_hh"], rtol=1e-12))
    True
    """
    T, N = len(caches), cell.state_after(caches[0])[0].shape[0]  # the cache holds the state after the step
    dhs, carry = check_backward_inputs(cell, T, N, dhs, dstate_final)
    grads = {name: np.zeros_like(p) for name, p in cell.params.items()}
    dxs = np.empty((T, N, cell.input_size), cell.dtype)
    dh_norms = np.empty(T)
    for t in range(T - 1, -1, -1):
        dh = carry[0] + (dhs[t] if dhs is not None else 0)  # this step's loss + what came from t+1
        dh_norms[t] = np.linalg.norm(dh)
        dxs[t], dstate, step_grads = cell.step_backward(cell.pack_state((dh, *carry[1:])), caches[t])
        carry = cell.unpack_state(dstate)
        for name, g in step_grads.items():
            grads[name] += g  # the weights are shared across time: their gradients add up
    return Gradients(grads, dxs, cell.pack_state(carry), dh_norms)


# ----------------------------------------------------------------- checks shared by the sweeps
def check_tape(cell: CellContract, tape: object) -> None:
    """Raise ValueError unless `tape` came from `bptt.forward` with this very cell, and its weights
    are still those the forward pass saw."""
    if not isinstance(tape, Tape) or tape.cell is not cell:
        raise ValueError(f"tape must come from bptt.forward with this {type(cell).__name__}")
    check_weights_unchanged(cell, tape.weights, "bptt.forward")


def check_weights_unchanged(cell: CellContract | CompositeModel, weights: Params, made_by: str) -> None:
    """Raise ValueError naming the parameters of `cell` that differ from `weights`, the copy taken
    when the tape was made: the tape's caches hold what the old weights computed, so a gradient
    from it would silently mix two models. Comparing copies costs O(P), a T*N-th of the sweep."""
    changed = [name for name, value in weights.items()
               if name not in cell.params or not np.array_equal(cell.params[name], value)]
    changed += [name for name in cell.params if name not in weights]
    if changed:
        raise ValueError(
            f"the weights of this {type(cell).__name__} changed since {made_by} made the tape "
            f"({', '.join(changed)}): run the forward pass again with the new weights"
        )


def pad_rows(array: Array, rows: int) -> Array:
    """array (n, ...) as (rows, ...) with zeros below (the rows of sequences that had ended)."""
    padded = np.zeros((rows,) + array.shape[1:], array.dtype)
    padded[: len(array)] = array
    return padded


def read_only(array: V) -> V:
    """A read-only view of an array (anything else is returned as is)."""
    if not isinstance(array, np.ndarray):
        return array
    view = array.view()
    view.flags.writeable = False
    return view


def check_backward_inputs(cell: CellContract, T: int, N: int, dhs: ArrayLike | None,
                          dstate_final: State | None) -> tuple[Array | None, Parts]:
    """dhs checked as (T, N, H) (or None) and dstate_final's parts (zeros when None)."""
    if dhs is not None:
        dhs = check_array("dhs", dhs, (T, N, cell.output_size), cell.dtype, names=("T", "N", "H"))
    if dstate_final is None:
        return dhs, tuple(np.zeros((N, size), cell.dtype) for size in cell.state_sizes)
    return dhs, cell.check_state(dstate_final, N, name="dstate_final")


def frobenius_norms(arrays: Array) -> Array:
    """(T, ...) -> (T,) the Frobenius norm of each arrays[t], in float64."""
    flat = arrays.reshape(len(arrays), -1)
    return np.sqrt(np.einsum("ti,ti->t", flat, flat)).astype(np.float64)
