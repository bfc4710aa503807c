"""LSTM with PyTorch's gate order (i, f, g, o) and equations (nn.LSTM, one layer):

    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o),   g = tanh(a_g),   a = a_x + a_h
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Cell
from .pointwise import tanh


class LSTMCache(NamedTuple):
    x: np.ndarray  # (N, D) input
    h_prev: np.ndarray  # (N, H)
    c_prev: np.ndarray  # (N, H)
    gates: np.ndarray  # (N, 4H) activated gates i, f, g, o
    c: np.ndarray  # (N, H) cell state after the step
    tanh_c: np.ndarray  # (N, H) tanh(c), kept for tanh' = 1 - tanh^2
    h: np.ndarray  # (N, H)


class LSTMWorkspace(NamedTuple):
    """The base Workspace's fields, and the per-column constants that finish the gates."""

    weight_hh_t: np.ndarray
    gates: np.ndarray
    hidden: np.ndarray
    scale: np.ndarray  # (4H,) 1 for i, f, o; 2 for g
    shift: np.ndarray  # (4H,) 0 for i, f, o; -1 for g


class LSTM(Cell):
    """LSTM, one layer. State is the tuple (h, c). params: weight_ih (4H, D), weight_hh (4H, H), ..."""

    gates = 4
    Cache = LSTMCache
    state_fields = ("h", "c")
    prev_state_fields = ("h_prev", "c_prev")
    # i, f, o = 1 / (1 + exp(-a)) and g = tanh(a) = 2 / (1 + exp(-2a)) - 1: one exp for all four
    gate_factors = (-1, -1, -2, -1)

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

    def workspace(self, batch_size):
        H = self.hidden_size
        scale, shift = np.ones(4 * H, self.dtype), np.zeros(4 * H, self.dtype)
        scale[2 * H : 3 * H], shift[2 * H : 3 * H] = 2, -1  # tanh(x) = 2 sigmoid(2x) - 1 for g
        return LSTMWorkspace(*super().workspace(batch_size), scale=scale, shift=shift)

    def recurrent_forward(self, c, work):
        H = self.hidden_size
        a = c.gates  # holds a_x * gate_factors on entry
        a += np.matmul(c.h_prev, work.weight_hh_t, out=work.gates)  # a = (a_x + W_hh h_prev) * factors
        np.exp(a, out=a)
        a += 1
        np.divide(work.scale, a, out=a)  # i, f, o = sigmoid(a); g = 2 sigmoid(2 a_g) ...
        a += work.shift  # ... - 1 = tanh(a_g): whole rows at once, faster than a strided g slice
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        cell = c.c
        np.multiply(f, c.c_prev, out=cell)  # c = f * c_prev + i * g
        cell += np.multiply(i, g, out=work.hidden)
        tanh(cell, out=c.tanh_c)
        np.multiply(o, c.tanh_c, out=c.h)  # h = o * tanh(c)

    def local_gradients(self, caches, da_x, da_h):
        H = self.hidden_size
        a = caches.gates
        i, g, o = a[..., :H], a[..., 2 * H : 3 * H], a[..., 3 * H :]
        dai, daf, dag, dao = (da_x[..., k * H : (k + 1) * H] for k in range(4))
        # each gate's non-linearity, for all T at once: sigmoid' = s (1 - s), tanh' = 1 - g^2
        np.multiply(a, a, out=da_x)
        np.subtract(a, da_x, out=da_x)
        np.multiply(g, g, out=dag)
        np.subtract(1, dag, out=dag)
        # times the other factor of the product the gate enters: c = f * c_prev + i * g, h = o * tanh(c)
        dai *= g  # dc/da_i = g s_i'
        daf *= caches.c_prev  # dc/da_f = c_prev s_f'
        dag *= i  # dc/da_g = i tanh'(a_g)
        dao *= caches.tanh_c  # dh/da_o = tanh(c) s_o'
        dh_dc = np.multiply(caches.tanh_c, caches.tanh_c)  # dh/dc = o (1 - tanh(c)^2)
        np.subtract(1, dh_dc, out=dh_dc)
        dh_dc *= o
        return (dh_dc,)

    def recurrent_backward(self, c, local, dstate, da_x, da_h, dh_prev, work):
        dh, dc = dstate
        H = self.hidden_size
        (dc_total,) = local  # holds dh/dc on entry
        # total dL/dc_t: through h = o * tanh(c), plus what step t+1 carried back through c_prev
        dc_total *= dh
        dc_total += dc
        # chain rule into the gates: i, f, g act through c, o through h
        da = da_x.reshape(-1, 4, H)
        da[:, :3] *= dc_total[:, None]
        da[:, 3] *= dh
        np.matmul(da_x, self.params["weight_hh"], out=dh_prev)  # through a_h = W_hh h_prev
        f = c.gates[:, H : 2 * H]
        dc_prev = np.multiply(dc_total, f, out=work.hidden)  # through c = f * c_prev + i * g
        return dh_prev, dc_prev
