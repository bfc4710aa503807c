"""GRU with PyTorch's gate order (r, z, n) and equations (nn.GRU, one layer):

    a_x = x_t W_ih^T + b_ih,   a_h = h_{t-1} W_hh^T + b_hh       (each split into r, z, n parts)
    r = sigmoid(a_x,r + a_h,r),   z = sigmoid(a_x,z + a_h,z)
    n = tanh(a_x,n + r * a_h,n)       the reset gate multiplies the recurrent term, bias included
    h_t = (1 - z) * n + z * h_{t-1}

The step pair below is the whole chain rule; `gru_fast.py` computes the same thing faster.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from ..core.types import Array, Params, Parts, State
from .cell import Cell, sigmoid
from .gru_fast import GRUSequence


class GRUCache(NamedTuple):
    """What one GRU step keeps for its backward.

    `GRU.step_forward` returns it and `step_backward` consumes it; `tape.step(t)` is step t's.
    With tangents (forward mode) the same NamedTuple holds every field's tangent.

    Attributes
    ----------
    x : ndarray, shape (N, D)
        The step's input.
    h_prev : ndarray, shape (N, H)
        The state before the step.
    gates : ndarray, shape (N, 3H)
        The activated gates r, z, n, in PyTorch's order.
    hn : ndarray, shape (N, H)
        h_prev W_hn^T + b_hn, before the reset gate scales it; dL/dr needs it.
    h : ndarray, shape (N, H)
        The state after the step.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(3, 4, seed=0)
    >>> h, cache = cell.step_forward(np.ones((2, 3)), cell.initial_state(2))
    >>> cache.gates.shape, cache.hn.shape
    ((2, 12), (2, 4))
    """

    x: Array
    h_prev: Array
    gates: Array
    hn: Array
    h: Array


def split_gates(gates: Array) -> tuple[Array, Array, Array]:
    """(..., 3H) -> r, z, n, each (..., H) (views)."""
    H = gates.shape[-1] // 3
    return gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H :]


class GRU(Cell):
    """GRU, one layer, as PyTorch's nn.GRU, gates in its order r, z, n.

    Run it over a sequence with `bptt.forward` / `bptt.backward`, or one step at a time with
    `step_forward` / `step_backward` (the plain chain rule, below in this file). The state is h (N, H).

    Parameters
    ----------
    input_size : int
        D, the size of each input x_t.
    hidden_size : int
        H, the size of the state.
    seed : int or numpy.random.SeedSequence, optional
        Seeds the initial weights, drawn like PyTorch's: uniform in +-1/sqrt(H).
    dtype : float64 (default) or float32
        The dtype of the weights and of everything computed.

    Attributes
    ----------
    params : dict of ndarray
        weight_ih (3H, D), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,): PyTorch's names and
        shapes without the `_l0` suffix; `cell.load_params(module.state_dict())` loads its weights.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell = bptt.GRU(input_size=3, hidden_size=4, seed=0)
    >>> h, cache = cell.step_forward(np.ones((2, 3)), cell.initial_state(2))
    >>> dx, dh_prev, grads = cell.step_backward(np.ones((2, 4)), cache)
    >>> cache._fields
    ('x', 'h_prev', 'gates', 'hn', 'h')
    """

    Cache = GRUCache
    Sequence = GRUSequence
    gate_names = ("r", "z", "n")
    gate_slope_bounds = (0.25, 0.25, 1.0)  # sigmoid' <= 1/4, tanh' <= 1

    def step_forward(self, x: ArrayLike, state: State) -> tuple[Array, GRUCache]:
        """One timestep. x (N, D), state h_prev (N, H) -> (h (N, H), GRUCache)."""
        x, (h_prev,) = self.check_step(x, state)
        p = self.params
        ax_r, ax_z, ax_n = split_gates(x @ p["weight_ih"].T + p["bias_ih"])  # each (N, H)
        ah_r, ah_z, hn = split_gates(h_prev @ p["weight_hh"].T + p["bias_hh"])
        r = sigmoid(ax_r + ah_r)
        z = sigmoid(ax_z + ah_z)
        n = np.tanh(ax_n + r * hn)
        h = (1 - z) * n + z * h_prev
        return h, GRUCache(x, h_prev, np.concatenate([r, z, n], axis=1), hn, h)

    def step_backward(self, dstate: State, cache: GRUCache) -> tuple[Array, Array, Params]:
        """Backward of `step_forward`. dstate: dL/dh (N, H) -> (dx (N, D), dL/dh_prev (N, H), grads)."""
        (dh,) = self.check_step_gradient(dstate, cache)
        x, h_prev, gates, hn, h = cache
        r, z, n = split_gates(gates)
        dn, dz, dh_prev = dh * (1 - z), dh * (h_prev - n), dh * z  # h = (1 - z) * n + z * h_prev
        dan = dn * (1 - n * n)  # backprop through tanh: tanh' = 1 - n^2
        dr, dhn = dan * hn, dan * r  # n = tanh(a_x,n + r * hn)
        dar = dr * r * (1 - r)  # backprop through sigmoid: sigmoid' = s (1 - s)
        daz = dz * z * (1 - z)
        da_x = np.concatenate([dar, daz, dan], axis=1)  # a_x enters r, z and n directly
        da_h = np.concatenate([dar, daz, dhn], axis=1)  # a_h enters r and z directly, n through r * hn
        p = self.params
        dx = da_x @ p["weight_ih"]  # a_x = x W_ih^T + b_ih
        dh_prev = dh_prev + da_h @ p["weight_hh"]  # a_h = h_prev W_hh^T + b_hh
        grads = {"weight_ih": da_x.T @ x, "weight_hh": da_h.T @ h_prev,
                 "bias_ih": da_x.sum(axis=0), "bias_hh": da_h.sum(axis=0)}
        return dx, dh_prev, grads

    # ----------------------------------------------------------------- forward-mode rules
    def step_tangent(self, cache: GRUCache, x_dot: Array | None, state_prev_dot: Parts, a_x_dot: Array, a_h_dot: Array,
                     params_dot: Params | None = None) -> GRUCache:
        (h_prev_dot,) = state_prev_dot
        r, z, n = split_gates(cache.gates)
        ax_r, ax_z, ax_n = split_gates(a_x_dot)
        ah_r, ah_z, hn_dot = split_gates(a_h_dot)  # hn = a_h,n
        r_dot = r * (1 - r) * (ax_r + ah_r)  # sigmoid' = s (1 - s)
        z_dot = z * (1 - z) * (ax_z + ah_z)
        n_dot = (1 - n * n) * (ax_n + r_dot * cache.hn + r * hn_dot)  # tanh' = 1 - n^2, product rule on r * hn
        h_dot = (1 - z) * n_dot + z_dot * (cache.h_prev - n) + z * h_prev_dot  # h = (1 - z) n + z h_prev
        gates_dot = np.concatenate([r_dot, z_dot, n_dot], axis=-1)
        return GRUCache(x_dot,  # type: ignore[arg-type]  # a tangent's x is None when the inputs are held fixed
                        h_prev_dot, gates_dot, hn_dot, h_dot)

    def backward_tangent(self, cache: GRUCache, cache_dot: GRUCache, dstate: Parts, dstate_dot: Parts, da_x: Array,
                         da_h: Array, params_dot: Params) -> tuple[Array, Array, Parts, Params]:
        weight_hh_dot = params_dot.get("weight_hh", np.zeros_like(self.params["weight_hh"]))
        (dh,), (dh_dot,) = dstate, dstate_dot
        r, z, n = split_gates(cache.gates)
        r_dot, z_dot, n_dot = split_gates(cache_dot.gates)
        h_prev, h_prev_dot, hn, hn_dot = cache.h_prev, cache_dot.h_prev, cache.hn, cache_dot.hn
        dan = split_gates(da_x)[2]
        # dan = dh (1 - z) (1 - n^2); d(1 - z) = -z_dot, d(1 - n^2) = -2 n n_dot
        dan_dot = (dh_dot * (1 - z) - dh * z_dot) * (1 - n * n) - 2 * dh * (1 - z) * n * n_dot
        # daz = dh (h_prev - n) z (1 - z); d(z (1 - z)) = (1 - 2 z) z_dot
        daz_dot = ((dh_dot * (h_prev - n) + dh * (h_prev_dot - n_dot)) * z * (1 - z)
                   + dh * (h_prev - n) * (1 - 2 * z) * z_dot)
        # dar = dan hn r (1 - r)
        dar_dot = (dan_dot * hn + dan * hn_dot) * r * (1 - r) + dan * hn * (1 - 2 * r) * r_dot
        da_x_dot = np.concatenate([dar_dot, daz_dot, dan_dot], axis=-1)
        da_h_dot = np.concatenate([dar_dot, daz_dot, dan_dot * r + dan * r_dot], axis=-1)  # da_h,n = dan r
        # dh_prev = da_h W_hh + dh z: product rule on both terms
        dh_prev_dot = da_h_dot @ self.params["weight_hh"] + da_h @ weight_hh_dot + dh_dot * z + dh * z_dot
        return da_x_dot, da_h_dot, (dh_prev_dot,), {}
