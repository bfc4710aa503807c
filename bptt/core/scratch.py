"""Work arrays kept from one reverse sweep to the next, per thread.

A freshly allocated array of a few MB is returned to the OS when freed, so every sweep paid a page
fault per 4 KB on first touch: about 1000 faults per backward at (T, N, H) = (100, 32, 64). Arrays
above MAX_BYTES are not kept: there the products dominate and memory matters more.
"""

from __future__ import annotations

import threading

import numpy as np

from .types import Array


class ScratchArrays(threading.local):
    """Uninitialised arrays by role; one kept per role and thread."""

    MAX_BYTES = 64 * 2**20

    def __init__(self) -> None:
        self.arrays: dict[str, Array] = {}

    def get(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """An uninitialised array, valid until the next `get` of the same role in this thread."""
        array = self.arrays.pop(role, None)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = np.empty(shape, dtype)
        if array.nbytes <= self.MAX_BYTES:
            self.arrays[role] = array
        return array


scratch = ScratchArrays()
