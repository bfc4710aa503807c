"""The fast path shared by the built-in cells: the same maths as their step pairs, arranged for speed.

It is private: its layout may change as long as `cache(t)` returns what `step_forward` returns, and
a property-based test keeps it equal to the step pair to round-off. What makes it fast:

- the input projection of all T steps is one numpy call before the loop, and the weight gradients
  are one product each after the sweep (`weight_gradients`):
      dW_ih = sum_t da_x[t]^T x_t,   dW_hh = sum_t da_h[t]^T h_{t-1},   db_ih = sum_t da_x[t], ...
- gated cells (GRU, LSTM) keep their per-step arrays gate-major: a step's gates are (G*H, N), the
  transpose of the step pair's (N, G*H), so each gate is one contiguous (H, N) block and every
  element-wise call runs on contiguous operands (at small sizes a call on a strided gate slice
  costs about 3x a contiguous one). The recurrent product is W_hh (G*H, H) @ h_prev^T (H, N). The
  states the caller sees, the outputs and `cache(t)` keep the step pair's (N, ...) layout: one
  strided copy after the forward (the states), one per backward step (dL/dh^T) and one before the
  weight gradients (`natural`). With lengths, a gated cell's step runs on all N columns and puts
  back the state of the sequences that have ended: contiguous calls on all columns cost less than
  strided ones on the running few;
- every view a step works on is built before the loop by iterating over the time axis of the
  time-stacked arrays, and kept with those arrays for the next sequence of the same shapes
  (`FastSequence.per_step`); each step is a short run of numpy calls on its views with `out=` into
  the tape or into work arrays: no allocation, no copy of its own data, no check;
- products with one matrix per step go through `np.dot`, which reaches the BLAS with less call
  overhead than `np.matmul` (0.75 against 1.25 us for a (16, 32) x (32, 32) float32 product);
- every local derivative that does not depend on the incoming gradient is formed for all T at once
  before the reverse sweep, which then only applies the chain rule;
- `gate_factors`: per gate, a power of two the pre-activation is multiplied by, folded into the input
  projection and the recurrent weights so it costs nothing per step (e.g. -1, so that
  sigmoid(a) = 1 / (1 + exp(-a)) needs no negation). Exact: powers of two only scale exponents;
- the sweep's work arrays are kept from one call to the next (`scratch`), and so are a tape's
  arrays once the tape is freed and no one holds a view of them (`FastSequence.tape_array`): a long
  run does not page-fault fresh memory on every call. A sequence holds no reference to itself (no
  bound methods of its own), so it is freed as soon as its tape is dropped.

exp may overflow to inf on saturated units, which gives the activation's exact limit: the unroller
runs the forward pass under `np.errstate(over="ignore")`.

Letters: T time, N batch, D input size, H hidden size, G gates.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, cast

import numpy as np

from ..core.scratch import scratch
from ..core.sequence import CellContract, Sequence, Sweep
from ..core.types import Array, IntArray, Params, Parts, StepCache

if TYPE_CHECKING:
    from .cell import Cell

# The ufuncs the steps call, bound once: a module global is one lookup, `np.add` two.
add, subtract, multiply, divide, exp, copyto, dot, matmul = (
    np.add, np.subtract, np.multiply, np.divide, np.exp, np.copyto, np.dot, np.matmul)
Activation = Callable[[Array, Array], Array]  # (x, out) -> out
Product = Callable[..., Array]  # np.dot, or np.matmul where an operand is strided


def _numpy_has_vector_tanh64() -> bool:
    """Whether numpy's float64 tanh is vectorised on this CPU (its AVX-512 kernel)."""
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # numpy 2, numpy 1
        try:
            features = importlib.import_module(module).__cpu_features__
        except (ImportError, AttributeError):
            continue
        return bool(features.get("AVX512_SKX"))
    return False


# numpy's float64 tanh is vectorised only with AVX-512: on an AVX2 machine it took 14 ns per element
# (exp 5 ns), so float64 tanh of more than about a thousand elements goes through exp there, 1.5-1.7x
# faster; with AVX-512 np.tanh is as fast as exp alone (1.7 ns per element) and is kept. float32 tanh
# is vectorised everywhere.
EXP_TANH_MIN_SIZE = 1024 if not _numpy_has_vector_tanh64() else None


def exp_tanh(x: Array, out: Array) -> Array:
    """out <- tanh(x) = 2 / (1 + exp(-2x)) - 1; out may be x."""
    multiply(x, -2, out)
    exp(out, out)
    add(out, 1, out)
    divide(2, out, out)
    subtract(out, 1, out)
    return out


