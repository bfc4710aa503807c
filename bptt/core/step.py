"""One step at a time, for the methods that need single steps: forward mode, RTRL, UORO, the
Hessian-vector product, the diagnostics and a Stack's step Jacobian.

A cell whose fast path rebuilds single steps (`Sequence.from_cache`: the built-in cells) runs that
path, so a step's output is bitwise the one `forward` gives. Any other cell runs its plain step
pair, `step_forward` / `step_backward`, checked against the contract (`Cell.check_step_output`,
`Cell.check_step_gradients`): a cell that writes only the pair gets every tool that needs no more
than the pair. Both run under the unroller's floating-point settings (exp may overflow to inf on
saturated units, which is the activation's exact limit, not an error).

Three vector-Jacobian products, from the least to the most a caller needs:

    state_vjp         dL/dstate after the step -> dL/dstate before it          (the diagnostics)
    input_state_vjp   ... and dL/dx                                            (a Stack's layers)
    vjp_step          ... and dL/da_x, dL/da_h, the two projections' gradients (UORO, HVP)

A step pair gives the projections' gradients only summed over the batch (as the bias gradients,
since a_x = x W_ih^T + b_ih), so for such a cell `vjp_step` runs `step_backward` once per sequence.

Letters: N batch, D input size, H hidden size, G gates.
"""

from __future__ import annotations

from types import MethodType
from typing import NamedTuple, cast

import numpy as np

from .sequence import CellContract, Sequence
from .types import Array, Parts, StepCache


class StepVJP(NamedTuple):
    """One step's vector-Jacobian product: dL/da_x and dL/da_h (N, G*H), the gradients of the two
    projections a_x = x W_ih^T + b_ih and a_h = h_prev W_hh^T + b_hh, and dL/dstate before the step."""

    da_x: Array
    da_h: Array
    dstate_prev: Parts


def has_single_steps(cell: CellContract) -> bool:
    """Whether the cell's fast path rebuilds single steps from a cache (`Sequence.from_cache`);
    without one, single steps run the plain step pair."""
    # a classmethod read off a class is a bound method, whose __func__ the type checker does not know
    return (cast(MethodType, cell.Sequence.from_cache).__func__
            is not cast(MethodType, Sequence.from_cache).__func__)


def forward_step(cell: CellContract, x: Array, state: Parts) -> tuple[Parts, StepCache]:
    """One step on checked inputs: x (N, D) and the state's parts -> (the state's parts after the
    step, the step's cache)."""
    with np.errstate(over="ignore"):
        if has_single_steps(cell):
            sequence = cell.sequence(x[None], state)
            sequence.step(0)
            return sequence.state(1), sequence.cache(0)
        output = cell.step_forward(x, cell.pack_state(state))
    new_state, cache = cell.check_step_output(output, len(x))
    return cell.unpack_state(new_state), cache


def _plain_backward(cell: CellContract, cache: StepCache, dstate: Parts) -> tuple[Array, Parts, dict[str, Array]]:
    """`step_backward` on dstate's parts, its output checked: (dx, dstate_prev's parts, grads)."""
    output = cell.step_backward(cell.pack_state(dstate), cache)
    dx, dstate_prev, grads = cell.check_step_gradients(output, len(dstate[0]))
    return dx, cell.unpack_state(dstate_prev), grads


def _fast_vjp(cell: CellContract, cache: StepCache, dstate: Parts) -> tuple[Array, Array, Parts]:
    sweep = cell.Sequence.from_cache(cell, cache).reverse()
    out = np.empty_like(dstate[0])
    dstate_prev = sweep.step(0, tuple(dstate), out)
    da_x, da_h = sweep.preactivation_gradients(0)
    return da_x, da_h, dstate_prev


def state_vjp(cell: CellContract, cache: StepCache, dstate: Parts) -> Parts:
    """Back through the step that left `cache`: dL/dstate after it (parts, (N, H) each) -> dL/dstate
    before it (new arrays)."""
    if has_single_steps(cell):
        return tuple(np.array(part, copy=True) for part in _fast_vjp(cell, cache, dstate)[2])
    return _plain_backward(cell, cache, dstate)[1]


def input_state_vjp(cell: CellContract, cache: StepCache, dstate: Parts) -> tuple[Array, Parts]:
    """Like `state_vjp`, and dL/dx (N, D) besides: (dx, dL/dstate before the step)."""
    if has_single_steps(cell):
        da_x, _, dstate_prev = _fast_vjp(cell, cache, dstate)
        return da_x @ cell.params["weight_ih"], tuple(np.array(part, copy=True) for part in dstate_prev)
    dx, dstate_prev, _ = _plain_backward(cell, cache, dstate)
    return dx, dstate_prev


def vjp_step(cell: CellContract, cache: StepCache, dstate: Parts) -> StepVJP:
    """Back through the step that left `cache`: dL/dstate after it (parts) -> StepVJP.

    Every array returned is new (nothing is shared with a later call). A cell without a fast path
    runs `step_backward` once per sequence: the bias gradients of one sequence are its dL/da_x and
    dL/da_h, exactly (a_x = x W_ih^T + b_ih).
    """
    if has_single_steps(cell):
        da_x, da_h, dstate_prev = _fast_vjp(cell, cache, dstate)
        return StepVJP(da_x, da_h, tuple(np.array(part, copy=True) for part in dstate_prev))  # da_*: new arrays
    rows = [_plain_backward(cell, type(cache)(*(field[n : n + 1] for field in cache)),
                            tuple(part[n : n + 1] for part in dstate))
            for n in range(len(dstate[0]))]
    da_x = np.concatenate([grads["bias_ih"][None] for _, _, grads in rows])
    da_h = np.concatenate([grads["bias_hh"][None] for _, _, grads in rows])
    dstate_prev = tuple(np.concatenate([prev[k] for _, prev, _ in rows]) for k in range(len(dstate)))
    return StepVJP(da_x, da_h, dstate_prev)
