"""Elman RNN: h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu (PyTorch's nn.RNN)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cell import Cell
from .pointwise import tanh


class RNNCache(NamedTuple):
    x: np.ndarray  # (N, D) input
    h_prev: np.ndarray  # (N, H) state before the step
    h: np.ndarray  # (N, H) state after it; tanh' and relu' are both read off the output


class RNN(Cell):
    """Elman RNN, one layer. params: weight_ih (H, D), weight_hh (H, H), bias_ih (H,), bias_hh (H,)."""

    gates = 1
    Cache = RNNCache

    def __init__(self, input_size, hidden_size, nonlinearity="tanh", *, seed=None, dtype=np.float64):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, seed=seed, dtype=dtype)

    def allocate(self, xs, state0):
        T, N, _ = xs.shape
        hs = np.empty((T + 1, N, self.hidden_size), self.dtype)
        hs[0] = state0[0]
        # h[t] holds the pre-activation until step t overwrites it.
        self.project_inputs(xs, hs[1:], self.params["bias_ih"] + self.params["bias_hh"])
        return RNNCache(x=xs, h_prev=hs[:-1], h=hs[1:])

    def recurrent_forward(self, c, work=None):
        work = work or self.workspace(len(c.h_prev))
        h = c.h  # holds a_x on entry
        h += np.matmul(c.h_prev, work.weight_hh_t, out=work.gates)  # a = a_x + W_hh h_prev
        if self.nonlinearity == "tanh":
            tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)

    def local_gradients(self, caches, da_x, da_h):
        h = caches.h
        if self.nonlinearity == "tanh":
            np.multiply(h, h, out=da_x)  # tanh'(a) = 1 - h^2, for all T at once
            np.subtract(1, da_x, out=da_x)
        else:
            np.greater(h, 0, out=da_x)  # relu'(a) = [h > 0]
        return ()

    def recurrent_backward(self, c, dstate, da_x, da_h, local=None, dh_prev=None, work=None):
        if local is None:  # a step on its own: prepare what the sweep would have
            local, dh_prev, work = self.prepare_backward_step(c, da_x, da_h, dh_prev, work)
        (dh,) = dstate
        da_x *= dh  # backprop through the non-linearity: da = act'(a) * dL/dh
        np.matmul(da_x, self.params["weight_hh"], out=dh_prev)  # dL/dh_prev = da W_hh
        return (dh_prev,)

    def __repr__(self):
        return super().__repr__()[:-1] + f", nonlinearity={self.nonlinearity!r})"

    # ----------------------------------------------------------------- tangent rules
    def recurrent_tangent(self, c, c_dot, a_x_dot, a_h_dot):
        a_dot = a_x_dot + a_h_dot  # a = a_x + a_h
        if self.nonlinearity == "tanh":
            c_dot.h[...] = (1 - c.h * c.h) * a_dot  # tanh'(a) = 1 - h^2
        else:
            c_dot.h[...] = (c.h > 0) * a_dot  # relu'(a) = [h > 0]

    def recurrent_backward_tangent(
        self, c, c_dot, dstate, dstate_dot, da_x, da_h, da_x_dot, da_h_dot, weight_hh_dot
    ):
        (dh,), (dh_dot,) = dstate, dstate_dot
        if self.nonlinearity == "tanh":
            # da = (1 - h^2) dh: product rule, with d(1 - h^2) = -2 h h_dot
            da_x_dot[...] = (1 - c.h * c.h) * dh_dot - 2 * c.h * c_dot.h * dh
        else:
            da_x_dot[...] = (c.h > 0) * dh_dot  # relu'' = 0 almost everywhere
        # dh_prev = da W_hh: product rule
        return (da_x_dot @ self.params["weight_hh"] + da_x @ weight_hh_dot,)
