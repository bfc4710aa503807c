"""Stacked and bidirectional recurrent layers: PyTorch's whole nn.RNN / nn.LSTM / nn.GRU.

    net = bptt.Stack("lstm", input_size=8, hidden_size=32, num_layers=3, bidirectional=True)
    hs, tape = bptt.forward(net, xs, state0, lengths=lengths)   # xs (T, N, D) -> hs (T, N, 2 H)
    grads = bptt.backward(net, tape, dhs)
    grads.params["weight_hh_l2_reverse"], grads.dxs, grads.dstate0, grads.dh_norms  # dh_norms (L, 2, T)

Layer l runs one cell per direction over the layer below's output (the inputs for l = 0): the
forward direction from t = 0, the reverse direction from each sequence's own last step back to 0.
Their outputs are concatenated, and between layers (on every layer's output but the last) dropout
multiplies them by a mask drawn from `net.rng` and kept on the tape. Each (layer, direction) is an
ordinary cell run through `bptt.forward` / `bptt.backward`'s own code, so everything a cell does
(the fast path, lengths) a stack does, layer by layer; the sweep goes down the layers, the input
gradient of one layer being the output gradient of the one below.

Parameters, states and outputs are laid out exactly as PyTorch's: `weight_ih_l{l}{_reverse}`, ...,
states (L * directions, N, H_out) with index l * directions + d, H_out = proj_size or H.

Letters: T time, N batch, D input size, H hidden size, P projection size, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Literal, Mapping, Protocol, TypeVar, cast, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..core.checks import as_float_dtype, check_array, check_positive_int
from ..core.packing import check_lengths, reverse_within_lengths
from ..core.sequence import CompositeModel
from ..core.step import input_state_vjp
from ..core.types import Array, IntArray, Params, Parts, Seed, State
from ..core.unroll import (
    Gradients, Tape, check_weights_unchanged, frobenius_norms, read_only, run_forward, sweep_back,
)
from .cell import Cell, as_numpy
from .lstm import LSTM
from .registry import cell_factory, cell_name, make_cell

SUFFIXES = ("", "_reverse")


def param_key(name: str, layer: int, direction: int) -> str:
    """PyTorch's name of a cell parameter in a stack: weight_hh, layer 1, reverse -> weight_hh_l1_reverse."""
    return f"{name}_l{layer}{SUFFIXES[direction]}"


