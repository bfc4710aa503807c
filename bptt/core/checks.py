"""Input validation: every public entry point checks its arrays here, so bad input fails early with a
message that names the argument, the expected shape and the actual one."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .types import Array

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_dtype(dtype: DTypeLike) -> np.dtype:
    """Normalise a dtype argument to float32 or float64, or raise."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _format_shape(expected: Sequence[int | None], names: Sequence[str] | None) -> str:
    parts = []
    for i, size in enumerate(expected):
        label = names[i] if names else None
        if size is None:
            parts.append(label or "?")
        elif label:
            parts.append(f"{label}={size}")
        else:
            parts.append(str(size))
    return "(" + ", ".join(parts) + (",)" if len(parts) == 1 else ")")


def check_array(
    name: str,
    value: ArrayLike,
    expected: Sequence[int | None],
    dtype: np.dtype,
    *,
    names: Sequence[str] | None = None,
    finite: bool = True,
) -> Array:
    """Return `value` as an array of `dtype`, after checking its shape and that it is finite.

    `expected` gives one entry per dimension: an int that must match, or None for any size.
    `names` labels the dimensions in the message, e.g. ("T", "B", "D").
    """
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"{name} must be an array, could not convert it: {exc}") from exc
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}")
    want = _format_shape(expected, names)
    if arr.ndim != len(expected):
        raise ValueError(
            f"{name} must have {len(expected)} dimensions {want}, got {arr.ndim} with shape {arr.shape}"
        )
    for size, actual in zip(expected, arr.shape):
        if size is not None and size != actual:
            raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    arr = arr.astype(dtype, copy=False)
    if finite and not np.isfinite(arr).all():
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
