"""GRU with PyTorch's gate order (r, z, n) and equations (nn.GRU, one layer):

    r = sigmoid(a_x,r + a_h,r),   z = sigmoid(a_x,z + a_h,z)
    n = tanh(a_x,n + r * (W_hn h_{t-1} + b_hn))      the reset gate multiplies the recurrent term
    h_t = (1 - z) * n + z * h_{t-1}
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .cell import Cell
from .pointwise import tanh


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
    gate_factors = (-1, -1, 1)  # r, z = 1 / (1 + exp(-a)) without a negation

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

    def recurrent_forward(self, c, work=None):
        work = work or self.workspace(len(c.h_prev))
        H = self.hidden_size
        a = c.gates  # holds a_x * gate_factors on entry
        a_h = np.matmul(c.h_prev, work.weight_hh_t, out=work.gates)  # W_hh h_prev * gate_factors
        rz = a[:, : 2 * H]
        rz += a_h[:, : 2 * H]
        np.exp(rz, out=rz)
        rz += 1
        np.reciprocal(rz, out=rz)  # r, z = sigmoid(a_r), sigmoid(a_z)
        r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
        np.add(a_h[:, 2 * H :], self.params["bias_hh"][2 * H :], out=c.hn)
        n += np.multiply(r, c.hn, out=work.hidden)  # n = tanh(a_x,n + r * hn)
        tanh(n, out=n)
        h = c.h
        np.subtract(c.h_prev, n, out=h)  # h = n + z * (h_prev - n)
        h *= z
        h += n

    def local_gradients(self, caches, da_x, da_h):
        H = self.hidden_size
        a = caches.gates
        r, z, n = a[..., :H], a[..., H : 2 * H], a[..., 2 * H :]
        dar, daz, dan = da_x[..., :H], da_x[..., H : 2 * H], da_x[..., 2 * H :]
        scratch = da_h[..., 2 * H :]  # free until the sweep writes it
        # through h = (1 - z) * n + z * h_prev into n, then tanh' = 1 - n^2, for all T at once
        np.subtract(1, z, out=scratch)
        np.multiply(n, n, out=dan)
        np.subtract(1, dan, out=dan)
        dan *= scratch  # dh/da_n = (1 - z) (1 - n^2)
        # into z, then sigmoid' = z (1 - z)
        np.multiply(z, scratch, out=daz)
        np.subtract(caches.h_prev, n, out=scratch)
        daz *= scratch  # dh/da_z = (h_prev - n) z (1 - z)
        # into r through n's pre-activation a_x,n + r * hn, then sigmoid'
        np.subtract(1, r, out=dar)
        dar *= r
        dar *= caches.hn  # da_n/da_r = hn r (1 - r)
        return ()

    def recurrent_backward(self, c, dstate, da_x, da_h, local=None, dh_prev=None, work=None):
        if local is None:  # a step on its own: prepare what the sweep would have
            local, dh_prev, work = self.prepare_backward_step(c, da_x, da_h, dh_prev, work)
        (dh,) = dstate
        H = self.hidden_size
        da = da_x.reshape(-1, 3, H)
        da[:, 1:] *= dh[:, None]  # chain rule: da_z, da_n = dL/dh * dh/da
        dan = da[:, 2]
        da[:, 0] *= dan  # da_r = da_n * da_n/da_r
        r = c.gates[:, :H]
        da_h[:, : 2 * H] = da_x[:, : 2 * H]  # r and z see a_x and a_h alike
        np.multiply(dan, r, out=da_h[:, 2 * H :])  # hn sits behind r
        np.matmul(da_h, self.params["weight_hh"], out=dh_prev)  # through W_hh h_prev
        z = c.gates[:, H : 2 * H]
        dh_prev += np.multiply(dh, z, out=work.hidden)  # and directly through z * h_prev
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
