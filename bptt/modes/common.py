"""What the differentiation modes share: parameter vectors, tangents on the parameters, loss gradients
given step by step, and the tangent rules of the two affine projections every built-in cell has,

    a_x = x W_ih^T + b_ih,    a_h = h_prev W_hh^T + b_hh,

which do not depend on the cell (the cell-specific rules, `step_tangent` and `backward_tangent`, sit
in each cell's file next to the forward and backward they differentiate).

Letters: T time, N batch, D input size, H hidden size, G gates, P number of parameters, K directions.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from ..cells.cell import Cell
from ..cells.stack import Stack
from ..core.checks import check_array
from ..core.sequence import CompositeModel
from ..core.types import Array, Params, StepCache

RULES = {
    "no_projection": "a cell without projections (proj_size = 0)",
    "projections": ("the two projections a_x = x W_ih^T + b_ih and a_h = h_prev W_hh^T + b_hh (parameters "
                    "weight_ih (G*H, D), weight_hh (G*H, H), bias_ih and bias_hh (G*H,))"),
    "step_tangent": "its forward-mode rule (step_tangent)",
    "backward_tangent": "the R-operator of its backward step (backward_tangent)",
}


def require(cell: Cell | CompositeModel, method: str, *needs: str) -> None:
    """Raise NotImplementedError naming what `method` needs and `cell` does not define.

    needs: keys of RULES. A cell written with the plain step pair only runs bptt.forward / backward,
    truncation, training and the diagnostics; the modes also need the rules they differentiate with,
    which are written in terms of the two projections. A cell without a fast path runs them on its
    step pair, one step at a time (`bptt.core.step`). A model of several layers (a Stack) is refused
    by the methods that carry one cell's sensitivities (RTRL, UORO).
    """
    if isinstance(cell, CompositeModel):
        raise NotImplementedError(f"{method} works on one cell, and a {type(cell).__name__} has several "
                                  "layers: use bptt.backward (or bptt.jvp) on it, or run it on a single cell")
    for need in needs:
        if need == "projections":
            missing = not has_projections(cell)
        elif need == "no_projection":
            missing = getattr(cell, "proj_size", 0) > 0
        else:
            missing = getattr(type(cell), need) is getattr(Cell, need)
        if missing:
            raise NotImplementedError(f"{method} needs {RULES[need]}, which {type(cell).__name__} does not define")


def has_projections(cell: Cell) -> bool:
    """Whether the cell's parameters include the two projections' weights and biases, shaped as the
    built-in cells' (what the tangent rules of `affine_tangents` differentiate)."""
    GH, shapes = cell.gates * cell.hidden_size, cell.param_shapes()
    expected = {"weight_ih": (GH, cell.input_size), "weight_hh": (GH, cell.output_size), "bias_ih": (GH,),
                "bias_hh": (GH,)}
    return GH > 0 and all(tuple(shapes.get(name, ())) == shape for name, shape in expected.items())


# ----------------------------------------------------------------- parameter vectors
def flatten_params(params: Mapping[str, ArrayLike]) -> Array:
    """A dict of arrays as one (P,) vector, in the dict's order (that of `cell.params`)."""
    return np.concatenate([np.ravel(p) for p in params.values()])


def unflatten_params(cell: Cell | Stack, flat: Array) -> Params:
    """A flat (P,) vector, ordered like `cell.params`, as a dict of arrays in the parameters' shapes."""
    out, off = {}, 0
    for name, shape in cell.param_shapes().items():
        size = int(np.prod(shape))
        out[name] = flat[off : off + size].reshape(shape)
        off += size
    return out


def check_param_tangents(model: Cell | Stack, tangents: Mapping[str, ArrayLike] | None) -> Params:
    """Validate a dict of parameter tangents (any subset of `model.params` keys; missing means zero)."""
    if tangents is None:
        return {}
    owner = "net" if isinstance(model, Stack) else "cell"
    if not isinstance(tangents, dict):
        raise ValueError(f"tangents must be a dict keyed like {owner}.params, got {type(tangents).__name__}")
    shapes = model.param_shapes()
    unknown = set(tangents) - set(shapes)
    if unknown:
        raise ValueError(f"unknown parameter tangents {sorted(unknown)}; expected keys among {sorted(shapes)}")
    return {name: check_array(f"tangents[{name!r}]", value, shapes[name], model.dtype)
            for name, value in tangents.items()}


# ----------------------------------------------------------------- loss gradients, step by step
def step_loss_gradients(cell: Cell, dhs: ArrayLike | Callable[[int, Array], ArrayLike], T: int, N: int
                        ) -> Callable[[int, Array], Array]:
    """dhs as a function (t, h_t) -> dL_t/dh_t (N, H), checked.

    dhs: an array (T, N, H), or, to learn online, a callable (t, h_t) -> (N, H) asked for step t's
    gradient right after h_t is computed (it gets a copy of h_t).
    """
    H = cell.output_size
    if not callable(dhs):
        dhs = check_array("dhs", dhs, (T, N, H), cell.dtype, names=("T", "N", "H"))
        return lambda t, h: dhs[t]
    return lambda t, h: check_array(f"dhs({t}, h_t)", dhs(t, h.copy()), (N, H), cell.dtype, names=("N", "H"))


