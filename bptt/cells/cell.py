"""What every cell shares: parameters in PyTorch's layout, states, input checks, and the contract a
cell author fills in.

A cell is one recurrent layer. Its author writes the plain step pair, the chain rule a reader checks:

    step_forward(x, state)     -> (next_state, cache)          one line per equation
    step_backward(dstate, cache) -> (dx, dstate_prev, grads)   one line per local derivative

and, for the differentiation modes (jvp, RTRL, UORO, Hessian-vector products), the forward-mode
rules next to them: `step_tangent` (the tangent of every cache field) and `backward_tangent` (the
tangent of the backward step). That is enough for `bptt.forward` / `bptt.backward`, truncation and
training: without more, they run the step pair one step at a time (`StepwiseSequence`). A cell may
also bring a fast path, a `Sequence` subclass that `bptt.forward` runs instead (the built-in cells'
are in bptt/cells/*_fast.py); a test keeps it equal to the step pair.

Every built-in cell reads its input and previous state through two affine maps,

    a_x = x W_ih^T + b_ih         (N, G*H)   input projection
    a_h = h_prev W_hh^T + b_hh    (N, G*H)   recurrent projection

and combines them element-wise with the previous state. States are tuples of (N, H) arrays whose
first part is the output h (LSTM: (h, c)); a one-part state is passed as the bare array.

Letters: T time, N batch, D input size, H hidden size, G gates (RNN 1, GRU 3, LSTM 4).
"""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple, cast

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..core import sequence as core_sequence
from ..core.checks import as_float_dtype, check_array, check_positive_int
from ..core.sequence import StepwiseSequence
from ..core.types import Array, IntArray, Params, Parts, Seed, State, StepCache



