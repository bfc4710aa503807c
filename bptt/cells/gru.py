"""GRU with PyTorch's gate order (r, z, n) and equations (nn.GRU, one layer):

    r = sigmoid(a_x,r + a_h,r),   z = sigmoid(a_x,z + a_h,z)
    n = tanh(a_x,n + r * (W_hn h_{t-1} + b_hn))      the reset gate multiplies the recurrent term
    h_t = (1 - z) * n + z * h_{t-1}
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .base import Cell
from .pointwise import sigmoid_


class GRUCache(NamedTuple):
    x: np.ndarray  # (N, D) input
    h_prev: np.ndarray  # (N, H)
    gates: np.ndarray  # (N, 3H) activated gates r, z, n
    hn: np.ndarray  # (N, H) W_hn h_prev + b_hn, needed for dL/dr
    h: np.ndarray  # (N, H)


class GRU(Cell):
    """GRU, one layer. params: weight_ih (3H, D), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,)."""

    gates = 3
    Cache = GRUCache
    separate_hidden_gradient = True  # da_h,n = da_n * r differs from da_x,n = da_n

    def allocate(self, xs, state0):
        T, N, _ = xs.shape
        H = self.hidden_size
        hs = np.empty((T + 1, N, H), self.dtype)
        hs[0] = state0[0]
        gates = np.empty((T, N, 3 * H), self.dtype)
        # b_hr and b_hz join the input projection; b_hn stays inside r * (...).
        bias = self.params["bias_ih"].copy()
        bias[: 2 * H] += self.params["bias_hh"][: 2 * H]
        self.project_inputs(xs, gates, bias)
        hn = np.empty((T, N, H), self.dtype)
        return GRUCache(xs, hs[:-1], gates, hn, hs[1:])

    def recurrent_forward(self, c):
        H = self.hidden_size
        a = c.gates  # holds a_x on entry
        a_h = c.h_prev @ self.params["weight_hh"].T
        rz = a[:, : 2 * H]
        rz += a_h[:, : 2 * H]
        sigmoid_(rz)
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        np.add(a_h[:, 2 * H :], self.params["bias_hh"][2 * H :], out=c.hn)
        n += r * c.hn  # n = tanh(a_x,n + r * hn)
        np.tanh(n, out=n)
        h = c.h
        np.subtract(c.h_prev, n, out=h)  # h = n + z * (h_prev - n)
        h *= z
        h += n

    def recurrent_backward(self, c, dstate, da_x, da_h):
        (dh,) = dstate
        H = self.hidden_size
        a = c.gates
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        dar, daz, dan = da_x[:, :H], da_x[:, H : 2 * H], da_x[:, 2 * H :]
        # backprop through h = (1 - z) * n + z * h_prev into n, then tanh' = 1 - n^2
        np.multiply(dh, 1 - z, out=dan)
        dan *= 1 - n * n
        # into z, then sigmoid' = z (1 - z)
        np.multiply(dh, c.h_prev - n, out=daz)
        daz *= z * (1 - z)
        # into r through r * hn, then sigmoid'
        np.multiply(dan, c.hn, out=dar)
        dar *= r * (1 - r)
        da_h[:, : 2 * H] = da_x[:, : 2 * H]
        np.multiply(dan, r, out=da_h[:, 2 * H :])  # hn sits behind r
        dh_prev = da_h @ self.params["weight_hh"]  # through W_hh h_prev
        dh_prev += dh * z  # and directly through z * h_prev
        return (dh_prev,)

    # ----------------------------------------------------------------- tangent rules
    def recurrent_tangent(self, c, c_dot, a_x_dot, a_h_dot):
        H = self.hidden_size
        a = c.gates
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        gd = c_dot.gates
        rz_dot = a_x_dot[..., : 2 * H] + a_h_dot[..., : 2 * H]  # a_rz = a_x,rz + a_h,rz
        gd[..., :H] = r * (1 - r) * rz_dot[..., :H]  # sigmoid' = s (1 - s)
        gd[..., H : 2 * H] = z * (1 - z) * rz_dot[..., H:]
        r_dot, z_dot = gd[..., :H], gd[..., H : 2 * H]
        c_dot.hn[...] = a_h_dot[..., 2 * H :]  # hn = W_hn h_prev + b_hn
        # n = tanh(a_x,n + r * hn): tanh' = 1 - n^2, product rule on r * hn
        gd[..., 2 * H :] = (1 - n * n) * (a_x_dot[..., 2 * H :] + r_dot * c.hn + r * c_dot.hn)
        n_dot = gd[..., 2 * H :]
        # h = (1 - z) * n + z * h_prev: product rule on both terms
        c_dot.h[...] = (1 - z) * n_dot + z_dot * (c.h_prev - n) + z * c_dot.h_prev

    def recurrent_backward_tangent(
        self, c, c_dot, dstate, dstate_dot, da_x, da_h, da_x_dot, da_h_dot, weight_hh_dot
    ):
        (dh,), (dh_dot,) = dstate, dstate_dot
        H = self.hidden_size
        a, ad = c.gates, c_dot.gates
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        r_dot, z_dot, n_dot = ad[:, :H], ad[:, H : 2 * H], ad[:, 2 * H :]
        dan = da_x[:, 2 * H :]
        # dan = dh (1 - z) (1 - n^2); d(1 - z) = -z_dot, d(1 - n^2) = -2 n n_dot
        dan_dot = (dh_dot * (1 - z) - dh * z_dot) * (1 - n * n) - 2 * dh * (1 - z) * n * n_dot
        da_x_dot[:, 2 * H :] = dan_dot
        # daz = dh (h_prev - n) z (1 - z); d(z (1 - z)) = (1 - 2 z) z_dot
        da_x_dot[:, H : 2 * H] = (
            (dh_dot * (c.h_prev - n) + dh * (c_dot.h_prev - n_dot)) * z * (1 - z)
            + dh * (c.h_prev - n) * (1 - 2 * z) * z_dot
        )
        # dar = dan hn r (1 - r)
        da_x_dot[:, :H] = (dan_dot * c.hn + dan * c_dot.hn) * r * (1 - r) + dan * c.hn * (1 - 2 * r) * r_dot
        da_h_dot[:, : 2 * H] = da_x_dot[:, : 2 * H]
        da_h_dot[:, 2 * H :] = dan_dot * r + dan * r_dot  # da_h,n = dan r
        # dh_prev = da_h W_hh + dh z: product rule on both terms
        return (da_h_dot @ self.params["weight_hh"] + da_h @ weight_hh_dot + dh_dot * z + dh * z_dot,)
