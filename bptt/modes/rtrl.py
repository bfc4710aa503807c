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

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

from ..cells.cell import Cell
from ..core.results import Result
from ..core.step import forward_step
from ..core.types import Array, Params, State
from .common import parameter_basis_tangents, require, step_loss_gradients, unflatten_params


@dataclass(frozen=True, repr=False)
class RTRLResult(Result):
    """Result of `bptt.rtrl`. Unpacks like a tuple in this order.

    Attributes
    ----------
    params : dict of ndarray
        dL/dtheta, keyed like `cell.params`.
    hs : ndarray, shape (T, N, H), or None
        The hidden states; None with keep_hs=False.
    final_state : ndarray (N, H), or tuple for LSTM
        The state after the last step.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(2, 3, seed=0)
    >>> result = bptt.rtrl(cell, np.ones((5, 1, 2)), np.ones((5, 1, 3)), keep_hs=False)
    >>> result.hs is None, result.params["weight_hh"].shape
    (True, (3, 3))
    """

    params: Params
    hs: Array | None
    final_state: State


def rtrl(cell: Cell, xs: ArrayLike, dhs: ArrayLike | Callable[[int, Array], ArrayLike], state0: State | None = None,
         dstate_final: State | None = None, *, keep_hs: bool = True) -> RTRLResult:
    """The exact dL/dtheta for L = sum_t L_t(h_t) (+ a term on the final state), by RTRL.

    Real-time recurrent learning carries the full sensitivity dh_t/dtheta forward in time (forward
    mode with one tangent per parameter), so the gradient is ready when the sequence ends, with no
    tape. It costs O(H^2 P) per step against BPTT's O(P); use it on small cells.

    Parameters
    ----------
    cell : Cell
        An RNN, LSTM (without proj_size) or GRU; not a Stack.
    xs : array_like, shape (T, N, D)
        The inputs.
    dhs : array_like, shape (T, N, H), or callable
        dL_t/dh_t; or, to learn online, a callable (t, h_t) -> (N, H) asked for step t's gradient
        right after h_t is computed.
    state0 : ndarray (N, H), tuple for LSTM, or None
        The start state; None starts from zeros.
    dstate_final : ndarray (N, H), tuple for LSTM, or None
        dL/d(final state), e.g. a loss on the last c of an LSTM; None for zeros.
    keep_hs : bool, default True
        False drops each h_t once its gradient is taken, so memory does not grow with T.

    Returns
    -------
    RTRLResult
        params, hs and final_state.

    Raises
    ------
    ValueError
        If an input has the wrong shape, or the cell is a Stack or projects its output.

    Examples
    --------
    RTRL and BPTT give the same gradient:

    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(2, 3, seed=0)
    >>> xs = np.random.default_rng(0).normal(size=(8, 2, 2))
    >>> dhs = np.random.default_rng(1).normal(size=(8, 2, 3))
    >>> reverse = bptt.backward(cell, bptt.forward(cell, xs)[1], dhs)
    >>> forward = bptt.rtrl(cell, xs, dhs)
    >>> bool(np.allclose(forward.params["weight_ih"], reverse.params["weight_ih"], rtol=1e-10))
    True
    """
    require(cell, "bptt.rtrl", "no_projection", "projections", "step_tangent")
    cell.check_params()
    xs = cell.check_inputs(xs)
    T, N, _ = xs.shape
    H = cell.hidden_size
    loss_gradient = step_loss_gradients(cell, dhs, T, N)
    state = cell.start_state(state0, N)
    P = cell.num_params
    sens = tuple(np.zeros((P, N, H), cell.dtype) for _ in state)  # d state_0 / d theta = 0
    grad = np.zeros(P, cell.dtype)
    hs = np.empty((T, N, H), cell.dtype) if keep_hs else None
    w_hh = cell.params["weight_hh"]
    for t in range(T):
        state, cache = forward_step(cell, xs[t], state)
        a_x_dot, a_h_dot = parameter_basis_tangents(cell, cache)  # the immediate term d state_t / d theta
        a_h_dot += sens[0] @ w_hh.T  # and through h_{t-1}: a_h = W_hh h_{t-1}
        sens = cell.state_after(cell.step_tangent(cache, None, sens, a_x_dot, a_h_dot))
        if hs is not None:  # keep_hs
            hs[t] = state[0]
        grad += np.einsum("pnh,nh->p", sens[0], loss_gradient(t, state[0]))  # dL_t/dh_t . dh_t/dtheta
    if dstate_final is not None:
        for part, s in zip(cell.check_state(dstate_final, N, name="dstate_final"), sens):
            grad += np.einsum("pnh,nh->p", s, part)
    return RTRLResult(unflatten_params(cell, grad), hs, cell.pack_state(state))
