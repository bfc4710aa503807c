"""One step at a time, for the methods that need single steps: forward mode, RTRL, UORO, the
Hessian-vector product and the diagnostics.

They run the same fast path as `bptt.forward` (so a step's output is bitwise the one `forward`
gives) under the same floating-point settings (exp may overflow to inf on saturated units, which is
the activation's exact limit, not an error).

Letters: N batch, H hidden size, G gates.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .sequence import CellContract
from .types import Array, Parts, StepCache


class StepVJP(NamedTuple):
    """One step's vector-Jacobian product: dL/da_x and dL/da_h (N, G*H), the gradients of the two
    projections a_x = x W_ih^T + b_ih and a_h = h_prev W_hh^T + b_hh, and dL/dstate before the step."""

    da_x: Array
    da_h: Array
    dstate_prev: Parts


def forward_step(cell: CellContract, x: Array, state: Parts) -> tuple[Parts, StepCache]:
    """One step of the cell's fast path on checked inputs: x (N, D) and the state's parts ->
    (the state's parts after the step, the step's cache)."""
    sequence = cell.sequence(x[None], state)
    with np.errstate(over="ignore"):
        sequence.step(0)
    return sequence.state(1), sequence.cache(0)


def vjp_step(cell: CellContract, cache: StepCache, dstate: Parts) -> StepVJP:
    """Back through the step that left `cache`: dL/dstate after it (parts) -> StepVJP.

    Every array returned is new (nothing is shared with a later call).
    """
    sweep = cell.Sequence.from_cache(cell, cache).reverse()
    out = np.empty_like(dstate[0])
    dstate_prev = sweep.step(0, tuple(dstate), out)
    da_x, da_h = sweep.preactivation_gradients(0)
    return StepVJP(da_x, da_h, tuple(np.array(part, copy=True) for part in dstate_prev))
