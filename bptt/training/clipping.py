"""Gradient clipping, in place, on a dict of gradient arrays keyed by parameter name, or on a list of
such dicts (a cell's and a readout's, clipped together by one global norm).

Two different operations under two names:

- `clip_grad_norm` (Pascanu et al. 2013): if the global norm ||g|| = sqrt(sum_p ||g_p||^2) exceeds
  `max_norm`, scale every gradient by max_norm / ||g||. The direction is kept.
- `clip_grad_value`: clamp every element to [-max_value, max_value]. The direction changes.

Both return a `Clipping(norm, clipped)`: the global norm before clipping, which training logs, and
whether any element changed. A non-finite norm is returned as is and nothing is modified, so the
caller can decide what to do with the step.
"""

from __future__ import annotations

import math
from typing import Iterator, Mapping, NamedTuple, Sequence, Union

import numpy as np

from ..core.types import Array

CLIPS = ("norm", "value", "none")
GradGroups = Union[Mapping[str, Array], Sequence[Mapping[str, Array]]]  # a dict of arrays, or a list of them


def _arrays(grads: GradGroups) -> Iterator[Array]:
    """Every gradient array of a dict, or of a list of dicts."""
    groups = [grads] if isinstance(grads, Mapping) else grads
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping):
            raise TypeError(f"grads must be a dict of arrays or a list of dicts; item {i} is a {type(group).__name__}")
        yield from group.values()


class Clipping(NamedTuple):
    """What a clipping call did.

    Attributes
    ----------
    norm : float
        The global norm of the gradients before clipping (NaN or inf if one is not finite).
    clipped : bool
        Whether any gradient element was changed.
    """

    norm: float
    clipped: bool


def _check_threshold(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def global_norm(grads: GradGroups) -> float:
    """The global norm of a set of gradients: sqrt of the sum of squares of every element.

    Parameters
    ----------
    grads : dict of str to ndarray, or list of such dicts
        Gradients of any shapes, keyed by parameter name.

    Returns
    -------
    float
        The norm, computed in float64 with the elements scaled by the largest one, so the squares
        cannot overflow; NaN or inf if an element is.

    Examples
    --------
    >>> import numpy as np
    >>> global_norm([{"a": np.array([3.0])}, {"b": np.array([[4.0]])}])
    5.0
    """
    peak = max_abs(grads)
    if peak == 0 or not math.isfinite(peak):
        return peak
    total = 0.0
    for g in _arrays(grads):
        flat = g.reshape(-1).astype(np.float64) / peak  # scaled so the squares cannot overflow
        total += float(flat @ flat)
    return peak * math.sqrt(total)


def clip_grad_norm(grads: GradGroups, max_norm: float) -> Clipping:
    """Scale all gradients in place, by one factor, so that their global norm is at most `max_norm`.

    Pascanu et al. 2013: the direction of the whole gradient is kept. As ``torch.nn.utils.clip_grad_norm_``,
    but the result also says whether it clipped.

    Parameters
    ----------
    grads : dict of str to ndarray, or list of such dicts
        Gradients keyed by parameter name, modified in place; a list (a cell's and a readout's) is
        clipped by the global norm over all of them.
    max_norm : float
        The largest global norm left unscaled; positive and finite.

    Returns
    -------
    Clipping
        `norm`: the global norm before clipping; `clipped`: True iff norm > max_norm (and finite).

    Raises
    ------
    ValueError
        If `max_norm` is not a positive finite number.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> cell_grads, readout_grads = {"W": np.array([3.0, 0.0])}, {"b": np.array([4.0])}
    >>> bptt.clip_grad_norm([cell_grads, readout_grads], 1.0)
    Clipping(norm=5.0, clipped=True)
    >>> cell_grads["W"], readout_grads["b"]
    (array([0.6, 0. ]), array([0.8]))
    """
    max_norm = _check_threshold("max_norm", max_norm)
    norm = global_norm(grads)
    clipped = math.isfinite(norm) and norm > max_norm
    if clipped:
        scale = max_norm / norm
        for g in _arrays(grads):
            g *= scale
    return Clipping(norm, clipped)


def clip_grad_value(grads: GradGroups, max_value: float) -> Clipping:
    """Clamp every gradient element in place to [-max_value, max_value].

    The direction changes (as ``torch.nn.utils.clip_grad_value_``).

    Parameters
    ----------
    grads : dict of str to ndarray, or list of such dicts
        Gradients keyed by parameter name, modified in place.
    max_value : float
        The largest ``|element|`` left unchanged; positive and finite.

    Returns
    -------
    Clipping
        `norm`: the global norm before clipping; `clipped`: True iff some element had ``|g| > max_value``
        (the norm may exceed max_value with nothing clipped).

    Raises
    ------
    ValueError
        If `max_value` is not a positive finite number.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> grads = {"W": np.array([3.0, -4.0]), "b": np.array([0.5])}
    >>> bptt.clip_grad_value(grads, 1.0).clipped
    True
    >>> grads["W"], grads["b"]
    (array([ 1., -1.]), array([0.5]))
    """
    max_value = _check_threshold("max_value", max_value)
    norm = global_norm(grads)
    clipped = math.isfinite(norm) and max_abs(grads) > max_value
    if clipped:
        for g in _arrays(grads):
            np.clip(g, -max_value, max_value, out=g)
    return Clipping(norm, clipped)


def clip_gradients(grads: GradGroups, mode: str, threshold: float) -> Clipping:
    """Clip by name, as `TrainConfig.clip` says: "norm", "value" or "none" (measure the norm only).

    Parameters
    ----------
    grads : dict of str to ndarray, or list of such dicts
        Gradients keyed by parameter name, modified in place.
    mode : str
        One of CLIPS.
    threshold : float
        `max_norm` or `max_value`; not read for "none".

    Returns
    -------
    Clipping
        As `clip_grad_norm` or `clip_grad_value`; for "none" the norm and clipped=False.

    Raises
    ------
    ValueError
        If `mode` is not one of CLIPS, or the threshold is not a positive finite number.
    """
    if mode == "norm":
        return clip_grad_norm(grads, threshold)
    if mode == "value":
        return clip_grad_value(grads, threshold)
    if mode == "none":
        return Clipping(global_norm(grads), False)
    raise ValueError(f"clip must be one of {list(CLIPS)}, got {mode!r}")


def max_abs(grads: GradGroups) -> float:
    """The largest ``|element|`` over all gradients.

    Parameters
    ----------
    grads : dict of str to ndarray, or list of such dicts

    Returns
    -------
    float
        NaN if any element is NaN, 0.0 if every array is empty.
    """
    peaks = [float(np.max(np.abs(g))) for g in _arrays(grads) if g.size]
    return max(peaks, default=0.0) if not any(math.isnan(p) for p in peaks) else math.nan
