"""Run a cell over a sequence and sweep back through time.

`forward` and `backward` are the fast path: the input projection for all T steps is one matrix
product before the loop, the loop holds only the recurrent product and the non-linearities, and the
weight gradients are one matrix product each after the sweep. They rely on the cell's sequence
contract (`allocate`, `recurrent_forward`, `recurrent_backward`, `parameter_gradients`,
`input_gradients`) and know nothing else about it.

`forward_stepwise` and `backward_stepwise` are the reference: a plain loop over the per-step API
(`step_forward`, `step_backward`) that accumulates the shared weights' gradients with `+=`. Both
paths agree to float64 round-off.

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..cells.cell import Cell
from .checks import check_array
from .results import Result


@dataclass
class Tape:
    """What the reverse sweep needs from one forward pass.

    caches: the cell's Cache with a leading time axis on every field (`step(t)` gives step t's).
    final_state: the state after the last step (array, or tuple for LSTM).
    """

    caches: NamedTuple
    final_state: object

    def __len__(self) -> int:
        return len(self.caches.x)

    def step(self, t: int) -> NamedTuple:
        """The cache of step t, as `cell.step_forward` would have returned it (views, no copy)."""
        return Cell.cache_at(self.caches, t)

    @property
    def hs(self) -> np.ndarray:
        """(T, N, H) hidden states h_1 .. h_T."""
        return self.caches.h

    def state_at(self, k: int):
        """A copy of the state after the first k steps (k = 0: the start state), packed like a state."""
        if k == 0:
            parts = (self.caches.h_prev[0],) + tuple(getattr(self.caches, f)[0] for f in
                                                     type(self.caches)._fields if f in ("c_prev",))
        else:
            parts = (self.caches.h[k - 1],) + tuple(getattr(self.caches, f)[k - 1] for f in
                                                    type(self.caches)._fields if f == "c")
        parts = tuple(np.array(p, copy=True) for p in parts)
        return parts[0] if len(parts) == 1 else parts

    @property
    def nbytes(self) -> int:
        """Bytes held by the tape, each underlying buffer counted once (inputs included)."""
        seen: dict[int, int] = {}
        for field in self.caches:
            base = field if field.base is None else field.base
            seen[id(base)] = base.nbytes
        return sum(seen.values())


@dataclass(repr=False)
class Gradients(Result):
    """Result of a reverse sweep.

    params: dL/dtheta, keyed like `cell.params`.
    dxs: (T, N, D) dL/dx_t.
    dstate0: dL/dstate_0, same structure as a state.
    dh_norms: (T,) Frobenius norm over the batch of the total dL/dh_t reaching step t (its own loss
        plus everything from later steps).
    """

    params: dict[str, np.ndarray]
    dxs: np.ndarray
    dstate0: object
    dh_norms: np.ndarray


class _ScratchArrays(threading.local):
    """The reverse sweep's work arrays, kept from one call to the next (per thread).

    A freshly allocated array of a few MB is returned to the OS when freed, so every call paid a
    page fault per 4 KB on first touch: about 1000 faults per backward at (T, N, H) = (100, 32, 64).
    Arrays above MAX_BYTES are not kept: there the products dominate and memory matters more.
    """

    MAX_BYTES = 64 * 2**20

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, role: str, shape: tuple, dtype) -> np.ndarray:
        """An uninitialised array; valid until the next `get` of the same role in this thread."""
        array = self.arrays.pop(role, None)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = np.empty(shape, dtype)
        if array.nbytes <= self.MAX_BYTES:
            self.arrays[role] = array
        return array


_scratch = _ScratchArrays()


def _steps(caches: NamedTuple) -> list:
    """Every step's cache (views into the time-stacked one), built in one pass."""
    return list(map(type(caches)._make, zip(*caches)))


def _initial_parts(cell: Cell, state0, batch_size: int) -> tuple:
    if state0 is None:
        return cell.unpack_state(cell.initial_state(batch_size))
    return cell.check_state(state0, batch_size, name="state0")


def forward(cell: Cell, xs, state0=None) -> tuple[np.ndarray, Tape]:
    """Run `cell` over xs (T, N, D) from state0 (zeros if None). Returns (hs (T, N, H), tape).

    hs is a view into the tape: copy it before modifying it in place.
    """
    cell.check_params()
    xs = cell.check_inputs(xs)
    caches = cell.allocate(xs, _initial_parts(cell, state0, xs.shape[1]))
    work = cell.workspace(xs.shape[1])
    with np.errstate(over="ignore"):  # exp-based activations reach their limits through inf
        for step in _steps(caches):
            cell.recurrent_forward(step, work)
    final = cell.pack_state(cell.state_after(Cell.cache_at(caches, -1)))
    return caches.h, Tape(caches, final)


