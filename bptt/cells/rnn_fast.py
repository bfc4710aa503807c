"""The Elman RNN's fast path: `RNN.step_forward` / `step_backward` for a whole sequence, arranged
for speed (see `fast.py`). Private: the step pair in `rnn.py` is the specification.

It keeps the step pair's (N, H) layout: with one gate there is no gate slice to make contiguous, and
the rows of the sequences running at a step are a contiguous prefix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.types import Array, Params, Parts
from .fast import FastSequence, FastSweep, add, by_step, dot, multiply, subtract, tanh_for, weight_gradients

if TYPE_CHECKING:
    from .rnn import RNN, RNNCache


def relu(a: Array, out: Array) -> Array:
    return np.maximum(a, 0, out=out)


class RNNSequence(FastSequence):
    cell: RNN

    def allocate(self, xs: Array, state0: Parts) -> None:
        T, N, D = xs.shape
        H, dtype = self.cell.hidden_size, self.cell.dtype
        self.xs = xs
        self.hs = self.tape_array("hs", (T + 1, N, H))
        self.hs[0] = state0[0]
        # h[t] holds the pre-activation a_x until step t overwrites it.
        bias = self.params["bias_ih"] + self.params["bias_hh"]
        np.matmul(xs.reshape(T * N, D), self.params["weight_ih"].T, out=self.hs[1:].reshape(T * N, H))
        self.hs[1:] += bias
        self.weight_hh_t = np.ascontiguousarray(self.params["weight_hh"].T)  # this call's weights: not in the views
        self.activation = (tanh_for(dtype, N * H) if self.cell.nonlinearity == "tanh" else relu)
        self.tmp = self.tape_array("tmp", (N, H))

    def step_views(self) -> list[tuple[Any, ...]]:
        T, running = self.T, self.running
        tmp = [self.tmp] * T if running is None else [self.tmp[:n] for n in running]
        return list(zip(by_step(self.hs[:-1], running), by_step(self.hs[1:], running), tmp))

    def advance(self, h_prev: Array, h: Array, tmp: Array) -> None:
        add(h, dot(h_prev, self.weight_hh_t, tmp), h)  # a = a_x + W_hh h_prev (h holds a_x on entry)
        self.activation(h, h)

    def ended(self, t: int, n: int) -> list[tuple[Array, Array]]:
        return [(self.hs[t + 1, n:], self.hs[t, n:])]

    def adopt(self, cache: RNNCache) -> None:
        self.xs = cache.x[None]
        self.hs = np.stack([cache.h_prev, cache.h])

    # ----------------------------------------------------------------- reading the tape
    @property
    def outputs(self) -> Array:
        return self.hs[1:]

    def state(self, k: int) -> Parts:
        return (self.hs[k],)

    def cache(self, t: int) -> RNNCache:
        n = self.N if self.running is None else self.running[t]
        return self.cell.Cache(self.xs[t, :n], self.hs[t, :n], self.hs[t + 1, :n])

    def tape_arrays(self) -> list[Array]:
        return [self.xs, self.hs]


class RNNSweep(FastSweep):
    cell: RNN
    sequence: RNNSequence

    def __init__(self, sequence: RNNSequence) -> None:
        super().__init__(sequence)
        T, N, H = self.T, self.N, self.cell.hidden_size
        self.da = self.work("rnn da", (T, N, H))
        h = sequence.hs[1:]
        if self.cell.nonlinearity == "tanh":
            multiply(h, h, self.da)  # tanh'(a) = 1 - h^2, for all T at once
            subtract(1, self.da, self.da)
        else:
            np.greater(h, 0, out=self.da)  # relu'(a) = [h > 0]
        if self.running is not None:
            for t, n in enumerate(self.running):  # no gradient reaches a step a sequence did not run
                self.da[t, n:] = 0
        self.weight_hh = self.params["weight_hh"]
        self.views = sequence.per_step("sweep", lambda: by_step(self.da, self.running),
                                       (self.da, *sequence.kept_arrays()))

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        da = self.views[t]
        multiply(da, dstate[0], da)  # through the non-linearity: da = act'(a) * dL/dh
        dot(da, self.weight_hh, out)  # dL/dh_prev = da W_hh
        return (out,)

    def preactivation_gradients(self, t: int) -> tuple[Array, Array]:
        return self.da[t], self.da[t]

    def gradients(self) -> tuple[Params, Array]:
        T, N, H = self.T, self.N, self.cell.hidden_size
        da = self.da.reshape(T * N, H)
        return weight_gradients(da, da, self.sequence.xs, self.sequence.hs[:-1], self.params["weight_ih"])


RNNSequence.Sweep = RNNSweep
