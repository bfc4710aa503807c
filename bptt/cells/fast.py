"""The fast path shared by the built-in cells: the same maths as their step pairs, arranged for speed.

It is private: its layout may change as long as `cache(t)` returns what `step_forward` returns, and
a property-based test keeps it equal to the step pair to round-off. What makes it fast:

- the input projection of all T steps is one matrix product before the loop (`project_inputs`),
  and the weight gradients are one product each after the sweep (`gradients`):
      dW_ih = sum_t da_x[t]^T x_t,   dW_hh = sum_t da_h[t]^T h_{t-1},   db_ih = sum_t da_x[t], ...
- the caches are time-stacked arrays (T, N, ...) written in place, and the states before and after
  each step are views of one (T+1, N, H) buffer, so nothing is stored twice;
- per step the loop makes a few numpy calls on preallocated buffers and allocates nothing: every
  local derivative that does not depend on the incoming gradient is formed for all T at once before
  the reverse sweep (`local_gradients`), which then only applies the chain rule;
- `gate_factors`: per gate, a power of two the pre-activation is multiplied by, folded into the input
  projection and into the workspace's W_hh^T so it costs nothing per step (e.g. -1, so that
  sigmoid(a) = 1 / (1 + exp(-a)) needs no negation). Exact: powers of two only scale exponents;
- float64 tanh of large arrays goes through exp (see `tanh`).

exp may overflow to inf on saturated units, which gives the activation's exact limit: the unroller
runs the forward pass under `np.errstate(over="ignore")`.

Letters: T time, N batch, D input size, H hidden size, G gates.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..core.scratch import scratch
from ..core.sequence import Sequence, Sweep

# Measured on the 2-core AMD EPYC this project is benchmarked on (numpy 2.4, AVX2): numpy's float64
# tanh is not vectorised there (14 ns per element, exp 5 ns), so float64 tanh of more than about a
# thousand elements goes through exp, 1.5-1.7x faster; float32 tanh is vectorised and kept.
EXP_TANH_MIN_SIZE = 1024


def tanh(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out <- tanh(x); out may be x."""
    if out.dtype != np.float64 or out.size < EXP_TANH_MIN_SIZE:
        return np.tanh(x, out=out)
    np.multiply(x, -2, out=out)  # tanh(x) = 2 / (1 + exp(-2x)) - 1
    np.exp(out, out=out)
    out += 1
    np.divide(2, out, out=out)
    out -= 1
    return out


class Workspace(NamedTuple):
    """Scratch buffers that every step of one sequence reuses, so the loop allocates nothing."""

    weight_hh_t: np.ndarray  # (H, G*H) W_hh^T, each gate's columns times its `gate_factors` entry
    gates: np.ndarray  # (N, G*H), e.g. the recurrent product h_prev W_hh^T
    hidden: np.ndarray  # (N, H), e.g. a product of two gates, or the carried dL/dc


def per_step(caches: NamedTuple) -> list:
    """Every step's cache (views into the time-stacked one), built in one pass."""
    return list(map(type(caches)._make, zip(*caches)))