def tanh_for(dtype: np.dtype, size: int) -> Activation:
    """The tanh to use on arrays of `size` elements: np.tanh, or `exp_tanh` for large float64 ones
    where numpy's float64 tanh is not vectorised. Chosen once, before the loop."""
    if dtype != np.float64 or EXP_TANH_MIN_SIZE is None or size < EXP_TANH_MIN_SIZE:
        return np.tanh
    return exp_tanh


def tanh(x: Array, out: Array) -> Array:
    """out <- tanh(x); out may be x."""
    return tanh_for(out.dtype, out.size)(x, out)


def product_operands(running: list[int] | None, N: int, *arrays: Iterable[Array]) -> list[tuple[Any, ...]]:
    """Per step, a product and its operands, each (T, K, N) array's step cut to the running columns: the
    other calls of a gate-major step run on all N columns (contiguous), but a product's cost grows
    with its columns, and BLAS takes a strided operand at no extra cost (np.matmul; np.dot copies)."""
    steps = zip(*arrays)
    if running is None:
        return [(dot, *step) for step in steps]
    return [(dot, *step) if n == N else (matmul, *(a[..., :n] for a in step)) for step, n in zip(steps, running)]


def by_step(array: Array, running: list[int] | None) -> list[Array]:
    """array (T, N, ...) -> its T views array[t], built by iterating in C; with lengths, each cut to
    the rows of the sequences running at step t."""
    steps = list(array)
    if running is None:
        return steps
    return [step[:n] for step, n in zip(steps, running)]


