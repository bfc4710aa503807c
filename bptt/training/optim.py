"""Optimizers and learning-rate schedules on parameter arrays, updated in place: `bptt.optim`.

An optimizer updates a dict of arrays, or a list of dicts (like PyTorch's parameter groups: a cell's
and a readout's), from gradients of the same structure::

    opt = bptt.optim.Adam(1e-2)
    opt.step([cell.params, readout.params], [grads.params, readout_grads])

Each keeps its state in `self.state`, a dict slot -> {key: array} (e.g. Adam's "m" and "v"; the key
is the parameter's name, or "<group>/<name>" for a list of dicts), plus the update count `self.t`;
`state_arrays()` and `load_state_arrays()` flatten it for a checkpoint. The update rules are
PyTorch's (torch.optim.SGD, RMSprop, Adam with their default options), so a test can compare them
step by step. The learning rate is a number, a `Schedule`, or any function of the update index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

import numpy as np
from numpy.typing import NDArray

from ..core.types import Array, Params

SCHEDULES = ("constant", "cosine", "step")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam")
ParamGroups = Union[Mapping[str, Array], Sequence[Mapping[str, Array]]]  # a dict of arrays, or a list of them
LearningRate = Union["Schedule", float, Callable[[int], float]]  # a number, a Schedule, or t -> lr


@dataclass(frozen=True)
class Schedule:
    """Learning rate as a function of the update index t = 0, 1, 2, ...

    constant: lr.   cosine: min_lr + (lr - min_lr) (1 + cos(pi t / total_steps)) / 2.
    step: lr * gamma ** (t // step_size).

    Parameters
    ----------
    kind : str
        One of SCHEDULES: "constant", "cosine" or "step".
    lr : float
        The (peak) learning rate, positive and finite.
    total_steps : int
        cosine: the updates over which lr decays to min_lr.
    min_lr : float
        cosine: the floor, in [0, lr].
    step_size : int
        step: multiply by gamma every this many updates.
    gamma : float
        step: the factor, in (0, 1].

    Raises
    ------
    ValueError
        Naming the argument outside what it allows.

    Examples
    --------
    >>> import bptt
    >>> schedule = bptt.optim.Schedule("step", lr=0.1, step_size=2, gamma=0.5)
    >>> [schedule(t) for t in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    kind: str = "constant"
    lr: float = 1e-2
    total_steps: int = 1  # cosine: steps over which lr decays to min_lr
    min_lr: float = 0.0  # cosine: the floor
    step_size: int = 1000  # step: decay every this many updates
    gamma: float = 0.1  # step: the decay factor

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.kind!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be a positive finite number, got {self.lr!r}")
        if self.total_steps < 1 or self.step_size < 1:
            raise ValueError(
                f"total_steps and step_size must be positive, got {self.total_steps}, {self.step_size}"
            )
        if not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"min_lr must lie in [0, lr={self.lr}], got {self.min_lr}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must lie in (0, 1], got {self.gamma}")

    def __call__(self, t: int) -> float:
        if self.kind == "constant":
            return self.lr
        if self.kind == "cosine":
            progress = min(t, self.total_steps) / self.total_steps
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr * self.gamma ** (t // self.step_size)


def _groups(params: ParamGroups, grads: ParamGroups) -> Iterator[tuple[str, Array, Array]]:
    """(state key, parameter, gradient) for a dict of parameters, or a list of dicts, and gradients of
    the same structure; a list's keys are "<group>/<name>"."""
    if isinstance(params, Mapping):
        if not isinstance(grads, Mapping):
            raise ValueError(f"grads must be a dict like params, got a {type(grads).__name__}")
        pairs = [("", params, grads)]
    else:
        if isinstance(grads, Mapping) or len(grads) != len(params):
            given = "a dict" if isinstance(grads, Mapping) else f"{len(grads)} dicts"
            raise ValueError(f"grads must be a list of {len(params)} dicts, one per dict of params; got {given}")
        pairs = [(f"{i}/", p, g) for i, (p, g) in enumerate(zip(params, grads))]
    for prefix, group, group_grads in pairs:
        if set(group) != set(group_grads):
            where = f" (group {prefix[:-1]})" if prefix else ""
            raise ValueError(f"grads{where} must have the keys of params {sorted(group)}, got {sorted(group_grads)}")
        for name, p in group.items():
            g = group_grads[name]
            if np.shape(g) != np.shape(p):
                raise ValueError(f"the gradient of {prefix}{name} has shape {np.shape(g)}, its parameter "
                                 f"{np.shape(p)}")
            yield prefix + name, p, g


class Optimizer:
    """Base of the optimizers: `step(params, grads)` updates params in place and returns the
    learning rate it used.

    Parameters
    ----------
    lr : float, Schedule or callable
        The learning rate: a number, a `Schedule`, or a function of the update index t = 0, 1, ...

    Attributes
    ----------
    state : dict
        slot -> {key: array}, e.g. Adam's "m" and "v", one array per parameter.
    t : int
        Updates applied so far.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, lr: LearningRate) -> None:
        if isinstance(lr, Schedule) or callable(lr):
            self.schedule: Callable[[int], float] = lr
        else:
            self.schedule = Schedule("constant", float(lr))
        self.state: dict[str, Params] = {slot: {} for slot in self.slots}
        self.t = 0  # updates applied so far

    def _slot(self, slot: str, name: str, like: Array) -> Array:
        buf = self.state[slot].get(name)
        if buf is None:
            buf = self.state[slot][name] = np.zeros_like(like)
        return buf

    def step(self, params: ParamGroups, grads: ParamGroups) -> float:
        """One update of every parameter, in place.

        Parameters
        ----------
        params : dict of str to ndarray, or list of such dicts
            The live arrays (e.g. ``cell.params``), updated in place. Pass the same structure at
            every step: the state is kept per key.
        grads : the same structure
            Their gradients, each the shape of its parameter.

        Returns
        -------
        float
            The learning rate of this update.

        Raises
        ------
        ValueError
            If grads do not have params' structure, keys and shapes (nothing is updated then).
        """
        triples = list(_groups(params, grads))  # every check before the first update
        lr = float(self.schedule(self.t))
        self.t += 1
        for key, p, g in triples:
            self._update(key, p, g, lr)
        return lr

    def _update(self, name: str, p: Array, g: Array, lr: float) -> None:
        raise NotImplementedError

    def state_arrays(self) -> dict[str, NDArray[Any]]:
        """Flat {"slot/key": array} plus {"t": update count}, for a checkpoint."""
        flat = {f"{slot}/{name}": buf.copy() for slot, bufs in self.state.items() for name, buf in bufs.items()}
        flat["t"] = np.array(self.t)
        return flat

    def load_state_arrays(self, flat: Mapping[str, NDArray[Any]]) -> None:
        """Restore what `state_arrays` gave.

        Raises
        ------
        ValueError
            If a slot is not this optimizer's.
        KeyError
            If "t" is missing.
        """
        self.state = {slot: {} for slot in self.slots}
        for key, value in flat.items():
            if key == "t":
                continue
            slot, _, name = key.partition("/")
            if slot not in self.state:
                raise ValueError(f"optimizer state slot {slot!r} unknown to {type(self).__name__}")
            self.state[slot][name] = np.array(value)
        self.t = int(flat["t"])


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's torch.optim.SGD: p -= lr * g; with momentum mu,
    b = mu b + g and p -= lr * b (Nesterov: p -= lr * (g + mu b)).

    Parameters
    ----------
    lr : float, Schedule or callable
        The learning rate (see `Optimizer`).
    momentum : float
        mu in [0, 1) (0: plain SGD).
    nesterov : bool
        Nesterov's momentum (needs momentum > 0).

    Examples
    --------
    >>> import numpy as np, bptt
    >>> w = {"w": np.array([1.0, -2.0])}
    >>> opt = bptt.optim.SGD(0.1)
    >>> opt.step(w, {"w": np.array([1.0, 1.0])})
    0.1
    >>> w["w"]
    array([ 0.9, -2.1])
    """

    slots = ("momentum",)

    def __init__(self, lr: LearningRate, momentum: float = 0.0, nesterov: bool = False) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs a momentum > 0")
        super().__init__(lr)
        self.momentum, self.nesterov = momentum, nesterov

    def _update(self, name: str, p: Array, g: Array, lr: float) -> None:
        if self.momentum == 0:
            p -= lr * g
            return
        b = self._slot("momentum", name, p)
        b *= self.momentum
        b += g
        p -= lr * (g + self.momentum * b if self.nesterov else b)


class RMSprop(Optimizer):
    """RMSprop, PyTorch's torch.optim.RMSprop: v = alpha v + (1 - alpha) g^2,
    p -= lr * g / (sqrt(v) + eps).

    Parameters
    ----------
    lr : float, Schedule or callable
        The learning rate (see `Optimizer`).
    alpha : float
        The decay of the squared-gradient average, in [0, 1).
    eps : float
        Added to the root, for stability.

    Examples
    --------
    >>> import numpy as np, bptt
    >>> w = {"w": np.zeros(2)}
    >>> _ = bptt.optim.RMSprop(0.01).step(w, {"w": np.array([3.0, -0.5])})
    >>> np.round(w["w"], 4)         # the first step is lr / sqrt(1 - alpha) in each gradient's direction
    array([-0.1,  0.1])
    """

    slots = ("square_avg",)

    def __init__(self, lr: LearningRate, alpha: float = 0.99, eps: float = 1e-8) -> None:
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
        super().__init__(lr)
        self.alpha, self.eps = alpha, eps

    def _update(self, name: str, p: Array, g: Array, lr: float) -> None:
        v = self._slot("square_avg", name, p)
        v *= self.alpha
        v += (1 - self.alpha) * g * g
        p -= lr * g / (np.sqrt(v) + self.eps)


class Adam(Optimizer):
    """Adam, PyTorch's torch.optim.Adam: m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
    p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)   (t counts from 1).

    Parameters
    ----------
    lr : float, Schedule or callable
        The learning rate (see `Optimizer`).
    beta1, beta2 : float
        The decays of the gradient's and the squared gradient's averages, each in [0, 1).
    eps : float
        Added to the root, for stability.

    Examples
    --------
    A cell and its readout, two dicts, one optimizer:

    >>> import numpy as np, bptt
    >>> cell, readout = bptt.GRU(2, 4, seed=0), bptt.Linear(4, 1, seed=1)
    >>> opt = bptt.optim.Adam(1e-2)
    >>> grads = [{k: np.ones_like(v) for k, v in cell.params.items()},
    ...          {k: np.ones_like(v) for k, v in readout.params.items()}]
    >>> before = readout.params["bias"].copy()
    >>> opt.step([cell.params, readout.params], grads)
    0.01
    >>> readout.params["bias"] - before            # Adam's first step is lr against the gradient's sign
    array([-0.01])
    >>> sorted(key for key in opt.state_arrays() if key.startswith("m/1/"))   # the readout's, group 1
    ['m/1/bias', 'm/1/weight']
    """

    slots = ("m", "v")

    def __init__(self, lr: LearningRate, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{label} must lie in [0, 1), got {beta}")
        super().__init__(lr)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def _update(self, name: str, p: Array, g: Array, lr: float) -> None:
        m = self._slot("m", name, p)
        v = self._slot("v", name, p)
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * g * g
        t = self.t  # already incremented by step(): the first update has t = 1
        bias1 = 1 - self.beta1**t
        bias2 = 1 - self.beta2**t
        p -= (lr / bias1) * m / (np.sqrt(v) / math.sqrt(bias2) + self.eps)


def make_optimizer(name: str, schedule: LearningRate, *, momentum: float = 0.9) -> Optimizer:
    """By name: sgd, momentum (heavy ball), nesterov, rmsprop, adam (PyTorch's default options).

    Parameters
    ----------
    name : str
        One of OPTIMIZERS (`TrainConfig.optimizer`).
    schedule : float, Schedule or callable
        The learning rate.
    momentum : float
        For momentum and nesterov.

    Returns
    -------
    Optimizer

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name == "sgd":
        return SGD(schedule)
    if name == "momentum":
        return SGD(schedule, momentum=momentum)
    if name == "nesterov":
        return SGD(schedule, momentum=momentum, nesterov=True)
    if name == "rmsprop":
        return RMSprop(schedule)
    if name == "adam":
        return Adam(schedule)
    raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
