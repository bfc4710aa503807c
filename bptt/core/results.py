"""What every result object shares: fields by name, unpacking and indexing like a tuple, and a one-line repr that
names shapes instead of printing arrays.

The convention for every gradient method: a derivative with respect to the parameters is a dict
keyed like the parameters (`cell.params`, or "cell.<name>" / "readout.<name>" for a cell with a
readout), and on a result object that dict is always the field `params`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Iterator

import numpy as np


def describe(value: object) -> str:
    """A short description of a value: an array's shape and dtype, a dict's keys, a tuple's parts."""
    if isinstance(value, np.ndarray):
        return f"array{value.shape} {value.dtype}"
    if isinstance(value, dict):
        return "{" + ", ".join(map(str, value)) + "}" if len(value) <= 6 else f"dict of {len(value)}"
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, np.ndarray) for v in value):
        return "(" + ", ".join(describe(v) for v in value) + ")"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if value is None or isinstance(value, (int, str, bool)) else type(value).__name__


class Result:
    """Mixin for result dataclasses: `a, b = result` unpacks the fields in order and `result[i]` is
    the i-th field, as for the tuples these results once were; repr is one line."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # every subclass is a dataclass

    def __iter__(self) -> Iterator[Any]:
        return iter(tuple(getattr(self, f.name) for f in dataclasses.fields(self)))

    def __getitem__(self, index: int | slice) -> Any:
        return tuple(self)[index]

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.name}={describe(getattr(self, f.name))}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({fields})"
