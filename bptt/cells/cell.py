"""What every cell shares: parameters in PyTorch's layout, states, and the split of a step into an
affine part (batched over time by the unroller) and a recurrent part (run one step at a time).

Every cell here computes, for input x (N, D) and previous state with hidden part h (N, H),

    a_x = x W_ih^T + b_ih         (N, G*H)   input projection: one matrix product for all T steps
    a_h = h W_hh^T + b_hh         (N, G*H)   recurrent projection: the only product inside the loop
    state' = pointwise(a_x, a_h, state)

so the weight gradients are sums over time of outer products,

    dW_ih = sum_t da_x[t]^T x_t,   dW_hh = sum_t da_h[t]^T h_{t-1},   db_ih = sum_t da_x[t], ...

and are formed after the reverse sweep in one matrix product each. A subclass supplies the pointwise
part: `recurrent_forward` and `recurrent_backward`, written next to each other.

Letters: T time, N batch, D input size, H hidden size, G gates per cell (RNN 1, GRU 3, LSTM 4).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..core.checks import as_float_dtype, check_array, check_positive_int

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class Workspace(NamedTuple):
    """Scratch buffers for one sequence, so the per-step loop allocates nothing."""

    weight_hh_t: np.ndarray  # (H, G*H) W_hh^T, each gate's columns times its `gate_factors` entry
    gates: np.ndarray  # (N, G*H), e.g. the recurrent product h_prev W_hh^T
    hidden: np.ndarray  # (N, H), e.g. a product of two gates, or the carried dL/dc


class Cell:
    """One recurrent layer. Subclasses set `gates`, `Cache`, `state_fields`, `prev_state_fields`."""

    gates: int = 1
    Cache: type[NamedTuple]
    state_fields: tuple[str, ...] = ("h",)  # cache fields that hold the state after the step
    prev_state_fields: tuple[str, ...] = ("h_prev",)  # cache fields that hold the state before it
    separate_hidden_gradient = False  # True when da_h differs from da_x (GRU's reset gate)
    # Per gate, a power of two the pre-activation is multiplied by inside the loop (folded into the
    # input projection and into the workspace's W_hh^T, so it costs nothing per step), e.g. -1 so
    # sigmoid(a) = 1 / (1 + exp(-a)) needs no negation. Exact: powers of two only scale exponents.
    gate_factors: tuple[int, ...] | None = None

    def __init__(self, input_size: int, hidden_size: int, *, seed=None, dtype=np.float64):
        self.input_size = check_positive_int("input_size", input_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.dtype = as_float_dtype(dtype)
        rng = np.random.default_rng(seed)
        # PyTorch's default: every parameter uniform in +-1/sqrt(H), drawn in this order.
        bound = 1.0 / math.sqrt(self.hidden_size)
        self.params: dict[str, np.ndarray] = {
            name: rng.uniform(-bound, bound, shape).astype(self.dtype)
            for name, shape in self.param_shapes().items()
        }

    # ----------------------------------------------------------------- parameters and states
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        GH, D, H = self.gates * self.hidden_size, self.input_size, self.hidden_size
        return {"weight_ih": (GH, D), "weight_hh": (GH, H), "bias_ih": (GH,), "bias_hh": (GH,)}

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

    def load_params(self, params: dict) -> None:
        """Load weights by name, e.g. a PyTorch one-layer module's `state_dict()` as numpy arrays.

        PyTorch's `_l0` suffix is accepted and dropped; shapes must match exactly.
        """
        new = {}
        for key, value in params.items():
            name = key[:-3] if key.endswith("_l0") else key
            if name not in PARAM_NAMES:
                raise ValueError(f"unknown parameter {key!r}; expected one of {list(PARAM_NAMES)}")
            new[name] = value
        missing = set(PARAM_NAMES) - set(new)
        if missing:
            raise ValueError(f"missing parameters: {sorted(missing)}")
        shapes = self.param_shapes()
        self.params = {
            name: check_array(f"params[{name!r}]", new[name], shapes[name], self.dtype).copy()
            for name in PARAM_NAMES
        }

    def initial_state(self, batch_size: int):
        """The zero state: an (N, H) array, or a tuple of them for cells with more than h."""
        batch_size = check_positive_int("batch_size", batch_size)
        parts = tuple(
            np.zeros((batch_size, self.hidden_size), self.dtype) for _ in self.state_fields
        )
        return self.pack_state(parts)

    def pack_state(self, parts: tuple):
        return parts[0] if len(parts) == 1 else tuple(parts)

    def unpack_state(self, state) -> tuple:
        return (state,) if len(self.state_fields) == 1 else tuple(state)

    def check_state(self, state, batch_size: int | None, name: str = "state") -> tuple:
        """Validate a state (or a gradient with a state's structure); return its parts as a tuple."""
        n = len(self.state_fields)
        if n > 1 and not (isinstance(state, (tuple, list)) and len(state) == n):
            raise ValueError(
                f"{name} must be a tuple of {n} arrays {self.state_fields}, got {type(state).__name__}"
            )
        parts = self.unpack_state(state)
        return tuple(
            check_array(
                f"{name}" if n == 1 else f"{name}[{i}] ({field})",
                part,
                (batch_size, self.hidden_size),
                self.dtype,
                names=("N", "H"),
            )
            for i, (field, part) in enumerate(zip(self.state_fields, parts))
        )

    def check_inputs(self, xs, batch_size: int | None = None) -> np.ndarray:
        xs = check_array("xs", xs, (None, batch_size, self.input_size), self.dtype, names=("T", "N", "D"))
        if xs.shape[0] == 0 or xs.shape[1] == 0:
            raise ValueError(f"xs must have at least one timestep and one sequence, got shape {xs.shape}")
        return xs

    # ----------------------------------------------------------------- the sequence contract
    # Per step, the loop makes a few numpy calls on preallocated buffers and allocates nothing: every
    # local derivative that does not depend on the incoming gradient is formed for all T at once by
    # `local_gradients` before the reverse sweep, which then only applies the chain rule.
    def allocate(self, xs: np.ndarray, state0: tuple) -> NamedTuple:
        """A Cache whose fields have a leading time axis (T, ...), inputs already projected.

        Fields that hold states before and after each step are views of one (T+1, N, H) buffer, so
        `h_prev[t] is` the storage of `h[t-1]` and nothing is stored twice.
        """
        raise NotImplementedError

    def row_factors(self) -> np.ndarray | None:
        """`gate_factors` repeated over each gate's H rows of W_ih, W_hh and the biases: (G*H,)."""
        if self.gate_factors is None:
            return None
        return np.repeat(np.asarray(self.gate_factors, self.dtype), self.hidden_size)

    def workspace(self, batch_size: int) -> Workspace:
        """Scratch buffers that every step of one sequence reuses, and the scaled W_hh^T."""
        weight_hh = self.params["weight_hh"]
        factors = self.row_factors()
        if factors is not None:
            weight_hh = weight_hh * factors[:, None]
        return Workspace(
            weight_hh_t=np.ascontiguousarray(weight_hh.T),
            gates=np.empty((batch_size, self.gates * self.hidden_size), self.dtype),
            hidden=np.empty((batch_size, self.hidden_size), self.dtype),
        )

    def recurrent_forward(self, c: NamedTuple, work: Workspace | None = None) -> None:
        """Complete one step in place on per-step cache views (inputs projected on entry).

        work: from `workspace(N)`, reused over a sequence (None: a new one for this call).
        Run under `np.errstate(over="ignore")`: see `pointwise`.
        """
        raise NotImplementedError

    def local_gradients(self, caches: NamedTuple, da_x: np.ndarray, da_h: np.ndarray) -> tuple:
        """For all T at once, write into da_x and da_h (T, N, G*H) the factors of dL/da that do not
        depend on dL/dstate; return any further per-step arrays (leading axis T) the sweep needs.

        Optional: by default nothing is prepared and `recurrent_backward` writes da_x and da_h whole.
        """
        return ()

    def recurrent_backward(self, c, dstate, da_x, da_h, local=None, dh_prev=None, work=None) -> tuple:
        """One step back: given dL/dstate after the step, write da_x and da_h (N, G*H) and return
        dL/dstate before the step, with the path through W_hh. `dstate` is not modified.

        The reverse sweep passes this step's slice of `local_gradients` (already in da_x and da_h),
        an (N, H) array `dh_prev` to write dL/dh_prev into, and its `work`; parts of the result
        after h may then be `work` buffers that the next call overwrites. Called with only the first
        four arguments, the step prepares all of that itself (`prepare_backward_step`).
        """
        raise NotImplementedError

    def prepare_backward_step(self, c, da_x, da_h, dh_prev=None, work=None) -> tuple:
        """For a step run on its own: its local gradients (written into da_x and da_h, (N, G*H)),
        a dh_prev array and a workspace. Returns (local, dh_prev, work)."""
        one_step = type(c)(*(field[None] for field in c))
        local = self.local_gradients(one_step, da_x[None], da_h[None])
        N = da_x.shape[0]
        if dh_prev is None:
            dh_prev = np.empty((N, self.hidden_size), self.dtype)
        return tuple(part[0] for part in local), dh_prev, work or self.workspace(N)

    def project_inputs(self, xs: np.ndarray, out: np.ndarray, bias: np.ndarray) -> None:
        """out[t] = (xs[t] W_ih^T + bias) * row_factors for all t, in one matrix product.

        out: (T, N, G*H) view.
        """
        T, N, D = xs.shape
        weight_ih = self.params["weight_ih"]
        factors = self.row_factors()
        if factors is not None:
            weight_ih, bias = weight_ih * factors[:, None], bias * factors
        flat_out = out.reshape(T * N, -1)
        np.matmul(xs.reshape(T * N, D), weight_ih.T, out=flat_out)
        flat_out += bias

    def parameter_gradients(self, xs, h_prevs, da_x, da_h) -> dict[str, np.ndarray]:
        """Gradients of the shared weights, summed over time and batch in one product each.

        xs (T, N, D), h_prevs (T, N, H), da_x and da_h (T, N, G*H).
        """
        T, N, D = xs.shape
        gx = da_x.reshape(T * N, -1)
        gh = da_h.reshape(T * N, -1)
        return {
            "weight_ih": gx.T @ xs.reshape(T * N, D),
            "weight_hh": gh.T @ h_prevs.reshape(T * N, self.hidden_size),
            "bias_ih": gx.sum(axis=0),
            "bias_hh": gh.sum(axis=0),
        }

    def input_gradients(self, da_x: np.ndarray) -> np.ndarray:
        """dL/dx_t = da_x[t] W_ih for all t at once: (T, N, G*H) -> (T, N, D)."""
        T, N, GH = da_x.shape
        return (da_x.reshape(T * N, GH) @ self.params["weight_ih"]).reshape(T, N, self.input_size)

    @staticmethod
    def cache_at(caches: NamedTuple, t: int) -> NamedTuple:
        """The cache of step t: views into the time-stacked cache."""
        return type(caches)(*(field[t] for field in caches))

    def state_after(self, c: NamedTuple) -> tuple:
        return tuple(getattr(c, f) for f in self.state_fields)

    def state_before(self, c: NamedTuple) -> tuple:
        return tuple(getattr(c, f) for f in self.prev_state_fields)

    # ----------------------------------------------------------------- one step, for users
    def step_forward(self, x, state):
        """One timestep. x (N, D), state as from `initial_state`. Returns (next_state, cache).

        The cache is a NamedTuple of this step's arrays (inputs, previous state, gate values);
        `step_backward` consumes it.
        """
        self.check_params()
        x = check_array("x", x, (None, self.input_size), self.dtype, names=("N", "D"))
        parts = self.check_state(state, x.shape[0])
        caches = self.allocate(x[None], parts)
        c = self.cache_at(caches, 0)
        with np.errstate(over="ignore"):
            self.recurrent_forward(c, self.workspace(x.shape[0]))
        return self.pack_state(self.state_after(c)), c

    def step_backward(self, dstate, cache):
        """Backward of one `step_forward`. dstate: dL/d(next_state), same structure as a state.

        Returns (dx (N, D), dstate_prev, grads) with grads a dict keyed like `params`.
        """
        if not isinstance(cache, self.Cache):
            raise ValueError(f"cache must be a {self.Cache.__name__} from this cell's step_forward")
        N = cache.x.shape[0]
        dparts = self.check_state(dstate, N, name="dstate")
        GH = self.gates * self.hidden_size
        da_x = np.empty((N, GH), self.dtype)
        da_h = np.empty_like(da_x) if self.separate_hidden_gradient else da_x
        dprev = self.recurrent_backward(cache, dparts, da_x, da_h)
        grads = self.parameter_gradients(cache.x[None], cache.h_prev[None], da_x[None], da_h[None])
        dx = self.input_gradients(da_x[None])[0]
        return dx, self.pack_state(dprev), grads

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"dtype={self.dtype.name})"
        )

    # ----------------------------------------------------------------- tangents (forward mode)
    # A tangent cache is a Cache of the same type holding the directional derivative of every field
    # (x_dot, h_prev_dot, gates_dot, ...). Tangent fields may carry extra leading axes (K, N, ...)
    # for K directions at once: RTRL pushes one direction per parameter through the same rules.
    def new_tangent_cache(self, c: NamedTuple, x_dot, state_prev_dot: tuple, lead: tuple = ()) -> NamedTuple:
        """A tangent cache for step cache `c`: x_dot and the previous state's tangent filled in,
        every other field zeros of shape lead + field.shape, for `recurrent_tangent` to fill."""
        given = dict(zip(self.prev_state_fields, state_prev_dot))
        given["x"] = x_dot
        return type(c)(
            *(given[name] if name in given else np.zeros(lead + field.shape, self.dtype)
              for name, field in zip(c._fields, c))
        )

    def affine_tangents(self, c: NamedTuple, c_dot: NamedTuple, params_dot: dict) -> tuple:
        """Tangents of the two affine parts for parameter tangents `params_dot` (missing keys: zero).

        a_x_dot = x_dot W_ih^T + x W_ih_dot^T + b_ih_dot
        a_h_dot = h_prev_dot W_hh^T + h_prev W_hh_dot^T + b_hh_dot
        (product rule on each affine map). Returns (a_x_dot, a_h_dot), each (..., N, G*H).
        """
        p = self.params
        a_x_dot = c_dot.x @ p["weight_ih"].T  # d/dx
        a_h_dot = c_dot.h_prev @ p["weight_hh"].T  # d/dh_prev
        if "weight_ih" in params_dot:
            a_x_dot = a_x_dot + c.x @ params_dot["weight_ih"].T  # d/dW_ih
        if "weight_hh" in params_dot:
            a_h_dot = a_h_dot + c.h_prev @ params_dot["weight_hh"].T  # d/dW_hh
        if "bias_ih" in params_dot:
            a_x_dot = a_x_dot + params_dot["bias_ih"]  # d/db_ih
        if "bias_hh" in params_dot:
            a_h_dot = a_h_dot + params_dot["bias_hh"]  # d/db_hh
        return a_x_dot, a_h_dot

    def recurrent_tangent(self, c: NamedTuple, c_dot: NamedTuple, a_x_dot, a_h_dot) -> None:
        """Forward-mode twin of `recurrent_forward`: fill c_dot's gate and state fields in place.

        c is the step's cache after `recurrent_forward`; c_dot holds x_dot and the previous state's
        tangent on entry; a_x_dot and a_h_dot are the affine parts' tangents (..., N, G*H).
        """
        raise NotImplementedError

    def recurrent_backward_tangent(
        self, c, c_dot, dstate: tuple, dstate_dot: tuple, da_x, da_h, da_x_dot, da_h_dot, weight_hh_dot
    ) -> tuple:
        """R-operator of `recurrent_backward` (the tangent of the reverse step, for Hessian-vector products).

        Given the primal step (c, dstate, and da_x, da_h that `recurrent_backward` wrote) and its
        tangents (c_dot, dstate_dot, weight_hh_dot (G*H, H)), write da_x_dot and da_h_dot (N, G*H)
        and return the tangent of dL/dstate before the step.
        """
        raise NotImplementedError

    def parameter_gradients_tangent(
        self, xs, xs_dot, h_prevs, h_prevs_dot, da_x, da_x_dot, da_h, da_h_dot
    ) -> dict:
        """Tangent of `parameter_gradients` by the product rule (each weight gradient is bilinear).

        All arguments (T, N, ...) as in `parameter_gradients`; xs_dot may be None (inputs held fixed).
        """
        grads = self.parameter_gradients(xs, h_prevs, da_x_dot, da_h_dot)  # d/d(da)
        T, N, _ = h_prevs.shape
        gh = da_h.reshape(T * N, -1)
        grads["weight_hh"] += gh.T @ h_prevs_dot.reshape(T * N, self.hidden_size)  # d/dh_prev
        if xs_dot is not None:
            gx = da_x.reshape(T * N, -1)
            grads["weight_ih"] += gx.T @ xs_dot.reshape(T * N, self.input_size)  # d/dx
        return grads

    def parameter_basis_tangents(self, c: NamedTuple) -> tuple:
        """`affine_tangents` for every unit tangent on the flattened parameters at once (RTRL's
        immediate term), with the state tangents left out. Returns (a_x_dot, a_h_dot), each (P, N, G*H).

        Directions are ordered like `cell.params` (weight_ih, weight_hh, bias_ih, bias_hh), each
        flattened in C order: direction (g, d) of W_ih only moves a_x[:, g], by x[:, d].
        """
        GH, D, H = self.gates * self.hidden_size, self.input_size, self.hidden_size
        N = c.x.shape[0]
        P = GH * (D + H + 2)
        a_x_dot = np.zeros((P, N, GH), self.dtype)
        a_h_dot = np.zeros((P, N, GH), self.dtype)
        g = np.arange(GH)
        a_x_dot[: GH * D].reshape(GH, D, N, GH)[g, :, :, g] = c.x.T  # d a_x[:, g] / d W_ih[g, d] = x[:, d]
        off = GH * D
        a_h_dot[off : off + GH * H].reshape(GH, H, N, GH)[g, :, :, g] = c.h_prev.T  # d a_h / d W_hh = h_prev
        off += GH * H
        a_x_dot[off : off + GH].reshape(GH, N, GH)[g, :, g] = 1  # d a_x / d b_ih = 1
        off += GH
        a_h_dot[off : off + GH].reshape(GH, N, GH)[g, :, g] = 1  # d a_h / d b_hh = 1
        return a_x_dot, a_h_dot
