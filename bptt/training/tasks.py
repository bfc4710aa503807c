"""Sequence tasks for training recurrent networks, each with a baseline to beat: the toy tasks, a
text, a user's own arrays, and the `Task` contract a task of one's own keeps.

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
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, cast

import numpy as np
from numpy.typing import NDArray

from ..core.checks import check_positive_int
from ..core.import_path import is_import_path, resolve
from ..core.losses import mse, softmax_cross_entropy
from ..core.truncation import LossFn
from ..core.types import Array, IntArray
from ..core.untrusted import UntrustedFileError, read_text_file

TASKS = ("adding", "copy", "temporal-order", "reber", "parity", "chars", "data")  # the built-in names
TASK_GROUP = "bptt.tasks"  # the entry-point group where installed packages register tasks
# The metrics the built-in tasks measure besides the loss; a custom task may name its own, so readers
# of a summary or a metrics record take the names from it (`metric_names`), not from this tuple.
TASK_METRICS = ("accuracy", "success")
MAX_TEXT_BYTES = 128 * 2**20  # chars: 128 MiB holds enwik8 (10^8 bytes) and any book; a run keeps the text
#                               and its codes in memory (~12 bytes a character), so this bounds it near 1.5 GiB
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]*")


class Batch(NamedTuple):
    """A batch of sequences, time-major, as every task returns it and the trainer consumes it.

    Attributes
    ----------
    xs : ndarray of float, shape (T, N, D)
        The inputs, D = the task's ``input_size``.
    targets : ndarray, shape (T, N, O) of float or (T, N) of int
        What the readout's outputs (T, N, O), O = the task's ``output_size``, should match: floats
        for a loss such as `bptt.mse`, class indices in [0, O) for `bptt.softmax_cross_entropy`.
        Only the entries under `mask` are read.
    mask : ndarray of bool, shape (T, N)
        The (step, sequence) entries whose loss counts; the loss is the mean over them.
    legal : ndarray of bool, shape (T, N, O), or None
        The reber task's legal next symbols (None elsewhere).
    lengths : ndarray of int, shape (N,), or None
        Each sequence's own length L_n in [1, T], packed: sequence n stops after L_n steps, its
        state frozen and no loss past them (None: every sequence runs all T steps).

    Examples
    --------
    Three sequences of 4 steps, a class to predict at each one's last step:

    >>> import numpy as np, bptt
    >>> xs = np.zeros((4, 3, 2))
    >>> lengths = np.array([4, 2, 3])
    >>> mask = np.zeros((4, 3), bool)
    >>> mask[lengths - 1, np.arange(3)] = True
    >>> targets = np.zeros((4, 3), np.int64)
    >>> targets[lengths - 1, np.arange(3)] = [1, 0, 2]
    >>> batch = bptt.Batch(xs, targets, mask, lengths=lengths)
    >>> batch.mask.sum(axis=0), batch.legal is None
    (array([1, 1, 1]), True)
    """

    xs: Array  # (T, N, D) float64
    targets: NDArray[Any]  # (T, N, O) float64 or (T, N) int64
    mask: NDArray[np.bool_]  # (T, N) bool
    legal: NDArray[np.bool_] | None = None  # reber: (T, N, O) bool, the legal next symbols
    lengths: IntArray | None = None  # (N,) each sequence's own length (None: all T steps)


class TaskContractError(ValueError):
    """A task that does not keep the contract of `Task`: names the task, the field, what came and
    what was expected."""


def _one_hot(indices: IntArray, size: int) -> Array:
    return np.eye(size)[indices]


def _accuracy(outputs: Array, batch: Batch, mask: NDArray[np.bool_] | None = None) -> float:
    mask = batch.mask if mask is None else mask
    return float(np.mean(outputs[mask].argmax(axis=-1) == batch.targets[mask]))


class Task:
    """A sequence task: what `bptt train --task` trains on. Subclass it to bring your own.

    A task draws batches of sequences (`sample`), holds a fixed held-out set (`eval_batch`), says
    how outputs are scored (`loss_fn`, `metrics`) and what an input-blind predictor scores
    (`baseline`), so a result means something only when it is clearly below that. Letters: T time,
    N batch, D = ``input_size``, O = ``output_size``.

    A task of your own is named by its import path, ``MODULE:CLASS`` (``bptt train --task
    mytasks:Echo``, ``TrainConfig(task="mytasks:Echo")``, a sweep spec), or by a name an installed
    package registers in the entry-point group ``bptt.tasks``. It is built as ``cls(seq_len=...)``
    with `TrainConfig.seq_len`; set ``input_size`` and ``output_size`` (class attributes or in
    ``__init__``) and override `sample` and `baseline`, and `metrics` if the task measures more than
    accuracy. Before a run starts its first batch is checked against this contract; a refusal
    (`TaskContractError`) names the task, the field, what came and what was expected.

    Parameters
    ----------
    seq_len : int
        The sequence length T (what a task makes of it is its own: copy's blank, reber's longest
        string).

    Attributes
    ----------
    name : str
        The built-in name ("" for a task of your own, which goes by its import path).
    input_size, output_size : int
        D and O.
    loss_fn : callable
        ``loss_fn(outputs[mask], targets[mask]) -> (loss, dL/doutputs)``: `bptt.softmax_cross_entropy`
        (the default, for class targets) or `bptt.mse` (float targets).
    seq_len : int

    Examples
    --------
    A task of your own: the input echoed back, one step later.

    >>> import numpy as np, bptt
    >>> class Echo(bptt.Task):
    ...     input_size, output_size = 1, 1
    ...     loss_fn = staticmethod(bptt.mse)
    ...     def sample(self, rng, batch_size):
    ...         T, N = self.seq_len, batch_size
    ...         xs = rng.standard_normal((T, N, 1))
    ...         targets = np.zeros((T, N, 1))
    ...         targets[1:] = xs[:-1]
    ...         mask = np.ones((T, N), bool)
    ...         mask[0] = False                    # nothing to recall at the first step
    ...         return bptt.Batch(xs, targets, mask)
    ...     def metrics(self, outputs, batch):
    ...         return {}                          # the loss says it all
    ...     @property
    ...     def baseline(self):
    ...         return {"loss": 1.0}               # predicting 0 for a standard normal
    >>> task = Echo(seq_len=5)
    >>> batch = task.sample(np.random.default_rng(0), 3)
    >>> batch.xs.shape, batch.targets.shape, batch.mask.shape
    ((5, 3, 1), (5, 3, 1), (5, 3))

    Saved in a module on the Python path (say ``mytasks.py``), it trains with ``bptt train --task
    mytasks:Echo``.
    """

    name = ""
    input_size: int
    output_size: int
    loss_fn: LossFn = staticmethod(softmax_cross_entropy)

    def __init__(self, seq_len: int) -> None:
        self.seq_len = check_positive_int("seq_len", seq_len)

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        """A training batch of `batch_size` sequences, drawn from `rng` alone.

        Parameters
        ----------
        rng : numpy.random.Generator
            The run's data generator: draw everything random from it, so a run (and its resume,
            which draws a batch again from the generator's saved state) is reproducible.
        batch_size : int
            N.

        Returns
        -------
        Batch
            xs (T, N, D) float; targets (T, N, O) float or (T, N) int; mask (T, N) bool selecting
            at least one entry; lengths (N,) int in [1, T] or None. T may differ from `seq_len`
            (copy's is seq_len + 20) but is the same for every batch.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define sample(rng, batch_size)")

    def eval_batch(self, size: int, seed: int) -> Batch:
        """The held-out set: the same for every run with the same `seed` and `size`.

        Parameters
        ----------
        size : int
            The most sequences it holds (`TrainConfig.eval_size`).
        seed : int
            `TrainConfig.eval_seed`.

        Returns
        -------
        Batch
            Shaped as `sample`'s, with N <= size. The default: ``sample`` from a generator of its own
            seed, independent of the training data.
        """
        return self.sample(np.random.default_rng([seed, 0x5EED]), size)

    def metrics(self, outputs: Array, batch: Batch) -> dict[str, float]:
        """What the task measures besides the loss, on the readout's outputs for `batch`.

        Parameters
        ----------
        outputs : ndarray of float, shape (T, N, O)
        batch : Batch

        Returns
        -------
        dict of str to float
            By name, e.g. ``{"accuracy": 0.93}`` (the default: argmax accuracy over the masked
            entries). Names are lower-case identifiers other than "loss"; each is written as
            ``eval_<name>`` to metrics.jsonl and summary.json and printed by ``bptt train``.
        """
        return {"accuracy": _accuracy(outputs, batch)}

    @property
    def baseline(self) -> dict[str, float]:
        """What the best input-blind predictor scores: ``{"loss": ...}`` and, under the same names
        as `metrics`, what it measures (written as ``baseline_<name>`` next to ``eval_<name>``)."""
        raise NotImplementedError(f"{type(self).__name__} does not define its baseline")

    @property
    def data_fingerprint(self) -> dict[str, str]:
        """What the training data depends on beyond the settings: {} for a generated task; a file's
        path and SHA-256 for one read from a file, so a resume finds the same data."""
        return {}


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
        return {"accuracy": _accuracy(outputs, batch, recall)}  # over the recalled symbols only

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
        return {"success": float(np.mean(step_ok.all(axis=0))), "accuracy": _accuracy(outputs, batch)}

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
    from .data import DataTask  # data imports this module for Task and Batch

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


def _refuse(name: str, field: str, came: str, expected: str) -> TaskContractError:
    return TaskContractError(f"task {name!r}: {field} is {came}, expected {expected}")


def _size(task: Task, name: str, attribute: str) -> int:
    value = getattr(task, attribute, None)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise _refuse(name, attribute, repr(value), "a positive integer (set it on the class or in __init__)")
    return int(value)


def check_task(task: Task, name: str) -> None:
    """Check a task against the contract of `Task`: its sizes, one batch from `sample`, one from
    `eval_batch`, `metrics` on outputs of the right shape, and `baseline`.

    Parameters
    ----------
    task : Task
    name : str
        How it was named (MODULE:CLASS), for the messages.

    Raises
    ------
    TaskContractError
        (a ValueError) Naming the task, the field, what came and what was expected.
    """
    _size(task, name, "input_size")
    _size(task, name, "output_size")
    if not callable(getattr(task, "loss_fn", None)):
        raise _refuse(name, "loss_fn", repr(getattr(task, "loss_fn", None)), "a callable such as bptt.mse")
    batch_size = 2
    batch = _call(name, "sample(rng, 2)", lambda: task.sample(np.random.default_rng(0), batch_size))
    check_batch(task, batch, name, batch_size=batch_size)
    held_out = _call(name, "eval_batch(2, 0)", lambda: task.eval_batch(batch_size, 0))
    check_batch(task, held_out, name, where="eval_batch", batch_size=None)
    outputs = np.zeros(batch.xs.shape[:2] + (task.output_size,))
    metrics = _call(name, "metrics(outputs, batch)", lambda: task.metrics(outputs, batch))
    check_scores(name, "metrics(outputs, batch)", metrics, loss=False)
    baseline = _call(name, "baseline", lambda: task.baseline)
    check_scores(name, "baseline", baseline, loss=True)


def _call(name: str, what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except TaskContractError:
        raise
    except Exception as exc:
        raise TaskContractError(f"task {name!r}: {what} raised {type(exc).__name__}: {exc}") from exc


def check_scores(name: str, field: str, scores: object, *, loss: bool) -> None:
    """Refuse metrics (loss=False) or a baseline (loss=True) that is not a dict of named numbers."""
    if not isinstance(scores, dict):
        raise _refuse(name, field, type(scores).__name__, "a dict of str to float")
    if loss and "loss" not in scores:
        raise _refuse(name, field, f"a dict with keys {sorted(scores)}", 'a dict with "loss"')
    for key, value in scores.items():
        if not isinstance(key, str) or not _METRIC_NAME.fullmatch(key) or (key == "loss" and not loss):
            raise _refuse(name, f"{field}'s key {key!r}", "not a metric's name",
                          'a lower-case identifier other than "loss"' if not loss else
                          '"loss" or a lower-case identifier (the name of a metric)')
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise _refuse(name, f"{field}[{key!r}]", type(value).__name__, "a number")


def check_batch(task: Task, batch: object, name: str, *, where: str = "sample", batch_size: int | None) -> Batch:
    """Refuse a batch that does not keep `Batch`'s contract for this task's sizes.

    Parameters
    ----------
    task : Task
    batch : object
        What `where` returned.
    name : str
        How the task was named, for the messages.
    where : str
        "sample" or "eval_batch".
    batch_size : int or None
        The N that was asked for (None: any N >= 1).

    Returns
    -------
    Batch
        `batch`, checked.

    Raises
    ------
    TaskContractError
        Naming the task, the field, what came and what was expected.
    """
    if not isinstance(batch, Batch):
        raise _refuse(name, f"{where}'s result", type(batch).__name__, "a bptt.Batch")
    D, O = task.input_size, task.output_size
    xs, targets, mask = batch.xs, batch.targets, batch.mask
    for field, value in (("xs", xs), ("targets", targets), ("mask", mask)):
        if not isinstance(value, np.ndarray):
            raise _refuse(name, f"{where}'s {field}", type(value).__name__, "a numpy array")
    N = "N" if batch_size is None else str(batch_size)
    if xs.dtype.kind != "f" or xs.ndim != 3 or xs.shape[0] < 1 or xs.shape[2] != D or xs.shape[1] < 1 or (
            batch_size is not None and xs.shape[1] != batch_size):
        raise _refuse(name, f"{where}'s xs", f"{xs.dtype} {xs.shape}", f"float (T, {N}, {D}) (D = input_size)")
    T, n = xs.shape[:2]
    if not np.isfinite(xs).all():
        raise _refuse(name, f"{where}'s xs", "not finite everywhere", "finite numbers")
    if mask.dtype != np.bool_ or mask.shape != (T, n):
        raise _refuse(name, f"{where}'s mask", f"{mask.dtype} {mask.shape}", f"bool {(T, n)} (T, N)")
    if where == "sample" and not mask.any():
        raise _refuse(name, f"{where}'s mask", "False everywhere", "at least one (step, sequence) with a loss")
    # classes for cross-entropy, values for MSE; a loss of one's own may take either
    classes = task.loss_fn is softmax_cross_entropy or (task.loss_fn is not mse and targets.dtype.kind in "iu")
    if classes:
        if targets.dtype.kind not in "iu" or targets.shape != (T, n):
            raise _refuse(name, f"{where}'s targets", f"{targets.dtype} {targets.shape}",
                          f"integer class indices {(T, n)} (T, N) for softmax_cross_entropy")
        counted = targets[mask]
        if counted.size and (counted.min() < 0 or counted.max() >= O):
            raise _refuse(name, f"{where}'s targets", f"classes in [{counted.min()}, {counted.max()}]",
                          f"classes in [0, {O}) (O = output_size)")
    elif targets.dtype.kind != "f" or targets.shape != (T, n, O):
        raise _refuse(name, f"{where}'s targets", f"{targets.dtype} {targets.shape}",
                      f"float values {(T, n, O)} (T, N, O)" + (" for mse" if task.loss_fn is mse else ""))
    if batch.lengths is not None:
        lengths = batch.lengths
        if not isinstance(lengths, np.ndarray) or lengths.dtype.kind not in "iu" or lengths.shape != (n,):
            raise _refuse(name, f"{where}'s lengths", f"{getattr(lengths, 'dtype', type(lengths).__name__)} "
                          f"{getattr(lengths, 'shape', '')}", f"integer {(n,)} (N,) or None")
        if lengths.min() < 1 or lengths.max() > T:
            raise _refuse(name, f"{where}'s lengths", f"in [{lengths.min()}, {lengths.max()}]", f"in [1, T = {T}]")
        if (mask & (np.arange(T)[:, None] >= lengths)).any():
            raise _refuse(name, f"{where}'s mask", "True past a sequence's length",
                          "a loss only at steps t < lengths[n]")
    return batch


def metric_names(record: Mapping[str, Any]) -> list[str]:
    """The metrics besides the loss that a summary or a metrics record holds, in its order.

    Parameters
    ----------
    record : dict
        A summary.json, `bptt.evaluate`'s result or a metrics.jsonl line: ``eval_<name>`` keys.

    Returns
    -------
    list of str

    Examples
    --------
    >>> metric_names({"eval_loss": 0.1, "eval_accuracy": 0.9, "baseline_accuracy": 0.5, "eval_f1": 0.8})
    ['accuracy', 'f1']
    """
    return [key[len("eval_"):] for key in record if key.startswith("eval_") and key != "eval_loss"]
