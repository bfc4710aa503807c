"""Forward-mode differentiation of an unrolled cell: Jacobian-vector products, one step at a time.

For a tangent (theta_dot, xs_dot, state0_dot) on the parameters, inputs and initial state, `jvp`
returns every h_t together with its directional derivative h_t_dot = J_t (theta_dot, xs_dot,
state0_dot). The tangent is pushed through each step right after the step itself (the cell's
`step_tangent` rule), so nothing is kept from earlier steps: memory does not grow with T.

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike

from ..cells.cell import Cell
from ..cells.stack import Stack, param_key
from ..core.checks import check_array
from ..core.results import Result
from ..core.step import forward_step
from ..core.types import Array, State
from .common import affine_tangents, check_param_tangents, require


@dataclass(frozen=True, repr=False)
class JVPResult(Result):
    """Result of `bptt.jvp`: the forward pass and its tangent. Unpacks like a tuple in this order.

    Attributes
    ----------
    hs : ndarray, shape (T, N, H)
        The hidden states h_1 .. h_T.
    hs_dot : ndarray, shape (T, N, H)
        Their tangents dh_t along the chosen direction.
    final_state : ndarray (N, H), or tuple for LSTM
        The state after the last step.
    final_state_dot : ndarray (N, H), or tuple for LSTM
        Its tangent.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(2, 3, seed=0)
    >>> result = bptt.jvp(cell, np.ones((4, 1, 2)), tangents={"bias_hh": np.ones(12)})
    >>> result.hs_dot.shape, len(result.final_state_dot)
    ((4, 1, 3), 2)
    """

    hs: Array
    hs_dot: Array
    final_state: State
    final_state_dot: State


def jvp(cell: Cell | Stack, xs: ArrayLike, state0: State | None = None, tangents: Mapping[str, ArrayLike] | None = None,
        *, xs_tangent: ArrayLike | None = None, state0_tangent: State | None = None) -> JVPResult:
    """Directional derivative of every h_t, computed alongside the forward pass with no tape.

    Forward mode: each step carries the tangent of its state forward with the cell's
    `step_tangent`, so memory does not grow with T. One call gives J v for one direction v;
    `bptt.backward` gives v^T J for one cotangent. <u, J v> = <J^T u, v> ties the two.

    Parameters
    ----------
    cell : Cell or Stack
        The cell to run. On a Stack the tangents are keyed like `net.params`, xs is laid out like
        its inputs and the states are stacked as PyTorch's.
    xs : array_like, shape (T, N, D)
        The inputs.
    state0 : ndarray (N, H), tuple for LSTM, or None
        The start state, as from `cell.initial_state`; None starts from zeros.
    tangents : dict of ndarray, optional
        The direction in parameter space, keyed like `cell.params`; missing keys are zero.
    xs_tangent : array_like, shape (T, N, D), optional
        The direction on the inputs; zero if None.
    state0_tangent : ndarray (N, H), tuple for LSTM, or None
        The direction on the start state; zero if None.

    Returns
    -------
    JVPResult
        hs, hs_dot, final_state and final_state_dot.

    Raises
    ------
    ValueError
        If an input, state or tangent has the wrong shape, or a tangent names no parameter.

    Examples
    --------
    The tangent equals a central difference along the same direction:

    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(2, 3, seed=0)
    >>> xs = np.random.default_rng(0).normal(size=(6, 2, 2))
    >>> v = {"weight_hh": np.random.default_rng(1).normal(size=(9, 3))}
    >>> result = bptt.jvp(cell, xs, tangents=v)
    >>> def hs_at(step):
    ...     moved = bptt.GRU(2, 3, seed=0)
    ...     moved.params["weight_hh"] += step * v["weight_hh"]
    ...     return bptt.forward(moved, xs)[0]
    >>> fd = (hs_at(1e-6) - hs_at(-1e-6)) / 2e-6
    >>> bool(np.allclose(result.hs_dot, fd, atol=1e-8))
    True
    """
    if isinstance(cell, Stack):
        return stack_jvp(cell, xs, state0, tangents, xs_tangent, state0_tangent)
    require(cell, "bptt.jvp", "projections", "step_tangent")
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


def stack_jvp(net: Stack, xs: ArrayLike, state0: State | None, tangents: Mapping[str, ArrayLike] | None,
              xs_tangent: ArrayLike | None, state0_tangent: State | None) -> JVPResult:
    """`jvp` through a Stack: layer by layer, each (layer, direction) by the cells' jvp, the tangent
    of a layer's output being the input tangent of the next (through the same dropout mask)."""
    net.check_params()
    xs = net.time_major(xs, "xs", net.input_size)
    T, N, _ = xs.shape
    xs_dot = np.zeros_like(xs) if xs_tangent is None else net.time_major(xs_tangent, "xs_tangent", net.input_size)
    if xs_dot.shape != xs.shape:
        raise ValueError(f"xs_tangent must have the shape of xs {xs.shape}, got {xs_dot.shape}")
    params_dot = check_param_tangents(net, tangents)
    states = net.layer_states(state0, N, "state0")
    states_dot = net.layer_states(state0_tangent, N, "state0_tangent")
    masks = net.draw_masks(T, N)
    layer_in, layer_in_dot, finals, finals_dot = xs, xs_dot, [], []
    for layer, row in enumerate(net.layer_cells()):
        outputs, outputs_dot = [], []
        for d, cell in enumerate(row):
            index, flip = layer * net.directions + d, (lambda a, d=d: a if d == 0 else a[::-1])
            mine = {name: params_dot[key] for name in cell.params
                    if (key := param_key(name, layer, d)) in params_dot}
            result = jvp(cell, flip(layer_in), states[index], mine, xs_tangent=flip(layer_in_dot),
                         state0_tangent=states_dot[index])
            outputs.append(flip(result.hs))
            outputs_dot.append(flip(result.hs_dot))
            finals.append(result.final_state)
            finals_dot.append(result.final_state_dot)
        layer_in, layer_in_dot = np.concatenate(outputs, axis=-1), np.concatenate(outputs_dot, axis=-1)
        if layer < net.num_layers - 1 and (mask := masks[layer]) is not None:
            layer_in, layer_in_dot = layer_in * mask, layer_in_dot * mask
    if net.batch_first:
        layer_in, layer_in_dot = layer_in.transpose(1, 0, 2), layer_in_dot.transpose(1, 0, 2)
    return JVPResult(layer_in, layer_in_dot, net.stack_states(finals), net.stack_states(finals_dot))

