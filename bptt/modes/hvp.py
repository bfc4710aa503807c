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
from typing import Mapping, cast

import numpy as np
from numpy.typing import ArrayLike

from ..cells.cell import Cell
from ..cells.stack import Stack, param_key
from ..core.checks import check_array, check_positive_int
from ..core.losses import mse
from ..core.results import Result
from ..core.step import vjp_step
from ..core.types import Array, Params, Seed, State, StepCache
from ..core.unroll import Tape, backward, forward
from .common import (
    affine_tangents, check_param_tangents, flatten_params, parameter_gradients_tangent, require, unflatten_params,
)


@dataclass(frozen=True, repr=False)
class LossAndGradient(Result):
    """Result of `bptt.loss_and_gradient`. Unpacks like a tuple in this order.

    Attributes
    ----------
    loss : float
        mse(hs, targets).
    params : dict of ndarray
        dL/dtheta, keyed like `cell.params`.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(2, 3, seed=0)
    >>> loss, grads = bptt.loss_and_gradient(cell, np.ones((4, 1, 2)), np.zeros((4, 1, 3)))
    >>> loss > 0, sorted(grads) == sorted(cell.params)
    (True, True)
    """

    loss: float
    params: Params


@dataclass(frozen=True, repr=False)
class HessianEigen(Result):
    """Result of `bptt.top_hessian_eigenvalue`. Unpacks like a tuple in this order.

    Attributes
    ----------
    value : float
        The Hessian eigenvalue of largest magnitude.
    vector : dict of ndarray
        Its unit eigenvector, keyed like `cell.params`.
    iterations : int
        The power iterations used.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(1, 2, seed=0)
    >>> top = bptt.top_hessian_eigenvalue(cell, np.ones((3, 1, 1)), np.zeros((3, 1, 2)))
    >>> top.iterations <= 200, sorted(top.vector) == sorted(cell.params)
    (True, True)
    """

    value: float
    vector: Params
    iterations: int


def _check_targets(cell: Cell | Stack, xs: ArrayLike, targets: ArrayLike) -> Array:
    if isinstance(cell, Stack):
        T, N = cell.time_major(xs, "xs", cell.input_size).shape[:2]
        shape = (N, T) if cell.batch_first else (T, N)
        return check_array("targets", targets, shape + (cell.directions * cell.output_size,), cell.dtype)
    T, N, _ = cell.check_inputs(xs).shape
    return check_array("targets", targets, (T, N, cell.output_size), cell.dtype, names=("T", "N", "H"))


def loss_and_gradient(cell: Cell | Stack, xs: ArrayLike, targets: ArrayLike, state0: State | None = None
                      ) -> LossAndGradient:
    """The loss L = mse(hs, targets) and its gradient with respect to the parameters.

    Parameters
    ----------
    cell : Cell
        The cell to run.
    xs : array_like, shape (T, N, D)
        The inputs.
    targets : array_like, shape (T, N, H)
        What each h_t should be.
    state0 : ndarray (N, H), tuple for LSTM, or None
        The start state; None starts from zeros.

    Returns
    -------
    LossAndGradient
        loss and params (dL/dtheta keyed like `cell.params`).

    Raises
    ------
    ValueError
        If xs or targets have the wrong shape.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(2, 3, seed=0)
    >>> result = bptt.loss_and_gradient(cell, np.ones((5, 2, 2)), np.zeros((5, 2, 3)))
    >>> round(result.loss, 6) > 0, result.params["weight_ih"].shape
    (True, (9, 2))
    """
    targets = _check_targets(cell, xs, targets)
    hs, tape = forward(cell, xs, state0)
    loss, dhs = mse(hs, targets)
    return LossAndGradient(loss, backward(cell, tape, dhs).params)