class FastSequence(Sequence):
    """Time-stacked arrays with the inputs projected up front; subclasses write `allocate`,
    `step_views`, `advance`, `adopt` (for `from_cache`) and read the tape back (`cache`, `state`).

    With lengths, step t runs on the first `batch_sizes[t]` sequences; the others keep their state:
    `ended` names the parts of the state after step t that it copies from the state before it.
    """

    Sweep: ClassVar[type[FastSweep]]  # the reverse sweep, set by each cell's fast path
    gate_factors: tuple[int, ...] | None = None
    cell: Cell
    running: list[int] | None  # batch_sizes as a list, or None when every sequence runs every step

    def __init__(self, cell: Cell, xs: Array, state0: Parts, batch_sizes: IntArray | None = None) -> None:
        super().__init__(cell, xs, state0, batch_sizes)
        self.params = cell.params
        self.running = None if batch_sizes is None else batch_sizes.tolist()
        self.reuse_scratch = True  # a sweep may take the thread's kept work arrays
        self.kept: list[tuple[str, Array]] = []  # the tape arrays `tape_array` took, by role
        self.kept_views: list[tuple[str, tuple[int, ...], list]]  # (role, ids of their arrays, views)
        self.allocate(xs, state0)
        # the views kept with these arrays, if they were a freed sequence's: ours now, so that
        # nothing else refers to our arrays while we live (see __del__)
        self.kept_views = scratch.take_views(set(map(id, self.kept_arrays())))
        # Per step, what runs (a function of the sequence and the step's views) and on which views:
        # the checks are made here, not in the loop. Plain functions, not bound methods: a sequence
        # that held its own bound methods would be freed only by the garbage collector.
        self.views = self.per_step("forward", self.step_views, self.view_arrays())
        advance = type(self).advance
        self.runs: list[Callable[..., None]] = [advance] * self.T
        for t, n in enumerate(self.running or ()):
            if n < self.N:
                self.runs[t] = carrying(advance, self.ended(t, n))
        self.runs[-1] = finishing(self.runs[-1])
        # who refers to each kept array now: the sequence and its views; any more when the
        # sequence is freed, and someone still holds a view of it (see __del__)
        self.kept_references = [sys.getrefcount(array) for _, array in self.kept]

    def tape_array(self, role: str, shape: tuple[int, ...]) -> Array:
        """An uninitialised array of the tape, taken from those kept of a sequence freed before (no
        page faults on fresh memory: 580 per call at (100, 32, 16, 64), 1.1 ms of system time), and
        kept again when this sequence is freed."""
        role = f"{type(self).__name__} {role}"
        array = scratch.take(role, shape, self.cell.dtype)
        self.kept.append((role, array))
        return array

    def per_step(self, role: str, build: Callable[[], list], arrays: tuple[Array, ...]) -> list:
        """`build()`: views per step on `arrays` (every array they refer to), or the same views kept
        from a freed sequence whose arrays these are (building them costs about 0.1 us per view,
        e.g. 0.3 ms of a GRU's 9 ms at (100, 32, 16, 64)). Not with lengths, which they depend on."""
        if self.running is not None or not self.reuse_scratch:
            return build()
        role, ids = f"{type(self).__name__} {role}", tuple(map(id, arrays))
        for kept_role, kept_ids, views in self.kept_views:
            if kept_role == role and kept_ids == ids:
                return views
        before = [sys.getrefcount(array) for _, array in self.kept]
        views = build()
        self.kept_views.append((role, ids, views))
        if hasattr(self, "kept_references"):  # views made after __init__ (the sweep's) refer to our arrays too
            after = [sys.getrefcount(array) for _, array in self.kept]
            self.kept_references = [n + b - a for n, a, b in zip(self.kept_references, before, after)]
        return views

    def kept_arrays(self) -> tuple[Array, ...]:
        return tuple(array for _, array in self.kept)

    def view_arrays(self) -> tuple[Array, ...]:
        """Every array the forward's per-step views refer to."""
        return self.kept_arrays()

    def __del__(self) -> None:
        """Keep the tape's arrays, and the views built on them, for the next sequence of the same
        shapes, unless someone still holds a view of one (then it is freed with the last view, as
        any array, and the views are dropped)."""
        try:
            everything = True
            for (role, array), references in zip(self.kept, self.kept_references):
                if sys.getrefcount(array) == references:
                    scratch.give(role, array)
                else:
                    everything = False
            if everything:
                for role, ids, views in self.kept_views:
                    scratch.give_views(role, ids, views)
        except (AttributeError, TypeError):  # a sequence whose __init__ failed, or interpreter shutdown
            pass

    @classmethod
    def from_cache(cls, cell: CellContract, cache: StepCache) -> FastSequence:
        sequence = cls.__new__(cls)
        Sequence.__init__(sequence, cell, cache.x[None], (), None)
        sequence.params = cell.params
        sequence.running = None
        sequence.reuse_scratch = False  # the caller may keep the single step's gradients
        sequence.kept, sequence.kept_views = [], []
        sequence.adopt(cache)
        return sequence

    def step(self, t: int) -> None:
        self.runs[t](self, *self.views[t])

    # ----------------------------------------------------------------- what each cell writes
    def allocate(self, xs: Array, state0: Parts) -> None:
        """The time-stacked tape and work arrays, inputs already projected."""
        raise NotImplementedError

    def step_views(self) -> list[tuple[Any, ...]]:
        """Per step, the arguments of `advance`."""
        raise NotImplementedError

    def advance(self, *views: Any) -> None:
        """One step, in place on its views (called as type(self).advance(self, *views))."""
        raise NotImplementedError

    def ended(self, t: int, n: int) -> list[tuple[Array, Array]]:
        """(after, before): the state of the sequences n.. that ended before step t, after and before
        it, in the layout `advance` writes it."""
        raise NotImplementedError

    def finish(self) -> None:
        """After the last step: fill what the steps do not write themselves (e.g. the (N, H) states)."""

    def adopt(self, cache: StepCache) -> None:
        """Become a one-step sequence whose step 0 left `cache` (the step pair's layout)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- reading the tape
    @property
    def nbytes(self) -> int:
        seen = {}
        for field in self.tape_arrays():
            base = field
            while base.base is not None and isinstance(base.base, np.ndarray):
                base = base.base
            seen[id(base)] = base.nbytes
        return sum(seen.values())

    def tape_arrays(self) -> list[Array]:
        """Every array the tape keeps (views of one buffer count once)."""
        raise NotImplementedError

    def reverse(self) -> FastSweep:
        return self.Sweep(self)

    # ----------------------------------------------------------------- shared pieces
    def row_factors(self) -> Array | None:
        """`gate_factors` repeated over each gate's H rows of W_ih, W_hh and the biases: (G*H,)."""
        if self.gate_factors is None:
            return None
        return np.repeat(np.asarray(self.gate_factors, self.cell.dtype), self.cell.hidden_size)

    def project_inputs(self, xs: Array, out: Array, bias: Array) -> None:
        """Gate-major: out[t] = (W_ih x_t^T + bias) * row_factors for every t; out (T, G*H, N).

        One product per step inside one numpy call (a stacked matmul) on a contiguous copy of the
        inputs transposed, x_t^T (D, N) (given the transposed view, numpy copies each step's
        operand on its own): a single (T*N, D) product would give (T, N, G*H), and turning that
        gate-major is a strided copy of the whole, larger, array.
        """
        weight_ih, factors = self.params["weight_ih"], self.row_factors()
        if factors is not None:
            weight_ih, bias = weight_ih * factors[:, None], bias * factors
        matmul(weight_ih, np.ascontiguousarray(xs.transpose(0, 2, 1)), out=out)
        out += bias[:, None]


