"""The LSTM's fast path: `LSTM.step_forward` / `step_backward` for a whole sequence, arranged for
speed (see `fast.py`). Private: the step pair in `lstm.py` is the specification.

Layout, per step (gate-major, N last): `gates` (4H, N) holds a_x * factors on entry, then the
activated i, f, g, o (PyTorch's order); the cell states c and tanh(c) are (H, N). The hidden state
h (R, N) is written gate-major by each step for the next step's product, and copied to the (N, R)
layout the caller sees once, after the last step. R is H, or P with a projection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ..core.scratch import scratch
from ..core.types import Array, Params, Parts
from .fast import (FastSequence, FastSweep, Product, add, by_step, copyto, divide, dot, exp, matmul, multiply,
                   natural, product_operands, subtract, tanh_for, weight_gradients, Activation)

if TYPE_CHECKING:
    from .lstm import LSTM, LSTMCache


class LSTMSequence(FastSequence):
    # i, f, o = 1 / (1 + exp(-a)) and g = tanh(a) = 2 / (1 + exp(-2a)) - 1: one exp for all four
    gate_factors = (-1, -1, -2, -1)
    cell: LSTM

    def allocate(self, xs: Array, state0: Parts) -> None:
        T, N, _ = xs.shape
        H, R, dtype = self.cell.hidden_size, self.cell.output_size, self.cell.dtype
        self.xs = xs
        self.hs = self.tape_array("hs", (T + 1, N, R))  # h as the caller sees it, filled by `finish`
        self.hs[0] = state0[0]
        self.gates = self.tape_array("gates", (T, 4 * H, N))
        self.project_inputs(xs, self.gates, self.params["bias_ih"] + self.params["bias_hh"])
        self.cs = self.tape_array("cs", (T + 1, H, N))
        self.cs[0] = state0[1].T
        self.tanh_c = self.tape_array("tanh c", (T, H, N))
        self.states = scratch.take("lstm states", (T + 1, R, N), dtype)  # h^T
        self.states[0] = state0[0].T
        factors = self.row_factors()
        assert factors is not None
        self.weight_hh = self.params["weight_hh"] * factors[:, None]  # this call's weights: not in the views
        projected = self.cell.proj_size > 0
        self.weight_hr = self.params["weight_hr"] if projected else None
        self.scale = self.tape_array("scale", (4 * H, N))
        self.scale[...] = 1
        self.scale[2 * H : 3 * H] = 2  # tanh(x) = 2 sigmoid(2x) - 1 for g
        self.tmp_gates, self.tmp = self.tape_array("tmp gates", (4 * H, N)), self.tape_array("tmp", (H, N))
        self.unprojected = self.tape_array("unprojected", (H, N)) if projected else None
        # the sweep's own work arrays, here so that its views can be kept with the tape's
        self.sweep_dh, self.sweep_dc = self.tape_array("sweep dh", (H, N)), self.tape_array("sweep dc", (H, N))

    def view_arrays(self) -> tuple[Array, ...]:
        return (*super().view_arrays(), self.states)

    def step_views(self) -> list[tuple[Any, ...]]:
        # Every column, also where sequences have ended (their state is put back after the step):
        # contiguous calls on all N columns cost less than strided ones on the running n.
        T, N, H, gates = self.T, self.N, self.cell.hidden_size, self.gates
        a_h = [self.tmp_gates] * T
        others = zip(gates, a_h, [self.scale] * T, *(gates[:, k * H : (k + 1) * H] for k in range(4)), self.cs[:-1],
                     self.cs[1:], self.tanh_c, [self.tmp] * T, self.states[1:], [self.unprojected] * T,
                     [tanh_for(self.cell.dtype, H * N)] * T)
        return [(*product, *views) for product, views in zip(product_operands(self.running, N, self.states[:-1], a_h),
                                                             others)]

    def advance(self, product: Product, h_prev: Array, a_h_running: Array, a: Array, a_h: Array, scale: Array,
                i: Array, f: Array, g: Array, o: Array, c_prev: Array, c: Array, tanh_c: Array, tmp: Array, h: Array,
                unprojected: Array | None, tanh: Activation) -> None:
        product(self.weight_hh, h_prev, a_h_running)
        add(a, a_h, a)  # a = (a_x + W_hh h_prev) * factors
        exp(a, a)
        add(a, 1, a)
        divide(scale, a, a)  # i, f, o = sigmoid(a); g = 2 sigmoid(2 a_g) ...
        subtract(g, 1, g)  # ... - 1 = tanh(a_g)
        multiply(f, c_prev, c)  # c = f * c_prev + i * g
        multiply(i, g, tmp)
        add(c, tmp, c)
        tanh(c, tanh_c)
        if unprojected is None:
            multiply(o, tanh_c, h)  # h = o * tanh(c)
        else:  # h = (o * tanh(c)) W_hr^T
            dot(cast(Array, self.weight_hr), multiply(o, tanh_c, unprojected), h)

    def ended(self, t: int, n: int) -> list[tuple[Array, Array]]:
        return [(self.states[t + 1, :, n:], self.states[t, :, n:]), (self.cs[t + 1, :, n:], self.cs[t, :, n:])]

    def finish(self) -> None:
        copyto(self.hs[1:], self.states[1:].transpose(0, 2, 1))
        scratch.give("lstm states", self.states)
        del self.states

    def adopt(self, cache: LSTMCache) -> None:
        self.xs = cache.x[None]
        self.hs = np.stack([cache.h_prev, cache.h])
        self.cs = np.stack([cache.c_prev.T, cache.c.T])
        self.gates = np.ascontiguousarray(cache.gates.T)[None]
        self.tanh_c = np.ascontiguousarray(cache.tanh_c.T)[None]
        H, N = self.cell.hidden_size, self.N
        self.sweep_dh, self.sweep_dc = np.empty((H, N), self.cell.dtype), np.empty((H, N), self.cell.dtype)

    # ----------------------------------------------------------------- reading the tape
    @property
    def outputs(self) -> Array:
        return self.hs[1:]

    def state(self, k: int) -> Parts:
        return self.hs[k], self.cs[k].T

    def cache(self, t: int) -> LSTMCache:
        n = self.N if self.running is None else self.running[t]
        return self.cell.Cache(self.xs[t, :n], self.hs[t, :n], self.cs[t, :, :n].T, self.gates[t, :, :n].T,
                               self.cs[t + 1, :, :n].T, self.tanh_c[t, :, :n].T, self.hs[t + 1, :n])

    def tape_arrays(self) -> list[Array]:
        return [self.xs, self.hs, self.cs, self.gates, self.tanh_c]


class LSTMSweep(FastSweep):
    cell: LSTM
    sequence: LSTMSequence

    def __init__(self, sequence: LSTMSequence) -> None:
        super().__init__(sequence)
        T, N, H, P, running = self.T, self.N, self.cell.hidden_size, self.cell.proj_size, self.running
        self.da = self.work("lstm da", (T, 4 * H, N))
        self.dc_total = self.work("lstm dc", (T, H, N))
        self.local_gradients()
        if running is not None:
            for t, n in enumerate(running):  # no gradient reaches a step a sequence did not run
                self.da[t, :, n:] = 0
                self.dc_total[t, :, n:] = 0
        # every step's dL/dh before the projection's backward, for dW_hr
        self.dh_projected = np.zeros((T, N, P), self.cell.dtype) if P else None
        arrays = (self.da, self.dc_total, *sequence.kept_arrays(),
                  *([] if self.dh_projected is None else [self.dh_projected]))
        self.views = sequence.per_step("sweep", self.step_views, arrays)

    def step_views(self) -> list[tuple[Any, ...]]:
        T, H, sequence, da = self.T, self.cell.hidden_size, self.sequence, self.da
        return list(zip(
            [sequence.sweep_dh] * T, self.dc_total, *(da[:, k * H : (k + 1) * H] for k in range(4)),
            da.transpose(0, 2, 1), sequence.gates[:, H : 2 * H], [sequence.sweep_dc] * T,
            [None] * T if self.dh_projected is None else by_step(self.dh_projected, self.running),
        ))

    def local_gradients(self) -> None:
        """Every factor of dL/da that does not depend on dL/dh or dL/dc, for all T at once."""
        H, sequence, da = self.cell.hidden_size, self.sequence, self.da
        a = sequence.gates
        i, g, o = a[:, :H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
        dai, daf, dag, dao = (da[:, k * H : (k + 1) * H] for k in range(4))
        # each gate's non-linearity: sigmoid' = s (1 - s), tanh' = 1 - g^2
        multiply(a, a, da)
        subtract(a, da, da)
        multiply(g, g, dag)
        subtract(1, dag, dag)
        # times the other factor of the product the gate enters: c = f * c_prev + i * g, h = o * tanh(c)
        multiply(dai, g, dai)  # dc/da_i = g s_i'
        multiply(daf, sequence.cs[:-1], daf)  # dc/da_f = c_prev s_f'
        multiply(dag, i, dag)  # dc/da_g = i tanh'(a_g)
        multiply(dao, sequence.tanh_c, dao)  # dh/da_o = tanh(c) s_o'
        dh_dc = self.dc_total  # dh/dc = o (1 - tanh(c)^2); each step turns its own into the total dL/dc_t
        multiply(sequence.tanh_c, sequence.tanh_c, dh_dc)
        subtract(1, dh_dc, dh_dc)
        multiply(dh_dc, o, dh_dc)

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        da, dc_prev = self.chain_rule(t, dstate)
        dot(da, self.params["weight_hh"], out)  # through a_h = W_hh h_prev
        return out, dc_prev.T

    def partial(self, t: int, dstate: Parts, out: Array) -> Parts:
        """Every column but the product, as the forward ran it: the local gradients of the sequences
        that have ended are zero, so nothing of them reaches da, and their total dL/dc_t is the
        dL/dc that came in; their dL/dh and dL/dc pass through."""
        n = cast(list, self.running)[t]
        da, dc_prev = self.chain_rule(t, dstate)
        matmul(da[:n], self.params["weight_hh"], out[:n])
        out[n:] = dstate[0][n:]
        dc_prev[:, n:] = self.dc_total[t, :, n:]
        return out, dc_prev.T

    def chain_rule(self, t: int, dstate: Parts) -> tuple[Array, Array]:
        """da of step t from (dL/dh, dL/dc) (N, R) and (N, H), in place; returns da (N, 4H) and
        dL/dc_prev (H, N)."""
        dh, dc = dstate
        dh_t, dc_total, da_i, da_f, da_g, da_o, da, f, dc_prev, dh_projected = self.views[t]
        if dh_projected is None:
            copyto(dh_t, dh.T)  # dL/dh, gate-major
        else:  # h = u W_hr^T: dL/du = dL/dh W_hr
            copyto(dh_projected, dh[: len(dh_projected)])  # the running sequences' rows: the others' stay 0
            dot(self.params["weight_hr"].T, dh.T, dh_t)
        # total dL/dc_t: through h = o * tanh(c), plus what step t+1 carried back through c_prev
        multiply(dc_total, dh_t, dc_total)
        add(dc_total, dc.T, dc_total)
        # chain rule into the gates: i, f, g act through c, o through h (one call per gate: one
        # multiply broadcasting dL/dc over three blocks goes through numpy's buffered iterator)
        multiply(da_i, dc_total, da_i)
        multiply(da_f, dc_total, da_f)
        multiply(da_g, dc_total, da_g)
        multiply(da_o, dh_t, da_o)
        multiply(dc_total, f, dc_prev)  # through c = f * c_prev + i * g
        return da, dc_prev

    def preactivation_gradients(self, t: int) -> tuple[Array, Array]:
        da = np.ascontiguousarray(self.da[t].T)
        return da, da

    def gradients(self) -> tuple[Params, Array]:
        T, N, H, sequence = self.T, self.N, self.cell.hidden_size, self.sequence
        da = natural(self.da, self.work("lstm da natural", (T, N, 4 * H))).reshape(T * N, 4 * H)
        params, dxs = weight_gradients(da, da, sequence.xs, sequence.hs[:-1], self.params["weight_ih"])
        if self.dh_projected is not None:  # dW_hr = sum_t dL/dh_t^T u_t, u = o * tanh(c), in one product
            u = multiply(sequence.gates[:, 3 * H :], sequence.tanh_c)
            u = natural(u, np.empty((T, N, H), self.cell.dtype)).reshape(T * N, H)
            params["weight_hr"] = self.dh_projected.reshape(T * N, -1).T @ u
        return params, dxs


LSTMSequence.Sweep = LSTMSweep
