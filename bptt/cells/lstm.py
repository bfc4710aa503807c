"""LSTM with PyTorch's gate order (i, f, g, o) and equations (nn.LSTM, one layer):

    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o),   g = tanh(a_g),   a = a_x + a_h
    c_t = f * c_{t-1} + i * g
    h_t = o * tanh(c_t)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cell import Cell
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

    def recurrent_forward(self, c, work=None):
        work = work or self.workspace(len(c.h_prev))
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

    def recurrent_backward(self, c, dstate, da_x, da_h, local=None, dh_prev=None, work=None):
        if local is None:  # a step on its own: prepare what the sweep would have
            local, dh_prev, work = self.prepare_backward_step(c, da_x, da_h, dh_prev, work)
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

    # ----------------------------------------------------------------- tangent rules
    def recurrent_tangent(self, c, c_dot, a_x_dot, a_h_dot):
        H = self.hidden_size
        a = c.gates
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        a_dot = a_x_dot + a_h_dot  # a = a_x + a_h
        gd = c_dot.gates
        gd[..., :H] = i * (1 - i) * a_dot[..., :H]  # sigmoid' = s (1 - s)
        gd[..., H : 2 * H] = f * (1 - f) * a_dot[..., H : 2 * H]
        gd[..., 2 * H : 3 * H] = (1 - g * g) * a_dot[..., 2 * H : 3 * H]  # tanh' = 1 - g^2
        gd[..., 3 * H :] = o * (1 - o) * a_dot[..., 3 * H :]
        i_dot, f_dot, g_dot, o_dot = gd[..., :H], gd[..., H : 2 * H], gd[..., 2 * H : 3 * H], gd[..., 3 * H :]
        # c = f * c_prev + i * g: product rule on both terms
        c_dot.c[...] = f_dot * c.c_prev + f * c_dot.c_prev + i_dot * g + i * g_dot
        c_dot.tanh_c[...] = (1 - c.tanh_c * c.tanh_c) * c_dot.c  # tanh' = 1 - tanh^2
        c_dot.h[...] = o_dot * c.tanh_c + o * c_dot.tanh_c  # h = o * tanh(c): product rule

    def recurrent_backward_tangent(
        self, c, c_dot, dstate, dstate_dot, da_x, da_h, da_x_dot, da_h_dot, weight_hh_dot
    ):
        (dh, dc), (dh_dot, dc_dot) = dstate, dstate_dot
        H = self.hidden_size
        a, ad = c.gates, c_dot.gates
        i, f, g, o = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        i_dot, f_dot, g_dot, o_dot = ad[:, :H], ad[:, H : 2 * H], ad[:, 2 * H : 3 * H], ad[:, 3 * H :]
        t, t_dot = c.tanh_c, c_dot.tanh_c
        # dao = dh tanh(c) o (1 - o); d(o (1 - o)) = (1 - 2 o) o_dot
        da_x_dot[:, 3 * H :] = (dh_dot * t + dh * t_dot) * o * (1 - o) + dh * t * (1 - 2 * o) * o_dot
        # dc_total = dh o (1 - tanh^2) + dc; d(1 - tanh^2) = -2 tanh tanh_dot
        dc_total = dh * o * (1 - t * t) + dc
        dc_total_dot = (dh_dot * o + dh * o_dot) * (1 - t * t) - 2 * dh * o * t * t_dot + dc_dot
        # dai = dc_total g i (1 - i)
        da_x_dot[:, :H] = (
            (dc_total_dot * g + dc_total * g_dot) * i * (1 - i) + dc_total * g * (1 - 2 * i) * i_dot
        )
        # daf = dc_total c_prev f (1 - f)
        da_x_dot[:, H : 2 * H] = (
            (dc_total_dot * c.c_prev + dc_total * c_dot.c_prev) * f * (1 - f)
            + dc_total * c.c_prev * (1 - 2 * f) * f_dot
        )
        # dag = dc_total i (1 - g^2); d(1 - g^2) = -2 g g_dot
        da_x_dot[:, 2 * H : 3 * H] = (
            (dc_total_dot * i + dc_total * i_dot) * (1 - g * g) - 2 * dc_total * i * g * g_dot
        )
        dh_prev_dot = da_x_dot @ self.params["weight_hh"] + da_x @ weight_hh_dot  # dh_prev = da W_hh
        dc_prev_dot = dc_total_dot * f + dc_total * f_dot  # dc_prev = dc_total f
        return dh_prev_dot, dc_prev_dot
