"""Elman RNN (PyTorch's nn.RNN, one layer): h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),
act = tanh or relu.

The step pair below is the whole chain rule; `rnn_fast.py` computes the same thing faster.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..core.types import Array, Params, Parts, Seed, State
from .cell import Cell
from .rnn_fast import RNNSequence


class RNNCache(NamedTuple):
    """What one RNN step keeps for its backward.

    `RNN.step_forward` returns it and `step_backward` consumes it; `tape.step(t)` is step t's.
    With tangents (forward mode) the same NamedTuple holds every field's tangent.

    Attributes
    ----------
    x : ndarray, shape (N, D)
        The step's input.
    h_prev : ndarray, shape (N, H)
        The state before the step.
    h : ndarray, shape (N, H)
        The state after it; tanh' = 1 - h^2 and relu' = [h > 0] are both read off it.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(3, 4, seed=0)
    >>> h, cache = cell.step_forward(np.ones((2, 3)), cell.initial_state(2))
    >>> cache.h is h, cache.x.shape, cache.h_prev.shape
    (True, (2, 3), (2, 4))
    """

    x: Array
    h_prev: Array
    h: Array


class RNN(Cell):
    """Elman RNN, one layer, as PyTorch's nn.RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh).

    Run it over a sequence with `bptt.forward` / `bptt.backward`, or one step at a time with
    `step_forward` / `step_backward` (the plain chain rule, below in this file). The state is h (N, H).

    Parameters
    ----------
    input_size : int
        D, the size of each input x_t.
    hidden_size : int
        H, the size of the state.
    nonlinearity : "tanh" (default) or "relu"
    seed : int or numpy.random.SeedSequence, optional
        Seeds the initial weights, drawn like PyTorch's: uniform in +-1/sqrt(H).
    dtype : float64 (default) or float32
        The dtype of the weights and of everything computed.

    Attributes
    ----------
    params : dict of ndarray
        weight_ih (H, D), weight_hh (H, H), bias_ih (H,), bias_hh (H,): PyTorch's names and
        shapes without the `_l0` suffix; `cell.load_params(module.state_dict())` loads its weights.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(input_size=3, hidden_size=4, seed=0)
    >>> h, cache = cell.step_forward(np.ones((2, 3)), cell.initial_state(2))
    >>> dx, dh_prev, grads = cell.step_backward(np.ones((2, 4)), cache)
    >>> cache._fields, dx.shape, grads["weight_hh"].shape
    (('x', 'h_prev', 'h'), (2, 3), (4, 4))
    """

    Cache = RNNCache
    Sequence = RNNSequence
    gate_names = ("h",)
    gate_slope_bounds = (1.0,)  # tanh' <= 1, relu' <= 1

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", *, seed: Seed = None,
                 dtype: DTypeLike = np.float64) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, seed=seed, dtype=dtype)

    def step_forward(self, x: ArrayLike, state: State) -> tuple[Array, RNNCache]:
        """One timestep. x (N, D), state h_prev (N, H) -> (h (N, H), RNNCache)."""
        x, (h_prev,) = self.check_step(x, state)
        p = self.params
        a = x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]  # (N, H)
        h = np.tanh(a) if self.nonlinearity == "tanh" else np.maximum(a, 0)
        return h, RNNCache(x, h_prev, h)

    def step_backward(self, dstate: State, cache: RNNCache) -> tuple[Array, Array, Params]:
        """Backward of `step_forward`. dstate: dL/dh (N, H) -> (dx (N, D), dL/dh_prev (N, H), grads)."""
        (dh,) = self.check_step_gradient(dstate, cache)
        x, h_prev, h = cache
        p = self.params
        if self.nonlinearity == "tanh":
            da: Array = dh * (1 - h * h)  # backprop through tanh: tanh'(a) = 1 - h^2
        else:
            da = dh * (h > 0)  # backprop through relu: relu'(a) = [h > 0]
        dx = da @ p["weight_ih"]  # a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh
        dh_prev = da @ p["weight_hh"]
        db = da.sum(axis=0)
        grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev, "bias_ih": db, "bias_hh": db.copy()}
        return dx, dh_prev, grads

    # ----------------------------------------------------------------- forward-mode rules
    def step_tangent(self, cache: RNNCache, x_dot: Array | None, state_prev_dot: Parts, a_x_dot: Array, a_h_dot: Array,
                     params_dot: Params | None = None) -> RNNCache:
        (h_prev_dot,) = state_prev_dot
        a_dot = a_x_dot + a_h_dot  # a = a_x + a_h
        if self.nonlinearity == "tanh":
            h_dot = (1 - cache.h * cache.h) * a_dot  # tanh'(a) = 1 - h^2
        else:
            h_dot = (cache.h > 0) * a_dot  # relu'(a) = [h > 0]
        return RNNCache(x_dot,  # type: ignore[arg-type]  # a tangent's x is None when the inputs are held fixed
                        h_prev_dot, h_dot)

    def backward_tangent(self, cache: RNNCache, cache_dot: RNNCache, dstate: Parts, dstate_dot: Parts, da_x: Array,
                         da_h: Array, params_dot: Params) -> tuple[Array, Array, Parts, Params]:
        weight_hh_dot = params_dot.get("weight_hh", np.zeros_like(self.params["weight_hh"]))
        (dh,), (dh_dot,) = dstate, dstate_dot
        h, h_dot = cache.h, cache_dot.h
        if self.nonlinearity == "tanh":
            da_dot = (1 - h * h) * dh_dot - 2 * h * h_dot * dh  # da = (1 - h^2) dh; d(1 - h^2) = -2 h h_dot
        else:
            da_dot = (h > 0) * dh_dot  # relu'' = 0 almost everywhere
        dh_prev_dot = da_dot @ self.params["weight_hh"] + da_x @ weight_hh_dot  # dh_prev = da W_hh
        return da_dot, da_dot, (dh_prev_dot,), {}

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", nonlinearity={self.nonlinearity!r})"
