"""Every setting of a training run, and the one place that checks them.

`TrainConfig.validate` checks each setting against what it allows and raises a `SettingError` that
names the setting, the value and what is allowed; `bptt train` turns that into a usage error on the
matching option. A setting given a value other than its default where the other settings leave it
without effect (momentum with adam, dropout with one layer, a text file for a task that reads none)
is refused too, naming what it needs: an option that silently does nothing is a mistake the user
cannot see. What depends on more than the settings (a task's shortest sequence, a readable text or
data file, a checkpoint) is checked where it is read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Callable

from ..cells.registry import cell_factory
from ..core.import_path import ImportPathError
from .clipping import CLIPS
from .init import INITS
from .optim import OPTIMIZERS, SCHEDULES
from .tasks import task_factory

DTYPES = ("float64", "float32")
ON_NONFINITE = ("stop", "skip")


class SettingError(ValueError):
    """A setting outside what it allows.

    Parameters
    ----------
    setting : str
        The TrainConfig field, e.g. "clip_threshold".
    value
        The value it was given.
    allowed : str
        What it allows, completing "must be ...", e.g. "a positive finite number".
    problem : str, optional
        The whole complaint about the value, where "must be ..." does not say it (a value that has
        no effect under the other settings); default "must be {allowed}, got {value!r}".
    """

    def __init__(self, setting: str, value: object, allowed: str, problem: str | None = None) -> None:
        self.setting, self.value, self.allowed = setting, value, allowed
        self.problem = f"must be {allowed}, got {value!r}" if problem is None else problem
        super().__init__(f"{setting} {self.problem}")


@dataclass
class TrainConfig:
    """Every setting of a training run, each with its default; config.json holds one of these.

    Constructing one checks nothing: `validate()` does (and `bptt.train` calls it). Each field is a
    `bptt train` option of the same name (with dashes).

    Attributes
    ----------
    task : str, default "adding"
        One of adding, copy, temporal-order, reber, parity, chars, data; a name registered in the
        entry-point group bptt.tasks; or MODULE:CLASS naming a `bptt.Task` subclass importable on the
        Python path, built as ``cls(seq_len=seq_len)``.
    cell : str, default "gru"
        rnn (tanh), rnn-relu, lstm or gru; a name registered in the entry-point group bptt.cells; or
        MODULE:CLASS naming a `bptt.Cell` subclass importable on the Python path.
    hidden : int, default 32
        Hidden size H.
    init : str, default "default"
        W_hh: default (PyTorch's uniform), identity (and zero biases) or orthogonal.
    layers : int, default 1
        Stacked layers L (more than one, or bidirectional: a `bptt.Stack`).
    bidirectional : bool, default False
        Both directions in every layer (full BPTT only: k1 must stay None).
    dropout : float, default 0.0
        Dropout between stacked layers, in [0, 1) (needs layers >= 2).
    proj_size : int, default 0
        lstm only: project h to this many features (0: none).
    seq_len : int, default 30
        Sequence length T (copy: the blank's length; reber: the longest string; data: the file's
        T, this setting unused).
    min_seq_len : int or None, default None
        adding: each sequence's length drawn in [min_seq_len, seq_len] (None: all T).
    steps : int, default 500
        Parameter updates.
    batch_size : int, default 32
        Sequences per batch N.
    lr : float, default 0.01
        The (peak) learning rate.
    optimizer : str, default "adam"
        sgd, momentum, nesterov, rmsprop or adam.
    momentum : float, default 0.9
        For momentum and nesterov (no other optimizer reads it).
    schedule : str, default "constant"
        Learning-rate schedule: constant, cosine (to 0 at `steps`) or step.
    lr_step_size : int, default 1000
        Step schedule: multiply lr by lr_gamma every this many updates.
    lr_gamma : float, default 0.1
        Step schedule: the factor.
    clip : str, default "norm"
        Gradient clipping: norm (global norm), value (element-wise) or none.
    clip_threshold : float, default 1.0
        The max norm, or the max absolute element (not with clip none).
    k1 : int or None, default None
        TBPTT: steps between updates (None: the whole sequence).
    k2 : int or None, default None
        TBPTT: steps backpropagated per update, at least k1 (None: k1).
    dtype : str, default "float64"
        float64 or float32.
    seed : int, default 0
        Seeds the weights and the training data.
    eval_every : int, default 100
        Evaluate on the held-out set every this many updates (and at the end).
    eval_size : int, default 500
        Sequences in the held-out set (data: the held-out share is eval_fraction of the file).
    eval_seed : int, default 1234
        Seed of the held-out set, independent of `seed` (data: which sequences are held out;
        chars: unused, the held-out text is its last 10%).
    checkpoint_every : int, default 100
        Write checkpoint.npz every this many updates (and at the end).
    record_every : int, default 50
        Log dh_norms every this many updates (0: never).
    on_nonfinite : str, default "stop"
        A non-finite loss, gradient or update: stop (after a checkpoint) or skip the step.
    target_loss : float or None, default None
        Stop early once the held-out loss is at or below this.
    text : str or None, default None
        chars: the path of the text file.
    data : str or None, default None
        data: the path of an .npz file of one's own sequences (`bptt.training.data`).
    eval_fraction : float, default 0.1
        data: the share of the file's sequences held out, in (0, 1), drawn from eval_seed.
    out : str or None, default None
        The run folder, holding no run yet (None: a new runs/<task>-<cell>-<time>-<suffix>).

    Examples
    --------
    >>> import bptt
    >>> config = bptt.TrainConfig(task="parity", cell="lstm", layers=2, steps=100)
    >>> config.validate().truncation(T=30)
    (30, 30)
    >>> bptt.TrainConfig(k1=5, k2=3).validate()
    Traceback (most recent call last):
    ...
    bptt.training.config.SettingError: k2 must be >= k1 = 5 (an update backpropagates at least its k1 new steps), got 3
    """

    task: str = "adding"  # a built-in (bptt.training.tasks.TASKS), a registered name or MODULE:CLASS
    cell: str = "gru"  # rnn (tanh), rnn-relu, lstm, gru, a registered name or MODULE:CLASS
    hidden: int = 32  # hidden size H
    init: str = "default"  # W_hh: default (PyTorch's uniform), identity (and zero biases) or orthogonal
    layers: int = 1  # stacked layers L (more than one, or bidirectional: a bptt.Stack)
    bidirectional: bool = False  # both directions in every layer (full BPTT only: k1 must stay None)
    dropout: float = 0.0  # dropout between stacked layers, in [0, 1)
    proj_size: int = 0  # lstm only: project h to this many features (0: none)
    seq_len: int = 30  # sequence length T (copy: the blank's length; reber: the longest string)
    min_seq_len: int | None = None  # adding: each sequence's length drawn in [min_seq_len, seq_len] (None: all T)
    steps: int = 500  # parameter updates
    batch_size: int = 32  # sequences per batch N
    lr: float = 1e-2  # (peak) learning rate
    optimizer: str = "adam"  # sgd, momentum, nesterov, rmsprop or adam
    momentum: float = 0.9  # for momentum and nesterov
    schedule: str = "constant"  # learning-rate schedule: constant, cosine (to 0 at `steps`) or step
    lr_step_size: int = 1000  # step schedule: multiply lr by lr_gamma every this many updates
    lr_gamma: float = 0.1  # step schedule: the factor
    clip: str = "norm"  # gradient clipping: norm (global norm), value (element-wise) or none
    clip_threshold: float = 1.0  # the max norm, or the max |element|
    k1: int | None = None  # TBPTT: steps between updates (None: the whole sequence)
    k2: int | None = None  # TBPTT: steps backpropagated per update, >= k1 (None: k1)
    dtype: str = "float64"  # float64 or float32
    seed: int = 0  # seeds the weights and the training data
    eval_every: int = 100  # evaluate on the held-out set every this many updates (and at the end)
    eval_size: int = 500  # sequences in the held-out set
    eval_seed: int = 1234  # seed of the held-out set, independent of `seed`
    checkpoint_every: int = 100  # write checkpoint.npz every this many updates (and at the end)
    record_every: int = 50  # log dh_norms every this many updates (0: never)
    on_nonfinite: str = "stop"  # non-finite loss or gradient: stop (after a checkpoint) or skip the step
    target_loss: float | None = None  # stop early once the held-out loss is at or below this
    text: str | None = None  # chars: path of the text file
    data: str | None = None  # data: path of an .npz file of one's own sequences
    eval_fraction: float = 0.1  # data: the share of the file's sequences held out, drawn from eval_seed
    out: str | None = None  # run folder, holding no run yet (None: a new runs/<task>-<cell>-<time>-<suffix>)

    def validate(self) -> "TrainConfig":
        """Check every setting; return self.

        Returns
        -------
        TrainConfig
            self, unchanged.

        Raises
        ------
        SettingError
            (a ValueError) for the first setting outside what it allows, naming the setting, the
            value and what is allowed.
        """
        choices = {"init": INITS, "optimizer": OPTIMIZERS,
                   "schedule": SCHEDULES, "clip": CLIPS, "dtype": DTYPES, "on_nonfinite": ON_NONFINITE}
        for name, options in choices.items():
            if getattr(self, name) not in options:
                raise SettingError(name, getattr(self, name), f"one of {list(options)}")
        for name, factory in (("task", task_factory), ("cell", cell_factory)):
            try:
                factory(getattr(self, name))
            except ImportPathError as exc:
                raise SettingError(name, getattr(self, name), f"{exc.expected} ({exc.problem})") from exc
        for name in ("hidden", "layers", "seq_len", "steps", "batch_size", "lr_step_size", "eval_every",
                     "eval_size", "checkpoint_every"):
            _integer(self, name, low=1)
        if not isinstance(self.bidirectional, bool):
            raise SettingError("bidirectional", self.bidirectional, "True or False")
        _number(self, "dropout", "a probability in [0, 1)", lambda v: 0 <= v < 1)
        _integer(self, "proj_size", low=0)
        if self.proj_size:
            if self.cell != "lstm":
                raise SettingError("proj_size", self.proj_size, f"0 for the {self.cell} cell (only the lstm has projections)")
            if self.proj_size >= self.hidden:
                raise SettingError("proj_size", self.proj_size, f"below hidden = {self.hidden}")
            if self.init != "default":
                raise SettingError("init", self.init, "default with proj_size (W_hh is not square then)")
        if self.min_seq_len is not None:
            if self.task != "adding":
                raise SettingError("min_seq_len", self.min_seq_len, f"None for the {self.task} task (only adding draws lengths)")
            _integer(self, "min_seq_len", low=2)
            if self.min_seq_len > self.seq_len:
                raise SettingError("min_seq_len", self.min_seq_len, f"at most seq_len = {self.seq_len}")
        for name in ("record_every", "seed", "eval_seed"):
            _integer(self, name, low=0)
        _number(self, "lr", "a positive finite number", lambda v: v > 0 and math.isfinite(v))
        _number(self, "momentum", "a number in [0, 1)", lambda v: 0 <= v < 1)
        _number(self, "lr_gamma", "a number in (0, 1]", lambda v: 0 < v <= 1)
        _number(self, "clip_threshold", "a positive finite number", lambda v: v > 0 and math.isfinite(v))
        if self.target_loss is not None:
            _number(self, "target_loss", "a number or None", lambda v: not math.isnan(v))
        if self.k1 is not None:
            _integer(self, "k1", low=1, extra=" or None (the whole sequence)")
        if self.k2 is not None:
            if self.k1 is None:
                raise SettingError("k2", self.k2, "None when k1 is None (give k1 too, or neither for full BPTT)")
            _integer(self, "k2", low=1, extra=" or None (k1)")
            if self.k2 < self.k1:
                allowed = f">= k1 = {self.k1} (an update backpropagates at least its k1 new steps)"
                raise SettingError("k2", self.k2, allowed)
        if self.bidirectional and self.k1 is not None:
            raise SettingError("k1", self.k1, "None with bidirectional: the reverse direction needs the whole sequence")
        if self.task == "chars" and self.text is None:
            raise SettingError("text", self.text, "the path of a text file for the chars task")
        if self.task == "data" and self.data is None:
            raise SettingError("data", self.data, "the path of an .npz file for the data task")
        _number(self, "eval_fraction", "a share in (0, 1)", lambda v: 0 < v < 1)
        for name in ("text", "data", "out"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise SettingError(name, value, "a path or None")
        self._refuse_what_does_nothing()
        return self

    def _refuse_what_does_nothing(self) -> None:
        """Refuse a setting whose value (other than its default) the other settings leave unread."""
        momentum_read = self.optimizer in ("momentum", "nesterov")
        unread = [  # (setting, unread here, what it needs, under which settings)
            ("dropout", self.layers == 1, "layers >= 2 (dropout acts between stacked layers)",
             f"with layers = {self.layers}"),
            ("momentum", not momentum_read, "optimizer momentum or nesterov", f"with optimizer {self.optimizer!r}"),
            ("lr_step_size", self.schedule != "step", "schedule step", f"with schedule {self.schedule!r}"),
            ("lr_gamma", self.schedule != "step", "schedule step", f"with schedule {self.schedule!r}"),
            ("clip_threshold", self.clip == "none", "clip norm or value", "with clip 'none'"),
            ("text", self.task != "chars", "task chars", f"with task {self.task!r}"),
            ("data", self.task != "data", "task data (the CLI's --data alone selects it)", f"with task {self.task!r}"),
            ("eval_fraction", self.task != "data", "task data (the share of a data file held out)",
             f"with task {self.task!r}"),
            ("seq_len", self.task == "data", "a task other than data (a data file's T is its sequence length)",
             "with task 'data'"),
            ("eval_size", self.task == "data", "a task other than data (data holds out eval_fraction of its "
             "sequences, and evaluates them all)", "with task 'data'"),
            ("eval_seed", self.task == "chars", "a task other than chars (chars holds out the last 10% of its "
             "text, drawing nothing)", "with task 'chars'"),
        ]
        for setting, is_unread, needs, under in unread:
            value = getattr(self, setting)
            if is_unread and value != _DEFAULTS[setting]:
                raise SettingError(setting, value, needs, f"{value!r} has no effect {under}; it needs {needs}")

    def truncation(self, T: int) -> tuple[int, int]:
        """(k1, k2) for sequences of T steps, where None stands for the whole sequence.

        Parameters
        ----------
        T : int
            The batch's sequence length (which, for some tasks, exceeds `seq_len`).

        Returns
        -------
        tuple of int
            (k1, k2): k1 = T when unset, k2 = k1 when unset.
        """
        k1 = T if self.k1 is None else self.k1
        return k1, (k1 if self.k2 is None else self.k2)


_DEFAULTS = {field.name: field.default for field in fields(TrainConfig)}


def _integer(config: TrainConfig, name: str, low: int, extra: str = "") -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        allowed = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
        raise SettingError(name, value, allowed + extra)


def _number(config: TrainConfig, name: str, allowed: str, ok: Callable[[float], bool]) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise SettingError(name, value, allowed)
