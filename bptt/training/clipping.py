"""Gradient clipping, in place, on a dict of gradient arrays keyed by parameter name.

Two different operations under two names:

- `clip_grad_norm` (Pascanu et al. 2013): if the global norm ||g|| = sqrt(sum_p ||g_p||^2) exceeds
  `max_norm`, scale every gradient by max_norm / ||g||. The direction is kept.
- `clip_grad_value`: clamp every element to [-max_value, max_value]. The direction changes.

Both return the global norm before clipping, which training logs. A non-finite norm is returned
as is and nothing is modified, so the caller can decide what to do with the step.
"""

from __future__ import annotations

import math

import numpy as np


def _check_threshold(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    value = float(value)
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return value


def global_norm(grads: dict[str, np.ndarray]) -> float:
    """sqrt of the sum of squares of every element of every gradient (float64, no overflow)."""
    peak = max_abs(grads)
    if peak == 0 or not math.isfinite(peak):
        return peak
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1).astype(np.float64) / peak  # scaled so the squares cannot overflow
        total += float(flat @ flat)
    return peak * math.sqrt(total)


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients in place so their global norm is at most max_norm. Returns the norm before.

    Clipping happened iff the returned norm > max_norm.
    """
    max_norm = _check_threshold("max_norm", max_norm)
    norm = global_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


def clip_grad_value(grads: dict[str, np.ndarray], max_value: float) -> float:
    """Clamp every gradient element in place to [-max_value, max_value]. Returns the global norm before.

    Clipping happened iff some element had |g| > max_value (see `max_abs`).
    """
    max_value = _check_threshold("max_value", max_value)
    norm = global_norm(grads)
    if math.isfinite(norm):
        for g in grads.values():
            np.clip(g, -max_value, max_value, out=g)
    return norm


def max_abs(grads: dict[str, np.ndarray]) -> float:
    """The largest |element| over all gradients."""
    peaks = [float(np.max(np.abs(g))) for g in grads.values() if g.size]
    return max(peaks, default=0.0) if not any(math.isnan(p) for p in peaks) else math.nan