def _check_backward_inputs(cell: Cell, T: int, N: int, dhs, dstate_final):
    H = cell.hidden_size
    if dhs is not None:
        dhs = check_array("dhs", dhs, (T, N, H), cell.dtype, names=("T", "N", "H"))
    if dstate_final is None:
        carry = tuple(np.zeros((N, H), cell.dtype) for _ in cell.state_fields)
    else:
        carry = cell.check_state(dstate_final, N, name="dstate_final")
    return dhs, carry


def backward(cell: Cell, tape: Tape, dhs, dstate_final=None) -> Gradients:
    """Reverse sweep over `tape`. dhs (T, N, H): dL/dh_t from the loss at each step (None: zeros).

    dstate_final: an extra gradient on the final state (array, or (dh, dc) for LSTM).
    """
    if not isinstance(tape, Tape) or not isinstance(tape.caches, cell.Cache):
        raise ValueError(f"tape must come from bptt.forward with this {type(cell).__name__}")
    caches = tape.caches
    T, N = caches.x.shape[:2]
    dhs, carry = _check_backward_inputs(cell, T, N, dhs, dstate_final)
    H, GH = cell.hidden_size, cell.gates * cell.hidden_size
    da_x = _scratch.get("da_x", (T, N, GH), cell.dtype)
    da_h = _scratch.get("da_h", (T, N, GH), cell.dtype) if cell.separate_hidden_gradient else da_x
    local = cell.local_gradients(caches, da_x, da_h)  # what does not depend on dL/dstate, all T at once
    local_steps = list(zip(*local)) if local else [()] * T
    steps = _steps(caches)
    work = cell.workspace(N)
    # dh[t + 1] is the total dL/dh_t (the loss at step t plus what flowed back from step t+1); each
    # step writes dL/dh_{t-1} into dh[t], and dh[0] ends as dL/dh_0
    dh = _scratch.get("dh", (T + 1, N, H), cell.dtype)
    dh[T] = carry[0]
    for t in range(T - 1, -1, -1):
        if dhs is not None:
            dh[t + 1] += dhs[t]
        dh_prev = dh[t]
        carry = cell.recurrent_backward(
            steps[t], (dh[t + 1], *carry[1:]), da_x[t], da_h[t], local_steps[t], dh_prev, work
        )
        if carry[0] is not dh_prev:  # a cell that returns dL/dh_prev instead of writing it
            dh_prev[...] = carry[0]
    flat = dh[1:].reshape(T, -1)
    dh_norms = np.sqrt(np.einsum("ti,ti->t", flat, flat)).astype(np.float64)
    return Gradients(
        params=cell.parameter_gradients(caches.x, caches.h_prev, da_x, da_h),
        dxs=cell.input_gradients(da_x),
        dstate0=cell.pack_state(tuple(part.copy() for part in carry)),
        dh_norms=dh_norms,
    )


def forward_stepwise(cell: Cell, xs, state0=None) -> tuple[np.ndarray, list, object]:
    """Reference forward: `step_forward` T times. Returns (hs (T, N, H), [cache_t], final_state)."""
    xs = cell.check_inputs(xs)
    state = cell.pack_state(_initial_parts(cell, state0, xs.shape[1]))
    hs, caches = [], []
    for x in xs:
        state, cache = cell.step_forward(x, state)
        hs.append(cell.unpack_state(state)[0])
        caches.append(cache)
    return np.stack(hs), caches, state


def backward_stepwise(cell: Cell, caches: list, dhs, dstate_final=None) -> Gradients:
    """Reference reverse sweep over `step_backward`, accumulating shared-weight gradients with +=."""
    T, N = len(caches), caches[0].x.shape[0]
    dhs, carry = _check_backward_inputs(cell, T, N, dhs, dstate_final)
    grads = {name: np.zeros_like(p) for name, p in cell.params.items()}
    dxs = np.empty((T, N, cell.input_size), cell.dtype)
    dh_norms = np.empty(T)
    for t in range(T - 1, -1, -1):
        dh = carry[0] + (dhs[t] if dhs is not None else 0)  # this step's loss + what came from t+1
        dh_norms[t] = np.linalg.norm(dh)
        dxs[t], dstate, step_grads = cell.step_backward(cell.pack_state((dh, *carry[1:])), caches[t])
        carry = cell.unpack_state(dstate)
        for name, g in step_grads.items():
            grads[name] += g  # the weights are shared across time: their gradients add up
    return Gradients(grads, dxs, cell.pack_state(carry), dh_norms)
