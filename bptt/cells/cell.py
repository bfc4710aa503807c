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


def _names(value: object) -> bool:
    """Whether `value` is a non-empty tuple (or list) of strings."""
    return isinstance(value, (tuple, list)) and len(value) > 0 and all(isinstance(v, str) for v in value)


def _described(value: object) -> str:
    """A short description of what a method returned, for messages: its type, and shape if it has one."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}"
    if isinstance(value, tuple):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


class Cell:
    """One recurrent layer: parameters in PyTorch's layout, states, and the step contract a cell
    author fills in.

    A subclass sets `Cache` (the NamedTuple its `step_forward` returns; every field an array with
    the batch first, (N, ...); for the differentiation modes, fields named like `state_fields` hold
    the state after the step, `<name>_prev` the state before it, and `x` the input), `gate_names`
    (the names of the G gate blocks stacked in weight_ih and weight_hh: G sets their shapes),
    optionally `state_fields` (the names of the state's parts, default ("h",)) and
    `gate_slope_bounds` (the largest derivative of each gate's activation: 1 for tanh, 1/4 for
    sigmoid; default 1 for every gate), and writes the step pair. `Sequence` is the class
    `bptt.forward` runs over a whole sequence: the plain pair by default; the built-in cells bring
    a fast one. What the class sets is checked when a cell is built (`check_class`), and what the
    pair returns the first time a sequence runs it (`check_step_output`, `check_step_gradients`).

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
    TypeError
        If the class does not set what the contract asks (`check_class`), naming it.

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
    ...     gate_names = ("u",)  # one gate block: weight_ih is (1 * H, D)
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
    gate_names: tuple[str, ...]  # no default: G sets the parameters' shapes, so every cell says it
    gate_slope_bounds: tuple[float, ...] = ()  # () stands for 1 per gate, a bound for tanh, sigmoid and relu

    def __init__(self, input_size: int, hidden_size: int, *, seed: Seed = None,
                 dtype: DTypeLike = np.float64) -> None:
        type(self).check_class()
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
        """G, the number of gate blocks stacked in W_ih and W_hh (0 for a cell that sets its own
        `param_shapes` and no gate_names)."""
        return len(getattr(self, "gate_names", ()))

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

    # ----------------------------------------------------------------- the contract, checked
    @classmethod
    def check_class(cls) -> None:
        """Raise TypeError naming everything the class should set or write and does not.

        The contract: `Cache` a NamedTuple class; `step_forward` and `step_backward` written;
        `gate_names` a non-empty tuple of names (unless the class writes its own `param_shapes`);
        `state_fields` a non-empty tuple of names; `gate_slope_bounds` empty or one positive number
        per gate. Built cells call it, and so does `bptt.make_cell` for a class named by import path.

        Examples
        --------
        >>> import bptt
        >>> class Unfinished(bptt.Cell):
        ...     Cache = bptt.RNNCache
        >>> Unfinished.check_class()
        Traceback (most recent call last):
        ...
        TypeError: Unfinished does not fill in the Cell contract: it must write step_forward (see bptt.Cell.step_forward); write step_backward (see bptt.Cell.step_backward); set gate_names, ...
        """
        problems = []
        cache = getattr(cls, "Cache", None)
        if not (isinstance(cache, type) and issubclass(cache, tuple) and hasattr(cache, "_fields")):
            problems.append(f"set Cache, the NamedTuple class its step_forward returns as a step's cache "
                            f"(got {cache!r})")
        for method in ("step_forward", "step_backward"):
            if getattr(cls, method) is getattr(Cell, method):
                problems.append(f"write {method} (see bptt.Cell.{method})")
        gates: tuple[str, ...] | None = getattr(cls, "gate_names", None)
        if not _names(gates) and cls.param_shapes is Cell.param_shapes:
            problems.append("set gate_names, the names of the G gate blocks stacked in weight_ih and weight_hh: "
                            "G = len(gate_names) gives their shapes (G*H, D) and (G*H, H), e.g. "
                            "gate_names = ('z', 'n') for two" + ("" if gates is None else f" (got {gates!r})"))
        if not _names(cls.state_fields):
            problems.append(f"set state_fields, a non-empty tuple of the state's part names (got {cls.state_fields!r})")
        slopes = cls.gate_slope_bounds
        if slopes and not (isinstance(slopes, (tuple, list)) and _names(gates) and len(slopes) == len(gates or ())
                           and all(isinstance(b, (int, float)) and b > 0 for b in slopes)):
            problems.append(f"set gate_slope_bounds to () or one positive number per gate {gates!r} (got {slopes!r})")
        if problems:
            raise TypeError(f"{cls.__name__} does not fill in the Cell contract: it must " + "; ".join(problems))

    def check_step_output(self, output: object, batch_size: int) -> tuple[State, StepCache]:
        """What `step_forward` returned for a batch of N sequences, checked: (the state after the
        step, shaped like `initial_state(N)`, in the cell's dtype; a `Cache` whose fields are arrays
        with the batch first, (N, ...)).

        The unroller checks a cell without a fast path the first time a sequence runs it.

        Raises
        ------
        ValueError
            Naming the method, what it returned (the part, its shape) and what was expected.
        """
        where = f"{type(self).__name__}.step_forward"
        if not (isinstance(output, tuple) and len(output) == 2):
            raise ValueError(f"{where} must return (state, cache), got {_described(output)}")
        state, cache = output
        self._check_returned_state(where, "the state", state, batch_size)
        if not isinstance(cache, self.Cache):
            raise ValueError(f"{where} must return a {self.Cache.__name__} (the class's Cache) as its cache, "
                             f"got {_described(cache)}")
        for name, field in zip(cache._fields, cache):
            if not (isinstance(field, np.ndarray) and field.ndim > 0 and len(field) == batch_size):
                raise ValueError(f"{where} returned cache field {name!r} as {_described(field)}; expected an array "
                                 f"with the batch first, (N={batch_size}, ...)")
        return state, cache

    def check_step_gradients(self, output: object, batch_size: int) -> tuple[Array, State, Params]:
        """What `step_backward` returned for a batch of N sequences, checked: (dx (N, D); dL/dstate
        before the step, shaped like the state; grads, a dict with every key of `params` and each
        parameter's shape), every array in the cell's dtype.

        The reverse sweep checks a cell without a fast path at its first step.

        Raises
        ------
        ValueError
            Naming the method, what it returned (the gradient, its shape) and what was expected.

        Examples
        --------
        >>> import numpy as np, bptt
        >>> cell = bptt.RNN(2, 3, seed=0)
        >>> h, cache = cell.step_forward(np.ones((4, 2)), cell.initial_state(4))
        >>> dx, dh_prev, grads = cell.step_backward(np.ones((4, 3)), cache)
        >>> cell.check_step_gradients((dx, dh_prev, {**grads, "weight_hh": grads["weight_hh"][:2]}), 4)
        Traceback (most recent call last):
        ...
        ValueError: RNN.step_backward returned grads['weight_hh'] of shape (2, 3); expected (3, 3), the shape of params['weight_hh']
        """
        where = f"{type(self).__name__}.step_backward"
        if not (isinstance(output, tuple) and len(output) == 3):
            raise ValueError(f"{where} must return (dx, dstate_prev, grads), got {_described(output)}")
        dx, dstate_prev, grads = output
        self._check_returned_array(where, "dx", dx, (batch_size, self.input_size), "(N, D) = {}")
        self._check_returned_state(where, "dstate_prev", dstate_prev, batch_size)
        if not isinstance(grads, dict):
            raise ValueError(f"{where} must return grads as a dict keyed like params, got {_described(grads)}")
        if grads.keys() != self.params.keys():
            missing, unknown = sorted(set(self.params) - set(grads)), sorted(set(grads) - set(self.params))
            raise ValueError(f"{where} returned grads with keys {sorted(grads)}, expected those of params "
                             f"{sorted(self.params)} (missing {missing}, unknown {unknown})")
        for name, param in self.params.items():
            self._check_returned_array(where, f"grads[{name!r}]", grads[name], param.shape,
                                       f"{{}}, the shape of params[{name!r}]")
        return dx, dstate_prev, grads

    def _check_returned_state(self, where: str, what: str, state: object, batch_size: int) -> None:
        n = len(self.state_fields)
        if n > 1 and not (isinstance(state, tuple) and len(state) == n):
            raise ValueError(f"{where} returned {what} as {_described(state)}; expected a tuple of {n} arrays "
                             f"{self.state_fields}")
        parts = (state,) if n == 1 else cast(tuple, state)
        for field, part, size in zip(self.state_fields, parts, self.state_sizes):
            label = what if n == 1 else f"{what} part {field!r}"
            self._check_returned_array(where, label, part, (batch_size, size), "(N, H) = {}")

    def _check_returned_array(self, where: str, what: str, value: object, shape: tuple[int, ...],
                              expected: str) -> None:
        """expected: how the expected shape reads, "{}" standing for it, e.g. "(N, H) = {}"."""
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{where} returned {what} as {_described(value)}; expected an array, "
                             + expected.format(shape))
        if value.shape != shape:
            raise ValueError(f"{where} returned {what} of shape {value.shape}; expected " + expected.format(shape))
        if value.dtype != self.dtype:
            raise ValueError(f"{where} returned {what} of dtype {value.dtype}; expected the cell's {self.dtype}")

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
