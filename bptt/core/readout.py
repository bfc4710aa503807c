"""Affine readout y = h W^T + b (PyTorch's nn.Linear layout), applied per step or to the last step."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .checks import as_float_dtype, check_array, check_positive_int
from .types import Array, Params, Seed


class Linear:
    """Affine readout y = h W^T + b, PyTorch's nn.Linear, on any leading shape: (N, H) or (T, N, H).

    Parameters
    ----------
    in_features : int
        H, the size of each input (a cell's output size).
    out_features : int
        O, the size of each prediction.
    seed : int or numpy.random.SeedSequence, optional
        Seeds the weights, uniform in +-1/sqrt(H) as PyTorch draws them.
    dtype : float64 (default) or float32

    Attributes
    ----------
    params : dict of ndarray
        weight (O, H) and bias (O,).

    Examples
    --------
    >>> import numpy as np, bptt
    >>> readout = bptt.Linear(4, 2, seed=0)
    >>> y, cache = readout.forward(np.ones((5, 3, 4)))     # (T, N, H) -> (T, N, O)
    >>> dh, grads = readout.backward(np.ones_like(y), cache)
    >>> y.shape, dh.shape, grads["weight"].shape
    ((5, 3, 2), (5, 3, 4), (2, 4))
    """

    def __init__(self, in_features: int, out_features: int, *, seed: Seed = None,
                 dtype: DTypeLike = np.float64) -> None:
        self.in_features = check_positive_int("in_features", in_features)
        self.out_features = check_positive_int("out_features", out_features)
        self.dtype = as_float_dtype(dtype)
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)  # PyTorch's default for nn.Linear
        self.params: Params = {
            "weight": rng.uniform(-bound, bound, (out_features, in_features)).astype(self.dtype),
            "bias": rng.uniform(-bound, bound, (out_features,)).astype(self.dtype),
        }

    def forward(self, h: ArrayLike) -> tuple[Array, Array]:
        """h (..., H) -> (y (..., O), cache), the cache being h itself.

        Raises ValueError if h's last axis is not H or h holds NaN or inf.
        """
        h = np.asarray(h)
        if h.ndim < 1 or h.shape[-1] != self.in_features:
            raise ValueError(f"readout input must have shape (..., H={self.in_features}), got {h.shape}")
        h = check_array("readout input", h, (None,) * h.ndim, self.dtype)
        return h @ self.params["weight"].T + self.params["bias"], h

    def backward(self, dy: ArrayLike, cache: Array) -> tuple[Array, Params]:
        """Backward of `forward`: dy (..., O) -> (dh (..., H), grads {"weight": (O, H), "bias": (O,)})."""
        h = cache
        dy = check_array("dy", dy, h.shape[:-1] + (self.out_features,), self.dtype)
        flat_dy = dy.reshape(-1, self.out_features)
        grads = {
            "weight": flat_dy.T @ h.reshape(-1, self.in_features),
            "bias": flat_dy.sum(axis=0),
        }
        return dy @ self.params["weight"], grads

    def __repr__(self) -> str:
        return f"Linear(in_features={self.in_features}, out_features={self.out_features})"
