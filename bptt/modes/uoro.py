"""UORO (Tallec and Ollivier 2018): an unbiased rank-one estimate of RTRL's sensitivity, online.

RTRL carries S_t = d state_t / d theta, (state size x P) per sequence. UORO carries instead two
vectors per sequence, s~ (state size) and theta~ (P), with E[s~ theta~^T] = S_t. Each step, with
A = d state_t / d state_{t-1}, B = d state_t / d theta (the immediate term) and nu a vector of random
signs:

    s~_t      = rho0 A s~_{t-1} + rho1 nu                  (one jvp of the step, on the state)
    theta~_t  = theta~_{t-1} / rho0 + (nu^T B) / rho1       (one vjp of the step, on the parameters)
    rho0 = sqrt(|theta~_{t-1}| / |A s~_{t-1}|),  rho1 = sqrt(|nu^T B| / |nu|)   (smallest variance)

and the gradient estimate adds (dL_t/dstate_t . s~_t) theta~_t. Since E[nu nu^T] = I and the
cross terms flip sign with nu, the estimate is unbiased; its cost per step is that of BPTT's, its
memory O(N P) whatever T, and its variance is the price.

Letters: T time, N batch, D input size, H hidden size, G gates, P parameters, S state parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import ArrayLike

from ..cells.cell import Cell
from ..core.checks import check_array
from ..core.results import Result
from ..core.step import forward_step, vjp_step
from ..core.types import Array, Params, Parts, Seed, State, StepCache
from .common import affine_tangents, require, step_loss_gradients, unflatten_params

EPS = 1e-7  # keeps rho0, rho1 finite when a norm is zero (at t = 0, s~ = theta~ = 0)


@dataclass(frozen=True, repr=False)
class UOROResult(Result):
    """Result of `bptt.uoro`. Unpacks like a tuple in this order.

    Attributes
    ----------
    params : dict of ndarray
        The gradient estimate, keyed like `cell.params`.
    final_state : ndarray (N, H), or tuple for LSTM
        The state after the last step.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(2, 3, seed=0)
    >>> estimate, final_state = bptt.uoro(cell, np.ones((5, 1, 2)), np.ones((5, 1, 3)), seed=0)
    >>> estimate["weight_hh"].shape, final_state.shape
    ((9, 3), (1, 3))
    """

    params: Params
    final_state: State


def per_sequence_parameter_gradients(cache: StepCache, da_x: Array, da_h: Array) -> Array:
    """dL/dtheta of one step for each sequence separately, flattened like `cell.params`: (N, P).

    The outer products of the weight gradients (dW_ih = da_x^T x, dW_hh = da_h^T h_prev,
    db_ih = da_x, db_hh = da_h), without the sum over the batch.
    """
    N = da_x.shape[0]
    return np.concatenate(
        [
            np.einsum("ng,nd->ngd", da_x, cache.x).reshape(N, -1),
            np.einsum("ng,nh->ngh", da_h, cache.h_prev).reshape(N, -1),
            da_x,
            da_h,
        ],
        axis=1,
    )


def _norms(parts: Parts) -> Array:
    """Per-sequence Euclidean norm over all state parts: (N,)."""
    return np.sqrt(sum(np.einsum("nh,nh->n", p, p) for p in parts))


def uoro(cell: Cell, xs: ArrayLike, dhs: ArrayLike | Callable[[int, Array], ArrayLike], state0: State | None = None,
         dstate_final: State | None = None, *, seed: Seed = None, signs: ArrayLike | None = None) -> UOROResult:
    """One UORO estimate of dL/dtheta for L = sum_t L_t(h_t) (+ a term on the final state).

    Unbiased online recurrent optimisation (Tallec & Ollivier 2017) keeps a rank-one estimate
    s~ theta~^T of RTRL's sensitivity dh_t/dtheta, refreshed each step with random signs nu_t, so
    it costs about as much as the forward pass. The estimate is unbiased: its mean over sign draws
    is RTRL's exact gradient; a single draw is noisy.

    Parameters
    ----------
    cell : Cell
        An RNN, LSTM (without proj_size) or GRU; not a Stack.
    xs : array_like, shape (T, N, D)
        The inputs.
    dhs : array_like, shape (T, N, H), or callable
        dL_t/dh_t, or a callable (t, h_t) -> (N, H), as for `bptt.rtrl`.
    state0 : ndarray (N, H), tuple for LSTM, or None
        The start state; None starts from zeros.
    dstate_final : ndarray (N, H), tuple for LSTM, or None
        dL/d(final state); None for zeros.
    seed : int or None
        Seed for the sign vectors nu_t.
    signs : array_like, shape (T, S, N, H), optional
        The sign vectors themselves, +-1 (S = 2 for LSTM's (h, c), else 1), to average over
        chosen draws; overrides `seed`.

    Returns
    -------
    UOROResult
        params (the estimate) and final_state.

    Raises
    ------
    ValueError
        If an input has the wrong shape, signs are not +-1 of shape (T, S, N, H), or the cell is
        a Stack or projects its output.

    Examples
    --------
    Averaged over many draws, the estimate approaches the exact gradient:

    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(1, 2, seed=0)
    >>> xs = np.random.default_rng(0).normal(size=(4, 1, 1))
    >>> dhs = np.random.default_rng(1).normal(size=(4, 1, 2))
    >>> exact = bptt.rtrl(cell, xs, dhs).params["weight_hh"]
    >>> mean = np.mean([bptt.uoro(cell, xs, dhs, seed=s).params["weight_hh"] for s in range(4000)], axis=0)
    >>> bool(bptt.relative_error(mean, exact) < 0.1)
    True
    """
    require(cell, "bptt.uoro", "no_projection", "projections", "step_tangent")
    cell.check_params()
    xs = cell.check_inputs(xs)
    T, N, _ = xs.shape
    H, S = cell.hidden_size, len(cell.state_fields)
    loss_gradient = step_loss_gradients(cell, dhs, T, N)
    if signs is None:
        signs = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], cell.dtype), size=(T, S, N, H))
    else:
        signs = check_array("signs", signs, (T, S, N, H), cell.dtype, names=("T", "S", "N", "H"))
        if not np.all(np.abs(signs) == 1):
            raise ValueError("signs must hold only +1 and -1")
    state = cell.start_state(state0, N)
    s_tilde = tuple(np.zeros((N, H), cell.dtype) for _ in range(S))
    theta_tilde = np.zeros((N, cell.num_params), cell.dtype)
    grad = np.zeros(cell.num_params, cell.dtype)
    for t in range(T):
        state, cache = forward_step(cell, xs[t], state)
        # A s~: the step's jvp along s~ on the previous state, parameters and inputs held fixed
        a_x_dot, a_h_dot = affine_tangents(cell, cache, None, s_tilde[0], {})
        a_s = cell.state_after(cell.step_tangent(cache, None, s_tilde, a_x_dot, a_h_dot))
        # nu^T B: the step's vjp with cotangent nu, kept per sequence
        nu = tuple(signs[t, i] for i in range(S))
        step = vjp_step(cell, cache, nu)
        nu_b = per_sequence_parameter_gradients(cache, step.da_x, step.da_h)
        rho0 = np.sqrt((np.linalg.norm(theta_tilde, axis=1) + EPS) / (_norms(a_s) + EPS))[:, None]
        rho1 = np.sqrt((np.linalg.norm(nu_b, axis=1) + EPS) / (_norms(nu) + EPS))[:, None]
        s_tilde = tuple(rho0 * a + rho1 * v for a, v in zip(a_s, nu))
        theta_tilde = theta_tilde / rho0 + nu_b / rho1
        dh = loss_gradient(t, state[0])
        grad += np.einsum("n,np->p", np.einsum("nh,nh->n", dh, s_tilde[0]), theta_tilde)  # dL_t/dh_t S~_t
    if dstate_final is not None:
        weights = sum(np.einsum("nh,nh->n", w, s) for w, s in
                      zip(cell.check_state(dstate_final, N, name="dstate_final"), s_tilde))
        grad += weights @ theta_tilde
    return UOROResult(unflatten_params(cell, grad), cell.pack_state(state))