def hvp(cell: Cell | Stack, xs: ArrayLike, targets: ArrayLike, vector: Mapping[str, ArrayLike],
        state0: State | None = None) -> Params:
    """H v for L = mse(hs, targets), H the Hessian with respect to the parameters.

    Forward-over-reverse (Pearlmutter's R-operator): the forward pass carries the tangent of every
    cache along v, and the reverse sweep runs alongside its own tangent, so H v costs about two
    gradients and never forms H.

    Parameters
    ----------
    cell : Cell or Stack
        The cell to run. A Stack takes its own layout: targets like its outputs, vector keyed like
        `net.params`; its dropout masks are drawn once and used by both sweeps.
    xs : array_like, shape (T, N, D)
        The inputs.
    targets : array_like, shape (T, N, H)
        What each h_t should be.
    vector : dict of ndarray
        v, keyed like `cell.params`; missing keys are zero.
    state0 : ndarray (N, H), tuple for LSTM, or None
        The start state; None starts from zeros.

    Returns
    -------
    dict of ndarray
        H v, keyed like `cell.params`.

    Raises
    ------
    ValueError
        If an input has the wrong shape, or v names no parameter or has the wrong shape.

    Examples
    --------
    H v equals the central difference of the gradient along v:

    >>> import numpy as np, bptt
    >>> cell = bptt.LSTM(2, 3, seed=0)
    >>> xs = np.random.default_rng(0).normal(size=(5, 2, 2))
    >>> targets = np.zeros((5, 2, 3))
    >>> v = {"weight_hh": np.random.default_rng(1).normal(size=(12, 3))}
    >>> hv = bptt.hvp(cell, xs, targets, v)
    >>> def grad_at(step):
    ...     moved = bptt.LSTM(2, 3, seed=0)
    ...     moved.params["weight_hh"] += step * v["weight_hh"]
    ...     return bptt.loss_and_gradient(moved, xs, targets).params["weight_hh"]
    >>> fd = (grad_at(1e-5) - grad_at(-1e-5)) / 2e-5
    >>> bool(np.allclose(hv["weight_hh"], fd, atol=1e-8))
    True
    """
    if isinstance(cell, Stack):
        return stack_hvp(cell, xs, targets, vector, state0)
    require(cell, "bptt.hvp", "projections", "step_tangent", "backward_tangent")
    targets = _check_targets(cell, xs, targets)
    v = check_param_tangents(cell, vector)
    hs, tape = forward(cell, xs, state0)
    caches_dot, hs_dot = tangent_forward(cell, tape, None, v)  # 1. the forward sweep's tangent
    _, dhs = mse(hs, targets)  # 2. the loss gradient and its tangent (linear in hs)
    dhs_dot = mse(hs_dot, np.zeros_like(hs_dot))[1]
    return tangent_backward(cell, tape, caches_dot, dhs, dhs_dot, v, None)[0]  # 3. and 4.


def tangent_forward(cell: Cell, tape: Tape, xs_dot: Array | None, v: Params) -> tuple[list[StepCache], Array]:
    """The tangent of every cache of `tape` along v (parameters) and xs_dot (T, N, D) (None: inputs
    held fixed), the initial state held fixed. Returns (tangent caches, hs_dot (T, N, H))."""
    state_dot = tuple(np.zeros((tape.batch_size, size), cell.dtype) for size in cell.state_sizes)
    caches_dot = []
    for t in range(len(tape)):
        cache, x_dot = tape.step(t), None if xs_dot is None else xs_dot[t]
        a_x_dot, a_h_dot = affine_tangents(cell, cache, x_dot, state_dot[0], v)
        caches_dot.append(cell.step_tangent(cache, x_dot, state_dot, a_x_dot, a_h_dot, v))
        state_dot = cell.state_after(caches_dot[-1])
    return caches_dot, np.stack([cell.state_after(c)[0] for c in caches_dot])


