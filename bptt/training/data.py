"""Your own sequences from an .npz file: read, checked, and turned time-major once, at the door.

The file (``numpy.savez`` or ``savez_compressed``) stores S sequences of T steps batch-first, as
people store them, under these names and no others::

    inputs    float (S, T, D)
    targets   one of
              float (S, T, O)   a value at every step               MSE
              float (S, O)      a value at the last step            MSE
              int   (S,)        a class at the last step            cross-entropy, accuracy
              int   (S, T)      a class at every step               cross-entropy, accuracy
    lengths   optional int (S,), each in [1, T]: sequence s runs its first lengths[s] steps (packed:
              its state stops there, no loss past it, and "the last step" is its own last step)

Classes are 0 .. O-1, O the largest class + 1 within the sequences' lengths (entries past a
sequence's end are never read, so a padding such as -100 is fine there). Every array is checked
before a byte of its data is read (its .npy header: name, shape, dtype; no pickle), then its values
(finite, lengths in [1, T], classes >= 0), and a refusal names the file, the array and its shape.

In memory the arrays are time-major (T, S, ...), copied a piece at a time from the file, so a file
is never held twice: the peak is about the arrays' own size (scripts/data_memory.py measures it).
A share of the sequences, drawn from a seed, is held out for evaluation; the rest is trained on.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from functools import cached_property
from typing import Any, Iterator, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

from ..core.checks import check_positive_int
from ..core.losses import mse, softmax_cross_entropy
from ..core.types import Array, IntArray
from ..core.untrusted import Npz, NpyMember, UntrustedFileError, open_regular
from .task_contract import Batch, Task, accuracy

MAX_DATA_BYTES = 16 * 2**30  # the arrays stay in memory while a run trains: 16 GiB is most of a large
#                              workstation; a file declaring more is refused before its data is read
PIECE_BYTES = 2**22  # read (and turn time-major) 4 MiB of a file at a time
KEYS = ("inputs", "targets", "lengths")
# the four forms of targets: what each holds, and whether its loss is at every step or only the last
FORMS = {
    "values": "float (S, T, O): a value at every step (MSE)",
    "last-values": "float (S, O): a value at the last step (MSE)",
    "last-class": "integer (S,): a class at the last step (cross-entropy)",
    "classes": "integer (S, T): a class at every step (cross-entropy)",
}


class SequenceData(NamedTuple):
    """A data file's arrays, checked and time-major.

    Attributes
    ----------
    path : str
    sha256 : str
        Of the file's bytes.
    inputs : ndarray of float, shape (T, S, D)
    targets : ndarray
        (T, S, O) float, (S, O) float, (S,) int or (T, S) int, as `form` says.
    lengths : ndarray of int, shape (S,), or None
    form : str
        One of FORMS: "values", "last-values", "last-class", "classes".
    outputs : int
        O: the targets' last size, or the number of classes.
    """

    path: str
    sha256: str
    inputs: Array
    targets: NDArray[Any]
    lengths: IntArray | None
    form: str
    outputs: int

    @property
    def classes(self) -> bool:
        """Whether the targets are classes (cross-entropy) rather than values (MSE)."""
        return self.form in ("last-class", "classes")


def _rows(member: NpyMember) -> int:
    """How many rows of an array make a piece of about PIECE_BYTES."""
    row = math.prod(member.shape[1:]) * member.dtype.itemsize
    return max(1, PIECE_BYTES // max(1, row))


def _native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=")


def _refuse(path: str, name: str, member: NpyMember, problem: str) -> UntrustedFileError:
    return UntrustedFileError(path, f"array {name!r} {member.dtype} {member.shape} {problem}")


def _read(npz: Npz, name: str, member: NpyMember, *, turn: bool, finite: bool) -> NDArray[Any]:
    """The array (S, T, ...) as (T, S, ...) with `turn`, else as it is, copied a piece at a time; with
    `finite`, NaN and infinities refused, naming the first."""
    shape = (member.shape[1], member.shape[0], *member.shape[2:]) if turn else member.shape
    out = np.empty(shape, _native(member.dtype))
    start = 0
    for piece in npz.read_rows(name, _rows(member)):
        if finite:
            bad = ~np.isfinite(piece)
            if bad.any():
                first = np.argwhere(bad)[0]
                where = [start + int(first[0]), *map(int, first[1:])]
                raise _refuse(npz.path, name, member, f"holds {piece[tuple(first)]} at index {where}; expected "
                                                      "finite numbers everywhere")
        stop = start + len(piece)
        if turn:
            out[:, start:stop] = np.swapaxes(piece, 0, 1)
        else:
            out[start:stop] = piece
        start = stop
    return out


def _form(path: str, inputs: NpyMember, targets: NpyMember) -> str:
    """Which of FORMS the targets' header says, or a refusal listing the four for these inputs."""
    S, T = inputs.shape[:2]
    shape, kind = targets.shape, targets.dtype.kind
    if shape[:1] == (S,):
        if kind == "f" and len(shape) == 3 and shape[1] == T and shape[2] >= 1:
            return "values"
        if kind == "f" and len(shape) == 2 and shape[1] >= 1:
            return "last-values"
        if kind in "iu" and len(shape) == 1:
            return "last-class"
        if kind in "iu" and len(shape) == 2 and shape[1] == T:
            return "classes"
    raise _refuse(path, "targets", targets, f"is none of the four forms; for inputs (S, T, D) = {inputs.shape} "
                                            f"expected float ({S}, {T}, O), float ({S}, O), integer ({S},) or "
                                            f"integer ({S}, {T})")


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a regular file's bytes, read a piece at a time."""
    digest, buffer = hashlib.sha256(), bytearray(2**20)
    view = memoryview(buffer)
    with open_regular(path, follow_links=True) as f:
        while count := cast(io.BufferedReader, f).readinto(buffer):  # one buffer, reused: never the whole file
            digest.update(view[:count])
    return digest.hexdigest()


