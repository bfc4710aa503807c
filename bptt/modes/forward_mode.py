"""Forward-mode differentiation of an unrolled cell: Jacobian-vector products, one step at a time.

For a tangent (theta_dot, xs_dot, state0_dot) on the parameters, inputs and initial state, `jvp`
returns every h_t together with its directional derivative h_t_dot = J_t (theta_dot, xs_dot,
state0_dot). The tangent is pushed through each step right after the step itself (the cell's
`step_tangent` rule), so nothing is kept from earlier steps: memory does not grow with T.

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.checks import check_array
from ..core.results import Result
from ..core.step import forward_step
from .common import affine_tangents, check_param_tangents, require


@dataclass(frozen=True, repr=False)
class JVPResult(Result):
    """hs (T, N, H); hs_dot (T, N, H) their tangents; final_state and its tangent (tuples for LSTM)."""

    hs: np.ndarray
    hs_dot: np.ndarray
    final_state: object
    final_state_dot: object


def jvp(cell, xs, state0=None, tangents=None, *, xs_tangent=None, state0_tangent=None) -> JVPResult:
    """Directional derivative of every h_t, computed alongside the forward pass with no tape.

    xs (T, N, D); state0 as from `cell.initial_state` (zeros if None); tangents: dict keyed like
    `cell.params` (missing keys are zero); xs_tangent (T, N, D) and state0_tangent (a state's
    structure) are the optional tangents on the inputs and initial state (zero if None).
    """
    require(cell, "bptt.jvp", "step_tangent")
    cell.check_params()
    xs = cell.check_inputs(xs)
    T, N, _ = xs.shape
    params_dot = check_param_tangents(cell, tangents)
    if xs_tangent is None:
        xs_dot = np.zeros_like(xs)
    else:
        xs_dot = check_array("xs_tangent", xs_tangent, xs.shape, cell.dtype, names=("T", "N", "D"))
    state = cell.start_state(state0, N)
    if state0_tangent is None:
        state_dot = tuple(np.zeros_like(part) for part in state)
    else:
        state_dot = cell.check_state(state0_tangent, N, name="state0_tangent")

    hs = np.empty((T, N, cell.output_size), cell.dtype)
    hs_dot = np.empty_like(hs)
    for t in range(T):
        state, cache = forward_step(cell, xs[t], state)  # a one-step cache, dropped after the step
        a_x_dot, a_h_dot = affine_tangents(cell, cache, xs_dot[t], state_dot[0], params_dot)
        cache_dot = cell.step_tangent(cache, xs_dot[t], state_dot, a_x_dot, a_h_dot, params_dot)
        state_dot = cell.state_after(cache_dot)
        hs[t], hs_dot[t] = state[0], state_dot[0]
    return JVPResult(hs, hs_dot, cell.pack_state(state), cell.pack_state(state_dot))