def tangent_backward(cell: Cell, tape: Tape, caches_dot: list[StepCache], dhs: Array, dhs_dot: Array, v: Params,
                     xs_dot: Array | None) -> tuple[Params, Array, Array]:
    """The reverse sweep over `tape` and, alongside it, its tangent (the cells' `backward_tangent`).

    dhs, dhs_dot (T, N, H): the loss gradient at every step and its tangent; xs_dot: the inputs'
    tangent (None: held fixed). Returns (tangent of dL/dtheta keyed like `cell.params`, dL/dxs,
    its tangent), the inputs' gradient and tangent being what a layer below needs.
    """
    T, N = len(tape), tape.batch_size
    GH = cell.gates * cell.hidden_size
    da_x, da_h, da_x_dot, da_h_dot = (np.empty((T, N, GH), cell.dtype) for _ in range(4))
    carry = tuple(np.zeros((N, size), cell.dtype) for size in cell.state_sizes)
    carry_dot = tuple(np.zeros_like(part) for part in carry)
    extra_dot: Params
    caches, extra_dot = [tape.step(t) for t in range(T)], {}
    for t in range(T - 1, -1, -1):
        dstate = (carry[0] + dhs[t], *carry[1:])  # this step's loss plus what came from t+1
        dstate_dot = (carry_dot[0] + dhs_dot[t], *carry_dot[1:])
        da_x[t], da_h[t], carry = vjp_step(cell, caches[t], dstate)
        da_x_dot[t], da_h_dot[t], carry_dot, extra = cell.backward_tangent(
            caches[t], caches_dot[t], dstate, dstate_dot, da_x[t], da_h[t], v
        )
        for name, value in extra.items():  # parameters outside the projections (LSTM's weight_hr)
            extra_dot[name] = extra_dot.get(name, 0) + value
    # the weight gradients' tangent, by the product rule on each outer product
    xs = np.stack([cache.x for cache in caches])
    h_prevs = np.stack([cache.h_prev for cache in caches])
    h_prevs_dot = np.stack([cache_dot.h_prev for cache_dot in caches_dot])
    grads_dot = {**parameter_gradients_tangent(xs, h_prevs, h_prevs_dot, da_x, da_x_dot, da_h, da_h_dot), **extra_dot}
    W_ih = cell.params["weight_ih"]
    dxs, dxs_dot = da_x @ W_ih, da_x_dot @ W_ih  # dL/dx = da_x W_ih: product rule
    if "weight_ih" in v:
        dxs_dot += da_x @ v["weight_ih"]
    if xs_dot is not None:  # dW_ih = sum da_x^T x: its x_dot term
        grads_dot["weight_ih"] += da_x.reshape(T * N, -1).T @ xs_dot.reshape(T * N, -1)
    return grads_dot, dxs, dxs_dot


