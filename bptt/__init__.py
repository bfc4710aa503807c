"""bptt: backpropagation through time for recurrent networks, in numpy.

    import numpy as np, bptt
    cell = bptt.LSTM(input_size=3, hidden_size=16, seed=0)
    hs, tape = bptt.forward(cell, xs)            # xs (T, N, D) -> hs (T, N, H)
    grads = bptt.backward(cell, tape, dhs)        # dhs = dL/dh_t (T, N, H)
    grads.params, grads.dxs, grads.dstate0, grads.dh_norms
"""

from .cells import GRU, LSTM, RNN, Cell, GRUCache, LSTMCache, RNNCache
from .core.losses import mse, sigmoid_binary_cross_entropy, softmax_cross_entropy
from .core.readout import Linear
from .training.config import TrainConfig
from .training.trainer import evaluate, train
from .core.unroll import Gradients, Tape, backward, backward_stepwise, forward, forward_stepwise
from .modes.forward_mode import JVPResult, jvp
from .modes.rtrl import RTRLResult, rtrl
from .modes.checkpointing import CheckpointTape, backward_checkpointed, forward_checkpointed
from .modes.hvp import hvp, loss_and_gradient, top_hessian_eigenvalue
from .modes.uoro import UOROResult, uoro
from .core import diagnostics

__version__ = "0.1.0"

__all__ = [
    "Cell", "RNN", "LSTM", "GRU", "RNNCache", "LSTMCache", "GRUCache",
    "forward", "backward", "forward_stepwise", "backward_stepwise", "Tape", "Gradients",
    "Linear", "mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy",
    "TrainConfig", "train", "evaluate",
    "jvp", "JVPResult", "rtrl", "RTRLResult",
    "forward_checkpointed", "backward_checkpointed", "CheckpointTape",
    "hvp", "loss_and_gradient", "top_hessian_eigenvalue", "uoro", "UOROResult",
]