def read_data_file(path: str | os.PathLike[str]) -> SequenceData:
    """Read and check a data file (the module's docstring says what it holds).

    Parameters
    ----------
    path : str or os.PathLike
        An .npz file; a link to one is followed (the user named it).

    Returns
    -------
    SequenceData
        The arrays time-major, the targets' form, the number of outputs and the file's SHA-256.

    Raises
    ------
    UntrustedFileError
        (a ValueError) Naming the file, and the array and its shape where one is wrong: not a
        regular file (a folder, a FIFO, a device), not an npz, an array of Python objects, a
        missing or unknown array, sizes S that differ, a wrong number of dimensions or dtype,
        NaN or infinity, lengths outside [1, T], negative classes or a single class.
    OSError
        If it cannot be opened or read.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "data.npz")
    >>> np.savez(path, inputs=np.zeros((4, 6, 2)), targets=np.array([0, 1, 2, 1]))
    >>> data = read_data_file(path)
    >>> data.inputs.shape, data.form, data.outputs
    ((6, 4, 2), 'last-class', 3)
    """
    path = os.fspath(path)
    with Npz(path, max_bytes=MAX_DATA_BYTES, follow_links=True) as npz:
        members = npz.members
        unknown = sorted(set(members) - set(KEYS))
        if unknown:
            raise UntrustedFileError(path, f"holds array {unknown[0]!r}, which is none of {list(KEYS)} (a misspelt "
                                           "name would be ignored, so it is refused)")
        for name in ("inputs", "targets"):
            if name not in members:
                raise UntrustedFileError(path, f"has no array {name!r} (it holds {sorted(members) or 'none'}); "
                                               "expected inputs float (S, T, D) and targets")
        inputs, targets = members["inputs"], members["targets"]
        if inputs.dtype.kind != "f" or len(inputs.shape) != 3:
            raise _refuse(path, "inputs", inputs, "is not float (S, T, D)")
        S, T, D = inputs.shape
        if S < 2 or T < 1 or D < 1:
            raise _refuse(path, "inputs", inputs, "needs S >= 2 sequences (some to train on, some held out), "
                                                  "T >= 1 steps and D >= 1 features")
        for name, member in members.items():
            if member.shape[:1] != (S,):
                raise _refuse(path, name, member, f"does not hold S = {S} sequences as its first axis, as inputs "
                                                  f"{inputs.shape} does")
        form = _form(path, inputs, targets)
        lengths = None
        if "lengths" in members:
            member = members["lengths"]
            if member.dtype.kind not in "iu" or member.shape != (S,):
                raise _refuse(path, "lengths", member, f"is not integer ({S},) (S,)")
            lengths = npz.read("lengths").astype(np.int64)
            if lengths.min() < 1 or lengths.max() > T:
                first = int(np.flatnonzero((lengths < 1) | (lengths > T))[0])
                raise _refuse(path, "lengths", member, f"holds {lengths[first]} at index {first}; expected each "
                                                       f"in [1, T = {T}]")
        xs = _read(npz, "inputs", inputs, turn=True, finite=True)
        ys = _read(npz, "targets", targets, turn=form in ("values", "classes"), finite=targets.dtype.kind == "f")
    outputs = targets.shape[-1] if form in ("values", "last-values") else _classes(path, targets, ys, lengths, form)
    return SequenceData(path, sha256_of(path), xs, ys, lengths, form, outputs)


