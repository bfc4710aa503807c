"""The contract between the unroller and a cell, for a whole batch of sequences.

`bptt.forward` asks the cell for a `Sequence` (`cell.sequence(xs, state0)`), calls `step(t)` for
t = 0 .. T-1 and keeps the Sequence as the tape. `bptt.backward` asks it for its reverse `Sweep` and
calls `step(t, ...)` for t = T-1 .. 0, carrying dL/dstate, then collects the weight and input
gradients. That is all the unroller knows: how a Sequence lays out its caches, which local
derivatives its Sweep prepares for all T at once and how it forms the weight gradients is the
cell's business (the built-in cells' fast paths are in bptt/cells/*_fast.py).

A state is a tuple of (N, H) arrays whose first part is the step's output h_t (RNN, GRU: (h,);
LSTM: (h, c)), as in PyTorch.

`StepwiseSequence` is what a cell gets when it has no fast path of its own: its plain step pair, run
one step at a time, with the shared weights' gradients accumulated with +=. A cell that writes only
`step_forward` and `step_backward` works with bptt.forward / backward, truncation and training (and,
through `bptt.core.step`, with the diagnostics). What the pair returns is checked against the
contract at the first step of every sequence and sweep (`check_step_output`,
`check_step_gradients`), not at every step: a wrong shape is named there, before it reaches numpy.

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import ArrayLike

from .types import Array, IntArray, ModelTape, Params, Parts, State, StepCache

if TYPE_CHECKING:
    from .unroll import Gradients


class CellContract(Protocol):
    """What the core asks of a cell; `bptt.cells.Cell` provides all of it."""

    params: Params
    input_size: int
    hidden_size: int
    dtype: np.dtype
    state_fields: tuple[str, ...]
    gate_names: tuple[str, ...]
    gate_slope_bounds: tuple[float, ...]

    @property
    def output_size(self) -> int: ...

    @property
    def state_sizes(self) -> tuple[int, ...]: ...

    def check_params(self) -> None: ...

    def check_inputs(self, xs: ArrayLike, batch_size: int | None = None) -> Array: ...

    def check_state(self, state: State, batch_size: int | None, name: str = "state") -> Parts: ...

    def start_state(self, state0: State | None, batch_size: int) -> Parts: ...

    def pack_state(self, parts: Parts) -> State: ...

    def unpack_state(self, state: State) -> Parts: ...

    def state_after(self, cache: StepCache) -> Parts: ...

    def step_forward(self, x: ArrayLike, state: State) -> tuple[State, StepCache]: ...

    def step_backward(self, dstate: State, cache: StepCache) -> tuple[Array, State, Params]: ...

    def check_step_output(self, output: object, batch_size: int) -> tuple[State, StepCache]: ...

    def check_step_gradients(self, output: object, batch_size: int) -> tuple[Array, State, Params]: ...

    def sequence(self, xs: Array, state0: Parts, batch_sizes: IntArray | None = None) -> Sequence: ...

    # declared after the methods: above, `Sequence` is the class, not this attribute
    Sequence: type[Sequence]


class CompositeModel:
    """A model made of cells that runs its own layers (`bptt.Stack`): `bptt.forward` and
    `bptt.backward` hand it the whole batch, and it runs each layer through them."""

    params: Params  # every layer's parameters, by name
    dtype: np.dtype

    def forward(self, xs: ArrayLike, state0: State | None = None, *, lengths: ArrayLike | None = None,
                shortest: int = 1) -> tuple[Array, ModelTape]:
        raise NotImplementedError

    def backward(self, tape: ModelTape, dhs: ArrayLike | None, dstate_final: State | None = None) -> Gradients:
        raise NotImplementedError

    if TYPE_CHECKING:  # what else the core reads off a model (bptt.Stack defines it), for the type checker only
        @property
        def state_size(self) -> int: ...  # S, the size of the whole state the model carries from step to step

        @property
        def output_size(self) -> int: ...

        def check_inputs(self, xs: ArrayLike, batch_size: int | None = None) -> Array: ...

    def step_vjp(self, tape: ModelTape, t: int, rows: Array) -> Array:
        """rows (N, K, S) of vectors v over the whole state -> v J_t, J_t = ds_t / ds_{t-1}: what the
        diagnostics pull back through one step."""
        raise NotImplementedError(f"{type(self).__name__} has no step Jacobian")


class Sequence:
    """One forward pass over xs (T, N, D) from state0 (a tuple of (N, H) arrays), step by step.

    batch_sizes: None, or (T,) non-increasing counts: at step t only the first batch_sizes[t]
    sequences run (the batch is sorted longest first, as PyTorch packs it); the others keep their
    state unchanged, and in the sweep pass their dL/dstate through unchanged.

    After `step(t)` for every t it is the tape: `outputs`, `state(k)` and `cache(t)` read it.
    """

    def __init__(self, cell: CellContract, xs: Array, state0: Parts, batch_sizes: IntArray | None = None) -> None:
        self.cell = cell
        self.T, self.N = xs.shape[:2]
        self.batch_sizes = batch_sizes

    def step(self, t: int) -> None:
        """Run step t (steps run in order, each once)."""
        raise NotImplementedError

    @property
    def outputs(self) -> Array:
        """(T, N, H) the outputs h_t of every step (with batch_sizes: only the running rows count)."""
        raise NotImplementedError

    def state(self, k: int) -> Parts:
        """The state after the first k steps (k = 0: state0), as a tuple of (N, H) arrays (views)."""
        raise NotImplementedError

    def cache(self, t: int) -> StepCache:
        """Step t's cache, as the cell's `step_forward` returns it (the running rows only)."""
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """Bytes the tape holds, each buffer counted once."""
        raise NotImplementedError

    def reverse(self) -> Sweep:
        """The reverse sweep over this tape."""
        raise NotImplementedError

    @classmethod
    def from_cache(cls, cell: CellContract, cache: StepCache) -> Sequence:
        """A one-step Sequence whose step 0 has already run and left `cache` (for single steps)."""
        raise NotImplementedError(f"{type(cell).__name__} has no fast path for single steps")


class Sweep:
    """The reverse sweep over one Sequence: one vector-Jacobian product per step, last step first."""

    def step(self, t: int, dstate: Parts, out: Array) -> Parts:
        """dL/dstate after step t (the total, its loss included) -> dL/dstate before step t.

        The first part of the result, dL/dh_{t-1} (N, H), is written into `out` and returned as it
        (a new array returned instead is copied into `out`, at the cost of that copy); later parts
        may be work arrays that the next call overwrites. `dstate` is not modified. Rows
        of sequences not running at step t pass through unchanged.
        """
        raise NotImplementedError

    def preactivation_gradients(self, t: int) -> tuple[Array, Array]:
        """(dL/da_x, dL/da_h) of step t after `step(t)`, each (N, G*H): the gradients of the input
        and recurrent projections a_x = x W_ih^T + b_ih, a_h = h_prev W_hh^T + b_hh."""
        raise NotImplementedError("this sweep does not keep the pre-activation gradients")

    def gradients(self) -> tuple[Params, Array]:
        """After every step: (dL/dtheta keyed like `cell.params`, dL/dxs (T, N, D))."""
        raise NotImplementedError


class StepwiseSequence(Sequence):
    """The plain step pair, one step at a time: the default for a cell without a fast path."""

    def __init__(self, cell: CellContract, xs: Array, state0: Parts, batch_sizes: IntArray | None = None) -> None:
        super().__init__(cell, xs, state0, batch_sizes)
        self.xs = xs
        self.states: list[Parts] = [tuple(state0)]
        self.caches: list[StepCache] = []

    def running(self, t: int) -> int:
        return self.N if self.batch_sizes is None else int(self.batch_sizes[t])

    def step(self, t: int) -> None:
        n, before = self.running(t), self.states[t]
        output = self.cell.step_forward(self.xs[t, :n], self.cell.pack_state(tuple(p[:n] for p in before)))
        state, cache = self.cell.check_step_output(output, n) if t == 0 else output  # once per sequence
        parts = self.cell.unpack_state(state)
        if n < self.N:  # the sequences that have ended keep their state
            parts = tuple(np.concatenate([new, old[n:]]) for new, old in zip(parts, before))
        self.states.append(parts)
        self.caches.append(cache)

    @property
    def outputs(self) -> Array:
        return np.stack([state[0] for state in self.states[1:]])

    def state(self, k: int) -> Parts:
        return self.states[k]

    def cache(self, t: int) -> StepCache:
        return self.caches[t]

    @property
    def nbytes(self) -> int:
        arrays = {id(a): a.nbytes for c in self.caches for a in c if isinstance(a, np.ndarray)}
        arrays.update({id(a): a.nbytes for state in self.states for a in state})
        return sum(arrays.values())

    def reverse(self) -> StepwiseSweep:
        return StepwiseSweep(self)


class StepwiseSweep(Sweep):
    """`step_backward` one step at a time; the shared weights' gradients add up with +=."""

    def __init__(self, sequence: StepwiseSequence) -> None:
        self.sequence, self.cell, self.caches = sequence, sequence.cell, sequence.caches
        self.params = {name: np.zeros_like(p) for name, p in self.cell.params.items()}
        self.dxs = np.zeros(sequence.xs.shape, sequence.xs.dtype)
        self.checked = False  # the first step's output is checked against the contract

    def step(self, t: int, dstate: Parts, out: Array) -> Parts:
        n = self.sequence.running(t)
        active = self.cell.pack_state(tuple(part[:n] for part in dstate))
        output = self.cell.step_backward(active, self.caches[t])
        if not self.checked:
            output, self.checked = self.cell.check_step_gradients(output, n), True
        self.dxs[t, :n], dstate_prev, grads = output
        for name, g in grads.items():
            self.params[name] += g  # the weights are shared across time: their gradients add up
        parts = self.cell.unpack_state(dstate_prev)
        out[:n], out[n:] = parts[0], dstate[0][n:]
        return (out, *(np.concatenate([new, old[n:]]) for new, old in zip(parts[1:], dstate[1:])))

    def gradients(self) -> tuple[Params, Array]:
        return self.params, self.dxs
