"""Recurrent cells: Elman RNN (tanh, relu), LSTM and GRU, in PyTorch's parameter layout."""

from .base import Cell
from .gru import GRU, GRUCache
from .lstm import LSTM, LSTMCache
from .rnn import RNN, RNNCache

__all__ = ["Cell", "RNN", "LSTM", "GRU", "RNNCache", "LSTMCache", "GRUCache"]
