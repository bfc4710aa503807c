"""Sequence tasks for training recurrent networks, each with a baseline to beat: the toy tasks, a
text and a user's own arrays, and the names they go by (`task_factory`, `make_task`); the contract every
task keeps, `Task` and `Batch`, is `bptt.training.task_contract`.

Every task draws batches from a numpy Generator the caller seeds, and has a fixed held-out
evaluation set (`eval_batch`, from its own seed). A batch is time-major::

    xs (T, N, D) inputs;  targets (T, N, O) floats (regression) or (T, N) class indices;
    mask (T, N) bool: the (step, sequence) entries whose loss counts.

`baseline` gives the loss (and accuracy or success rate where the task defines one) of the best
input-blind predictor, so a result means something only when it is clearly below it. The tasks::

    adding          Le et al. 2015: two channels (U(0,1) value, marker), target = sum of the two
                    marked values at the last step; predicting the mean 1 gives MSE 1/6.
    copy            Arjovsky et al. 2016: 10 symbols from 8, a blank of length T, then recall them;
                    cross-entropy over all T + 20 steps, baseline 10 log 8 / (T + 20).
    temporal-order  Hochreiter and Schmidhuber 1997 (task 6a): the order of two symbols X/Y hidden in
                    distractors, 4 classes at the last step; chance 25%.
    reber           embedded Reber grammar, next-symbol prediction; success = at every step of a string
                    each legal next symbol scores above every illegal one. Each string runs its own
                    length (Batch.lengths, packed), the batch padded to T.
    parity          running parity (XOR) of a bit stream, a 2-class answer at every step; chance 50%.
    chars           character language model on a text file: next character at every step; baseline
                    the unigram entropy of the text (nats per character).
    data            a user's own arrays from an .npz file (`bptt.training.data`); baseline the
                    training mean (MSE) or the majority class.

Any other name is a task an installed package registers in the entry-point group `bptt.tasks`, or
MODULE:CLASS naming a `Task` subclass importable on the Python path (`bptt.core.import_path`), built
as ``cls(seq_len=...)`` and checked against the contract before a run starts (`check_task`).

Letters: T time, N batch, D input size, O outputs.
"""

from __future__ import annotations

import hashlib
import math
import os
from functools import cached_property
from pathlib import Path
from typing import Callable, cast

import numpy as np
from numpy.typing import NDArray

from ..core.checks import check_positive_int
from ..core.import_path import is_import_path, resolve
from ..core.losses import mse, softmax_cross_entropy
from ..core.types import Array, IntArray
from ..core.untrusted import UntrustedFileError, read_text_file
from .data import DataTask
from .task_contract import Batch, Task, TaskContractError, accuracy, check_task

TASKS = ("adding", "copy", "temporal-order", "reber", "parity", "chars", "data")  # the built-in names
TASK_GROUP = "bptt.tasks"  # the entry-point group where installed packages register tasks
MAX_TEXT_BYTES = 128 * 2**20  # chars: 128 MiB holds enwik8 (10^8 bytes) and any book; a run keeps the text
#                               and its codes in memory (~12 bytes a character), so this bounds it near 1.5 GiB


def _one_hot(indices: IntArray, size: int) -> Array:
    return np.eye(size)[indices]


