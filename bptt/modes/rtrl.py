"""Real-time recurrent learning: the exact loss gradient carried forward in time, no backward sweep.

RTRL keeps the sensitivity S_t = d state_t / d theta (for every sequence in the batch) and updates it
each step with the same tangent rules as `jvp`, applied to all P parameter directions at once:

    S_t = (d state_t / d state_{t-1}) S_{t-1} + d state_t / d theta     (the immediate term)
    dL/dtheta += (dL_t/dh_t) S_t                                       (as soon as h_t is known)

Memory is O(N H P), independent of T; time per step is O(N H P G H), i.e. H^4 for a vanilla RNN,
against BPTT's O(N G H^2) per step and O(T N G H) memory.

Letters: T time, N batch, D input size, H hidden size, G gates, P number of parameters.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..cells.cell import Cell
from ..core.checks import check_array


class RTRLResult(NamedTuple):
    """params: dL/dtheta keyed like `cell.params`; hs (T, N, H), or None with keep_hs=False; final_state."""

    params: dict
    hs: np.ndarray
    final_state: object


def unflatten_params(cell: Cell, flat: np.ndarray) -> dict:
    """A flat (P,) vector, ordered like `cell.params`, as a dict of arrays in the parameters' shapes."""
    out, off = {}, 0
    for name, shape in cell.param_shapes().items():
        size = int(np.prod(shape))
        out[name] = flat[off : off + size].reshape(shape)
        off += size
    return out


def rtrl(cell: Cell, xs, dhs, state0=None, dstate_final=None, *, keep_hs: bool = True) -> RTRLResult:
    """The exact dL/dtheta for L = sum_t L_t(h_t) (+ a term on the final state), by RTRL.

    xs (T, N, D). dhs: dL_t/dh_t (T, N, H), or, to learn online, a callable (t, h_t) -> (N, H) asked
    for step t's gradient right after h_t is computed. dstate_final: dL/d(final state) (state
    structure), e.g. a loss on the last c of an LSTM. state0: zeros if None. keep_hs=False drops
    each h_t once its gradient is taken, so memory does not grow with T.
    """
    cell.check_params()
    xs = cell.check_inputs(xs)
    T, N, _ = xs.shape
    H = cell.hidden_size
    if not callable(dhs):
        dhs = check_array("dhs", dhs, (T, N, H), cell.dtype, names=("T", "N", "H"))
    state = (cell.unpack_state(cell.initial_state(N)) if state0 is None
             else cell.check_state(state0, N, name="state0"))
    P = cell.num_params
    sens = tuple(np.zeros((P, N, H), cell.dtype) for _ in state)  # d state_0 / d theta = 0
    grad = np.zeros(P, cell.dtype)
    hs = np.empty((T, N, H), cell.dtype) if keep_hs else None
    w_hh = cell.params["weight_hh"]
    for t in range(T):
        c = Cell.cache_at(cell.allocate(xs[t : t + 1], state), 0)
        cell.recurrent_forward(c)
        a_x_dot, a_h_dot = cell.parameter_basis_tangents(c)  # the immediate term d state_t / d theta
        a_h_dot += sens[0] @ w_hh.T  # and through h_{t-1}: a_h = W_hh h_{t-1}
        c_dot = cell.new_tangent_cache(c, None, sens, lead=(P,))
        cell.recurrent_tangent(c, c_dot, a_x_dot, a_h_dot)
        state, sens = cell.state_after(c), cell.state_after(c_dot)
        if keep_hs:
            hs[t] = state[0]
        if callable(dhs):
            dh = check_array(f"dhs({t}, h_t)", dhs(t, state[0].copy()), (N, H), cell.dtype, names=("N", "H"))
        else:
            dh = dhs[t]
        grad += np.einsum("pnh,nh->p", sens[0], dh)  # dL_t/dtheta = dL_t/dh_t . dh_t/dtheta
    if dstate_final is not None:
        for part, s in zip(cell.check_state(dstate_final, N, name="dstate_final"), sens):
            grad += np.einsum("pnh,nh->p", s, part)
    return RTRLResult(unflatten_params(cell, grad), hs, cell.pack_state(state))