def carrying(run: Callable[..., None], ended: list[tuple[Array, Array]]) -> Callable[..., None]:
    """`run`, then the sequences that have ended keep their state (after <- before)."""
    def step(sequence: FastSequence, *views: Any) -> None:
        run(sequence, *views)
        for after, before in ended:
            after[...] = before
    return step


def finishing(run: Callable[..., None]) -> Callable[..., None]:
    """`run`, then the sequence's `finish` (the last step)."""
    def step(sequence: FastSequence, *views: Any) -> None:
        run(sequence, *views)
        sequence.finish()
    return step


class FastSweep(Sweep):
    """The reverse sweep of a FastSequence: local derivatives for all T first, then one `retreat`
    per step on the rows of the sequences running at that step. The rows of sequences that have
    ended pass dL/dstate through."""

    def __init__(self, sequence: FastSequence) -> None:
        self.sequence, self.cell, self.params = sequence, sequence.cell, sequence.params
        self.T, self.N, self.running = sequence.T, sequence.N, sequence.running
        # per step: `retreat`, or with lengths `partial` where some sequences have ended
        # plain functions, not bound methods (see FastSequence.__init__)
        retreat, partial = type(self).retreat, type(self).partial
        self.plan: list[Callable[[FastSweep, int, Parts, Array], Parts]] = [retreat] * self.T
        if self.running is not None:
            self.carry = [np.zeros((self.N, size), self.cell.dtype) for size in self.cell.state_sizes[1:]]
            self.plan = [retreat if n == self.N else partial for n in self.running]

    def work(self, role: str, shape: tuple[int, ...]) -> Array:
        """An uninitialised work array, kept between sweeps unless the sequence says not to."""
        if self.sequence.reuse_scratch:
            return scratch.get(role, shape, self.cell.dtype)
        return np.empty(shape, self.cell.dtype)

    def step(self, t: int, dstate: Parts, out: Array) -> Parts:
        return self.plan[t](self, t, dstate, out)

    def partial(self, t: int, dstate: Parts, out: Array) -> Parts:
        """`step` where the sequences n.. have ended: `retreat` on the others, theirs pass through."""
        n = cast(list, self.running)[t]
        active = self.retreat(t, tuple(part[:n] for part in dstate), out[:n])
        out[n:] = dstate[0][n:]  # the sequences that have ended pass their gradient through
        for carry, part, new in zip(self.carry, dstate[1:], active[1:]):
            carry[:n] = new
            carry[n:] = part[n:]
        return (out, *self.carry)

    def retreat(self, t: int, dstate: Parts, out: Array) -> Parts:
        """`step` on the rows of step t's running sequences (all of them without lengths)."""
        raise NotImplementedError

    def gradients(self) -> tuple[Params, Array]:
        raise NotImplementedError


def natural(gate_major: Array, out: Array) -> Array:
    """(T, K, N) -> out (T, N, K): the (N, K) layout of every step, in one strided copy."""
    copyto(out, gate_major.transpose(0, 2, 1))
    return out


def weight_gradients(da_x: Array, da_h: Array, xs: Array, h_prevs: Array, weight_ih: Array,
                     sum_by_product: bool = False) -> tuple[Params, Array]:
    """The shared weights' gradients summed over time and batch in one product each, and dL/dxs.

    da_x, da_h (T*N, G*H) in the rows' order of `weight_ih` and W_hh (rows may be strided); xs
    (T, N, D); h_prevs (T, N, H). sum_by_product: the bias gradients as ones @ da, 2-4x faster than
    da.sum(axis=0) (which the RNN and LSTM keep: their sums stay bitwise those of earlier versions).
    """
    T, N, D = xs.shape
    if sum_by_product:
        ones = np.ones(T * N, da_x.dtype)
        column_sum: Callable[[Array], Array] = lambda da: matmul(ones, da)  # noqa: E731
    else:
        column_sum = lambda da: da.sum(axis=0)  # noqa: E731
    params = {
        "weight_ih": matmul(da_x.T, xs.reshape(T * N, D)),
        "weight_hh": matmul(da_h.T, h_prevs.reshape(T * N, -1)),
        "bias_ih": column_sum(da_x),
    }
    params["bias_hh"] = params["bias_ih"].copy() if da_h is da_x else column_sum(da_h)
    return params, matmul(da_x, weight_ih).reshape(T, N, D)