class Adding(Task):
    name = "adding"
    input_size, output_size = 2, 1
    loss_fn = staticmethod(mse)

    def __init__(self, seq_len: int, min_seq_len: int | None = None) -> None:
        super().__init__(seq_len)
        if self.seq_len < 2:
            raise ValueError(f"adding needs seq_len >= 2 (one marker per half), got {seq_len}")
        if min_seq_len is not None and not 2 <= min_seq_len <= self.seq_len:
            raise ValueError(f"adding needs min_seq_len in [2, seq_len={seq_len}], got {min_seq_len}")
        self.min_seq_len = min_seq_len

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        T, N = self.seq_len, check_positive_int("batch_size", batch_size)
        if self.min_seq_len is not None:
            return self._sample_lengths(rng, N)
        values = rng.uniform(0.0, 1.0, (T, N))
        first = rng.integers(0, T // 2, N)  # one marker in each half
        second = rng.integers(T // 2, T, N)
        markers = np.zeros((T, N))
        markers[first, np.arange(N)] = 1.0
        markers[second, np.arange(N)] = 1.0
        targets = np.zeros((T, N, 1))
        targets[-1, :, 0] = (values * markers).sum(axis=0)
        mask = np.zeros((T, N), bool)
        mask[-1] = True
        return Batch(np.stack([values, markers], axis=-1), targets, mask)

    def _sample_lengths(self, rng: np.random.Generator, N: int) -> Batch:
        """Each sequence L_n steps long, L_n uniform in [min_seq_len, T]: a marker in each half of its
        own length, its sum to predict at its own last step, nothing past it (the batch is padded)."""
        T, n = self.seq_len, np.arange(N)
        lengths = rng.integers(cast(int, self.min_seq_len), T + 1, N)  # called only when min_seq_len is set
        values = rng.uniform(0.0, 1.0, (T, N)) * (np.arange(T)[:, None] < lengths)
        first = rng.integers(0, lengths // 2)
        second = rng.integers(lengths // 2, lengths)
        markers = np.zeros((T, N))
        markers[first, n] = markers[second, n] = 1.0
        targets = np.zeros((T, N, 1))
        targets[lengths - 1, n, 0] = (values * markers).sum(axis=0)
        mask = np.zeros((T, N), bool)
        mask[lengths - 1, n] = True
        return Batch(np.stack([values, markers], axis=-1), targets, mask, lengths=lengths)

    def metrics(self, outputs: Array, batch: Batch) -> dict[str, float]:
        return {}

    @property
    def baseline(self) -> dict[str, float]:
        return {"loss": 1.0 / 6.0}  # Var(U1 + U2) for the constant prediction 1


class Copy(Task):
    name = "copy"
    symbols, length = 8, 10  # copy 10 symbols drawn from 8
    blank, delimiter = 0, 9
    input_size = output_size = 10

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        T, N, K = self.seq_len, check_positive_int("batch_size", batch_size), self.length
        data = rng.integers(1, self.symbols + 1, (K, N))
        inputs = np.full((T + 2 * K, N), self.blank)
        inputs[:K] = data
        inputs[T + K - 1] = self.delimiter  # the last of the T blanks signals "recall now"
        targets = np.full((T + 2 * K, N), self.blank)
        targets[T + K :] = data
        mask = np.ones((T + 2 * K, N), bool)
        return Batch(_one_hot(inputs, self.input_size), targets, mask)

    def metrics(self, outputs: Array, batch: Batch) -> dict[str, float]:
        recall = np.zeros_like(batch.mask)
        recall[-self.length :] = True
        return {"accuracy": accuracy(outputs, batch, recall)}  # over the recalled symbols only

    @property
    def baseline(self) -> dict[str, float]:
        # blanks are certain until the recall, then a uniform guess among 8 for each of 10 symbols
        K = self.length
        return {"loss": K * math.log(self.symbols) / (self.seq_len + 2 * K), "accuracy": 1.0 / self.symbols}


class TemporalOrder(Task):
    name = "temporal-order"
    # symbols: a b c d (distractors) X Y (relevant) B E (start, end)
    input_size, output_size = 8, 4
    X, Y, B, E = 4, 5, 6, 7

    def __init__(self, seq_len: int) -> None:
        super().__init__(seq_len)
        if self.seq_len < 10:
            raise ValueError(f"temporal-order needs seq_len >= 10, got {seq_len}")

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        T, N = self.seq_len, check_positive_int("batch_size", batch_size)
        symbols = rng.integers(0, 4, (T, N))
        symbols[0], symbols[-1] = self.B, self.E
        # the two relevant symbols: one in [0.1T, 0.2T], one in [0.5T, 0.6T] (10-20 and 50-60 at T=100)
        first = rng.integers(max(1, T // 10), max(2, T // 5) + 1, N)
        second = rng.integers(T // 2, max(T // 2 + 1, 3 * T // 5) + 1, N)
        first_is_y = rng.integers(0, 2, N)
        second_is_y = rng.integers(0, 2, N)
        symbols[first, np.arange(N)] = self.X + first_is_y
        symbols[second, np.arange(N)] = self.X + second_is_y
        targets = np.zeros((T, N), np.int64)
        targets[-1] = 2 * first_is_y + second_is_y  # XX, XY, YX, YY
        mask = np.zeros((T, N), bool)
        mask[-1] = True
        return Batch(_one_hot(symbols, self.input_size), targets, mask)

    @property
    def baseline(self) -> dict[str, float]:
        return {"loss": math.log(4), "accuracy": 0.25}


class Parity(Task):
    name = "parity"
    input_size, output_size = 1, 2

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        T, N = self.seq_len, check_positive_int("batch_size", batch_size)
        bits = rng.integers(0, 2, (T, N))
        parity = np.bitwise_xor.accumulate(bits, axis=0)  # XOR of bits 0..t
        return Batch(bits[..., None].astype(np.float64), parity.astype(np.int64), np.ones((T, N), bool))

    @property
    def baseline(self) -> dict[str, float]:
        return {"loss": math.log(2), "accuracy": 0.5}


class Reber(Task):
    """Embedded Reber grammar: B (T|P) <Reber string> (the same T|P) E."""

    name = "reber"
    alphabet = "BTPSXVE"
    input_size = output_size = 7
    # the Reber graph: node -> [(symbol, next node)]; node 6 is the end of the inner string
    graph = {
        0: [("T", 1), ("P", 5)],
        1: [("S", 1), ("X", 2)],
        2: [("S", 3), ("X", 5)],
        3: [("E", 6)],
        4: [("V", 3), ("P", 2)],
        5: [("V", 4), ("T", 5)],
    }
    shortest = 9  # B T B T X S E T E

    def __init__(self, seq_len: int) -> None:
        super().__init__(seq_len)
        if self.seq_len < self.shortest:
            raise ValueError(f"reber needs seq_len >= {self.shortest} (its shortest string), got {seq_len}")

    def _string(self, rng: np.random.Generator) -> tuple[list[str], list[set[str]]]:
        """One embedded Reber string and, for each symbol, the set of symbols legal right after it."""
        branch = "TP"[rng.integers(2)]
        symbols, legal = ["B", branch, "B"], [{"T", "P"}, {"B"}]
        node = 0
        while node != 6:
            choices = self.graph[node]
            legal.append({s for s, _ in choices})
            symbol, node = choices[rng.integers(len(choices))]
            symbols.append(symbol)
        legal.append({branch})  # after the inner E only the branch symbol chosen at the start
        symbols += [branch, "E"]
        legal.append({"E"})
        return symbols, legal

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        T, N = self.seq_len, check_positive_int("batch_size", batch_size)
        index = {s: i for i, s in enumerate(self.alphabet)}
        xs = np.zeros((T, N, self.input_size))
        targets = np.zeros((T, N), np.int64)
        mask = np.zeros((T, N), bool)
        legal = np.zeros((T, N, self.output_size), bool)
        lengths = np.zeros(N, np.int64)
        for n in range(N):
            symbols, legal_next = self._string(rng)
            while len(symbols) > T:  # redraw strings that do not fit
                symbols, legal_next = self._string(rng)
            codes = [index[s] for s in symbols]
            L = lengths[n] = len(codes)
            xs[np.arange(L), n, codes] = 1.0
            targets[: L - 1, n] = codes[1:]
            mask[: L - 1, n] = True
            for t, allowed in enumerate(legal_next):
                legal[t, n, [index[s] for s in allowed]] = True
        return Batch(xs, targets, mask, legal, lengths)  # each string runs its own length, not T

    def metrics(self, outputs: Array, batch: Batch) -> dict[str, float]:
        legal, mask = cast(NDArray[np.bool_], batch.legal), batch.mask  # a reber batch holds its legal symbols
        lowest_legal = np.where(legal, outputs, np.inf).min(axis=-1)
        highest_illegal = np.where(legal, -np.inf, outputs).max(axis=-1)
        step_ok = (lowest_legal > highest_illegal) | ~mask
        return {"success": float(np.mean(step_ok.all(axis=0))), "accuracy": accuracy(outputs, batch)}

    @cached_property
    def baseline(self) -> dict[str, float]:
        # the best input-blind predictor: the symbol frequencies of next symbols, here measured on a
        # large fixed sample; its ranking is the same at every step.
        batch = self.sample(np.random.default_rng(0), 2000)
        counts = np.bincount(batch.targets[batch.mask], minlength=self.output_size).astype(float)
        freq = counts / counts.sum()
        entropy = -float(np.sum(freq[freq > 0] * np.log(freq[freq > 0])))
        legal = cast(NDArray[np.bool_], batch.legal)  # a reber batch holds its legal symbols
        constant = np.broadcast_to(np.log(freq + 1e-12), legal.shape)
        return {"loss": entropy, **self.metrics(constant, batch)}


class Chars(Task):
    """Next-character prediction on a text file: the first 90% for training, the rest held out.

    The file is read through `bptt.core.untrusted.read_text_file`: a regular file of UTF-8 text
    of at most MAX_TEXT_BYTES (a FIFO or a device such as /dev/zero is refused by name, never read).
    """

    name = "chars"

    def __init__(self, seq_len: int, text_path: str | os.PathLike[str] | None) -> None:
        super().__init__(seq_len)
        if text_path is None:
            raise ValueError("the chars task needs a text file (--text PATH)")
        path = Path(text_path)
        try:
            text = read_text_file(path, MAX_TEXT_BYTES)
        except UntrustedFileError as exc:
            raise ValueError(f"text file {str(path)!r}: {exc.problem}") from exc
        except OSError as exc:
            raise ValueError(f"cannot read text file {str(path)!r}: {exc.strerror or exc}") from exc
        split = int(0.9 * len(text))
        if len(text) - split < self.seq_len + 1:
            raise ValueError(
                f"text file {str(path)!r} has {len(text)} characters; its held-out 10% must hold at least "
                f"seq_len + 1 = {self.seq_len + 1}, so it needs at least {10 * (self.seq_len + 1)}"
            )
        self.path = str(path)
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()  # of the text as read and trained on
        # code points sorted, each character's index among them: sorted(set(text)) without a Python loop
        points, codes = np.unique(np.frombuffer(text.encode("utf-32-le"), "<u4"), return_inverse=True)
        self.vocab = "".join(map(chr, points.tolist()))
        self.codes = codes.astype(np.int64).reshape(-1)
        self.train_codes, self.eval_codes = self.codes[:split], self.codes[split:]
        self.input_size = self.output_size = len(self.vocab)

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        N = check_positive_int("batch_size", batch_size)
        offsets = rng.integers(0, len(self.train_codes) - self.seq_len, N)
        return self._from(self.train_codes, offsets)

    def eval_batch(self, size: int, seed: int) -> Batch:
        # non-overlapping chunks of the held-out text, in order (no randomness needed)
        count = min(size, (len(self.eval_codes) - 1) // self.seq_len)
        return self._from(self.eval_codes, np.arange(count) * self.seq_len)

    def _from(self, codes: IntArray, offsets: IntArray) -> Batch:
        T = self.seq_len
        index = offsets[None, :] + np.arange(T + 1)[:, None]  # (T + 1, N)
        chunk = codes[index]
        return Batch(_one_hot(chunk[:-1], self.input_size), chunk[1:], np.ones((T, len(offsets)), bool))

    @property
    def data_fingerprint(self) -> dict[str, str]:
        """The text file: its path (to name it) and the SHA-256 of its text (to compare it)."""
        return {"text": self.path, "text_sha256": self.sha256}

    @property
    def baseline(self) -> dict[str, float]:
        freq = np.bincount(self.codes, minlength=self.output_size) / len(self.codes)
        nonzero = freq[freq > 0]
        return {"loss": -float(np.sum(nonzero * np.log(nonzero))), "accuracy": float(freq.max())}


def _data_task(path: str | os.PathLike[str], eval_fraction: float, split_seed: int) -> Task:

    return DataTask(path, eval_fraction=eval_fraction, split_seed=split_seed)


_BUILTINS: dict[str, Callable[..., Task]] = {
    "adding": Adding, "copy": Copy, "temporal-order": TemporalOrder, "reber": Reber, "parity": Parity,
    "chars": Chars, "data": _data_task,
}


def task_factory(name: str) -> Callable[..., Task]:
    """The constructor `name` stands for: a built-in task's, or a registered or MODULE:CLASS `Task` subclass.

    The one resolver of task names (`bptt.core.import_path.resolve`), read by `TrainConfig.validate`,
    `make_task` and ``bptt train --task``.

    Parameters
    ----------
    name : str
        One of TASKS, a name registered in the entry-point group bptt.tasks, or MODULE:CLASS.

    Returns
    -------
    callable

    Raises
    ------
    bptt.core.import_path.ImportPathError
        (a ValueError) Naming the name, what was tried and why it failed.

    Examples
    --------
    >>> task_factory("parity")
    <class 'bptt.training.tasks.Parity'>
    >>> task_factory("bptt.training.tasks:Parity") is task_factory("parity")
    True
    """
    return resolve(name, kind="task", builtins=_BUILTINS, group=TASK_GROUP, base=Task)


def is_builtin_task(name: str) -> bool:
    """Whether `name` is one of the package's own tasks (TASKS), not one resolved from elsewhere."""
    return name in _BUILTINS


def make_task(name: str, seq_len: int, text: str | os.PathLike[str] | None = None, min_seq_len: int | None = None,
              *, data: str | os.PathLike[str] | None = None, eval_fraction: float = 0.1,
              split_seed: int = 1234) -> Task:
    """The task called `name` with sequence length `seq_len`.

    Parameters
    ----------
    name : str
        One of TASKS, a name registered in the entry-point group bptt.tasks, or MODULE:CLASS naming a
        `Task` subclass, which is built as ``cls(seq_len=seq_len)`` and checked against the contract
        (`check_task`).
    seq_len : int
        T (the data task takes its T from the file instead).
    text : str or os.PathLike, optional
        chars: the text file.
    min_seq_len : int, optional
        adding: each sequence's length drawn in [min_seq_len, seq_len].
    data : str or os.PathLike, optional
        data: the .npz file (`bptt.training.data`).
    eval_fraction : float
        data: the share of the file's sequences held out.
    split_seed : int
        data: seeds which sequences are held out (`TrainConfig.eval_seed`).

    Returns
    -------
    Task

    Raises
    ------
    ValueError
        For a name that resolves to no task (`bptt.core.import_path.ImportPathError`), a task that
        cannot be built (a sequence too short for it, an unreadable text or data file), or a custom
        task that breaks the contract (`TaskContractError`).
    """
    factory = task_factory(name)
    if name == "adding":
        return Adding(seq_len, min_seq_len)
    if name == "chars":
        return Chars(seq_len, text)
    if name == "data":
        if data is None:
            raise ValueError("the data task needs a data file (--data FILE.npz)")
        return _data_task(data, eval_fraction, split_seed)
    if is_builtin_task(name):
        return factory(seq_len)
    try:
        task = factory(seq_len=seq_len)
    except TaskContractError:
        raise
    except Exception as exc:  # the task's own constructor failed: name it and what it raised
        raise ValueError(f"task {name!r}: {name}(seq_len={seq_len}) raised {type(exc).__name__}: {exc}") from exc
    check_task(task, name)
    return task

