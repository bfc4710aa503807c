"""Optimizers and learning-rate schedules on a dict of parameter arrays, updated in place.

Each optimizer keeps its state in `self.state`, a dict slot -> {parameter name: array}
(e.g. Adam's "m" and "v"), plus the update count `self.t`; `state_arrays()` and
`load_state_arrays()` flatten it for a checkpoint. The update rules are PyTorch's (torch.optim.SGD,
RMSprop, Adam with their default options), so a test can compare them step by step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from numpy.typing import NDArray

from ..core.types import Array, Params

SCHEDULES = ("constant", "cosine", "step")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "rmsprop", "adam")


@dataclass(frozen=True)
class Schedule:
    """Learning rate as a function of the update index t = 0, 1, 2, ...

    constant: lr.   cosine: min_lr + (lr - min_lr) (1 + cos(pi t / total_steps)) / 2.
    step: lr * gamma ** (t // step_size).
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


class Optimizer:
    """Base: `step(params, grads)` updates params in place and returns the learning rate it used."""

    slots: tuple[str, ...] = ()

    def __init__(self, schedule: Schedule | float) -> None:
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule("constant", float(schedule))
        self.state: dict[str, Params] = {slot: {} for slot in self.slots}
        self.t = 0  # updates applied so far

    def _slot(self, slot: str, name: str, like: Array) -> Array:
        buf = self.state[slot].get(name)
        if buf is None:
            buf = self.state[slot][name] = np.zeros_like(like)
        return buf

    def step(self, params: Mapping[str, Array], grads: Mapping[str, Array]) -> float:
        if set(params) != set(grads):
            raise ValueError(f"grads must have the keys of params {sorted(params)}, got {sorted(grads)}")
        lr = self.schedule(self.t)
        self.t += 1
        for name, p in params.items():
            self._update(name, p, grads[name], lr)
        return lr

    def _update(self, name: str, p: Array, g: Array, lr: float) -> None:
        raise NotImplementedError

    def state_arrays(self) -> dict[str, NDArray[Any]]:
        """Flat {"slot/param": array} plus {"t": update count}, for a checkpoint."""
        flat = {f"{slot}/{name}": buf.copy() for slot, bufs in self.state.items() for name, buf in bufs.items()}
        flat["t"] = np.array(self.t)
        return flat

    def load_state_arrays(self, flat: Mapping[str, NDArray[Any]]) -> None:
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
    """p -= lr * g; with momentum mu: b = mu b + g, p -= lr * b (Nesterov: p -= lr * (g + mu b))."""

    slots = ("momentum",)

    def __init__(self, schedule: Schedule | float, momentum: float = 0.0, nesterov: bool = False) -> None:
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs a momentum > 0")
        super().__init__(schedule)
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
    """v = alpha v + (1 - alpha) g^2,  p -= lr * g / (sqrt(v) + eps)."""

    slots = ("square_avg",)

    def __init__(self, schedule: Schedule | float, alpha: float = 0.99, eps: float = 1e-8) -> None:
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
        super().__init__(schedule)
        self.alpha, self.eps = alpha, eps

    def _update(self, name: str, p: Array, g: Array, lr: float) -> None:
        v = self._slot("square_avg", name, p)
        v *= self.alpha
        v += (1 - self.alpha) * g * g
        p -= lr * g / (np.sqrt(v) + self.eps)


class Adam(Optimizer):
    """m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
    p -= lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)   (t counts from 1)."""

    slots = ("m", "v")

    def __init__(self, schedule: Schedule | float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= beta < 1:
                raise ValueError(f"{label} must lie in [0, 1), got {beta}")
        super().__init__(schedule)
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


def make_optimizer(name: str, schedule: Schedule, *, momentum: float = 0.9) -> Optimizer:
    """By name: sgd, momentum (heavy ball), nesterov, rmsprop, adam (PyTorch's default options)."""
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