def as_numpy(value: ArrayLike) -> ArrayLike:
    """An array from a numpy array or anything array-like, a PyTorch tensor included (without
    importing torch: a tensor is asked for its numpy copy)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value


def sigmoid(a: Array) -> Array:
    """1 / (1 + exp(-a)), written as 0.5 tanh(a / 2) + 0.5, which cannot overflow."""
    return 0.5 * np.tanh(0.5 * a) + 0.5


class Cell:
    """One recurrent layer: parameters in PyTorch's layout, states, and the step contract a cell
    author fills in.

    A subclass sets `Cache` (the NamedTuple its `step_forward` returns, whose fields named like
    `state_fields` hold the state after the step and `<name>_prev` the state before it),
    `state_fields` (the names of the state's parts), `gate_names` and `gate_slope_bounds` (the
    largest derivative of each gate's activation: 1 for tanh, 1/4 for sigmoid), and writes the step
    pair. `Sequence` is the class `bptt.forward` runs over a whole sequence: the plain pair by
    default; the built-in cells bring a fast one.

    Parameters
    ----------
    input_size : int
        D, the size of each input x_t.
    hidden_size : int
        H, the size of the state.
    seed : int or numpy.random.SeedSequence or Generator, optional
        Seeds the weights, uniform in +-1/sqrt(H) like PyTorch's.
    dtype : float64 (default) or float32

    Attributes
    ----------
    params : dict of ndarray
        weight_ih (G*H, D), weight_hh (G*H, H_out), bias_ih (G*H,), bias_hh (G*H,).

    Raises
    ------
    ValueError
        If a size is not a positive integer or the dtype is not float32 or float64.

    Examples
    --------
    A cell with only a step pair runs through `bptt.forward` / `bptt.backward` one step at a time:

    >>> import numpy as np, bptt
    >>> from typing import NamedTuple
    >>> class DecayCache(NamedTuple):
    ...     x: np.ndarray
    ...     h_prev: np.ndarray
    ...     h: np.ndarray
    >>> class Decay(bptt.Cell):  # h = tanh(x W_ih^T + b_ih) + h_prev / 2
    ...     Cache = DecayCache
    ...     def step_forward(self, x, state):
    ...         x, (h_prev,) = self.check_step(x, state)
    ...         u = np.tanh(x @ self.params["weight_ih"].T + self.params["bias_ih"])
    ...         return u + h_prev / 2, DecayCache(x, h_prev, u + h_prev / 2)
    ...     def step_backward(self, dstate, cache):
    ...         (dh,) = self.check_step_gradient(dstate, cache)
    ...         u = cache.h - cache.h_prev / 2
    ...         da = dh * (1 - u * u)  # backprop through tanh
    ...         grads = {"weight_ih": da.T @ cache.x, "weight_hh": np.zeros_like(self.params["weight_hh"]),
    ...                  "bias_ih": da.sum(0), "bias_hh": np.zeros_like(self.params["bias_hh"])}
    ...         return da @ self.params["weight_ih"], dh / 2, grads
    >>> cell = Decay(2, 3, seed=0)
    >>> hs, tape = bptt.forward(cell, np.ones((4, 1, 2)))
    >>> bptt.backward(cell, tape, np.ones_like(hs)).params["weight_ih"].shape
    (3, 2)
    """

    Cache: type[NamedTuple]
    Sequence: type[core_sequence.Sequence] = StepwiseSequence
    state_fields: tuple[str, ...] = ("h",)
    gate_names: tuple[str, ...] = ("h",)
    gate_slope_bounds: tuple[float, ...] = (1.0,)

    def __init__(self, input_size: int, hidden_size: int, *, seed: Seed = None,
                 dtype: DTypeLike = np.float64) -> None:
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.dtype = as_float_dtype(dtype)
        rng = np.random.default_rng(seed)
        # PyTorch's default: every parameter uniform in +-1/sqrt(H), drawn in this order.
        bound = 1.0 / math.sqrt(self.hidden_size)
        self.params: Params = {
            name: rng.uniform(-bound, bound, shape).astype(self.dtype)
            for name, shape in self.param_shapes().items()
        }

    @property
    def gates(self) -> int:
        """G, the number of gate blocks stacked in W_ih and W_hh."""
        return len(self.gate_names)

    @property
    def output_size(self) -> int:
        """The size of the output h_t, the state's first part: H (an LSTM with projections: P)."""
        return self.hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """The size of each part of the state, in `state_fields` order."""
        return (self.output_size,) + (self.hidden_size,) * (len(self.state_fields) - 1)

    # ----------------------------------------------------------------- parameters
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        GH, D = self.gates * self.hidden_size, self.input_size
        return {"weight_ih": (GH, D), "weight_hh": (GH, self.output_size), "bias_ih": (GH,), "bias_hh": (GH,)}

    @property
    def num_params(self) -> int:
        return sum(p.size for p in self.params.values())

    def check_params(self) -> None:
        """Raise ValueError if a parameter is missing, misshapen or not finite."""
        shapes = self.param_shapes()
        if set(self.params) != set(shapes):
            raise ValueError(
                f"{type(self).__name__}.params must have keys {sorted(shapes)}, got {sorted(self.params)}"
            )
        for name, shape in shapes.items():
            self.params[name] = check_array(f"params[{name!r}]", self.params[name], shape, self.dtype)

    def load_params(self, params: Mapping[str, ArrayLike]) -> None:
        """Load weights by name, e.g. a PyTorch one-layer module's `state_dict()` (numpy arrays or
        tensors). PyTorch's `_l0` suffix is accepted and dropped; shapes must match exactly.

        Raises ValueError naming every key that is unknown or missing, and the first misshapen one.
        """
        shapes = self.param_shapes()
        new = {(key[:-3] if key.endswith("_l0") else key): as_numpy(value) for key, value in params.items()}
        unknown = sorted(key for key in params if (key[:-3] if key.endswith("_l0") else key) not in shapes)
        missing = sorted(set(shapes) - set(new))
        if unknown or missing:
            raise ValueError(f"{type(self).__name__}.load_params: unknown keys {unknown}, missing keys "
                             f"{missing}; expected {list(shapes)} (PyTorch's _l0 suffix allowed)")
        self.params = {name: check_array(f"params[{name!r}]", new[name], shape, self.dtype).copy()
                       for name, shape in shapes.items()}

    # ----------------------------------------------------------------- states and inputs
    def initial_state(self, batch_size: int) -> State:
        """The zero state: an (N, H) array, or a tuple of them for cells with more than h."""
        batch_size = check_positive_int("batch_size", batch_size)
        return self.pack_state(tuple(np.zeros((batch_size, size), self.dtype) for size in self.state_sizes))

    def pack_state(self, parts: Parts) -> State:
        return parts[0] if len(parts) == 1 else tuple(parts)

    def unpack_state(self, state: State) -> Parts:
        # a one-part state is its bare array, any other the tuple of its parts
        return (cast(Array, state),) if len(self.state_fields) == 1 else tuple(state)

    def check_state(self, state: State, batch_size: int | None, name: str = "state") -> Parts:
        """Validate a state (or a gradient with a state's structure); return its parts as a tuple."""
        n = len(self.state_fields)
        if n > 1 and not (isinstance(state, (tuple, list)) and len(state) == n):
            raise ValueError(
                f"{name} must be a tuple of {n} arrays {self.state_fields}, got {type(state).__name__}"
            )
        return tuple(
            check_array(name if n == 1 else f"{name}[{i}] ({field})", part,
                        (batch_size, size), self.dtype, names=("N", "H" if size == self.hidden_size else "P"))
            for i, (field, part, size) in enumerate(zip(self.state_fields, self.unpack_state(state), self.state_sizes))
        )

    def state_after(self, cache: StepCache) -> Parts:
        """The parts of the state a step's cache (or a tangent of one) ends with."""
        return tuple(getattr(cache, name) for name in self.state_fields)

    def start_state(self, state0: State | None, batch_size: int) -> Parts:
        """state0 checked and as a tuple of parts, or the zero state's parts when state0 is None."""
        if state0 is None:
            return self.unpack_state(self.initial_state(batch_size))
        return self.check_state(state0, batch_size, name="state0")

    def check_inputs(self, xs: ArrayLike, batch_size: int | None = None) -> Array:
        """xs (T, N, D) checked and cast to the cell's dtype (float64 input to a float32 cell is
        rounded to float32, as the cell computes in its own dtype)."""
        xs = check_array("xs", xs, (None, batch_size, self.input_size), self.dtype, names=("T", "N", "D"))
        if xs.shape[0] == 0 or xs.shape[1] == 0:
            raise ValueError(f"xs must have at least one timestep and one sequence, got shape {xs.shape}")
        return xs

    def check_step(self, x: ArrayLike, state: State) -> tuple[Array, Parts]:
        """For `step_forward`: the parameters, x (N, D) and the state checked; (x, state parts)."""
        self.check_params()
        x = check_array("x", x, (None, self.input_size), self.dtype, names=("N", "D"))
        return x, self.check_state(state, x.shape[0])

    def check_step_gradient(self, dstate: State, cache: StepCache) -> Parts:
        """For `step_backward`: the cache's type and dstate checked; dstate's parts."""
        if not isinstance(cache, self.Cache):
            raise ValueError(f"cache must be a {self.Cache.__name__} from this cell's step_forward")
        return self.check_state(dstate, cache[0].shape[0], name="dstate")

    # ----------------------------------------------------------------- the contract
    def step_forward(self, x: ArrayLike, state: State) -> tuple[State, StepCache]:
        """One timestep: x (N, D) and the state before it -> (the state after it, the step's cache)."""
        raise NotImplementedError

    def step_backward(self, dstate: State, cache: StepCache) -> tuple[Array, State, Params]:
        """Backward of one `step_forward`: dL/d(next state) -> (dx (N, D), dL/dstate before, grads),
        grads keyed like `params`."""
        raise NotImplementedError

    def step_tangent(self, cache: StepCache, x_dot: Array | None, state_prev_dot: Parts, a_x_dot: Array, a_h_dot: Array,
                     params_dot: Params | None = None) -> StepCache:
        """Forward mode of `step_forward`: a cache of the same type holding the tangent of every field,
        given the tangents of the input, the previous state's parts and the two projections
        a_x, a_h (..., N, G*H), and of the parameters outside those projections (params_dot, e.g. an
        LSTM's weight_hr). Tangents may carry extra leading axes (K, N, ...) for K directions."""
        raise NotImplementedError(f"{type(self).__name__} has no forward-mode rule (step_tangent)")

    def backward_tangent(self, cache: StepCache, cache_dot: StepCache, dstate: Parts, dstate_dot: Parts, da_x: Array,
                         da_h: Array, params_dot: Params) -> tuple[Array, Array, Parts, Params]:
        """Tangent of the backward step (the R-operator, for Hessian-vector products).

        Given the primal step (cache, dstate and the pre-activation gradients da_x, da_h it gives) and
        the tangents (cache_dot, dstate_dot, params_dot keyed like `params`, missing ones zero),
        returns (da_x_dot, da_h_dot, tangent of dL/dstate before the step, {name: tangent of this
        step's gradient} for parameters outside the two projections, e.g. an LSTM's weight_hr)."""
        raise NotImplementedError(f"{type(self).__name__} has no R-operator rule (backward_tangent)")

    def sequence(self, xs: Array, state0: Parts, batch_sizes: IntArray | None = None) -> core_sequence.Sequence:
        """The forward pass `bptt.forward` runs over xs (T, N, D) from state0's parts; batch_sizes
        (T,): the sequences running at each step, longest first (see `bptt.core.sequence`)."""
        return self.Sequence(self, xs, state0, batch_sizes)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"dtype={self.dtype.name})"
        )
