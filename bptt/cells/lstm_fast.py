"""The LSTM's fast path: `LSTM.step_forward` / `step_backward` for a whole sequence, arranged for
speed (see `fast.py`). Private: the step pair in `lstm.py` is the specification."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..core.types import Array, Params, Parts
from .fast import FastSequence, FastSweep, Work, tanh

if TYPE_CHECKING:
    from .lstm import LSTM, LSTMCache


class LSTMWorkspace(NamedTuple):
    """The shared Workspace's fields, and the per-column constants that finish the gates."""

    weight_hh_t: Array
    gates: Array
    hidden: Array
    scale: Array  # (4H,) 1 for i, f, o; 2 for g
    shift: Array  # (4H,) 0 for i, f, o; -1 for g
    weight_hr_t: Array | None  # (H, P) W_hr^T, with projections
    unprojected: Array | None  # (N, H) o * tanh(c) before the projection, or its gradient


class LSTMSequence(FastSequence):
    # i, f, o = 1 / (1 + exp(-a)) and g = tanh(a) = 2 / (1 + exp(-2a)) - 1: one exp for all four
    gate_factors = (-1, -1, -2, -1)
    batch_fields = ("gates", "hidden", "unprojected")
    cell: LSTM

    def allocate(self, xs: Array, state0: Parts) -> LSTMCache:
        T, N, _ = xs.shape
        H, dtype = self.cell.hidden_size, self.cell.dtype
        hs = np.empty((T + 1, N, self.cell.output_size), dtype)
        cs = np.empty((T + 1, N, H), dtype)
        hs[0], cs[0] = state0
        gates = np.empty((T, N, 4 * H), dtype)
        self.project_inputs(xs, gates, self.params["bias_ih"] + self.params["bias_hh"])
        tanh_c = np.empty((T, N, H), dtype)
        return self.cell.Cache(xs, hs[:-1], cs[:-1], gates, cs[1:], tanh_c, hs[1:])

    def workspace(self) -> Work:  # an LSTMWorkspace
        H, dtype = self.cell.hidden_size, self.cell.dtype
        scale, shift = np.ones(4 * H, dtype), np.zeros(4 * H, dtype)
        scale[2 * H : 3 * H], shift[2 * H : 3 * H] = 2, -1  # tanh(x) = 2 sigmoid(2x) - 1 for g
        projected = self.cell.proj_size > 0
        return LSTMWorkspace(*super().workspace(), scale=scale, shift=shift,
                             weight_hr_t=np.ascontiguousarray(self.params["weight_hr"].T) if projected else None,
                             unprojected=np.empty((self.N, H), dtype) if projected else None)

    def advance(self, c: LSTMCache, work: LSTMWorkspace) -> None:
        H = self.cell.hidden_size
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
        if work.weight_hr_t is None:
            np.multiply(o, c.tanh_c, out=c.h)  # h = o * tanh(c)
        else:  # h = (o * tanh(c)) W_hr^T
            np.matmul(np.multiply(o, c.tanh_c, out=work.unprojected), work.weight_hr_t, out=c.h)


class LSTMSweep(FastSweep):
    cell: LSTM

    def local_gradients(self) -> None:
        H, caches, da_x = self.cell.hidden_size, self.caches, self.da_x
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
        self.dc_total = dh_dc  # each step turns its row into the total dL/dc_t
        if self.cell.proj_size:  # every step's dL/dh before the projection's backward, for dW_hr
            self.dh_projected = np.zeros(caches.h.shape, self.cell.dtype)

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        dh, dc = dstate
        H = self.cell.hidden_size
        n = len(out)
        if self.cell.proj_size:  # h = u W_hr^T: dL/du = dL/dh W_hr
            self.dh_projected[t, :n] = dh
            dh = np.matmul(dh, self.params["weight_hr"], out=self.works[t].unprojected)
        dc_total = self.dc_total[t, :n]  # holds dh/dc on entry
        # total dL/dc_t: through h = o * tanh(c), plus what step t+1 carried back through c_prev
        dc_total *= dh
        dc_total += dc
        # chain rule into the gates: i, f, g act through c, o through h
        da_x = self.da_x[t, :n]
        da = da_x.reshape(-1, 4, H)
        da[:, :3] *= dc_total[:, None]
        da[:, 3] *= dh
        np.matmul(da_x, self.params["weight_hh"], out=out)  # through a_h = W_hh h_prev
        f = self.steps[t].gates[:, H : 2 * H]
        dc_prev = np.multiply(dc_total, f, out=self.works[t].hidden)  # through c = f * c_prev + i * g
        return out, dc_prev

    def gradients(self) -> tuple[Params, Array]:
        params, dxs = super().gradients()
        if self.cell.proj_size:  # dW_hr = sum_t dL/dh_t^T u_t, u = o * tanh(c), in one product
            H = self.cell.hidden_size
            u = self.caches.gates[..., 3 * H :] * self.caches.tanh_c
            params["weight_hr"] = self.dh_projected.reshape(-1, self.cell.proj_size).T @ u.reshape(-1, H)
        return params, dxs


LSTMSequence.Sweep = LSTMSweep
