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

from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, TypeAlias, cast

import numpy as np

from ..core.scratch import scratch
from ..core.sequence import CellContract, Sequence, Sweep
from ..core.types import Array, IntArray, Params, Parts, StepCache

if TYPE_CHECKING:
    from .cell import Cell

# Measured on the 2-core AMD EPYC this project is benchmarked on (numpy 2.4, AVX2): numpy's float64
# tanh is not vectorised there (14 ns per element, exp 5 ns), so float64 tanh of more than about a
# thousand elements goes through exp, 1.5-1.7x faster; float32 tanh is vectorised and kept.
EXP_TANH_MIN_SIZE = 1024


def tanh(x: Array, out: Array) -> Array:
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

    weight_hh_t: Array  # (H, G*H) W_hh^T, each gate's columns times its `gate_factors` entry
    gates: Array  # (N, G*H), e.g. the recurrent product h_prev W_hh^T
    hidden: Array  # (N, H), e.g. a product of two gates, or the carried dL/dc


Work: TypeAlias = Any  # a fast path's buffers: a Workspace, or a NamedTuple of its own with more (LSTMWorkspace)


def per_step(caches: StepCache) -> list[StepCache]:
    """Every step's cache (views into the time-stacked one), built in one pass."""
    return list(map(type(caches)._make, zip(*caches)))


