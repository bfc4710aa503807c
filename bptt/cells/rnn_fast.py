"""The Elman RNN's fast path: `RNN.step_forward` / `step_backward` for a whole sequence, arranged
for speed (see `fast.py`). Private: the step pair in `rnn.py` is the specification."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..core.types import Array, Parts
from .fast import FastSequence, FastSweep, Workspace, tanh

if TYPE_CHECKING:
    from .rnn import RNN, RNNCache


class RNNSequence(FastSequence):
    cell: RNN

    def allocate(self, xs: Array, state0: Parts) -> RNNCache:
        T, N, _ = xs.shape
        hs = np.empty((T + 1, N, self.cell.hidden_size), self.cell.dtype)
        hs[0] = state0[0]
        # h[t] holds the pre-activation until step t overwrites it.
        self.project_inputs(xs, hs[1:], self.params["bias_ih"] + self.params["bias_hh"])
        return self.cell.Cache(x=xs, h_prev=hs[:-1], h=hs[1:])

    def advance(self, c: RNNCache, work: Workspace) -> None:
        h = c.h  # holds a_x on entry
        h += np.matmul(c.h_prev, work.weight_hh_t, out=work.gates)  # a = a_x + W_hh h_prev
        if self.cell.nonlinearity == "tanh":
            tanh(h, out=h)
        else:
            np.maximum(h, 0, out=h)


class RNNSweep(FastSweep):
    cell: RNN

    def local_gradients(self) -> None:
        h, da = self.caches.h, self.da_x
        if self.cell.nonlinearity == "tanh":
            np.multiply(h, h, out=da)  # tanh'(a) = 1 - h^2, for all T at once
            np.subtract(1, da, out=da)
        else:
            np.greater(h, 0, out=da)  # relu'(a) = [h > 0]

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        da = self.da_x[t, : len(out)]
        da *= dstate[0]  # through the non-linearity: da = act'(a) * dL/dh
        np.matmul(da, self.params["weight_hh"], out=out)  # dL/dh_prev = da W_hh
        return (out,)


RNNSequence.Sweep = RNNSweep