class FastSequence(Sequence):
    """Time-stacked caches with inputs projected up front; subclasses write `allocate` and `step`.

    `caches` is the cell's Cache with a leading time axis on every field, `steps[t]` step t's views.
    """

    gate_factors: tuple[int, ...] | None = None

    def __init__(self, cell, xs, state0):
        super().__init__(cell, xs, state0)
        self.params = cell.params
        self.caches = self.allocate(xs, state0)
        self.steps = per_step(self.caches)
        self.work = self.workspace()
        self.reuse_scratch = True  # a sweep may take the thread's kept work arrays

    @classmethod
    def from_cache(cls, cell, cache):
        sequence = cls.__new__(cls)
        Sequence.__init__(sequence, cell, cache.x[None], ())
        sequence.params = cell.params
        sequence.caches = type(cache)(*(field[None] for field in cache))
        sequence.steps = [cache]
        sequence.work = sequence.workspace()
        sequence.reuse_scratch = False  # the caller may keep the single step's gradients
        return sequence

    def allocate(self, xs: np.ndarray, state0: tuple) -> NamedTuple:
        """The time-stacked caches, inputs already projected into the fields the loop finishes."""
        raise NotImplementedError

    # ----------------------------------------------------------------- reading the tape
    @property
    def outputs(self):
        return self.caches.h

    def state(self, k):
        if k == 0:
            return tuple(getattr(self.caches, f + "_prev")[0] for f in self.cell.state_fields)
        return tuple(getattr(self.caches, f)[k - 1] for f in self.cell.state_fields)

    def cache(self, t):
        return self.steps[t]

    @property
    def nbytes(self):
        seen = {}
        for field in self.caches:
            base = field if field.base is None else field.base
            seen[id(base)] = base.nbytes
        return sum(seen.values())

    # ----------------------------------------------------------------- shared pieces
    def row_factors(self) -> np.ndarray | None:
        """`gate_factors` repeated over each gate's H rows of W_ih, W_hh and the biases: (G*H,)."""
        if self.gate_factors is None:
            return None
        return np.repeat(np.asarray(self.gate_factors, self.cell.dtype), self.cell.hidden_size)

    def workspace(self) -> Workspace:
        cell, factors = self.cell, self.row_factors()
        weight_hh = self.params["weight_hh"]
        if factors is not None:
            weight_hh = weight_hh * factors[:, None]
        return Workspace(
            weight_hh_t=np.ascontiguousarray(weight_hh.T),
            gates=np.empty((self.N, cell.gates * cell.hidden_size), cell.dtype),
            hidden=np.empty((self.N, cell.hidden_size), cell.dtype),
        )

    def project_inputs(self, xs: np.ndarray, out: np.ndarray, bias: np.ndarray) -> None:
        """out[t] = (xs[t] W_ih^T + bias) * row_factors for all t in one matrix product; out (T, N, G*H)."""
        T, N, D = xs.shape
        weight_ih, factors = self.params["weight_ih"], self.row_factors()
        if factors is not None:
            weight_ih, bias = weight_ih * factors[:, None], bias * factors
        flat_out = out.reshape(T * N, -1)
        np.matmul(xs.reshape(T * N, D), weight_ih.T, out=flat_out)
        flat_out += bias


class FastSweep(Sweep):
    """da_x and da_h (T, N, G*H) filled by the steps; the weight gradients from them at the end.

    Subclasses write `local_gradients` (everything of dL/da that does not depend on dL/dstate, for
    all T at once, written into da_x / da_h) and `step`.
    """

    separate_hidden_gradient = False  # True when da_h differs from da_x (GRU's reset gate)

    def __init__(self, sequence: FastSequence):
        self.sequence, self.cell, self.params = sequence, sequence.cell, sequence.params
        self.caches, self.steps, self.work = sequence.caches, sequence.steps, sequence.work
        T, N, cell = sequence.T, sequence.N, sequence.cell
        shape = (T, N, cell.gates * cell.hidden_size)
        new = (lambda role: scratch.get(role, shape, cell.dtype)) if sequence.reuse_scratch else (
            lambda role: np.empty(shape, cell.dtype))
        self.da_x = new("da_x")
        self.da_h = new("da_h") if self.separate_hidden_gradient else self.da_x
        self.local_gradients()

    def local_gradients(self) -> None:
        raise NotImplementedError

    def preactivation_gradients(self, t):
        return self.da_x[t], self.da_h[t]

    def gradients(self):
        """The shared weights' gradients, summed over time and batch in one product each, and dL/dxs."""
        xs, h_prevs = self.caches.x, self.caches.h_prev
        T, N, D = xs.shape
        gx = self.da_x.reshape(T * N, -1)
        gh = self.da_h.reshape(T * N, -1)
        params = {
            "weight_ih": gx.T @ xs.reshape(T * N, D),
            "weight_hh": gh.T @ h_prevs.reshape(T * N, -1),
            "bias_ih": gx.sum(axis=0),
            "bias_hh": gh.sum(axis=0),
        }
        dxs = (gx @ self.params["weight_ih"]).reshape(T, N, D)
        return params, dxs
