"""Read vanishing and exploding gradients off a forward pass: Jacobian products through time, the
quantities theory reads off the recurrent matrix, and the Lyapunov spectrum of the dynamics.

The state s_t is what the cell carries from step to step: h_t for RNN and GRU, the concatenation
(h_t, c_t) for LSTM (size S = H, or 2H for LSTM). The step Jacobian is J_t = ds_t / ds_{t-1} (S, S),
and a gradient that flows back from step T to step t is multiplied by the product

    ds_T / ds_t = J_T J_{T-1} ... J_{t+1}.

Everything here is built from the cell's vector-Jacobian step (`bptt.core.step.state_vjp`: the
fast path the reverse sweep runs, or, for a cell without one, its `step_backward`): feeding it a
vector v (dL/ds_t) returns v J_t, the action of the step Jacobian on a row vector.
So the products are accumulated row by row (R <- R J_t), never as a stack of T matrices, and the
step Jacobian itself is formed only when asked for (Lyapunov exponents need J_t Q).

Which Jacobian for LSTM: `part="state"` (the default) is the full (h, c) Jacobian, 2H x 2H. It is the
one that composes under the chain rule (the h -> h blocks alone do not multiply into the h -> h block
of the product, because most long-range gradient travels through c), and it is the one whose
Lyapunov exponents describe the dynamics. `part="h"` gives d h_T / d h_t (c_t held fixed), the
h -> h block of the full product: exactly the factor between a loss on h_T and dL/dh_t, i.e. what
`Gradients.dh_norms` sees. For RNN and GRU the two are the same.

Time is indexed like `hs`: t = 0 .. T-1 is the output of step t, and the product at t = T-1 is the
identity. Letters: T time, N batch, H hidden size, S state size, K rows carried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Mapping, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from .sequence import CellContract, CompositeModel
from .step import state_vjp
from .types import Array, ModelTape, StepCache
from .unroll import Tape, check_tape

if TYPE_CHECKING:
    from ..cells.stack import Stack, StackTape

PARTS = ("state", "h")


def state_size(cell: CellContract | CompositeModel) -> int:
    """S: H for RNN and GRU, 2H for LSTM's (h, c) (P + H with projections); for a Stack, every
    layer's state side by side."""
    return cell.state_size if isinstance(cell, CompositeModel) else sum(cell.state_sizes)


def _check_part(part: str, cell: CellContract | CompositeModel | None = None) -> None:
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if part == "h" and isinstance(cell, CompositeModel):
        raise ValueError('part="h" is for one cell; a Stack\'s products are of its whole state (part="state")')


def _check(cell: CellContract | CompositeModel, tape: Tape | ModelTape) -> None:
    if not isinstance(cell, CompositeModel):
        check_tape(cell, tape)


def pull_back(cell: CellContract | CompositeModel, tape: Tape | ModelTape, t: int, rows: Array) -> Array:
    """rows (N, K, S) -> rows J_t for step t of `tape`: one cell's step, or a Stack's whole step."""
    if isinstance(cell, CompositeModel):
        return cell.step_vjp(tape, t, rows)
    return step_vjp(cell, tape.step(t), rows)


