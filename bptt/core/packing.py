"""Sequences of different lengths in one batch, with PyTorch's packed-sequence semantics
(`pack_padded_sequence(..., enforce_sorted=False)`).

Sequence n runs steps 0 .. lengths[n] - 1 of a padded (T, N, ...) batch: its outputs past its length
are zero and carry no gradient, and its final state is its state after its own last step. The
unroller sorts the batch longest first, so the sequences still running at step t are the first
`batch_sizes[t]` rows; a cell's Sequence runs only those rows, and keeps the state of the others as
it is (so the state after step T - 1 is every sequence's final state, and a gradient on it flows
back to each sequence's last step). Everything leaves the unroller in the caller's order again.

Letters: T time, N batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .types import Array, IntArray


def check_lengths(lengths: ArrayLike, T: int, N: int, shortest: int = 1) -> IntArray:
    """lengths as an int array (N,) with every entry in shortest..T, or a ValueError saying what is
    wrong. (0 is allowed only inside the package, for a window a sequence does not reach.)"""
    array = np.asarray(lengths)
    if array.shape != (N,):
        raise ValueError(f"lengths must have shape (N={N},), one length per sequence, got shape {array.shape}")
    if array.dtype.kind == "f" and np.all(np.isfinite(array)) and np.all(array == np.round(array)):
        array = array.astype(np.int64)  # whole numbers stored as floats are fine
    if array.dtype.kind not in "iu":
        raise ValueError(f"lengths must be integers, got {array.dtype} values {array.tolist()[:5]}")
    bad = (array < shortest) | (array > T)
    if bad.any():
        raise ValueError(f"lengths must lie in {shortest}..T={T}, got {array[bad].tolist()[:5]} at sequences "
                         f"{np.flatnonzero(bad).tolist()[:5]}")
    return array.astype(np.int64)


@dataclass(frozen=True)
class Packing:
    """How a batch of sequences of different lengths is laid out for the cell: longest first.

    lengths (N,) in the caller's order; order (N,): sorted row -> caller's row; inverse: its
    inverse; batch_sizes (T,): sequences still running at each step; valid (T, N) bool, sorted rows.
    """

    lengths: IntArray
    order: IntArray
    inverse: IntArray
    batch_sizes: IntArray
    valid: NDArray[np.bool_]

    @classmethod
    def of(cls, lengths: ArrayLike | None, T: int, N: int, shortest: int = 1) -> Packing | None:
        """The packing of `lengths` (checked), or None when lengths is None (every sequence runs T steps)."""
        if lengths is None:
            return None
        lengths = check_lengths(lengths, T, N, shortest)
        order = np.argsort(-lengths, kind="stable")
        inverse = np.empty_like(order)
        inverse[order] = np.arange(N)
        sorted_lengths = lengths[order]
        valid = np.arange(T)[:, None] < sorted_lengths[None, :]
        return cls(lengths, order, inverse, valid.sum(axis=1), valid)

    def sort(self, array: Array, axis: int = 1) -> Array:
        """The caller's order -> sorted rows, along the batch axis."""
        return np.take(array, self.order, axis=axis)

    def unsort(self, array: Array, axis: int = 1) -> Array:
        """Sorted rows -> the caller's order, along the batch axis."""
        return np.take(array, self.inverse, axis=axis)

    def mask(self, array: Array) -> Array:
        """(T, N, ...) in sorted rows, zero at every step past a sequence's length (a new array)."""
        return array * self.valid.reshape(self.valid.shape + (1,) * (array.ndim - 2))


def reverse_within_lengths(array: Array, lengths: IntArray | None) -> Array:
    """(T, N, ...) with each sequence's first lengths[n] steps in reverse order and its padding left
    in place: what the reverse direction of a bidirectional layer reads. Its own inverse."""
    T, N = array.shape[:2]
    if lengths is None:
        return array[::-1]
    t = np.arange(T)[:, None]
    source = np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (T, N)
    return array[source, np.arange(N)[None, :]]
