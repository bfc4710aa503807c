"""Cells the package does not know, for the tests that name them by import path (labcells:Coupled).

This folder is not on the Python path: a test puts it there (sys.path, or PYTHONPATH for a process).
"""

from typing import NamedTuple

import numpy as np

import bptt


class CoupledCache(NamedTuple):
    x: np.ndarray
    h_prev: np.ndarray
    c_prev: np.ndarray
    f: np.ndarray
    g: np.ndarray
    c: np.ndarray
    tanh_c: np.ndarray
    h: np.ndarray


class Coupled(bptt.Cell):
    """An LSTM whose one gate f does the work of all three, written only as a step pair:

        f = sigmoid(a_f),  g = tanh(a_g),   (a_f, a_g) = x W_ih^T + b_ih + h_prev W_hh^T + b_hh
        c = f c_prev + (1 - f) g,  h = f tanh(c)

    Two gate blocks, a two-part state (h, c).
    """

    Cache = CoupledCache
    state_fields = ("h", "c")
    gate_names = ("f", "g")
    gate_slope_bounds = (0.25, 1.0)

    def step_forward(self, x, state):
        x, (h_prev, c_prev) = self.check_step(x, state)
        p, H = self.params, self.hidden_size
        a = x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]
        f = 1 / (1 + np.exp(-a[:, :H]))
        g = np.tanh(a[:, H:])
        c = f * c_prev + (1 - f) * g
        tanh_c = np.tanh(c)
        h = f * tanh_c
        return (h, c), CoupledCache(x, h_prev, c_prev, f, g, c, tanh_c, h)

    def step_backward(self, dstate, cache):
        dh, dc = self.check_step_gradient(dstate, cache)
        x, h_prev, c_prev, f, g, c, tanh_c, h = cache
        p = self.params
        df = dh * tanh_c  # h = f tanh(c)
        dc = dc + dh * f * (1 - tanh_c * tanh_c)  # backprop through tanh(c)
        dc_prev = dc * f  # c = f c_prev + (1 - f) g
        df = df + dc * (c_prev - g)
        dg = dc * (1 - f)
        da = np.concatenate([df * f * (1 - f), dg * (1 - g * g)], axis=1)  # through sigmoid and tanh
        grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev, "bias_ih": da.sum(0), "bias_hh": da.sum(0)}
        return da @ p["weight_ih"], (da @ p["weight_hh"], dc_prev), grads


class Forgetful(bptt.Cell):
    """Coupled as a cell author who forgot gate_names would write it: its weights would have one gate block."""

    Cache = CoupledCache
    state_fields = ("h", "c")
    step_forward = Coupled.step_forward
    step_backward = Coupled.step_backward
