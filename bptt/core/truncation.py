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

`WindowWalk` is that walk over one batch, written once: the current window, its loss mask, and the
state carried to the next window's start. `tbptt_gradient` (all windows at fixed weights) and the
trainer (one update per window) both take it.

The model is a cell plus an optional readout (`bptt.Linear`); the loss is averaged over the
(time, sequence) entries selected by a boolean mask. Parameters and gradients are flat dicts keyed
"cell.<name>" and "readout.<name>" (see `model_params`).

Letters: T time, N batch, D input size, H hidden size, O readout outputs, W window length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .checks import check_positive_int
from .readout import Linear
from .results import Result
from .sequence import CellContract, CompositeModel
from .types import Array, IntArray, ModelTape, Params, State
from .unroll import Tape, backward, forward_window

LossFn = Callable[[Array, NDArray[Any]], tuple[float, Array]]  # (pred (M, O), target (M, ...)) -> (mean loss, dL/dpred)


class NonFiniteError(FloatingPointError):
    """A NaN or infinity in the hidden states, the loss or a gradient. `what` names where."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what


class Window(NamedTuple):
    """One update: steps [start, end) are unrolled, losses of steps [loss_from, end) are injected."""

    start: int
    loss_from: int
    end: int


@dataclass(frozen=True)
class TBPTT:
    """A truncation: an update every k1 steps, each backpropagating k2 >= k1 steps.

    Parameters
    ----------
    k1 : int
        Steps between updates: the new steps whose losses each update injects.
    k2 : int
        Steps each update backpropagates, k2 >= k1.

    Raises
    ------
    ValueError
        If k1 or k2 is not a positive integer, or k2 < k1.

    Examples
    --------
    >>> import bptt
    >>> bptt.TBPTT(k1=3, k2=5).windows(8)   # steps [start, end), losses from loss_from
    [Window(start=0, loss_from=0, end=3), Window(start=1, loss_from=3, end=6), Window(start=3, loss_from=6, end=8)]
    """

    k1: int
    k2: int

    def __post_init__(self) -> None:
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


def model_params(cell: CellContract | CompositeModel, readout: Linear | None) -> Params:
    """The live parameter arrays (not copies) keyed "cell.<name>" and "readout.<name>".

    Parameters
    ----------
    cell : Cell
    readout : Linear or None

    Returns
    -------
    dict of str to ndarray
        The arrays themselves: writing into them changes the model.
    """
    params = {f"cell.{k}": v for k, v in cell.params.items()}
    if readout is not None:
        params.update({f"readout.{k}": v for k, v in readout.params.items()})
    return params


@dataclass(frozen=True, repr=False)
class WindowResult(Result):
    """One window's loss and gradient (see `window_gradients`).

    Attributes
    ----------
    loss : float
        Sum of the window's injected losses divided by the normalizer.
    count : int
        Number of (time, sequence) entries whose loss was injected.
    params : dict of str to ndarray
        dL/dtheta keyed like `model_params`; zeros when count == 0.
    dh_norms : ndarray, shape (W,)
        Norm over the batch of dL/dh_t at each of the window's W = end - start steps.
    tape : Tape
        The window's forward pass, for carrying the state (`WindowWalk.advance`).
    """

    loss: float
    count: int
    params: Params
    dh_norms: Array
    tape: Tape | ModelTape


def window_gradients(
    cell: CellContract | CompositeModel,
    readout: Linear | None,
    loss_fn: LossFn,
    xs: Array,
    state0: State | None,
    targets: NDArray[Any],
    loss_mask: ArrayLike,
    normalizer: float | None = None,
    lengths: IntArray | None = None,
) -> WindowResult:
    """Forward over one window from state0 (treated as a constant), then the reverse sweep.

    Parameters
    ----------
    cell : Cell
        The recurrent cell.
    readout : Linear or None
        Maps hidden states to predictions; None: the predictions are the hidden states themselves.
    loss_fn : callable
        (pred (M, O), target (M, ...)) -> (mean loss, dL/dpred), e.g. `bptt.mse`.
    xs : ndarray, shape (W, N, D)
        The window's inputs.
    state0 : ndarray (N, H), tuple of them, or None
        The window's start state (None: zeros); no gradient flows into it.
    targets : ndarray, shape (W, N, ...)
        Per-step targets.
    loss_mask : ndarray of bool, shape (W, N)
        The entries whose loss is injected.
    normalizer : float, optional
        The loss is the sum over the masked entries divided by this (None: their count, a mean).
    lengths : ndarray of int, shape (N,), optional
        How many of the window's steps each sequence runs (0: it ended before the window and its
        state passes through); None: all of them.

    Returns
    -------
    WindowResult
        loss, count, params (the gradient), dh_norms and the window's tape.

    Raises
    ------
    ValueError
        If `loss_mask` does not have shape (W, N).
    NonFiniteError
        If the hidden states, the loss or dL/dh are not finite.
    """
    hs, tape = forward_window(cell, xs, state0, lengths=lengths)
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
            # with a readout, cache is what its forward returned
            dh_sel, readout_grads = readout.backward(dpred * scale, cast(Array, cache))
        loss = mean * scale
        if not np.isfinite(dh_sel).all():
            raise NonFiniteError("dL/dh", "the gradient reaching the hidden states is not finite")
        dhs[loss_mask] = dh_sel
    swept = backward(cell, tape, dhs)
    grads = {f"cell.{k}": v for k, v in swept.params.items()}
    grads.update({f"readout.{k}": v for k, v in readout_grads.items()})
    return WindowResult(loss, count, grads, swept.dh_norms, tape)


class WindowWalk:
    """The TBPTT windows of one batch, walked in order, with the state carried between them.

    At each position `window` is the current Window, `state` the state at its start (None: zeros)
    and `loss_mask()` the entries whose loss its update injects: only the k1 new steps. Once the
    window's forward pass is done, `advance(tape)` moves on and takes the next window's start state
    from that tape (`tape.state_at`, a copy, so the tape can be freed). The position (`index` and
    `state`) is what a training checkpoint stores.

    Parameters
    ----------
    plan : TBPTT
        The truncation (k1, k2).
    loss_mask : ndarray of bool, shape (T, N)
        The entries of the batch whose loss counts.
    state : ndarray (N, H), tuple of them, or None
        The state at the start of window `index` (None: zeros).
    index : int
        The window to start at: 0, or a later one when resuming from a checkpoint.

    Raises
    ------
    ValueError
        If `loss_mask` is not 2-D, or `index` is not one of the batch's windows.
    """

    def __init__(self, plan: TBPTT, loss_mask: ArrayLike, state: State | None = None, index: int = 0) -> None:
        self.mask = np.asarray(loss_mask, bool)
        if self.mask.ndim != 2:
            raise ValueError(f"loss_mask must have shape (T, N), got {self.mask.shape}")
        self.plan = plan
        self.windows = plan.windows(self.mask.shape[0])
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(self.windows):
            raise ValueError(
                f"window index must lie in [0, {len(self.windows)}): a batch of T={self.mask.shape[0]} steps "
                f"has {len(self.windows)} windows under TBPTT({plan.k1}, {plan.k2}); got {index!r}"
            )
        self.index = int(index)
        self.state = state

    @property
    def done(self) -> bool:
        """True once every window has been walked."""
        return self.index == len(self.windows)

    @property
    def window(self) -> Window:
        """The current window: steps [start, end) unrolled, losses of [loss_from, end) injected."""
        return self.windows[self.index]

    def loss_mask(self) -> NDArray[np.bool_]:
        """(W, N) bool: the batch's mask on the current window's steps, False before loss_from."""
        start, loss_from, end = self.window
        mask = self.mask[start:end].copy()
        mask[: loss_from - start] = False  # an earlier window injected these losses already
        return mask

    def advance(self, tape: Tape | ModelTape) -> None:
        """Move to the next window, carrying the state to its start from the current window's tape.

        Parameters
        ----------
        tape : Tape
            The forward pass over the current window's end - start steps, run from `state`.

        Raises
        ------
        ValueError
            If the walk is done, or the tape does not cover the current window.
        """
        if self.done:
            raise ValueError("the walk is done: every window of the batch has been walked")
        start, _, end = self.window
        if len(tape) != end - start:
            raise ValueError(f"tape must cover the window's {end - start} steps [{start}, {end}), got {len(tape)}")
        self.index += 1
        # the next window starts inside this one (k2 >= k1), at most at its end
        self.state = None if self.done else tape.state_at(self.window.start - start)


@dataclass(frozen=True, repr=False)
class TBPTTGradient(Result):
    """The TBPTT(k1, k2) gradient of a batch at fixed weights (see `tbptt_gradient`).

    Attributes
    ----------
    loss : float
        The mean loss over every masked entry of the batch.
    params : dict of str to ndarray
        Sum over the windows of each window's gradient, keyed like `model_params`.
    windows : list of Window
        The window of each update, in order.
    dh_norms : list of ndarray
        Per window, shape (end - start,): norms over the batch of dL/dh_t.
    """

    loss: float
    params: Params
    windows: list[Window]
    dh_norms: list[Array]


def tbptt_gradient(
    cell: CellContract | CompositeModel,
    readout: Linear | None,
    loss_fn: LossFn,
    xs: ArrayLike,
    targets: NDArray[Any],
    loss_mask: ArrayLike,
    k1: int,
    k2: int,
    state0: State | None = None,
) -> TBPTTGradient:
    """The TBPTT(k1, k2) gradient of a batch of sequences at FIXED weights.

    The sum of the per-window gradients (`window_gradients`, what the trainer runs for each update),
    each window's loss divided by the total number of masked entries, so that with k1 = k2 = T it is
    the gradient of the mean loss and for any (k1, k2) the window losses add up to that mean loss.
    The state is carried across windows by a `WindowWalk`, with no gradient into any window's start
    state.

    Parameters
    ----------
    cell : Cell
        The recurrent cell.
    readout : Linear or None
        Maps hidden states to predictions; None: the loss applies to the hidden states directly.
    loss_fn : callable
        (pred (M, O), target (M, ...)) -> (mean loss, dL/dpred), e.g. `bptt.mse` or
        `bptt.softmax_cross_entropy`.
    xs : ndarray, shape (T, N, D)
        Inputs.
    targets : ndarray, shape (T, N, ...)
        Per-step targets.
    loss_mask : ndarray of bool, shape (T, N) or (T,)
        True where a step's loss counts; a (T,) mask applies to every sequence.
    k1, k2 : int
        TBPTT(k1, k2), k2 >= k1; k1 = k2 = T gives the full BPTT gradient exactly.
    state0 : ndarray (N, H), tuple of them, or None
        The initial state (None: zeros).

    Returns
    -------
    TBPTTGradient
        loss, params (the gradient), windows and dh_norms.

    Raises
    ------
    ValueError
        On bad k1, k2, inputs or a mask of the wrong shape, or a bidirectional model cut into windows.
    NonFiniteError
        If a window's hidden states, loss or dL/dh are not finite.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell, readout = bptt.GRU(2, 4, seed=0), bptt.Linear(4, 1, seed=0)
    >>> rng = np.random.default_rng(0)
    >>> xs, targets = rng.standard_normal((12, 3, 2)), rng.standard_normal((12, 3, 1))
    >>> g = bptt.tbptt_gradient(cell, readout, bptt.mse, xs, targets, np.ones((12, 3), bool), k1=4, k2=6)
    >>> len(g.windows), g.params["cell.weight_hh"].shape, [len(n) for n in g.dh_norms]
    (3, (12, 4), [4, 6, 6])
    """
    plan = TBPTT(k1, k2)
    xs = cell.check_inputs(xs)
    T, N = xs.shape[:2]
    check_truncatable(cell, plan, T)
    walk = WindowWalk(plan, _full_mask(loss_mask, T, N), state0)
    total = max(int(walk.mask.sum()), 1)
    grads = {k: np.zeros_like(v) for k, v in model_params(cell, readout).items()}
    loss, norms = 0.0, []
    while not walk.done:
        start, _, end = walk.window
        result = window_gradients(
            cell, readout, loss_fn, xs[start:end], walk.state, targets[start:end], walk.loss_mask(), total
        )
        loss += result.loss
        for k, g in result.params.items():
            grads[k] += g
        norms.append(result.dh_norms)
        walk.advance(result.tape)
    return TBPTTGradient(loss, grads, walk.windows, norms)


def check_truncatable(cell: CellContract | CompositeModel, plan: TBPTT, T: int) -> None:
    """Raise ValueError if `plan` cuts a sequence of T steps that a bidirectional model reads whole."""
    if getattr(cell, "bidirectional", False) and len(plan.windows(T)) > 1:
        raise ValueError(f"a bidirectional model cannot be truncated: its reverse direction needs the "
                         f"whole sequence; TBPTT({plan.k1}, {plan.k2}) cuts T={T} steps into "
                         f"{len(plan.windows(T))} windows (use k1 = k2 = T, or a unidirectional model)")


def _full_mask(loss_mask: ArrayLike, T: int, N: int) -> NDArray[np.bool_]:
    mask = np.asarray(loss_mask, bool)
    if mask.shape == (T,):
        mask = np.repeat(mask[:, None], N, axis=1)
    if mask.shape != (T, N):
        raise ValueError(f"loss_mask must have shape (T={T},) or (T={T}, N={N}), got {mask.shape}")
    return mask
