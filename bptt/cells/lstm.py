"""LSTM with PyTorch's gate order (i, f, g, o) and equations (nn.LSTM, one layer):

    a = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o),   g = tanh(a_g)
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)                   with proj_size P > 0: h_t = (o * tanh(c_t)) W_hr^T

The step pair below is the whole chain rule; `lstm_fast.py` computes the same thing faster.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..core.types import Array, Params, Parts, Seed, State
from .cell import Cell, sigmoid
from .lstm_fast import LSTMSequence


class LSTMCache(NamedTuple):
    """What one LSTM step keeps for its backward.

    `LSTM.step_forward` returns it and `step_backward` consumes it; `tape.step(t)` is step t's.
    With tangents (forward mode) the same NamedTuple holds every field's tangent. R is the size
    of h: H, or P with `proj_size` P > 0.

    Attributes
    ----------
    x : ndarray, shape (N, D)
        The step's input.
    h_prev : ndarray, shape (N, R)
        The hidden state before the step.
    c_prev : ndarray, shape (N, H)
        The cell state before the step.
    gates : ndarray, shape (N, 4H)
        The activated gates i, f, g, o, in PyTorch's order.
    c : ndarray, shape (N, H)
        The cell state after the step.
    tanh_c : ndarray, shape (N, H)
        tanh(c), kept for tanh' = 1 - tanh^2.
    h : ndarray, shape (N, R)
        The hidden state after the step.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(3, 4, proj_size=2, seed=0)
    >>> (h, c), cache = cell.step_forward(np.ones((5, 3)), cell.initial_state(5))
    >>> cache.gates.shape, cache.c.shape, cache.h.shape
    ((5, 16), (5, 4), (5, 2))
    """

    x: Array
    h_prev: Array
    c_prev: Array
    gates: Array
    c: Array
    tanh_c: Array
    h: Array


def split_gates(gates: Array) -> tuple[Array, Array, Array, Array]:
    """(..., 4H) -> i, f, g, o, each (..., H) (views)."""
    H = gates.shape[-1] // 4
    return gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H : 3 * H], gates[..., 3 * H :]


class LSTM(Cell):
    """LSTM, one layer, as PyTorch's nn.LSTM, gates in its order i, f, g, o.

    Run it over a sequence with `bptt.forward` / `bptt.backward`, or one step at a time with
    `step_forward` / `step_backward` (the plain chain rule, below in this file). The state is the
    tuple (h, c), each (N, H); with `proj_size` P > 0, h is projected to (N, P) by `weight_hr`
    (P, H), as in PyTorch (Sak et al. 2014).

    Parameters
    ----------
    input_size : int
        D, the size of each input x_t.
    hidden_size : int
        H, the size of the cell state c (and of h without a projection).
    proj_size : int, default 0
        P in [0, H): with P > 0, h = (o * tanh(c)) W_hr^T is (N, P) and `weight_hr` (P, H) joins
        the parameters; 0 for no projection.
    seed : int or numpy.random.SeedSequence, optional
        Seeds the initial weights, drawn like PyTorch's: uniform in +-1/sqrt(H).
    dtype : float64 (default) or float32
        The dtype of the weights and of everything computed.

    Attributes
    ----------
    params : dict of ndarray
        weight_ih (4H, D), weight_hh (4H, R), bias_ih (4H,), bias_hh (4H,) and, with proj_size P,
        weight_hr (P, H), R being P or else H: PyTorch's names and shapes without the `_l0` suffix;
        `cell.load_params(module.state_dict())` loads its weights.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(input_size=3, hidden_size=4, seed=0)
    >>> (h, c), cache = cell.step_forward(np.ones((2, 3)), cell.initial_state(2))
    >>> dx, (dh_prev, dc_prev), grads = cell.step_backward((np.ones((2, 4)), np.zeros((2, 4))), cache)
    >>> cache._fields
    ('x', 'h_prev', 'c_prev', 'gates', 'c', 'tanh_c', 'h')
    """

    Cache = LSTMCache
    Sequence = LSTMSequence
    state_fields = ("h", "c")
    gate_names = ("i", "f", "g", "o")
    gate_slope_bounds = (0.25, 0.25, 1.0, 0.25)  # sigmoid' <= 1/4, tanh' <= 1

    def __init__(self, input_size: int, hidden_size: int, *, proj_size: int = 0, seed: Seed = None,
                 dtype: DTypeLike = np.float64) -> None:
        if isinstance(proj_size, bool) or not isinstance(proj_size, (int, np.integer)) or not (
                0 <= proj_size < hidden_size):
            raise ValueError(f"proj_size must be an integer in [0, hidden_size={hidden_size}), got {proj_size!r}")
        self.proj_size = int(proj_size)
        super().__init__(input_size, hidden_size, seed=seed, dtype=dtype)

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = super().param_shapes()
        if self.proj_size:
            shapes["weight_hr"] = (self.proj_size, self.hidden_size)
        return shapes

    def step_forward(self, x: ArrayLike, state: State) -> tuple[tuple[Array, Array], LSTMCache]:
        """One timestep. x (N, D), state (h_prev (N, H or P), c_prev (N, H)) -> ((h, c), LSTMCache)."""
        x, (h_prev, c_prev) = self.check_step(x, state)
        p = self.params
        a = x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]  # (N, 4H)
        a_i, a_f, a_g, a_o = split_gates(a)
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g), sigmoid(a_o)
        c = f * c_prev + i * g
        tanh_c = np.tanh(c)
        h = o * tanh_c
        if self.proj_size:
            h = h @ p["weight_hr"].T  # the projection: h = (o * tanh(c)) W_hr^T, (N, P)
        return (h, c), LSTMCache(x, h_prev, c_prev, np.concatenate([i, f, g, o], axis=1), c, tanh_c, h)

    def step_backward(self, dstate: State, cache: LSTMCache) -> tuple[Array, tuple[Array, Array], Params]:
        """Backward of `step_forward`. dstate: (dL/dh, dL/dc) each (N, H) ->
        (dx (N, D), (dL/dh_prev, dL/dc_prev), grads)."""
        dh, dc = self.check_step_gradient(dstate, cache)
        x, h_prev, c_prev, gates, c, tanh_c, h = cache
        i, f, g, o = split_gates(gates)
        p = self.params
        if self.proj_size:
            dW_hr = dh.T @ (o * tanh_c)  # h = (o * tanh(c)) W_hr^T
            dh = dh @ p["weight_hr"]
        do = dh * tanh_c  # h = o * tanh(c)
        dc = dc + dh * o * (1 - tanh_c * tanh_c)  # and through tanh(c): tanh' = 1 - tanh^2
        di, df, dg, dc_prev = dc * g, dc * c_prev, dc * i, dc * f  # c = f * c_prev + i * g
        da = np.concatenate([
            di * i * (1 - i),  # backprop through sigmoid: sigmoid' = s (1 - s)
            df * f * (1 - f),
            dg * (1 - g * g),  # backprop through tanh: tanh' = 1 - g^2
            do * o * (1 - o),
        ], axis=1)
        dx = da @ p["weight_ih"]  # a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh
        dh_prev = da @ p["weight_hh"]
        db = da.sum(axis=0)
        grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev, "bias_ih": db, "bias_hh": db.copy()}
        if self.proj_size:
            grads["weight_hr"] = dW_hr
        return dx, (dh_prev, dc_prev), grads

    # ----------------------------------------------------------------- forward-mode rules
    def step_tangent(self, cache: LSTMCache, x_dot: Array | None, state_prev_dot: Parts, a_x_dot: Array, a_h_dot: Array,
                     params_dot: Params | None = None) -> LSTMCache:
        h_prev_dot, c_prev_dot = state_prev_dot
        i, f, g, o = split_gates(cache.gates)
        a_i, a_f, a_g, a_o = split_gates(a_x_dot + a_h_dot)  # a = a_x + a_h
        i_dot = i * (1 - i) * a_i  # sigmoid' = s (1 - s)
        f_dot = f * (1 - f) * a_f
        g_dot = (1 - g * g) * a_g  # tanh' = 1 - g^2
        o_dot = o * (1 - o) * a_o
        c_dot = f_dot * cache.c_prev + f * c_prev_dot + i_dot * g + i * g_dot  # c = f c_prev + i g
        tanh_c_dot = (1 - cache.tanh_c * cache.tanh_c) * c_dot  # tanh' = 1 - tanh^2
        h_dot = o_dot * cache.tanh_c + o * tanh_c_dot  # h = o * tanh(c)
        if self.proj_size:  # h = (o * tanh(c)) W_hr^T: product rule
            h_dot = h_dot @ self.params["weight_hr"].T
            if params_dot and "weight_hr" in params_dot:
                h_dot = h_dot + (o * cache.tanh_c) @ params_dot["weight_hr"].T
        gates_dot = np.concatenate([i_dot, f_dot, g_dot, o_dot], axis=-1)
        return LSTMCache(x_dot,  # type: ignore[arg-type]  # a tangent's x is None when the inputs are held fixed
                         h_prev_dot, c_prev_dot, gates_dot, c_dot, tanh_c_dot, h_dot)

    def backward_tangent(self, cache: LSTMCache, cache_dot: LSTMCache, dstate: Parts, dstate_dot: Parts, da_x: Array,
                         da_h: Array, params_dot: Params) -> tuple[Array, Array, Parts, Params]:
        (dh, dc), (dh_dot, dc_dot) = dstate, dstate_dot
        i, f, g, o = split_gates(cache.gates)
        i_dot, f_dot, g_dot, o_dot = split_gates(cache_dot.gates)
        t, t_dot, c_prev, c_prev_dot = cache.tanh_c, cache_dot.tanh_c, cache.c_prev, cache_dot.c_prev
        weight_hh_dot = params_dot.get("weight_hh", np.zeros_like(self.params["weight_hh"]))
        extra: Params = {}
        if self.proj_size:  # dh_u = dh W_hr, dW_hr = dh^T (o tanh c): product rule on both
            W_hr = self.params["weight_hr"]
            W_hr_dot = params_dot.get("weight_hr", np.zeros_like(W_hr))
            extra["weight_hr"] = dh_dot.T @ (o * t) + dh.T @ (o_dot * t + o * t_dot)
            dh, dh_dot = dh @ W_hr, dh_dot @ W_hr + dh @ W_hr_dot
        # dc_total = dh o (1 - tanh^2) + dc; d(1 - tanh^2) = -2 tanh tanh_dot
        dc_total = dh * o * (1 - t * t) + dc
        dc_total_dot = (dh_dot * o + dh * o_dot) * (1 - t * t) - 2 * dh * o * t * t_dot + dc_dot
        da_dot = np.concatenate([
            # dai = dc_total g i (1 - i); d(i (1 - i)) = (1 - 2 i) i_dot
            (dc_total_dot * g + dc_total * g_dot) * i * (1 - i) + dc_total * g * (1 - 2 * i) * i_dot,
            # daf = dc_total c_prev f (1 - f)
            (dc_total_dot * c_prev + dc_total * c_prev_dot) * f * (1 - f) + dc_total * c_prev * (1 - 2 * f) * f_dot,
            # dag = dc_total i (1 - g^2); d(1 - g^2) = -2 g g_dot
            (dc_total_dot * i + dc_total * i_dot) * (1 - g * g) - 2 * dc_total * i * g * g_dot,
            # dao = dh tanh(c) o (1 - o)
            (dh_dot * t + dh * t_dot) * o * (1 - o) + dh * t * (1 - 2 * o) * o_dot,
        ], axis=-1)
        dh_prev_dot = da_dot @ self.params["weight_hh"] + da_x @ weight_hh_dot  # dh_prev = da W_hh
        dc_prev_dot = dc_total_dot * f + dc_total * f_dot  # dc_prev = dc_total f
        return da_dot, da_dot, (dh_prev_dot, dc_prev_dot), extra

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + (f", proj_size={self.proj_size})" if self.proj_size else ")")
