"""Hessian-vector products of a sequence loss, exact, by forward-over-reverse (Pearlmutter's R-operator).

For the loss L(theta) = mse(hs(theta), targets) and a direction v on the parameters, H v is the
directional derivative of the gradient along v. It is computed by pushing v through both sweeps:

1. forward pass, and alongside it the tangent of every cache field (the cells' `recurrent_tangent`);
2. the loss's gradient dL/dh_t and its tangent (mse's gradient is linear in hs: R{dL/dh} = 2 hs_dot / size);
3. reverse sweep, and alongside it the tangent of every backward quantity (the cells'
   `recurrent_backward_tangent`, the product rule applied to each line of `recurrent_backward`);
4. the tangent of the weight gradients, by the product rule on the outer products.

The cost is a few gradients' worth, and the result is exact (no step size). With it,
`top_hessian_eigenvalue` runs power iteration.

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

import numpy as np

from ..cells.cell import Cell
from ..core.checks import check_array, check_positive_int
from .forward_mode import check_param_tangents
from ..core.losses import mse
from .rtrl import unflatten_params
from ..core.unroll import backward, forward


def _check_targets(cell: Cell, xs, targets):
    T, N, _ = cell.check_inputs(xs).shape
    return check_array("targets", targets, (T, N, cell.hidden_size), cell.dtype, names=("T", "N", "H"))


def loss_and_gradient(cell: Cell, xs, targets, state0=None) -> tuple[float, dict]:
    """L = mse(hs, targets) and dL/dtheta keyed like `cell.params`. xs (T, N, D), targets (T, N, H)."""
    targets = _check_targets(cell, xs, targets)
    hs, tape = forward(cell, xs, state0)
    loss, dhs = mse(hs, targets)
    return loss, backward(cell, tape, dhs).params


def hvp(cell: Cell, xs, targets, vector: dict, state0=None) -> dict:
    """H v for L = mse(hs, targets), H the Hessian with respect to the parameters.

    xs (T, N, D); targets (T, N, H); vector: dict keyed like `cell.params` (missing keys are zero).
    Returns a dict keyed like `cell.params`.
    """
    targets = _check_targets(cell, xs, targets)
    v = check_param_tangents(cell, vector)
    hs, tape = forward(cell, xs, state0)
    caches = tape.caches
    T, N, _ = caches.x.shape

    # 1. the forward sweep's tangent, cache by cache
    state_dot = tuple(np.zeros((N, cell.hidden_size), cell.dtype) for _ in cell.state_fields)
    x_dot = np.zeros_like(caches.x[0])  # inputs are held fixed
    tangent_caches = []
    for t in range(T):
        c = tape.step(t)
        c_dot = cell.new_tangent_cache(c, x_dot, state_dot)
        cell.recurrent_tangent(c, c_dot, *cell.affine_tangents(c, c_dot, v))
        tangent_caches.append(c_dot)
        state_dot = cell.state_after(c_dot)

    # 2. the loss gradient and its tangent
    _, dhs = mse(hs, targets)
    hs_dot = np.stack([c_dot.h for c_dot in tangent_caches])
    dhs_dot = mse(hs_dot, np.zeros_like(hs_dot))[1]  # mse's gradient is linear in hs

    # 3. the reverse sweep and its tangent, step by step
    GH = cell.gates * cell.hidden_size
    da_x = np.empty((T, N, GH), cell.dtype)
    da_h = np.empty_like(da_x) if cell.separate_hidden_gradient else da_x
    da_x_dot = np.empty_like(da_x)
    da_h_dot = np.empty_like(da_x) if cell.separate_hidden_gradient else da_x_dot
    w_hh_dot = v.get("weight_hh", np.zeros_like(cell.params["weight_hh"]))
    carry = tuple(np.zeros((N, cell.hidden_size), cell.dtype) for _ in cell.state_fields)
    carry_dot = tuple(np.zeros_like(part) for part in carry)
    for t in range(T - 1, -1, -1):
        dstate = (carry[0] + dhs[t], *carry[1:])  # this step's loss plus what came from t+1
        dstate_dot = (carry_dot[0] + dhs_dot[t], *carry_dot[1:])
        c = tape.step(t)
        carry = cell.recurrent_backward(c, dstate, da_x[t], da_h[t])
        carry_dot = cell.recurrent_backward_tangent(
            c, tangent_caches[t], dstate, dstate_dot, da_x[t], da_h[t], da_x_dot[t], da_h_dot[t], w_hh_dot
        )

    # 4. the weight gradients' tangent
    h_prevs_dot = np.stack([c_dot.h_prev for c_dot in tangent_caches])
    return cell.parameter_gradients_tangent(
        caches.x, None, caches.h_prev, h_prevs_dot, da_x, da_x_dot, da_h, da_h_dot
    )


def flatten_params(params: dict) -> np.ndarray:
    """A dict of arrays as one (P,) vector, in the dict's order (that of `cell.params`)."""
    return np.concatenate([np.ravel(p) for p in params.values()])


def top_hessian_eigenvalue(
    cell: Cell, xs, targets, state0=None, *, iterations: int = 200, tol: float = 1e-10, seed=0
) -> tuple[float, dict, int]:
    """The Hessian eigenvalue of largest magnitude, by power iteration on `hvp`.

    Stops when the Rayleigh quotient changes by less than tol (relative) between iterations.
    Returns (eigenvalue, unit eigenvector keyed like `cell.params`, iterations used).
    """
    iterations = check_positive_int("iterations", iterations)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(cell.num_params)
    v /= np.linalg.norm(v)
    eigenvalue = np.nan
    for it in range(1, iterations + 1):
        hv = flatten_params(hvp(cell, xs, targets, unflatten_params(cell, v), state0))
        previous, eigenvalue = eigenvalue, float(v @ hv)  # Rayleigh quotient <v, Hv>, |v| = 1
        norm = np.linalg.norm(hv)
        if norm == 0:
            break
        v = hv / norm
        if abs(eigenvalue - previous) <= tol * abs(eigenvalue):
            break
    return eigenvalue, unflatten_params(cell, v), it
