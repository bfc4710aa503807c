"""Central finite differences and the relative error used to compare gradients."""

from __future__ import annotations

from typing import Callable

import numpy as np


def central_difference(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6, *,
                       indices=None) -> np.ndarray:
    """dF/dx by (f(x + eps e_i) - f(x - eps e_i)) / (2 eps), perturbing `x` in place and restoring it.

    `f` takes no arguments and reads `x` (e.g. a closure over a parameter array). Error O(eps^2).
    indices: the flat indices of x to differentiate along (None: all); the others are left 0.
    """
    grad = np.zeros(x.shape, np.float64)
    flat = x.reshape(-1)  # a view: perturbations reach whatever f reads
    if not np.shares_memory(flat, x):
        raise ValueError("central_difference needs a contiguous array it can perturb in place")
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        grad.reshape(-1)[i] = (up - down) / (2 * eps)
    return grad


def relative_error(a, b) -> float:
    """||a - b|| / max(||a||, ||b||), 0 when both are zero: a norm-wise relative error."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)
