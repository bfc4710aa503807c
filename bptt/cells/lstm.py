"""LSTM with PyTorch's gate order (i, f, g, o) and equations (nn.LSTM, one layer):

    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o),   g = tanh(a_g),   a = a_x + a_h
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Cell
from .pointwise import sigmoid_


class LSTMCache(NamedTuple):
    x: np.ndarray  # (N, D) input
    h_prev: np.ndarray  # (N, H)
    c_prev: np.ndarray  # (N, H)
    gates: np.ndarray  # (N, 4H) activated gates i, f, g, o
    c: np.ndarray  # (N, H) cell state after the step
    tanh_c: np.ndarray  # (N, H) tanh(c), kept for tanh' = 1 - tanh^2
    h: np.ndarray  # (N, H)


class LSTM(Cell):
    """LSTM, one layer. State is the tuple (h, c). params: weight_ih (4H, D), weight_hh (4H, H), ..."""

    gates = 4
    Cache = LSTMCache
    state_fields = ("h", "c")
    prev_state_fields = ("h_prev", "c_prev")

    def allocate(self, xs, state0):
        T, N, _ = xs.shape
        H = self.hidden_size
        hs = np.empty((T + 1, N, H), self.dtype)
        cs = np.empty((T + 1, N, H), self.dtype)
        hs[0], cs[0] = state0
        gates = np.empty((T, N, 4 * H), self.dtype)
        self.project_inputs(xs, gates, self.params["bias_ih"] + self.params["bias_hh"])
        tanh_c = np.empty((T, N, H), self.dtype)
        return LSTMCache(xs, hs[:-1], cs[:-1], gates, cs[1:], tanh_c, hs[1:])

    def recurrent_forward(self, c):
        H = self.hidden_size
        a = c.gates  # holds a_x on entry
        a += c.h_prev @ self.params["weight_hh"].T  # a = a_x + W_hh h_prev
        sigmoid_(a[:, : 2 * H])  # i, f
        np.tanh(a[:, 2 * H : 3 * H], out=a[:, 2 * H : 3 * H])  # g
        sigmoid_(a[:, 3 * H :])  # o
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        cell = c.c
        np.multiply(f, c.c_prev, out=cell)  # c = f * c_prev + i * g
        cell += i * g
        np.tanh(cell, out=c.tanh_c)
        np.multiply(o, c.tanh_c, out=c.h)  # h = o * tanh(c)

    def recurrent_backward(self, c, dstate, da_x, da_h):
        dh, dc = dstate
        H = self.hidden_size
        a = c.gates
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        dai, daf, dag, dao = da_x[:, :H], da_x[:, H : 2 * H], da_x[:, 2 * H : 3 * H], da_x[:, 3 * H :]
        # backprop into o through h = o * tanh(c), then through sigmoid: s' = s (1 - s)
        np.multiply(dh, c.tanh_c, out=dao)
        dao *= o * (1 - o)
        # total dL/dc_t: carried from step t+1, plus the path through h = o * tanh(c): tanh' = 1 - tanh^2
        dc_total = dh * o * (1 - c.tanh_c * c.tanh_c) + dc
        # backprop through c = f * c_prev + i * g into each gate, then its non-linearity
        np.multiply(dc_total, g, out=dai)
        dai *= i * (1 - i)
        np.multiply(dc_total, c.c_prev, out=daf)
        daf *= f * (1 - f)
        np.multiply(dc_total, i, out=dag)
        dag *= 1 - g * g
        dh_prev = da_x @ self.params["weight_hh"]  # through a_h = W_hh h_prev
        dc_prev = dc_total * f
        return dh_prev, dc_prev
