"""Truncated backpropagation through time, TBPTT(k1, k2) in Williams and Peng's (1990) sense.

A sequence of T steps is processed in windows. Every k1 steps there is one update; its gradient
comes from a reverse sweep over the last k2 >= k1 steps, and only the losses of the last k1 steps
(the ones not yet used by an earlier update) are injected. The state is carried from window to
window, but no gradient flows into a window's start state: nothing crosses back more than k2 steps.

    steps   0 ............................................. T-1
    update  [ start = max(0, end - k2) ...... loss_from = end - k1 ... end )

Special cases, same code: k1 = k2 = T is full BPTT (one window); k1 = k2 = k is the usual
"chunks of k" truncation. With k2 > k1 the window's forward is re-run from the state stored at its
start (with the current weights), so windows overlap by k2 - k1 steps.

The model is a cell plus an optional readout (`bptt.Linear`); the loss is averaged over the
(time, sequence) entries selected by a boolean mask. Parameters and gradients are flat dicts keyed
"cell.<name>" and "readout.<name>" (see `model_params`).

Letters: T time, N batch, D input size, H hidden size, O readout outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from ..cells.cell import Cell
from .checks import check_positive_int
from .readout import Linear
from .unroll import Tape, backward, forward

LossFn = Callable[[np.ndarray, np.ndarray], tuple]  # (pred (M, O), target (M, ...)) -> (mean loss, dL/dpred)


class NonFiniteError(FloatingPointError):
    """A NaN or infinity in the hidden states, the loss or a gradient. `what` names where."""

    def __init__(self, what: str, message: str):
        super().__init__(message)
        self.what = what


class Window(NamedTuple):
    """One update: steps [start, end) are unrolled, losses of steps [loss_from, end) are injected."""

    start: int
    loss_from: int
    end: int


@dataclass(frozen=True)
class TBPTT:
    """k1: steps between updates (losses injected per update); k2 >= k1: steps backpropagated."""

    k1: int
    k2: int

    def __post_init__(self):
        check_positive_int("k1", self.k1)
        check_positive_int("k2", self.k2)
        if self.k2 < self.k1:
            raise ValueError(f"TBPTT needs k2 >= k1 (backpropagate at least the new steps), got k1={self.k1}, k2={self.k2}")

    def windows(self, T: int) -> list[Window]:
        """The updates over a sequence of T steps, in order; the last one may hold fewer than k1 steps."""
        T = check_positive_int("T", T)
        out = []
        for loss_from in range(0, T, self.k1):
            end = min(loss_from + self.k1, T)
            out.append(Window(max(0, end - self.k2), loss_from, end))
        return out


def model_params(cell: Cell, readout: Linear | None) -> dict[str, np.ndarray]:
    """The live parameter arrays (not copies) keyed "cell.<name>" and "readout.<name>"."""
    params = {f"cell.{k}": v for k, v in cell.params.items()}
    if readout is not None:
        params.update({f"readout.{k}": v for k, v in readout.params.items()})
    return params


class WindowResult(NamedTuple):
    loss: float  # sum over the window's injected losses / normalizer
    count: int  # number of (time, sequence) entries whose loss was injected
    grads: dict  # keyed like model_params; zeros when count == 0
    dh_norms: np.ndarray  # (end - start,) norm over the batch of dL/dh_t inside the window
    tape: Tape  # the window's forward pass, for carrying the state


def window_gradients(
    cell: Cell,
    readout: Linear | None,
    loss_fn: LossFn,
    xs: np.ndarray,
    state0,
    targets: np.ndarray,
    loss_mask: np.ndarray,
    normalizer: float | None = None,
) -> WindowResult:
    """Forward over one window from state0 (treated as a constant), then the reverse sweep.

    xs (W, N, D) the window's inputs; state0 its start state (array or tuple, None for zeros);
    targets (W, N, ...) and loss_mask (W, N) bool: the loss is loss_fn over the entries where the
    mask is True, i.e. mean * count, divided by `normalizer` (None: count, so the loss is a mean).
    Without a readout the predictions are the hidden states themselves.
    Raises NonFiniteError if the hidden states or the loss are not finite.
    """
    hs, tape = forward(cell, xs, state0)
    if not np.isfinite(hs).all():
        raise NonFiniteError("hidden states", "the forward pass produced NaN or infinite hidden states")
    loss_mask = np.asarray(loss_mask, bool)
    if loss_mask.shape != hs.shape[:2]:
        raise ValueError(f"loss_mask must have shape (W, N)={hs.shape[:2]}, got {loss_mask.shape}")
    count = int(loss_mask.sum())
    dhs = np.zeros_like(hs)
    loss = 0.0
    readout_grads = {k: np.zeros_like(v) for k, v in readout.params.items()} if readout else {}
    if count:
        scale = count / (count if normalizer is None else normalizer)
        h_sel = hs[loss_mask]  # (M, H)
        pred, cache = (h_sel, None) if readout is None else readout.forward(h_sel)
        mean, dpred = loss_fn(pred, targets[loss_mask])
        if not np.isfinite(mean):
            raise NonFiniteError("loss", f"the loss is {mean}")
        if readout is None:
            dh_sel = dpred * scale
        else:
            dh_sel, readout_grads = readout.backward(dpred * scale, cache)
        loss = mean * scale
        if not np.isfinite(dh_sel).all():
            raise NonFiniteError("dL/dh", "the gradient reaching the hidden states is not finite")
        dhs[loss_mask] = dh_sel
    swept = backward(cell, tape, dhs)
    grads = {f"cell.{k}": v for k, v in swept.params.items()}
    grads.update({f"readout.{k}": v for k, v in readout_grads.items()})
    return WindowResult(loss, count, grads, swept.dh_norms, tape)


def state_at(cell: Cell, tape: Tape, state0, offset: int):
    """A copy of the state after `offset` steps of the window on `tape` (offset 0: its start state)."""
    return tape.state_at(offset)


class TBPTTGradient(NamedTuple):
    loss: float  # the mean loss over every masked entry of the batch
    grads: dict  # sum over windows of each window's gradient, keyed like model_params
    windows: list  # the Window of each update
    dh_norms: list  # per window, (end - start,) norms of dL/dh_t


def tbptt_gradient(
    cell: Cell,
    readout: Linear | None,
    loss_fn: LossFn,
    xs,
    targets,
    loss_mask,
    k1: int,
    k2: int,
    state0=None,
) -> TBPTTGradient:
    """The TBPTT(k1, k2) gradient of a batch of sequences at FIXED weights.

    cell, readout: the model (readout None: the loss applies to the hidden states directly).
    loss_fn: (pred (M, O), target (M, ...)) -> (mean loss, dL/dpred), e.g. bptt.mse or
        bptt.softmax_cross_entropy.
    xs (T, N, D) inputs; targets (T, N, ...) per-step targets; loss_mask (T, N) bool (True where a
        step's loss counts; a 1-D (T,) mask applies to every sequence).
    k1, k2: TBPTT(k1, k2), k2 >= k1; k1 = k2 = T gives the full BPTT gradient exactly.
    state0: the initial state (None: zeros).

    Returns TBPTTGradient(loss, grads, windows, dh_norms): grads is the sum of the per-window
    gradients, each window normalised by the total number of masked entries, so that with
    k1 = k2 = T it is the gradient of the mean loss and for any (k1, k2) the window losses add up to
    that mean loss. State is carried across windows with no gradient into any window's start state.
    It calls `window_gradients`, the function the trainer runs for each update.
    """
    plan = TBPTT(k1, k2)
    xs = cell.check_inputs(xs)
    T, N = xs.shape[:2]
    mask = _full_mask(loss_mask, T, N)
    total = max(int(mask.sum()), 1)
    params = model_params(cell, readout)
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    loss, norms, windows = 0.0, [], plan.windows(T)
    start_state = {0: state0}  # states stored at the steps where a later window starts
    for i, (start, loss_from, end) in enumerate(windows):
        window_mask = mask[start:end].copy()
        window_mask[: loss_from - start] = False  # only the new steps' losses
        result = window_gradients(
            cell, readout, loss_fn, xs[start:end], start_state[start], targets[start:end], window_mask, total
        )
        loss += result.loss
        for k, g in result.grads.items():
            grads[k] += g
        norms.append(result.dh_norms)
        if i + 1 < len(windows):
            next_start = windows[i + 1].start
            start_state[next_start] = state_at(cell, result.tape, start_state[start], next_start - start)
    return TBPTTGradient(loss, grads, windows, norms)


def _full_mask(loss_mask, T: int, N: int) -> np.ndarray:
    mask = np.asarray(loss_mask, bool)
    if mask.shape == (T,):
        mask = np.repeat(mask[:, None], N, axis=1)
    if mask.shape != (T, N):
        raise ValueError(f"loss_mask must have shape (T={T},) or (T={T}, N={N}), got {mask.shape}")
    return mask
