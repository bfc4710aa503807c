"""The GRU's fast path: `GRU.step_forward` / `step_backward` for a whole sequence, arranged for
speed (see `fast.py`). Private: the step pair in `gru.py` is the specification."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.types import Array, Parts
from .fast import FastSequence, FastSweep, Workspace, tanh

if TYPE_CHECKING:
    from .gru import GRU, GRUCache


class GRUSequence(FastSequence):
    gate_factors = (-1, -1, 1)  # r, z = 1 / (1 + exp(-a)) without a negation
    cell: GRU

    def allocate(self, xs: Array, state0: Parts) -> GRUCache:
        T, N, _ = xs.shape
        H, dtype = self.cell.hidden_size, self.cell.dtype
        hs = np.empty((T + 1, N, H), dtype)
        hs[0] = state0[0]
        gates = np.empty((T, N, 3 * H), dtype)
        # b_hr and b_hz join the input projection; b_hn stays inside r * (...).
        bias = self.params["bias_ih"].copy()
        bias[: 2 * H] += self.params["bias_hh"][: 2 * H]
        self.project_inputs(xs, gates, bias)
        hn = np.empty((T, N, H), dtype)
        return self.cell.Cache(xs, hs[:-1], gates, hn, hs[1:])

    def advance(self, c: GRUCache, work: Workspace) -> None:
        H = self.cell.hidden_size
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


class GRUSweep(FastSweep):
    separate_hidden_gradient = True  # da_h,n = da_n * r differs from da_x,n = da_n
    cell: GRU

    def local_gradients(self) -> None:
        H, caches, da_x = self.cell.hidden_size, self.caches, self.da_x
        a = caches.gates
        r, z, n = a[..., :H], a[..., H : 2 * H], a[..., 2 * H :]
        dar, daz, dan = da_x[..., :H], da_x[..., H : 2 * H], da_x[..., 2 * H :]
        scratch = self.da_h[..., 2 * H :]  # free until the sweep writes it
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

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        (dh,) = dstate
        H = self.cell.hidden_size
        n = len(out)
        da_x, da_h = self.da_x[t, :n], self.da_h[t, :n]
        da = da_x.reshape(-1, 3, H)
        da[:, 1:] *= dh[:, None]  # chain rule: da_z, da_n = dL/dh * dh/da
        dan = da[:, 2]
        da[:, 0] *= dan  # da_r = da_n * da_n/da_r
        c = self.steps[t]
        da_h[:, : 2 * H] = da_x[:, : 2 * H]  # r and z see a_x and a_h alike
        np.multiply(dan, c.gates[:, :H], out=da_h[:, 2 * H :])  # hn sits behind r
        np.matmul(da_h, self.params["weight_hh"], out=out)  # through W_hh h_prev
        out += np.multiply(dh, c.gates[:, H : 2 * H], out=self.works[t].hidden)  # and directly through z * h_prev
        return (out,)


GRUSequence.Sweep = GRUSweep