def stack_hvp(net: Stack, xs: ArrayLike, targets: ArrayLike, vector: Mapping[str, ArrayLike],
              state0: State | None) -> Params:
    """`hvp` through a Stack: the forward tangent up the layers, then the reverse sweep and its
    tangent down them, each (layer, direction) by `tangent_forward` / `tangent_backward`."""
    targets = _check_targets(net, xs, targets)
    v = check_param_tangents(net, vector)
    hs, tape = forward(net, xs, state0)
    flips = [lambda a: a, lambda a: a[::-1]]  # the reverse direction reads time backwards
    mine = [[{name: v[key] for name in cell.params if (key := param_key(name, layer, d)) in v}
             for d, cell in enumerate(row)] for layer, row in enumerate(net.cells)]
    layer_in_dot: Array | None
    inputs_dot: list[Array | None]
    caches_dot: list[list[list[StepCache]]]
    x_dot: Array | None
    layer_in_dot, inputs_dot, caches_dot = None, [], []  # 1. up the layers
    for layer, row in enumerate(net.layer_cells()):
        inputs_dot.append(layer_in_dot)
        outputs_dot, row_dot = [], []
        for d, cell in enumerate(row):
            x_dot = None if layer_in_dot is None else flips[d](layer_in_dot)
            c_dot, h_dot = tangent_forward(cell, tape.layers[layer][d], x_dot, mine[layer][d])
            row_dot.append(c_dot)
            outputs_dot.append(flips[d](h_dot))
        caches_dot.append(row_dot)
        layer_in_dot = np.concatenate(outputs_dot, axis=-1)
        if layer < net.num_layers - 1 and tape.masks[layer] is not None:
            layer_in_dot = layer_in_dot * tape.masks[layer]
    hs_tm = hs.transpose(1, 0, 2) if net.batch_first else hs  # 2. the loss, time-major
    targets_tm = targets.transpose(1, 0, 2) if net.batch_first else targets
    layer_in_dot = cast(Array, layer_in_dot)  # the top layer's output tangent
    d_out, d_out_dot = mse(hs_tm, targets_tm)[1], mse(layer_in_dot, np.zeros_like(layer_in_dot))[1]
    result, H_out = {}, net.output_size
    for layer in range(net.num_layers - 1, -1, -1):  # 3. down the layers
        if layer < net.num_layers - 1 and tape.masks[layer] is not None:
            d_out, d_out_dot = d_out * tape.masks[layer], d_out_dot * tape.masks[layer]
        d_in = d_in_dot = 0
        for d, cell in enumerate(net.cells[layer]):
            part = slice(d * H_out, (d + 1) * H_out)
            x_dot = None if inputs_dot[layer] is None else flips[d](inputs_dot[layer])
            grads_dot, dxs, dxs_dot = tangent_backward(
                cell, tape.layers[layer][d], caches_dot[layer][d], flips[d](d_out[..., part]),
                flips[d](d_out_dot[..., part]), mine[layer][d], x_dot)
            result.update({param_key(name, layer, d): g for name, g in grads_dot.items()})
            d_in, d_in_dot = d_in + flips[d](dxs), d_in_dot + flips[d](dxs_dot)
        d_out, d_out_dot = cast(Array, d_in), cast(Array, d_in_dot)  # sums over the layer's directions
    return {name: result[name] for name in net.params}


def top_hessian_eigenvalue(
    cell: Cell | Stack, xs: ArrayLike, targets: ArrayLike, state0: State | None = None, *, iterations: int = 200,
    tol: float = 1e-10, seed: Seed = 0
) -> HessianEigen:
    """The Hessian eigenvalue of largest magnitude, by power iteration on `hvp`.

    The sharpness of the loss: where the value is positive, gradient descent with a learning rate
    above 2 / value diverges along its eigenvector (on the local quadratic model).

    Parameters
    ----------
    cell : Cell or Stack
        The cell to run.
    xs : array_like, shape (T, N, D)
        The inputs.
    targets : array_like, shape (T, N, H)
        What each h_t should be; L = mse(hs, targets).
    state0 : ndarray (N, H), tuple for LSTM, or None
        The start state; None starts from zeros.
    iterations : int, default 200
        The most power iterations to run.
    tol : float, default 1e-10
        Stop when the Rayleigh quotient changes by less than tol (relative) between iterations.
    seed : int or None, default 0
        Seed for the starting vector.

    Returns
    -------
    HessianEigen
        value, vector and iterations.

    Raises
    ------
    ValueError
        If iterations is not a positive integer, tol is not positive, or an input has the wrong shape.

    Examples
    --------
    The eigenvector satisfies H v = value v:

    >>> import numpy as np, bptt
    >>> cell = bptt.RNN(1, 2, seed=0)
    >>> xs, targets = np.ones((3, 1, 1)), np.zeros((3, 1, 2))
    >>> value, vector, _ = bptt.top_hessian_eigenvalue(cell, xs, targets, tol=1e-14, iterations=1000)
    >>> hv = bptt.hvp(cell, xs, targets, vector)
    >>> residual = [hv[k] - value * vector[k] for k in vector]
    >>> bool(np.sqrt(sum(np.sum(r ** 2) for r in residual)) < 1e-4 * abs(value))
    True
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