def _classes(path: str, member: NpyMember, ys: NDArray[Any], lengths: IntArray | None, form: str) -> int:
    """The number of classes O (the largest + 1 within the lengths), refusing a negative class or a single one."""
    if form == "last-class":
        counted = ys
    elif lengths is None:
        counted = ys.reshape(-1)
    else:
        counted = ys[np.arange(ys.shape[0])[:, None] < lengths]
    low, high = int(counted.min()), int(counted.max())
    if low < 0:
        raise _refuse(path, "targets", member, f"holds class {low}; expected classes 0, 1, ... (a negative value "
                                               "may only pad a sequence past its length)")
    if high < 1:
        raise _refuse(path, "targets", member, "holds class 0 only; expected at least two classes")
    return high + 1


def held_out_count(S: int, eval_fraction: float) -> int:
    """How many of S sequences a share `eval_fraction` holds out: round(S * share), at least one.

    Raises
    ------
    ValueError
        If that would leave nothing to train on.
    """
    count = max(1, round(S * eval_fraction))
    if count >= S:
        raise ValueError(f"eval_fraction {eval_fraction} holds out {count} of the file's {S} sequences, leaving none "
                         "to train on")
    return count


class DataTask(Task):
    """The data task: a user's own sequences from an .npz file (`read_data_file`).

    A share of the sequences (`eval_fraction`, drawn from `split_seed`) is the held-out set, all of
    it evaluated; each training batch draws `batch_size` of the others at random (without
    replacement within a batch). The loss is MSE for float targets, cross-entropy for classes (with
    accuracy); the baseline predicts the training mean, or the training class frequencies with the
    majority class as its answer, and is scored on the held-out set.

    Parameters
    ----------
    path : str or os.PathLike
    eval_fraction : float
        The held-out share, in (0, 1).
    split_seed : int
        Seeds which sequences are held out (`TrainConfig.eval_seed`: the same split for every
        training seed).

    Attributes
    ----------
    data : SequenceData
    train_index, eval_index : ndarray of int
        The sequences trained on and held out, in file order.

    Raises
    ------
    ValueError
        As `read_data_file`, or if the share leaves no sequence to train on.

    Examples
    --------
    >>> import tempfile, os, numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "sums.npz")
    >>> rng = np.random.default_rng(0)
    >>> xs = rng.uniform(size=(50, 8, 1))
    >>> np.savez(path, inputs=xs, targets=xs.sum(axis=1))       # (S, T, D) and (S, O): MSE at the last step
    >>> task = DataTask(path, eval_fraction=0.2)
    >>> len(task.train_index), len(task.eval_index), task.input_size, task.output_size
    (40, 10, 1, 1)
    >>> batch = task.sample(rng, 4)
    >>> batch.xs.shape, batch.targets.shape, int(batch.mask.sum())
    ((8, 4, 1), (8, 4, 1), 4)
    """

    name = "data"

    def __init__(self, path: str | os.PathLike[str], *, eval_fraction: float = 0.1, split_seed: int = 1234) -> None:
        data = read_data_file(path)
        T, S, D = data.inputs.shape
        super().__init__(T)
        count = held_out_count(S, eval_fraction)
        order = np.random.default_rng([split_seed, 0xDA7A]).permutation(S)
        self.data, self.eval_fraction = data, eval_fraction
        self.eval_index, self.train_index = np.sort(order[:count]), np.sort(order[count:])
        self.input_size, self.output_size = D, data.outputs
        self.loss_fn = softmax_cross_entropy if data.classes else mse

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        N = check_positive_int("batch_size", batch_size)
        picks = rng.choice(len(self.train_index), N, replace=N > len(self.train_index))
        return self._batch(self.train_index[picks])

    def eval_batch(self, size: int, seed: int) -> Batch:
        """Every held-out sequence (the share is set by eval_fraction, its draw by the split seed)."""
        return self._batch(self.eval_index)

    def _steps(self, index: IntArray) -> tuple[IntArray | None, NDArray[np.bool_]]:
        """The sequences' lengths (None: all T) and the (T, N) mask of the steps they run."""
        T, N = self.seq_len, len(index)
        if self.data.lengths is None:
            return None, np.ones((T, N), bool)
        lengths = self.data.lengths[index]
        return lengths, np.arange(T)[:, None] < lengths

    def _batch(self, index: IntArray) -> Batch:
        data, T, N = self.data, self.seq_len, len(index)
        lengths, running = self._steps(index)
        xs = data.inputs[:, index]
        if data.form == "values":
            return Batch(xs, data.targets[:, index], running, lengths=lengths)
        if data.form == "classes":
            return Batch(xs, np.where(running, data.targets[:, index], 0).astype(np.int64), running, lengths=lengths)
        last, n = (T - 1 if lengths is None else lengths - 1), np.arange(N)
        mask = np.zeros((T, N), bool)
        mask[last, n] = True
        if data.form == "last-values":
            targets = np.zeros((T, N, self.output_size), data.targets.dtype)
        else:
            targets = np.zeros((T, N), np.int64)
        targets[last, n] = data.targets[index]
        return Batch(xs, targets, mask, lengths=lengths)

    def _counted(self, index: IntArray) -> Iterator[NDArray[Any]]:
        """The targets whose loss counts, for the sequences `index`, a piece at a time: (M, O) values
        or (M,) classes."""
        per_step = self.data.form in ("values", "classes")
        row = self.seq_len * (self.output_size if self.data.form == "values" else 1) if per_step else 1
        step = max(1, PIECE_BYTES // (16 * row))  # a few copies of each piece are made: keep them small
        for start in range(0, len(index), step):
            part = index[start:start + step]
            if not per_step:
                yield self.data.targets[part]
                continue
            _, running = self._steps(part)
            yield self.data.targets[:, part][running]

    @cached_property
    def baseline(self) -> dict[str, float]:
        """The training set's constant prediction scored on the held-out set: the mean (MSE), or the
        class frequencies (cross-entropy, add-one smoothed) with the majority class (accuracy)."""
        if not self.data.classes:
            total, count = np.zeros(self.output_size), 0
            for y in self._counted(self.train_index):
                total += y.sum(axis=0, dtype=np.float64)
                count += len(y)
            mean = total / count
            squares, entries = 0.0, 0
            for y in self._counted(self.eval_index):
                squares += float(np.sum((y - mean) ** 2))
                entries += y.size
            return {"loss": squares / entries}
        counts = np.zeros(self.output_size)
        for y in self._counted(self.train_index):
            counts += np.bincount(y.astype(np.int64), minlength=self.output_size)
        freq = (counts + 1) / (counts.sum() + self.output_size)
        majority = int(np.argmax(counts))
        loss, right, entries = 0.0, 0, 0
        for y in self._counted(self.eval_index):
            y = y.astype(np.int64)
            loss -= float(np.sum(np.log(freq[y])))
            right += int(np.sum(y == majority))
            entries += len(y)
        return {"loss": loss / entries, "accuracy": right / entries}

    def metrics(self, outputs: Array, batch: Batch) -> dict[str, float]:
        return {"accuracy": accuracy(outputs, batch)} if self.data.classes else {}

    @property
    def data_fingerprint(self) -> dict[str, str]:
        """The data file: its path (to name it) and the SHA-256 of its bytes (to compare it)."""
        return {"data": self.data.path, "data_sha256": self.data.sha256}
