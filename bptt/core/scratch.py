"""Work arrays kept from one call to the next, per thread.

A freshly allocated array of a few MB is returned to the OS when freed, so every sweep paid a page
fault per 4 KB on first touch: about 1000 faults per backward at (T, N, H) = (100, 32, 64), and
at (200, 128, 512) a float64 sweep's 105 MB arrays came back at a different cost on every call.

Arrays up to MAX_BYTES are kept, up to MAX_PER_ROLE of one shape per role (a stack's layers and
directions run several sequences of the same shapes at once): the memory the calls needed at their
peak stays with the thread until an array of another shape replaces them, or `clear()` returns it.
The fast path keeps its sweeps' work arrays here (`get`), a freed tape's arrays for the next tape of
the same shapes (`take`, `give`), and the per-step views built on them (`take_views`, `give_views`).
"""

from __future__ import annotations

import threading

import numpy as np

from .types import Array


class ScratchArrays(threading.local):
    """Uninitialised arrays by role, kept per thread."""

    MAX_BYTES = 2**30
    MAX_PER_ROLE = 8

    def __init__(self) -> None:
        self.arrays: dict[str, list[Array]] = {}
        self.views: dict[str, list[tuple[tuple[int, ...], list]]] = {}

    def get(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """An uninitialised array, valid until the next `get` or `take` of the same role in this thread."""
        array = self.take(role, shape, dtype)
        self.give(role, array)
        return array

    def take(self, role: str, shape: tuple[int, ...], dtype: np.dtype) -> Array:
        """An uninitialised array that is the caller's until it `give`s it back: a `take` of the same
        role in the meantime gets another array."""
        kept = self.arrays.get(role, [])
        for i in range(len(kept) - 1, -1, -1):  # the most recently given first
            if kept[i].shape == shape and kept[i].dtype == dtype:
                return kept.pop(i)
        return np.empty(shape, dtype)

    def give(self, role: str, array: Array) -> None:
        """Keep `array` for a later `get` or `take` of `role` (the caller no longer uses it)."""
        if array.nbytes > self.MAX_BYTES:
            return
        kept = [a for a in self.arrays.get(role, []) if a.shape == array.shape and a.dtype == array.dtype]
        self.arrays[role] = kept[max(0, len(kept) - self.MAX_PER_ROLE + 1):] + [array]

    def take_views(self, arrays: set[int]) -> list[tuple[str, tuple[int, ...], list]]:
        """Every (role, ids, views) kept that refers to any of the arrays whose ids are `arrays`
        (the caller has just taken those arrays), no longer kept: nothing kept refers to an array
        someone holds."""
        taken = []
        for role, kept in self.views.items():
            mine = [entry for entry in kept if arrays.intersection(entry[0])]
            if mine:
                self.views[role] = [entry for entry in kept if not arrays.intersection(entry[0])]
                taken += [(role, ids, views) for ids, views in mine]
        return taken

    def give_views(self, role: str, arrays: tuple[int, ...], views: list) -> None:
        """Keep `views`, built on the arrays whose ids are `arrays`, for whoever takes those arrays
        next (the views hold them, so the ids stay theirs)."""
        kept = self.views.setdefault(role, [])
        self.views[role] = kept[max(0, len(kept) - self.MAX_PER_ROLE + 1):] + [(arrays, views)]

    def clear(self) -> None:
        """Return every kept array to the allocator."""
        self.arrays.clear()
        self.views.clear()


scratch = ScratchArrays()