class LayerTape(Protocol):
    """What a StackTape reads off the tape of each (layer, direction): a Tape, or a CheckpointTape."""

    def __len__(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    @property
    def final_state(self) -> State: ...

    @property
    def nbytes(self) -> int: ...

    @property
    def weights(self) -> Params: ...


LayerT = TypeVar("LayerT", bound=LayerTape)  # the kind of tape every (layer, direction) of one run keeps


@dataclass(frozen=True, repr=False)
class StackTape(Generic[LayerT]):
    """What a Stack's reverse sweep needs: every (layer, direction)'s own Tape, the dropout masks
    between layers, the lengths, and the parameters the forward pass saw.

    `Stack.forward` (or `bptt.forward(stack, ...)`) makes it and `bptt.backward(stack, ...)`
    consumes it.

    Attributes
    ----------
    net : Stack
        The stack that ran.
    layers : list of list of Tape
        `layers[l][d]` is the tape of layer l, direction d (0 forward, 1 reverse), time-major.
        With `bptt.forward_checkpointed` they are CheckpointTapes.
    masks : list of (ndarray or None)
        One per layer but the last: the dropout mask (N, directions * H_out) that multiplied its
        output, or None without dropout.
    lengths : ndarray, shape (N,), or None
        The sequences' lengths; None when every sequence ran all T steps.
    weights : dict of ndarray
        The stack's parameters as the forward pass saw them, under the stack's names: the copies
        its layers' tapes took (no second copy).
    outputs : ndarray, shape (T, N, directions * H_out)
        The last layer's output as returned, (N, T, ...) when the stack is batch-first.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> net = bptt.Stack("gru", 2, 3, num_layers=2, bidirectional=True, seed=0)
    >>> hs, tape = bptt.forward(net, np.ones((4, 1, 2)))
    >>> len(tape.layers), len(tape.layers[0]), hs.shape, tape.final_state.shape
    (2, 2, (4, 1, 6), (4, 1, 3))
    """

    net: Stack
    layers: list[list[LayerT]]
    masks: list[Array | None]  # per layer but the last: the dropout mask multiplying its output, or None
    lengths: IntArray | None
    weights: Params
    outputs: Array  # hs, as returned (batch-first when the net is)

    def __len__(self) -> int:
        return len(self.layers[0][0])

    @property
    def batch_size(self) -> int:
        return self.layers[0][0].batch_size

    @property
    def hs(self) -> Array:
        """The last layer's output, (T, N, directions * H_out) (or (N, T, ...) batch-first), read-only."""
        return read_only(self.outputs)

    @property
    def final_state(self) -> State:
        """Each (layer, direction)'s final state, stacked as PyTorch's: h (L * directions, N, H_out),
        and c (L * directions, N, H) for LSTM."""
        return self.net.stack_states([tape.final_state for layer in self.layers for tape in layer])

    def state_at(self, k: int) -> State:
        """A copy of the stacked state after the first k steps (unidirectional stacks only: the
        reverse direction has no state at a step k of the forward time)."""
        if self.net.bidirectional:
            raise ValueError("a bidirectional stack has no state after k steps: its reverse direction "
                             "runs from the end; truncation needs a unidirectional stack")
        states = []
        for layer in self.layers:
            if not isinstance(tape := layer[0], Tape):
                raise ValueError("a checkpointed tape keeps a state only every `every` steps, not after any k: "
                                 "the state after k steps needs the tape of bptt.forward")
            states.append(tape.state_at(k))
        return self.net.stack_states(states)

    @property
    def nbytes(self) -> int:
        return sum(tape.nbytes for layer in self.layers for tape in layer) + sum(
            m.nbytes for m in self.masks if m is not None)

    def __repr__(self) -> str:
        return (f"StackTape({self.net.cell_name}, L={len(self.layers)}, directions={len(self.layers[0])}, "
                f"T={len(self)}, N={self.batch_size}, {self.nbytes / 2**20:.2f} MiB)")


class Stack(CompositeModel):
    """Stacked, optionally bidirectional recurrent layers, as PyTorch's nn.RNN / nn.LSTM / nn.GRU.

    Parameters
    ----------
    cell : str or Cell subclass
        The cell of every (layer, direction), as `bptt.make_cell` takes it: one of `bptt.CELL_NAMES`
        ("rnn" (tanh), "rnn-relu", "lstm", "gru"), a name registered in the entry-point group
        bptt.cells, or MODULE:CLASS; or a `bptt.Cell` subclass itself, e.g. one defined in a script.
        Each is built as ``cls(input_size, hidden_size, seed=..., dtype=...)``.
    input_size : int
        D, the size of each input x_t.
    hidden_size : int
        H, the size of each layer's state.
    num_layers : int
        L, the number of layers.
    bidirectional : bool
        Run every layer in both directions and concatenate the two outputs.
    proj_size : int
        LSTM only: project h to P < H features (`weight_hr_l{l}`); 0 for none.
    dropout : float in [0, 1)
        Dropout on every layer's output but the last, while `net.training` (the default).
    batch_first : bool
        Inputs, outputs and their gradients are (N, T, ...) instead of (T, N, ...); states are not.
    seed : int, numpy.random.SeedSequence or Generator, optional
        Seeds the weights (uniform in +-1/sqrt(H), drawn in `params` order, as PyTorch draws them)
        and the dropout masks.
    dtype : float64 (default) or float32

    Attributes
    ----------
    params : dict of ndarray
        Exactly the keys and shapes of the PyTorch module's `state_dict()`.
    cell_name : str
        The cell's name as given, or for a class, the name `bptt.make_cell` takes back (a built-in's
        name, else MODULE:CLASS).
    rng : numpy.random.Generator
        Draws the dropout masks.
    training : bool
        Dropout is applied only while True (`net.train()`, `net.eval()`).

    Raises
    ------
    ValueError
        If a setting is out of range (a cell name that resolves to no cell, naming what was tried;
        proj_size for a cell other than the LSTM or not below H; dropout outside [0, 1)).
    TypeError
        If the cell class does not fill in the Cell contract (`bptt.Cell.check_class`).

    Examples
    --------
    >>> import numpy as np, bptt
    >>> net = bptt.Stack("gru", input_size=3, hidden_size=4, num_layers=2, bidirectional=True, seed=0)
    >>> hs, tape = bptt.forward(net, np.ones((5, 2, 3)), lengths=[5, 3])
    >>> grads = bptt.backward(net, tape, np.ones_like(hs))
    >>> hs.shape, tape.final_state.shape, grads.dh_norms.shape
    ((5, 2, 8), (4, 2, 4), (2, 2, 5))
    >>> sorted(net.params)[:3]
    ['bias_hh_l0', 'bias_hh_l0_reverse', 'bias_hh_l1']
    """

    def __init__(self, cell: str | type[Cell], input_size: int, hidden_size: int, num_layers: int = 1, *,
                 bidirectional: bool = False, proj_size: int = 0, dropout: float = 0.0,
                 batch_first: bool = False, seed: Seed = None, dtype: DTypeLike = np.float64) -> None:
        build: Callable[..., Cell]
        if isinstance(cell, type) and issubclass(cell, Cell):
            cell.check_class()
            if proj_size and cell is not LSTM:
                raise ValueError(f"proj_size is only for the lstm cell (as in PyTorch), got cell {cell.__name__} "
                                 f"with proj_size={proj_size}")
            build = cell if not proj_size else (lambda *args, **kw: LSTM(*args, proj_size=proj_size, **kw))
        elif isinstance(cell, str):
            cell_factory(cell)  # an unknown name is refused before anything is built, naming what was tried
            build = lambda *args, **kw: make_cell(cell, *args, proj_size=proj_size, **kw)  # noqa: E731
        else:
            raise ValueError(f"cell must be a cell's name (e.g. 'gru' or 'mycells:MGU') or a bptt.Cell subclass, "
                             f"got {cell!r}")
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        for name, flag in (("bidirectional", bidirectional), ("batch_first", batch_first)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {flag!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        self.bidirectional, self.batch_first = bool(bidirectional), bool(batch_first)
        self.directions = 2 if self.bidirectional else 1
        self.dropout, self.dtype, self.training = float(dropout), as_float_dtype(dtype), True
        self.rng = np.random.default_rng(seed)
        # cells[l][d]: layer l, direction d; each draws its weights from self.rng in turn
        self.cells: list[list[Cell]] = []
        for layer in range(self.num_layers):
            size = self.input_size if layer == 0 else self.directions * (proj_size or self.hidden_size)
            self.cells.append([build(size, self.hidden_size, seed=self.rng, dtype=self.dtype)
                               for _ in range(self.directions)])
        first = self.cells[0][0]
        self.cell_name = cell if isinstance(cell, str) else cell_name(first)
        self.proj_size = first.proj_size if isinstance(first, LSTM) else 0
        self.params: Params = {param_key(name, layer, d): value
                               for layer, row in enumerate(self.cells) for d, c in enumerate(row)
                               for name, value in c.params.items()}

    # ----------------------------------------------------------------- layout
    @property
    def output_size(self) -> int:
        """H_out: the size of each direction's output h (proj_size or H)."""
        return self.cells[0][0].output_size

    @property
    def state_fields(self) -> tuple[str, ...]:
        return self.cells[0][0].state_fields

    @property
    def num_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {param_key(name, layer, d): shape for layer, row in enumerate(self.cells)
                for d, c in enumerate(row) for name, shape in c.param_shapes().items()}

    def layer_cells(self) -> list[list[Cell]]:
        """cells[l][d] with their parameters taken from `params` (so a new array put there counts)."""
        for layer, row in enumerate(self.cells):
            for d, c in enumerate(row):
                c.params = {name: self.params[param_key(name, layer, d)] for name in c.param_shapes()}
        return self.cells

    def check_params(self) -> None:
        """Raise ValueError if a parameter is missing, unknown, misshapen or not finite."""
        shapes = self.param_shapes()
        unknown, missing = sorted(set(self.params) - set(shapes)), sorted(set(shapes) - set(self.params))
        if unknown or missing:
            raise ValueError(f"Stack.params: unknown keys {unknown}, missing keys {missing}")
        for name, shape in shapes.items():
            self.params[name] = check_array(f"params[{name!r}]", self.params[name], shape, self.dtype)

    def load_params(self, params: Mapping[str, ArrayLike]) -> None:
        """Load a PyTorch module's `state_dict()` (tensors or numpy arrays) built with the same settings.

        Raises ValueError naming every key that is missing, unknown or misshapen, with the shapes.
        """
        shapes = self.param_shapes()
        given = {key: np.asarray(as_numpy(value)) for key, value in params.items()}
        problems = [f"missing {k} {shapes[k]}" for k in shapes if k not in given]
        problems += [f"unknown {k} {given[k].shape}" for k in given if k not in shapes]
        problems += [f"{k} has shape {given[k].shape}, expected {shapes[k]}"
                     for k in shapes if k in given and given[k].shape != tuple(shapes[k])]
        if problems:
            raise ValueError(f"parameters do not fit {self!r}: " + "; ".join(problems))
        self.params = {k: check_array(f"params[{k!r}]", given[k], shapes[k], self.dtype).copy() for k in shapes}

    @overload
    def state_dict(self, *, tensors: Literal[False] = False) -> Params: ...

    @overload
    def state_dict(self, *, tensors: bool) -> dict[str, Any]: ...  # torch tensors with tensors=True

    def state_dict(self, *, tensors: bool = False) -> dict[str, Any]:
        """Copies of the parameters under PyTorch's names, as numpy arrays, or as torch tensors for
        `module.load_state_dict(...)` with tensors=True (which imports torch)."""
        copies = {k: v.copy() for k, v in self.params.items()}
        if not tensors:
            return copies
        import torch  # only asked for by someone moving weights to PyTorch

        return {k: torch.from_numpy(v) for k, v in copies.items()}

    def train(self, mode: bool = True) -> "Stack":
        """Dropout on (mode True) or off; returns the net, as PyTorch's Module.train does."""
        self.training = bool(mode)
        return self

    def eval(self) -> "Stack":
        return self.train(False)

    # ----------------------------------------------------------------- states
    def initial_state(self, batch_size: int) -> State:
        """Zeros: h (L * directions, N, H_out), and (h, c) with c (L * directions, N, H) for LSTM."""
        N, LD = check_positive_int("batch_size", batch_size), self.num_layers * self.directions
        sizes = self.cells[0][0].state_sizes
        return self.pack_state(tuple(np.zeros((LD, N, size), self.dtype) for size in sizes))

    def pack_state(self, parts: Parts) -> State:
        return parts[0] if len(parts) == 1 else tuple(parts)

    def unpack_state(self, state: State) -> Parts:
        # a one-part state is its bare array, any other the tuple of its parts
        return (cast(Array, state),) if len(self.state_fields) == 1 else tuple(state)

    def check_state(self, state: State, batch_size: int | None, name: str = "state") -> Parts:
        """Validate a stacked state (or a gradient of one); return its parts as a tuple."""
        n, LD = len(self.state_fields), self.num_layers * self.directions
        if n > 1 and not (isinstance(state, (tuple, list)) and len(state) == n):
            raise ValueError(f"{name} must be a tuple of {n} arrays {self.state_fields}, got {type(state).__name__}")
        return tuple(
            check_array(name if n == 1 else f"{name}[{i}] ({field})", part, (LD, batch_size, size), self.dtype,
                        names=("L*directions", "N", "H"))
            for i, (field, part, size) in enumerate(zip(self.state_fields, self.unpack_state(state),
                                                        self.cells[0][0].state_sizes)))

    def layer_states(self, state: State | None, batch_size: int, name: str) -> list[State]:
        """A stacked state (None: zeros) as one packed cell state per (layer, direction), in
        index order l * directions + d."""
        parts = (self.unpack_state(self.initial_state(batch_size)) if state is None
                 else self.check_state(state, batch_size, name))
        return [self.cells[0][0].pack_state(tuple(p[i] for p in parts)) for i in range(len(parts[0]))]

    def stack_states(self, states: list[State]) -> State:
        """One packed cell state per (layer, direction) -> the stacked state (copies)."""
        cell = self.cells[0][0]
        parts = [cell.unpack_state(s) for s in states]
        return self.pack_state(tuple(np.stack([p[k] for p in parts]) for k in range(len(self.state_fields))))

    # ----------------------------------------------------------------- the passes
    def check_inputs(self, xs: ArrayLike, batch_size: int | None = None) -> Array:
        """xs (T, N, D) checked, for the code that walks time-major batches (truncation, training):
        a batch-first stack is refused there."""
        if self.batch_first:
            raise ValueError("truncation and training walk time-major batches (T, N, D): build the "
                             "Stack with batch_first=False for them")
        return self.time_major(xs, "xs", self.input_size)

    def time_major(self, array: ArrayLike, name: str, last: int) -> Array:
        """array checked as (T, N, last) or, batch-first, (N, T, last); returned time-major."""
        names = ("N", "T", "D") if self.batch_first else ("T", "N", "D")
        array = check_array(name, array, (None, None, last), self.dtype, names=names)
        return array.transpose(1, 0, 2) if self.batch_first else array

    def draw_masks(self, T: int, N: int) -> list[Array | None]:
        """The dropout masks for one forward pass: per layer but the last, (T, N, directions * H_out)
        with entries 0 or 1 / (1 - p) (None when dropout is off)."""
        if not (self.training and self.dropout > 0):
            return [None] * (self.num_layers - 1)
        keep, shape = 1 - self.dropout, (T, N, self.directions * self.output_size)
        return [(self.rng.random(shape) < keep).astype(self.dtype) / self.dtype.type(keep)
                for _ in range(self.num_layers - 1)]

    def forward(self, xs: ArrayLike, state0: State | None = None, *, lengths: ArrayLike | None = None,
                shortest: int = 1, masks: list[Array | None] | None = None) -> tuple[Array, StackTape[Tape]]:
        """`bptt.forward(net, xs, state0, lengths=...)`: see the module docstring and `bptt.forward`.

        masks: the dropout masks to use (e.g. a tape's), instead of drawing new ones.
        """
        return self.run_layers(xs, state0, lambda cell, x, s: run_forward(cell, x, s, lengths, shortest),
                               lengths=lengths, shortest=shortest, masks=masks)

    def backward(self, tape: StackTape[Tape], dhs: ArrayLike | None, dstate_final: State | None = None) -> Gradients:
        """`bptt.backward(net, tape, dhs, dstate_final)`: down the layers, each through its cells'
        reverse sweeps; dh_norms is (L, directions, T), indexed by the forward time t."""
        return self.sweep_layers(tape, dhs, dstate_final, sweep_back)

    def run_layers(self, xs: ArrayLike, state0: State | None, run: Callable[[Cell, Array, State], tuple[Array, LayerT]],
                   *, lengths: ArrayLike | None = None, shortest: int = 1,
                   masks: list[Array | None] | None = None) -> tuple[Array, StackTape[LayerT]]:
        """The forward pass, each (layer, direction) through run(cell, x (T, N, D_l), state) ->
        (hs, tape): `bptt.forward`'s own, or e.g. a checkpointed one. Returns (hs, StackTape)."""
        self.check_params()
        xs = self.time_major(xs, "xs", self.input_size)
        T, N = xs.shape[:2]
        if T == 0 or N == 0:
            raise ValueError(f"xs must have at least one timestep and one sequence, got shape {xs.shape}")
        if lengths is not None:
            lengths = check_lengths(lengths, T, N, shortest)
        states = self.layer_states(state0, N, "state0")
        masks = self.draw_masks(T, N) if masks is None else masks
        layer_in, tapes = xs, []
        for layer, row in enumerate(self.layer_cells()):
            outputs, row_tapes = [], []
            for d, cell in enumerate(row):
                x = layer_in if d == 0 else reverse_within_lengths(layer_in, lengths)
                hs, layer_tape = run(cell, x, states[layer * self.directions + d])
                outputs.append(hs if d == 0 else reverse_within_lengths(hs, lengths))
                row_tapes.append(layer_tape)
            tapes.append(row_tapes)
            layer_in = outputs[0] if self.directions == 1 else np.concatenate(outputs, axis=-1)
            if layer < self.num_layers - 1 and (mask := masks[layer]) is not None:
                layer_in = layer_in * mask  # dropout between layers
        hs = layer_in.transpose(1, 0, 2) if self.batch_first else layer_in
        weights = {param_key(name, layer, d): value for layer, row in enumerate(tapes)
                   for d, layer_tape in enumerate(row) for name, value in layer_tape.weights.items()}
        tape = StackTape(self, tapes, masks, lengths, weights, hs)
        return tape.hs, tape

    def sweep_layers(self, tape: object, dhs: ArrayLike | None, dstate_final: State | None,
                     sweep: Callable[[Cell, Any, Array | None, State | None], tuple[Gradients, Array | None]]
                     ) -> Gradients:
        """The reverse sweep, each (layer, direction) through sweep(cell, its tape, dhs, dstate_final)
        -> (Gradients, total dL/dh (T, N, H) or None). `tape` is checked to be this stack's StackTape;
        each sweep checks that its layer's tape is of the kind it sweeps."""
        if not isinstance(tape, StackTape) or tape.net is not self:
            raise ValueError("tape must come from bptt.forward with this Stack")
        check_weights_unchanged(self, tape.weights, "bptt.forward")
        T, N, lengths = len(tape), tape.batch_size, tape.lengths
        d_out = None if dhs is None else self.time_major(dhs, "dhs", self.directions * self.output_size)
        finals = None if dstate_final is None else self.layer_states(dstate_final, N, "dstate_final")
        H_out, cells = self.output_size, self.layer_cells()
        grads: Params = {}
        dstate0: dict[int, State] = {}  # by index l * directions + d
        dh_norms = np.zeros((self.num_layers, self.directions, T))
        for layer in range(self.num_layers - 1, -1, -1):
            if layer < self.num_layers - 1 and (mask := tape.masks[layer]) is not None:
                d_out = cast(Array, d_out) * mask  # back through the dropout mask (below the top, an array)
            d_in: Array | None = None
            for d, cell in enumerate(cells[layer]):
                index = layer * self.directions + d
                part = None if d_out is None else d_out[..., d * H_out : (d + 1) * H_out]
                if d == 1 and part is not None:
                    part = reverse_within_lengths(part, lengths)
                g, dh_total = sweep(cell, tape.layers[layer][d], part, None if finals is None else finals[index])
                dx = g.dxs if d == 0 else reverse_within_lengths(g.dxs, lengths)
                d_in = dx if d_in is None else d_in + dx
                grads.update({param_key(name, layer, d): value for name, value in g.params.items()})
                dstate0[index] = g.dstate0
                dh_norms[layer, d] = g.dh_norms if d == 0 else (
                    g.dh_norms[::-1] if lengths is None else  # the reverse run's step t is time T-1-t
                    # with lengths the tapes are bptt.forward's, whose sweep returns dh_total
                    frobenius_norms(reverse_within_lengths(cast(Array, dh_total), lengths)))
            d_out = d_in
        d_out = cast(Array, d_out)  # the first layer's input gradient
        dxs = d_out.transpose(1, 0, 2) if self.batch_first else d_out
        dstate0_list = [dstate0[index] for index in range(self.num_layers * self.directions)]
        return Gradients({k: grads[k] for k in self.params}, dxs, self.stack_states(dstate0_list), dh_norms)

    # ----------------------------------------------------------------- the step Jacobian
    @property
    def state_size(self) -> int:
        """S: every layer's state side by side (unidirectional stacks)."""
        return self.num_layers * sum(self.cells[0][0].state_sizes)

    def step_vjp(self, tape: StackTape[Tape], t: int, rows: Array) -> Array:
        """rows (N, K, S) over the stacked state s_t = (s^0_t, ..., s^(L-1)_t) -> v J_t, J_t = ds_t /
        ds_{t-1}. Top layer first: layer l's step also sends a gradient into its input, which is
        layer l-1's output at the same step (through the dropout mask), so it joins that layer's rows
        before they go back through its own step. Unidirectional stacks without lengths."""
        if not isinstance(tape, StackTape) or tape.net is not self:
            raise ValueError("tape must come from bptt.forward with this Stack")
        if not all(isinstance(row[0], Tape) for row in tape.layers):
            raise ValueError("the step Jacobian of a stack needs the tape of bptt.forward: a checkpointed tape "
                             "keeps no step caches")
        if self.bidirectional or tape.lengths is not None:
            raise ValueError("the step Jacobian of a stack needs one direction and no lengths: a "
                             "bidirectional stack has no state that moves forward in time alone")
        N, K, S = rows.shape
        sizes, cells = self.cells[0][0].state_sizes, self.layer_cells()
        width, H_out = sum(sizes), self.output_size
        out, into_output = np.empty_like(rows), None
        for layer in range(self.num_layers - 1, -1, -1):
            block = rows[..., layer * width : (layer + 1) * width].reshape(N * K, width).copy()
            if into_output is not None:
                block[:, :H_out] += into_output  # the layer above read this output at step t
            cell, cache = cells[layer][0], tape.layers[layer][0].step(t)
            tiled = type(cache)(*(np.repeat(field, K, axis=0) for field in cache))
            bounds = np.cumsum((0,) + tuple(sizes))
            dx, dstate_prev = input_state_vjp(cell, tiled, tuple(block[:, a:b] for a, b in zip(bounds[:-1], bounds[1:])))
            out[..., layer * width : (layer + 1) * width] = np.concatenate(dstate_prev, axis=1).reshape(N, K, width)
            if layer > 0:
                into_output = dx  # dL/dx_t: back into the layer below
                if (mask := tape.masks[layer - 1]) is not None:
                    into_output = into_output * np.repeat(mask[t], K, axis=0)
        return out

    def __repr__(self) -> str:
        options = [f"num_layers={self.num_layers}"]
        options += ["bidirectional=True"] * self.bidirectional + [f"proj_size={self.proj_size}"] * bool(self.proj_size)
        options += [f"dropout={self.dropout}"] * bool(self.dropout) + ["batch_first=True"] * self.batch_first
        return (f"Stack({self.cell_name!r}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"{', '.join(options)}, dtype={self.dtype.name})")
