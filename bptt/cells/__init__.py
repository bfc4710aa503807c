"""Recurrent cells: Elman RNN (tanh, relu), LSTM and GRU, in PyTorch's parameter layout, the
registry of cells by name, and Stack, their stacked and bidirectional layers."""

from .cell import Cell
from .gru import GRU, GRUCache
from .lstm import LSTM, LSTMCache
from .registry import CELL_NAMES, cell_name, make_cell
from .rnn import RNN, RNNCache
from .stack import Stack, StackTape

__all__ = ["Cell", "RNN", "LSTM", "GRU", "RNNCache", "LSTMCache", "GRUCache", "CELL_NAMES", "make_cell", "cell_name",
           "Stack", "StackTape"]
