"""bptt: backpropagation through time for recurrent networks, in numpy.

    import numpy as np, bptt
    cell = bptt.LSTM(input_size=3, hidden_size=16, seed=0)
    hs, tape = bptt.forward(cell, xs)            # xs (T, N, D) -> hs (T, N, H)
    grads = bptt.backward(cell, tape, dhs)        # dhs = dL/dh_t (T, N, H)
    grads.params, grads.dxs, grads.dstate0, grads.dh_norms

The package in four parts: `bptt.cells` (the cells and their step pairs), `bptt.core` (the unroller,
truncation, readout, losses, diagnostics), `bptt.modes` (forward mode, RTRL, UORO, Hessian-vector
products, checkpointing, finite differences) and `bptt.training` (the training loop and its run
folder). The names below are the public API; `bptt.optim` (the optimizers and schedules) is the
module `bptt.training.optim`, as `bptt.diagnostics` is `bptt.core.diagnostics`, and both import as
submodules of bptt (`from bptt.optim import Adam`).
"""

import os as _os
import signal as _signal
import sys as _sys


def _exit_on_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C while `bptt` (the command) is still importing: leave quietly, with the shell's status."""
    _os._exit(130)


def _started_as_command() -> bool:
    """Whether this is `bptt ...` (the console script) or `python -m bptt ...`, not an `import bptt`."""
    argv = getattr(_sys, "orig_argv", _sys.argv)
    return (["-m", "bptt"] in [argv[i:i + 2] for i in range(len(argv) - 1)]
            or _os.path.basename(_sys.argv[0]) in ("bptt", "bptt.exe"))


# Run as a command, Ctrl-C during the imports below would print a traceback from inside numpy; the
# command line sets the usual handler back once it is loaded.
if _started_as_command():
    _signal.signal(_signal.SIGINT, _exit_on_interrupt)

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from .cells import CELL_NAMES, GRU, LSTM, RNN, Cell, GRUCache, LSTMCache, RNNCache, Stack, StackTape, make_cell
from .core import diagnostics
from .core.losses import mse, sigmoid_binary_cross_entropy, softmax_cross_entropy
from .core.readout import Linear
from .core.truncation import TBPTT, tbptt_gradient
from .core.unroll import Gradients, Tape, backward, backward_stepwise, forward, forward_stepwise
from .modes.checkpointing import CheckpointTape, backward_checkpointed, forward_checkpointed
from .modes.finite_diff import central_difference, relative_error
from .modes.forward_mode import JVPResult, jvp
from .modes.hvp import HessianEigen, LossAndGradient, hvp, loss_and_gradient, top_hessian_eigenvalue
from .modes.rtrl import RTRLResult, rtrl
from .modes.uoro import UOROResult, uoro
from .training import optim
from .training.clipping import clip_grad_norm, clip_grad_value
from .training.config import TrainConfig
from .training.task_contract import Batch, Task
from .training.trainer import evaluate, train

# `import bptt.optim` and `from bptt.diagnostics import ...` work as for a submodule of bptt
for _name, _module in (("optim", optim), ("diagnostics", diagnostics)):
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)
del _name, _module

try:
    __version__ = version("bptt")  # pyproject.toml holds the one version string
except PackageNotFoundError:  # a source tree on sys.path, never installed
    __version__ = "0+unknown"

__all__ = [
    "Cell", "RNN", "LSTM", "GRU", "RNNCache", "LSTMCache", "GRUCache", "CELL_NAMES", "make_cell",
    "Stack", "StackTape",
    "forward", "backward", "forward_stepwise", "backward_stepwise", "Tape", "Gradients",
    "Linear", "mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
    "TBPTT", "tbptt_gradient", "diagnostics",
    "TrainConfig", "train", "evaluate", "Task", "Batch",
    "optim", "clip_grad_norm", "clip_grad_value",
    "jvp", "JVPResult", "rtrl", "RTRLResult", "uoro", "UOROResult",
    "hvp", "loss_and_gradient", "LossAndGradient", "top_hessian_eigenvalue", "HessianEigen",
    "forward_checkpointed", "backward_checkpointed", "CheckpointTape",
    "central_difference", "relative_error",
]