# ----------------------------------------------------------------- the affine projections' tangents
def affine_tangents(cell: Cell, cache: StepCache, x_dot: Array | None, h_prev_dot: Array,
                    params_dot: Params) -> tuple[Array, Array]:
    """Tangents of a_x and a_h for tangents on the input, h_prev and the parameters (missing: zero).

        a_x_dot = x_dot W_ih^T + x W_ih_dot^T + b_ih_dot
        a_h_dot = h_prev_dot W_hh^T + h_prev W_hh_dot^T + b_hh_dot      (product rule on each)

    x_dot may be None (inputs held fixed). Returns (a_x_dot, a_h_dot), each (..., N, G*H).
    """
    p = cell.params
    if x_dot is None:
        a_x_dot = np.zeros((len(cache.x), cell.gates * cell.hidden_size), cell.dtype)
    else:
        a_x_dot = x_dot @ p["weight_ih"].T  # d/dx
    a_h_dot = h_prev_dot @ p["weight_hh"].T  # d/dh_prev
    if "weight_ih" in params_dot:
        a_x_dot = a_x_dot + cache.x @ params_dot["weight_ih"].T  # d/dW_ih
    if "weight_hh" in params_dot:
        a_h_dot = a_h_dot + cache.h_prev @ params_dot["weight_hh"].T  # d/dW_hh
    if "bias_ih" in params_dot:
        a_x_dot = a_x_dot + params_dot["bias_ih"]  # d/db_ih
    if "bias_hh" in params_dot:
        a_h_dot = a_h_dot + params_dot["bias_hh"]  # d/db_hh
    return a_x_dot, a_h_dot


def parameter_basis_tangents(cell: Cell, cache: StepCache) -> tuple[Array, Array]:
    """`affine_tangents` for every unit tangent on the flattened parameters at once (RTRL's immediate
    term), the state's tangent left out. Returns (a_x_dot, a_h_dot), each (P, N, G*H).

    Directions are ordered like `cell.params` (weight_ih, weight_hh, bias_ih, bias_hh), each flattened
    in C order: direction (g, d) of W_ih only moves a_x[:, g], by x[:, d].
    """
    GH, D, H = cell.gates * cell.hidden_size, cell.input_size, cell.hidden_size
    N = cache.x.shape[0]
    P = GH * (D + H + 2)
    a_x_dot = np.zeros((P, N, GH), cell.dtype)
    a_h_dot = np.zeros((P, N, GH), cell.dtype)
    g = np.arange(GH)
    a_x_dot[: GH * D].reshape(GH, D, N, GH)[g, :, :, g] = cache.x.T  # d a_x[:, g] / d W_ih[g, d] = x[:, d]
    off = GH * D
    a_h_dot[off : off + GH * H].reshape(GH, H, N, GH)[g, :, :, g] = cache.h_prev.T  # d a_h / d W_hh = h_prev
    off += GH * H
    a_x_dot[off : off + GH].reshape(GH, N, GH)[g, :, g] = 1  # d a_x / d b_ih = 1
    off += GH
    a_h_dot[off : off + GH].reshape(GH, N, GH)[g, :, g] = 1  # d a_h / d b_hh = 1
    return a_x_dot, a_h_dot


def parameter_gradients(xs: Array, h_prevs: Array, da_x: Array, da_h: Array) -> Params:
    """The weight gradients from the projections' gradients, summed over time and batch:
    dW_ih = sum da_x^T x, dW_hh = sum da_h^T h_prev, db_ih = sum da_x, db_hh = sum da_h.

    xs (T, N, D), h_prevs (T, N, H), da_x and da_h (T, N, G*H).
    """
    gx = da_x.reshape(-1, da_x.shape[-1])
    gh = da_h.reshape(-1, da_h.shape[-1])
    return {"weight_ih": gx.T @ xs.reshape(len(gx), -1), "weight_hh": gh.T @ h_prevs.reshape(len(gh), -1),
            "bias_ih": gx.sum(axis=0), "bias_hh": gh.sum(axis=0)}


def parameter_gradients_tangent(xs: Array, h_prevs: Array, h_prevs_dot: Array, da_x: Array, da_x_dot: Array,
                                da_h: Array, da_h_dot: Array) -> Params:
    """Tangent of `parameter_gradients` by the product rule (each weight gradient is bilinear),
    inputs held fixed. All arguments (T, N, ...) as there."""
    grads = parameter_gradients(xs, h_prevs, da_x_dot, da_h_dot)  # d/d(da)
    gh = da_h.reshape(-1, da_h.shape[-1])
    grads["weight_hh"] += gh.T @ h_prevs_dot.reshape(len(gh), -1)  # d/dh_prev
    return grads