# ----------------------------------------------------------------- the action of one step Jacobian
def step_vjp(cell: CellContract, cache: StepCache, rows: Array) -> Array:
    """rows (N, K, S) of vectors v, one set per sequence -> (N, K, S) v J_t, with J_t = ds_t/ds_{t-1}.

    `cache` is one step's cache (e.g. `tape.step(t)`); its batch (the first axis of every field) is
    repeated K times so that every row runs through the vector-Jacobian step as if it were a
    sequence of its own.
    """
    N, K, S = rows.shape
    tiled = type(cache)(*(np.repeat(field, K, axis=0) for field in cache))
    flat = rows.reshape(N * K, S)
    bounds = np.cumsum((0,) + tuple(cell.state_sizes))
    dstate = tuple(np.ascontiguousarray(flat[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    dprev = state_vjp(cell, tiled, dstate)
    return np.concatenate(dprev, axis=1).reshape(N, K, S)


def step_jacobians(cell: CellContract, cache: StepCache) -> Array:
    """J_t = ds_t / ds_{t-1} for every sequence of one step's cache: (N, S, S), row i = e_i J_t."""
    N, S = len(cache[0]), state_size(cell)
    eye = np.broadcast_to(np.eye(S, dtype=cell.dtype), (N, S, S))
    return step_vjp(cell, cache, np.ascontiguousarray(eye))


# ----------------------------------------------------------------- products through time
def iter_jacobian_products(cell: CellContract | CompositeModel, tape: Tape | ModelTape,
                           part: str = "state") -> Iterator[tuple[int, Array]]:
    """Yield (t, P_t) for t = T-1 down to 0, with P_t = d s_{T-1} / d s_t (N, S, S) for part="state"
    or d h_{T-1} / d h_t (N, H, H) for part="h" (LSTM; the same as "state" for RNN and GRU).

    One (N, K, S) block of rows is carried back through the steps; nothing of size T is stored.
    """
    _check(cell, tape)
    _check_part(part, cell)
    T, N = len(tape), tape.batch_size
    S, H = state_size(cell), cell.output_size
    K = S if part == "state" else H
    rows = np.zeros((N, K, S), cell.dtype)
    rows[:, np.arange(K), np.arange(K)] = 1.0  # the identity, or its h rows [I_H, 0]
    for t in range(T - 1, -1, -1):
        yield t, rows[:, :, :K]
        if t > 0:
            rows = pull_back(cell, tape, t, rows)  # rows <- rows J_t: back past step t


class JacobianNorms(NamedTuple):
    """Norms of the Jacobian products, indexed like hs. spectral, frobenius: (T, N)."""

    spectral: Array
    frobenius: Array


def jacobian_norms(cell: CellContract | CompositeModel, tape: Tape | ModelTape, part: str = "state") -> JacobianNorms:
    """||d s_{T-1} / d s_t|| for every t and sequence, spectral (largest singular value) and Frobenius.

    See the module docstring for `part`. The spectral norm takes one small SVD (S x S) per (t, n).
    """
    _check(cell, tape)
    T, N = len(tape), tape.batch_size
    spectral = np.empty((T, N))
    frobenius = np.empty((T, N))
    for t, product in iter_jacobian_products(cell, tape, part):
        frobenius[t] = np.sqrt(np.einsum("nij,nij->n", product, product))
        spectral[t] = np.linalg.svd(product, compute_uv=False)[:, 0]
    return JacobianNorms(spectral, frobenius)


# ----------------------------------------------------------------- what theory reads off W_hh
class RecurrentBound(NamedTuple):
    """One square recurrent block W (H, H) and the bound of Pascanu et al. 2013.

    With ``|act'| <= gamma``, every step Jacobian has norm <= gamma * lambda_1, so lambda_1 < 1/gamma is
    sufficient for the gradients to vanish and lambda_1 > 1/gamma is necessary for them to explode.
    """

    name: str
    spectral_radius: float  # max |eigenvalue|
    lambda_1: float  # largest singular value
    gamma: float
    bound: float  # 1 / gamma

    @property
    def vanishing_guaranteed(self) -> bool:
        return self.lambda_1 < self.bound


def recurrent_bound(weight: ArrayLike, gamma: float = 1.0, name: str = "W_hh") -> RecurrentBound:
    """Spectral radius, largest singular value and 1/gamma for a square matrix (H, H)."""
    weight = np.asarray(weight, np.float64)
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
        raise ValueError(f"weight must be a square matrix (H, H), got shape {weight.shape}")
    if not np.isfinite(weight).all():
        raise ValueError("weight contains NaN or infinite values")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma!r}")
    radius = float(np.max(np.abs(np.linalg.eigvals(weight))))
    lambda_1 = float(np.linalg.svd(weight, compute_uv=False)[0])
    return RecurrentBound(name, radius, lambda_1, float(gamma), 1.0 / gamma)


def recurrent_bounds(cell: CellContract) -> list[RecurrentBound]:
    """`recurrent_bound` for each gate's H x H block of cell.params["weight_hh"], in PyTorch's order.

    The theorem is stated for the RNN; for LSTM and GRU each block's numbers say how strongly that
    gate's pre-activation feeds back, not a bound on the whole step Jacobian. Gamma is each gate's
    `cell.gate_slope_bounds` entry: 1 for tanh, 1/4 for sigmoid (Pascanu et al. 2013); 1 for every
    gate of a cell that gives none (a bound for tanh, sigmoid and relu alike).
    """
    H, W = cell.hidden_size, cell.params["weight_hh"]
    slopes = cell.gate_slope_bounds or (1.0,) * len(cell.gate_names)
    return [
        recurrent_bound(W[k * H : (k + 1) * H], gamma, name=f"W_h{gate}")
        for k, (gate, gamma) in enumerate(zip(cell.gate_names, slopes))
    ]


# ----------------------------------------------------------------- Lyapunov spectrum
def lyapunov_spectrum(cell: CellContract | CompositeModel, tape: Tape | ModelTape, warmup: int = 0) -> Array:
    """Lyapunov exponents (N, S) of the forward dynamics along each sequence of `tape`, sorted from
    largest to smallest, in nats per step.

    QR re-orthonormalisation: Q_0 = I, then J_t Q_{t-1} = Q_t R_t at every step, and the exponents are
    the averages of ``log |diag R_t|`` over the steps after the first `warmup` (which only align Q).
    The largest one is the rate at which ||d s_T / d s_t|| grows (> 0) or shrinks (< 0) per step.
    A step Jacobian with a zero direction (e.g. dead relu units) gives -inf.
    """
    _check(cell, tape)
    T, N = len(tape), tape.batch_size
    if isinstance(warmup, bool) or not isinstance(warmup, (int, np.integer)) or not 0 <= warmup < T:
        raise ValueError(f"warmup must be an integer in [0, T-1={T - 1}], got {warmup!r}")
    S = state_size(cell)
    Q = np.broadcast_to(np.eye(S), (N, S, S)).copy()
    log_growth = np.zeros((N, S))
    with np.errstate(divide="ignore"):
        for t in range(T):
            J = pull_back(cell, tape, t, np.ascontiguousarray(np.broadcast_to(np.eye(S, dtype=Q.dtype), (N, S, S))))
            Q, R = np.linalg.qr(J @ Q)
            if t >= warmup:
                log_growth += np.log(np.abs(np.diagonal(R, axis1=1, axis2=2)))
    return -np.sort(-log_growth / (T - warmup), axis=1)


# ----------------------------------------------------------------- truncation bias
class GradientAgreement(NamedTuple):
    """How well an approximate gradient g_k matches the exact one g, over all parameters at once."""

    cosine: float  # <g_k, g> / (||g_k|| ||g||); 1 means the same direction
    relative_error: float  # ||g_k - g|| / ||g||


def gradient_agreement(approximate: Mapping[str, ArrayLike], exact: Mapping[str, ArrayLike]) -> GradientAgreement:
    """Compare two gradients keyed like `cell.params` (e.g. TBPTT(k, k) against full BPTT), with every
    parameter flattened into one vector."""
    if set(approximate) != set(exact):
        raise ValueError(f"gradients must have the same keys, got {sorted(approximate)} and {sorted(exact)}")
    a_parts, e_parts = [], []
    for name in sorted(exact):
        ga, ge = np.asarray(approximate[name], np.float64), np.asarray(exact[name], np.float64)
        if ga.shape != ge.shape:
            raise ValueError(f"gradient {name!r} has shape {ga.shape} here and {ge.shape} in the exact one")
        a_parts.append(ga.ravel())
        e_parts.append(ge.ravel())
    a, e = np.concatenate(a_parts), np.concatenate(e_parts)
    norm_a, norm_e = np.linalg.norm(a), np.linalg.norm(e)
    if norm_e == 0:
        raise ValueError("the exact gradient is zero: cosine and relative error are undefined")
    cosine = float(a @ e / (norm_a * norm_e)) if norm_a > 0 else 0.0
    return GradientAgreement(cosine, float(np.linalg.norm(a - e) / norm_e))


def layer_jacobian_norms(net: Stack, tape: StackTape[Tape], part: str = "state") -> list[JacobianNorms]:
    """`jacobian_norms` of each layer of a Stack along its own recurrence (its inputs held fixed):
    one JacobianNorms (T, N) per layer, forward direction. Next to the whole stack's products, they
    say whether a gradient dies along time within a layer or on its way down the stack."""
    return [jacobian_norms(row[0], tape.layers[layer][0], part) for layer, row in enumerate(net.layer_cells())]
