"""Central finite differences and the relative error used to compare gradients."""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..core.types import Array


def central_difference(f: Callable[[], float], x: Array, eps: float = 1e-6, *,
                       indices: Iterable[int] | None = None) -> NDArray[np.float64]:
    """dF/dx by (f(x + eps e_i) - f(x - eps e_i)) / (2 eps), perturbing `x` in place and restoring it.

    The independent check on every backward pass: its truncation error is O(eps^2), and in
    float64 eps = 1e-6 leaves a round-off error near 1e-10 relative to F. That round-off is
    relative to F's size, not to its change: when F is large next to eps * dF/dx (a mean loss over
    many terms, say), give f as the change from its value at x, computed from small terms, as
    `bptt gradcheck` does (its module docstring has the numbers).

    Parameters
    ----------
    f : callable () -> float
        Takes no arguments and reads `x`, e.g. a closure over a parameter array.
    x : ndarray
        The array to differentiate with respect to, perturbed in place (contiguous, so the
        perturbation reaches whatever f reads) and restored after each coordinate.
    eps : float, default 1e-6
        The step.
    indices : iterable of int, optional
        The flat indices of x to differentiate along; None for all. The others are left 0.

    Returns
    -------
    ndarray, shape of x, float64
        The estimate of dF/dx.

    Raises
    ------
    ValueError
        If x is not contiguous, so it cannot be perturbed in place.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> np.round(bptt.central_difference(lambda: float(np.sum(x ** 3)), x), 6)
    array([ 3., 12., 27.])
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


def relative_error(a: ArrayLike, b: ArrayLike) -> float:
    """||a - b|| / max(||a||, ||b||), 0 when both are zero: a norm-wise relative error.

    Norm-wise rather than elementwise, so tiny entries of a gradient do not dominate it.

    Parameters
    ----------
    a, b : array_like
        Arrays of the same shape, e.g. two gradients of the same parameter.

    Returns
    -------
    float
        The relative error, in [0, 2].

    Examples
    --------
    >>> import bptt
    >>> bptt.relative_error([1.0, 0.0], [1.0, 1e-8])
    1e-08
    >>> bptt.relative_error([0.0], [0.0])
    0.0
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b))
    return 0.0 if scale == 0 else float(np.linalg.norm(a - b) / scale)
