"""Hessian-vector products of a sequence loss, exact, by forward-over-reverse (Pearlmutter's R-operator).

For the loss L(theta) = mse(hs(theta), targets) and a direction v on the parameters, H v is the
directional derivative of the gradient along v. It is computed by pushing v through both sweeps:

1. forward pass, and alongside it the tangent of every cache field (the cells' `step_tangent`);
2. the loss's gradient dL/dh_t and its tangent (mse's gradient is linear in hs: R{dL/dh} = 2 hs_dot / size);
3. reverse sweep, and alongside it the tangent of every backward quantity (the cells'
   `backward_tangent`, the product rule applied to each line of the backward step);
4. the tangent of the weight gradients, by the product rule on the outer products.

The cost is a few gradients' worth, and the result is exact (no step size). With it,
`top_hessian_eigenvalue` runs power iteration.

Letters: T time, N batch, D input size, H hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.checks import check_array, check_positive_int
from ..core.losses import mse
from ..core.results import Result
from ..core.step import vjp_step
from ..core.unroll import backward, forward
from .common import (
    affine_tangents, check_param_tangents, flatten_params, parameter_gradients_tangent, require, unflatten_params,
)


@dataclass(frozen=True, repr=False)
class LossAndGradient(Result):
    """loss: mse(hs, targets); params: dL/dtheta keyed like `cell.params`."""

    loss: float
    params: dict


@dataclass(frozen=True, repr=False)
class HessianEigen(Result):
    """value: the Hessian eigenvalue of largest magnitude; vector: its unit eigenvector keyed like
    `cell.params`; iterations: power iterations used."""

    value: float
    vector: dict
    iterations: int


def _check_targets(cell, xs, targets):
    T, N, _ = cell.check_inputs(xs).shape
    return check_array("targets", targets, (T, N, cell.output_size), cell.dtype, names=("T", "N", "H"))


def loss_and_gradient(cell, xs, targets, state0=None) -> LossAndGradient:
    """L = mse(hs, targets) and dL/dtheta keyed like `cell.params`. xs (T, N, D), targets (T, N, H)."""
    targets = _check_targets(cell, xs, targets)
    hs, tape = forward(cell, xs, state0)
    loss, dhs = mse(hs, targets)
    return LossAndGradient(loss, backward(cell, tape, dhs).params)


def hvp(cell, xs, targets, vector: dict, state0=None) -> dict:
    """H v for L = mse(hs, targets), H the Hessian with respect to the parameters.

    xs (T, N, D); targets (T, N, H); vector: dict keyed like `cell.params` (missing keys are zero).
    Returns H v, a dict keyed like `cell.params`.
    """
    require(cell, "bptt.hvp", "step_tangent", "backward_tangent", "single_steps")
    targets = _check_targets(cell, xs, targets)
    v = check_param_tangents(cell, vector)
    hs, tape = forward(cell, xs, state0)
    T, N = len(tape), tape.batch_size

    # 1. the forward sweep's tangent, cache by cache (inputs held fixed)
    state_dot = tuple(np.zeros((N, size), cell.dtype) for size in cell.state_sizes)
    caches, caches_dot = [tape.step(t) for t in range(T)], []
    for cache in caches:
        a_x_dot, a_h_dot = affine_tangents(cell, cache, None, state_dot[0], v)
        caches_dot.append(cell.step_tangent(cache, None, state_dot, a_x_dot, a_h_dot, v))
        state_dot = cell.state_after(caches_dot[-1])

    # 2. the loss gradient and its tangent (mse's gradient is linear in hs)
    _, dhs = mse(hs, targets)
    hs_dot = np.stack([cell.state_after(cache_dot)[0] for cache_dot in caches_dot])
    dhs_dot = mse(hs_dot, np.zeros_like(hs_dot))[1]

    # 3. the reverse sweep and its tangent, step by step
    GH = cell.gates * cell.hidden_size
    da_x, da_h, da_x_dot, da_h_dot = (np.empty((T, N, GH), cell.dtype) for _ in range(4))
    carry = tuple(np.zeros((N, size), cell.dtype) for size in cell.state_sizes)
    carry_dot = tuple(np.zeros_like(part) for part in carry)
    extra_dot = {}
    for t in range(T - 1, -1, -1):
        dstate = (carry[0] + dhs[t], *carry[1:])  # this step's loss plus what came from t+1
        dstate_dot = (carry_dot[0] + dhs_dot[t], *carry_dot[1:])
        da_x[t], da_h[t], carry = vjp_step(cell, caches[t], dstate)
        da_x_dot[t], da_h_dot[t], carry_dot, extra = cell.backward_tangent(
            caches[t], caches_dot[t], dstate, dstate_dot, da_x[t], da_h[t], v
        )
        for name, value in extra.items():  # parameters outside the projections (LSTM's weight_hr)
            extra_dot[name] = extra_dot.get(name, 0) + value

    # 4. the weight gradients' tangent
    h_prevs = np.stack([cache.h_prev for cache in caches])
    h_prevs_dot = np.stack([cache_dot.h_prev for cache_dot in caches_dot])
    xs = np.stack([cache.x for cache in caches])
    return {**parameter_gradients_tangent(xs, h_prevs, h_prevs_dot, da_x, da_x_dot, da_h, da_h_dot), **extra_dot}


def top_hessian_eigenvalue(
    cell, xs, targets, state0=None, *, iterations: int = 200, tol: float = 1e-10, seed=0
) -> HessianEigen:
    """The Hessian eigenvalue of largest magnitude, by power iteration on `hvp`.

    Stops when the Rayleigh quotient changes by less than tol (relative) between iterations.
    Returns HessianEigen(value, vector, iterations): the eigenvalue, its unit eigenvector keyed like
    `cell.params`, and the iterations used (unpacks like a tuple in that order).
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
    return HessianEigen(eigenvalue, unflatten_params(cell, v), it)
