"""The GRU's fast path: `GRU.step_forward` / `step_backward` for a whole sequence, arranged for
speed (see `fast.py`). Private: the step pair in `gru.py` is the specification.

Layout, per step (gate-major, N last):
- `gates` (3H, N): a_x * factors on entry, then the activated r, z, n (PyTorch's order).
- the recurrent product W_hh h_prev^T + b_hn, rows ordered [hn; a_h,r; a_h,z], lands in a window
  of one ((T+2)H, N) buffer that moves down H rows per step: its first H rows, hn, stay (the next
  step's window starts below them) and form the tape's `hn` (T, H, N) with no copy; b_hn enters the
  product through a row of ones under h_prev^T.
- the reverse sweep's dA (5H, N) holds, in this order, da_x,n, da_z, da_r, da_h,n and dL/dh * z:
  its first 3H rows are da_x (rows [n, z, r]) and the next 4H are da_h (rows [z, r, n]) followed
  by the direct path h_prev -> h, so dL/dh_prev = [da_h; dL/dh * z]^T [W_hh; I] is one product and
  no row is copied between da_x and da_h.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..core.scratch import scratch
from ..core.types import Array, Params, Parts
from .fast import (Activation, FastSequence, FastSweep, Product, add, copyto, divide, dot, exp, matmul, multiply,
                   natural, product_operands, subtract, tanh_for, weight_gradients)

if TYPE_CHECKING:
    from .gru import GRU, GRUCache


class GRUSequence(FastSequence):
    gate_factors = (-1, -1, 1)  # r, z = 1 / (1 + exp(-a)) without a negation
    cell: GRU

    def allocate(self, xs: Array, state0: Parts) -> None:
        T, N, _ = xs.shape
        H, dtype = self.cell.hidden_size, self.cell.dtype
        self.xs = xs
        self.hs = self.tape_array("hs", (T + 1, N, H))  # the states as the caller sees them, filled by `finish`
        self.hs[0] = state0[0]
        self.gates = self.tape_array("gates", (T, 3 * H, N))
        # b_hr and b_hz join the input projection; b_hn stays inside r * (...).
        bias = self.params["bias_ih"].copy()
        bias[: 2 * H] += self.params["bias_hh"][: 2 * H]
        self.project_inputs(xs, self.gates, bias)
        self.window = self.tape_array("window", ((T + 2) * H, N))
        self.hn = self.window[: T * H].reshape(T, H, N)
        self.h_minus_n = self.tape_array("h - n", (T, H, N))  # h_prev - n, for dh/dz
        self.states = scratch.take("gru states", (T + 1, H + 1, N), dtype)  # h^T, and a row of ones
        self.states[0, :H] = state0[0].T
        self.states[:, H] = 1
        weight_hh, bias_hh = self.params["weight_hh"], self.params["bias_hh"]
        order = np.r_[2 * H : 3 * H, 0 : 2 * H]  # n, r, z
        factors = np.repeat(np.array([1, -1, -1], dtype), H)
        self.weight_hh = np.empty((3 * H, H + 1), dtype)  # this call's weights: not in the views
        self.weight_hh[:, :H] = weight_hh[order] * factors[:, None]
        self.weight_hh[:, H] = 0
        self.weight_hh[:H, H] = bias_hh[2 * H :]
        self.tmp = self.tape_array("tmp", (H, N))
        # the sweep's own work arrays, here so that its views can be kept with the tape's
        self.sweep_dh, self.sweep_dh_z = self.tape_array("sweep dh", (H, N)), self.tape_array("sweep dh z", (N, H))

    def view_arrays(self) -> tuple[Array, ...]:
        return (*super().view_arrays(), self.states)

    def step_views(self) -> list[tuple[Any, ...]]:
        # Every column, also where sequences have ended (their state is put back after the step):
        # contiguous calls on all N columns cost less than strided ones on the running n.
        T, N, H = self.T, self.N, self.cell.hidden_size
        item = self.window.itemsize
        windows = np.lib.stride_tricks.as_strided(self.window, (T, 3 * H, N), (H * N * item, N * item, item))
        gates, states = self.gates, self.states
        others = zip(gates[:, : 2 * H], windows[:, H:], gates[:, :H], windows[:, :H], gates[:, 2 * H :],
                     gates[:, H : 2 * H], states[:-1, :H], self.h_minus_n, states[1:, :H], [self.tmp] * T,
                     [tanh_for(self.cell.dtype, H * N)] * T)
        return [(*product, *views) for product, views in zip(product_operands(self.running, N, states[:-1], windows),
                                                             others)]

    def advance(self, product: Product, h_prev_ones: Array, window: Array, rz: Array, a_h_rz: Array, r: Array,
                hn: Array, n: Array, z: Array, h_prev: Array, h_minus_n: Array, h: Array, tmp: Array,
                tanh: Activation) -> None:
        product(self.weight_hh, h_prev_ones, window)  # [hn; a_h,r; a_h,z] = W_hh h_prev + b_hn (times factors)
        add(rz, a_h_rz, rz)
        exp(rz, rz)
        add(rz, 1, rz)
        divide(1, rz, rz)  # r, z = sigmoid(a_x + a_h)
        multiply(r, hn, tmp)
        add(n, tmp, n)
        tanh(n, n)  # n = tanh(a_x,n + r * hn)
        subtract(h_prev, n, h_minus_n)
        multiply(h_minus_n, z, tmp)
        add(tmp, n, h)  # h = n + z * (h_prev - n)

    def ended(self, t: int, n: int) -> list[tuple[Array, Array]]:
        H = self.cell.hidden_size
        return [(self.states[t + 1, :H, n:], self.states[t, :H, n:])]

    def finish(self) -> None:
        H = self.cell.hidden_size
        copyto(self.hs[1:], self.states[1:, :H].transpose(0, 2, 1))
        scratch.give("gru states", self.states)
        del self.states

    def adopt(self, cache: GRUCache) -> None:
        self.xs = cache.x[None]
        self.hs = np.stack([cache.h_prev, cache.h])
        self.gates = np.ascontiguousarray(cache.gates.T)[None]
        self.hn = np.ascontiguousarray(cache.hn.T)[None]
        H, N = self.cell.hidden_size, self.N
        self.h_minus_n = cache.h_prev.T[None] - self.gates[:, 2 * H :]
        self.sweep_dh, self.sweep_dh_z = np.empty((H, N), self.cell.dtype), np.empty((N, H), self.cell.dtype)

    # ----------------------------------------------------------------- reading the tape
    @property
    def outputs(self) -> Array:
        return self.hs[1:]

    def state(self, k: int) -> Parts:
        return (self.hs[k],)

    def cache(self, t: int) -> GRUCache:
        n = self.N if self.running is None else self.running[t]
        return self.cell.Cache(self.xs[t, :n], self.hs[t, :n], self.gates[t, :, :n].T, self.hn[t, :, :n].T,
                               self.hs[t + 1, :n])

    def tape_arrays(self) -> list[Array]:
        return [self.xs, self.hs, self.gates, self.hn, self.h_minus_n]


class GRUSweep(FastSweep):
    cell: GRU
    sequence: GRUSequence

    def __init__(self, sequence: GRUSequence) -> None:
        super().__init__(sequence)
        T, N, H, running = self.T, self.N, self.cell.hidden_size, self.running
        # Below H = 64 the direct path joins the product as an identity block (one product instead
        # of a product, a multiply and an add); from there its H more rows cost more than the calls.
        self.direct_in_product = H < 64
        rows = 5 * H if self.direct_in_product else 4 * H
        self.da = self.work("gru da", (T, rows, N))  # da_x,n, da_z, da_r, da_h,n (, dL/dh * z)
        self.local_gradients()
        if running is not None:
            for t, n in enumerate(running):  # no gradient reaches a step a sequence did not run
                self.da[t, :, n:] = 0
        weight_hh = self.params["weight_hh"]
        blocks = [weight_hh[H : 2 * H], weight_hh[:H], weight_hh[2 * H :]]  # rows z, r, n
        if self.direct_in_product:
            blocks.append(np.eye(H, dtype=weight_hh.dtype))
        self.weight = np.concatenate(blocks)
        self.views = sequence.per_step("sweep", self.step_views, (self.da, *sequence.kept_arrays()))

    def step_views(self) -> list[tuple[Any, ...]]:
        T, H, sequence, da = self.T, self.cell.hidden_size, self.sequence, self.da
        dh_z = da[:, 4 * H :] if self.direct_in_product else [sequence.sweep_dh_z] * T
        # the chain rule block by block: one multiply broadcasting dL/dh over two (H, N) blocks goes
        # through numpy's buffered iterator and costs more than two contiguous ones
        return list(zip(
            [sequence.sweep_dh] * T, *(da[:, k * H : (k + 1) * H] for k in range(4)), sequence.gates[:, :H],
            sequence.gates[:, H : 2 * H], dh_z, da[:, H:].transpose(0, 2, 1),
        ))

    def local_gradients(self) -> None:
        """Every factor of dL/da that does not depend on dL/dh, for all T at once."""
        H, gates, da = self.cell.hidden_size, self.sequence.gates, self.da
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        dan, daz, dar, dahn = (da[:, k * H : (k + 1) * H] for k in range(4))
        one_minus_z = dahn  # free until each step writes its da_h,n there
        # through h = (1 - z) * n + z * h_prev into n, then tanh' = 1 - n^2
        subtract(1, z, one_minus_z)
        multiply(n, n, dan)
        subtract(1, dan, dan)
        multiply(dan, one_minus_z, dan)  # dh/da_n = (1 - z) (1 - n^2)
        # into z, then sigmoid' = z (1 - z)
        multiply(z, one_minus_z, daz)
        multiply(daz, self.sequence.h_minus_n, daz)  # dh/da_z = (h_prev - n) z (1 - z)
        # into r through n's pre-activation a_x,n + r * hn, then sigmoid'
        subtract(1, r, dar)
        multiply(dar, r, dar)
        multiply(dar, self.sequence.hn, dar)  # da_n/da_r = hn r (1 - r)

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        da_h, z, dh_z = self.chain_rule(t, dstate[0])
        dot(da_h, self.weight, out)  # dL/dh_prev = da_h W_hh (+ dL/dh * z with the identity block)
        if not self.direct_in_product:
            add(out, multiply(dstate[0], z.T, dh_z), out)  # + dL/dh * z, the direct path h = ... + z * h_prev
        return (out,)

    def partial(self, t: int, dstate: Parts, out: Array) -> Parts:
        """Every column but the product, as the forward ran it: the local gradients of the sequences
        that have ended are zero, so nothing of them reaches da; their dL/dh passes through."""
        n = cast(list, self.running)[t]
        da_h, z, dh_z = self.chain_rule(t, dstate[0])
        matmul(da_h[:n], self.weight, out[:n])
        if not self.direct_in_product:
            add(out[:n], multiply(dstate[0][:n], z[:, :n].T, dh_z[:n]), out[:n])
        out[n:] = dstate[0][n:]
        return (out,)

    def chain_rule(self, t: int, dh_in: Array) -> tuple[Array, Array, Array]:
        """da of step t from dL/dh (N, H), in place; returns da_h (N, 4H or 3H), z (H, N) and where
        dL/dh * z goes."""
        dh, dan, daz, dar, dahn, r, z, dh_z, da_h = self.views[t]
        copyto(dh, dh_in.T)  # dL/dh, gate-major
        multiply(dan, dh, dan)  # chain rule: da_n, da_z = dL/dh * dh/da
        multiply(daz, dh, daz)
        multiply(dar, dan, dar)  # da_r = da_n * da_n/da_r
        multiply(dan, r, dahn)  # da_h,n = da_n * r: hn sits behind r
        if self.direct_in_product:
            multiply(dh, z, dh_z)  # the direct path h = ... + z * h_prev, through I in the product
        return da_h, z, dh_z

    def preactivation_gradients(self, t: int) -> tuple[Array, Array]:
        H, da = self.cell.hidden_size, self.da[t]
        dar, daz = da[2 * H : 3 * H].T, da[H : 2 * H].T
        return np.hstack([dar, daz, da[:H].T]), np.hstack([dar, daz, da[3 * H : 4 * H].T])

    def gradients(self) -> tuple[Params, Array]:
        T, N, H = self.T, self.N, self.cell.hidden_size
        da = natural(self.da[:, : 4 * H], self.work("gru da natural", (T, N, 4 * H))).reshape(T * N, 4 * H)
        sequence = self.sequence
        x_order, h_order = np.r_[2 * H : 3 * H, H : 2 * H, 0:H], np.r_[H : 2 * H, 0:H, 2 * H : 3 * H]
        params, dxs = weight_gradients(da[:, : 3 * H], da[:, H:], sequence.xs, sequence.hs[:-1],
                                       self.params["weight_ih"][x_order], sum_by_product=True)
        x_back, h_back = np.argsort(x_order), np.argsort(h_order)  # to PyTorch's rows r, z, n
        for name, back in (("weight_ih", x_back), ("bias_ih", x_back), ("weight_hh", h_back), ("bias_hh", h_back)):
            params[name] = params[name][back]
        return params, dxs


GRUSequence.Sweep = GRUSweep
