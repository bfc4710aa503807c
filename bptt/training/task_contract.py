"""The contract every task keeps, built in or brought: `Batch` (what a task's batches are), `Task` (what
a task provides) and the checks a task of one's own passes before a run starts (`check_task`) and
on every batch it draws (`check_batch`), each refusal a `TaskContractError` naming the task, the field,
what came and what was expected.

Letters: T time, N batch, D input size, O outputs.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ..core.checks import check_positive_int
from ..core.losses import mse, softmax_cross_entropy
from ..core.truncation import LossFn
from ..core.types import Array, IntArray

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


def accuracy(outputs: Array, batch: Batch, mask: NDArray[np.bool_] | None = None) -> float:
    """The share of the entries under `mask` (default: the batch's) whose largest output is the target class."""
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
        return {"accuracy": accuracy(outputs, batch)}

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