class FastSequence(Sequence):
    """Time-stacked caches with inputs projected up front; subclasses write `allocate` and `advance`.

    `caches` is the cell's Cache with a leading time axis on every field, `steps[t]` step t's views
    (of the sequences still running at step t, with lengths). Sequences that have ended keep their
    state: step t copies their rows of the state forward, so the state after the last step is each
    sequence's state after its own last step.
    """

    gate_factors: tuple[int, ...] | None = None
    batch_fields: tuple[str, ...] = ("gates", "hidden")  # workspace buffers with a row per sequence
    Sweep: ClassVar[type[FastSweep]]  # the reverse sweep, set by each cell's fast path
    cell: Cell
    steps: list[StepCache]
    works: list[Work]  # each step's view of `work`

    def __init__(self, cell: Cell, xs: Array, state0: Parts, batch_sizes: IntArray | None = None) -> None:
        super().__init__(cell, xs, state0, batch_sizes)
        self.params = cell.params
        self.caches = self.allocate(xs, state0)
        self.work: Work = self.workspace()
        self.reuse_scratch = True  # a sweep may take the thread's kept work arrays
        if batch_sizes is None:
            self.steps, self.works = per_step(self.caches), [self.work] * self.T
        else:
            self.clear_finished_rows()
            views = {n: self.work._replace(**{f: getattr(self.work, f)[:n] for f in self.batch_fields
                                                 if getattr(self.work, f) is not None})
                     for n in set(batch_sizes.tolist())}
            self.works = [views[n] for n in batch_sizes]
            self.steps = [type(c)(*(f[:n] for f in c)) for c, n in zip(per_step(self.caches), batch_sizes)]

    @classmethod
    def from_cache(cls, cell: CellContract, cache: StepCache) -> FastSequence:
        sequence = cls.__new__(cls)
        Sequence.__init__(sequence, cell, cache.x[None], (), None)
        sequence.params = cell.params
        sequence.caches = type(cache)(*(field[None] for field in cache))
        sequence.steps = [cache]
        sequence.work = sequence.workspace()
        sequence.works = [sequence.work]
        sequence.reuse_scratch = False  # the caller may keep the single step's gradients
        return sequence

    def step(self, t: int) -> None:
        self.advance(self.steps[t], self.works[t])
        if self.batch_sizes is not None and self.batch_sizes[t] < self.N:
            n = self.batch_sizes[t]
            for name in self.cell.state_fields:  # the sequences that have ended keep their state
                getattr(self.caches, name)[t][n:] = getattr(self.caches, name + "_prev")[t][n:]

    def advance(self, c: StepCache, work: Work) -> None:
        """Complete one step in place on its cache views (inputs projected on entry)."""
        raise NotImplementedError

    def clear_finished_rows(self) -> None:
        """Zero every per-step field (but the inputs and states before) in the rows of sequences that
        have ended, so the sweep's all-T-at-once work on them stays finite."""
        batch_sizes = cast(IntArray, self.batch_sizes)  # called only when there are lengths
        for name, field in zip(self.caches._fields, self.caches):
            if name != "x" and not name.endswith("_prev"):
                for t, n in enumerate(batch_sizes):
                    field[t, n:] = 0

    def allocate(self, xs: Array, state0: Parts) -> StepCache:
        """The time-stacked caches, inputs already projected into the fields the loop finishes."""
        raise NotImplementedError

    # ----------------------------------------------------------------- reading the tape
    @property
    def outputs(self) -> Array:
        return self.caches.h

    def state(self, k: int) -> Parts:
        if k == 0:
            return tuple(getattr(self.caches, f + "_prev")[0] for f in self.cell.state_fields)
        return tuple(getattr(self.caches, f)[k - 1] for f in self.cell.state_fields)

    def cache(self, t: int) -> StepCache:
        return self.steps[t]

    def reverse(self) -> FastSweep:
        return self.Sweep(self)

    @property
    def nbytes(self) -> int:
        seen = {}
        for field in self.caches:
            base = field if field.base is None else field.base
            seen[id(base)] = base.nbytes
        return sum(seen.values())

    # ----------------------------------------------------------------- shared pieces
    def row_factors(self) -> Array | None:
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

    def project_inputs(self, xs: Array, out: Array, bias: Array) -> None:
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
    all T at once, written into da_x / da_h) and `retreat` (one step back, on the rows of the
    sequences running at that step). The rows of sequences that have ended pass dL/dstate through.
    """

    separate_hidden_gradient = False  # True when da_h differs from da_x (GRU's reset gate)

    def __init__(self, sequence: FastSequence) -> None:
        self.sequence, self.cell, self.params = sequence, sequence.cell, sequence.params
        self.caches, self.steps, self.work = sequence.caches, sequence.steps, sequence.work
        self.works, self.batch_sizes, self.N = sequence.works, sequence.batch_sizes, sequence.N
        T, N, cell = sequence.T, sequence.N, sequence.cell
        shape = (T, N, cell.gates * cell.hidden_size)
        new = (lambda role: scratch.get(role, shape, cell.dtype)) if sequence.reuse_scratch else (
            lambda role: np.empty(shape, cell.dtype))
        self.da_x = new("da_x")
        self.da_h = new("da_h") if self.separate_hidden_gradient else self.da_x
        self.local_gradients()
        if self.batch_sizes is not None:
            for t, n in enumerate(self.batch_sizes):  # no gradient reaches a step a sequence did not run
                self.da_x[t, n:] = 0
                self.da_h[t, n:] = 0
            self.carry = [np.zeros((N, size), cell.dtype) for size in cell.state_sizes[1:]]

    def step(self, t: int, dstate: Parts, out: Array) -> Parts:
        if self.batch_sizes is None or self.batch_sizes[t] == self.N:
            return self.retreat(t, dstate, out)
        n = self.batch_sizes[t]
        active = self.retreat(t, tuple(part[:n] for part in dstate), out[:n])
        out[n:] = dstate[0][n:]  # the sequences that have ended pass their gradient through
        for carry, part, new in zip(self.carry, dstate[1:], active[1:]):
            carry[:n] = new
            carry[n:] = part[n:]
        return (out, *self.carry)

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        """`step` on the rows of step t's running sequences (all of them without lengths)."""
        raise NotImplementedError

    def local_gradients(self) -> None:
        raise NotImplementedError

    def preactivation_gradients(self, t: int) -> tuple[Array, Array]:
        return self.da_x[t], self.da_h[t]

    def gradients(self) -> tuple[Params, Array]:
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
