"""The issue's reference points for scripts/bench.py: plain numpy loops, written the obvious way.

Each function runs forward + full backward for the loss sum_t <h_t, G_t> as a textbook numpy
implementation would: the input projection for all T steps is one matrix product before the loop,
the weight gradients are one product each after the sweep, and the loop allocates its temporaries
as it goes (no `out=`, no cache layout, no folded constants). The bench times them as the peer
`naive`, so "how much faster than a plain loop" is measured in the same run as the PyTorch and JAX
columns, and checks their gradients against bptt's like any other peer's.

Weights in PyTorch's layout and gate order; inputs xs (T, N, D), G (T, N, H); state0 a tuple.
Returns the gradients as the bench's runners do: the four parameters, "dxs" and "dstate0".
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def project_inputs(params, xs):
    T, N, D = xs.shape
    return (xs.reshape(T * N, D) @ params["weight_ih"].T + params["bias_ih"]).reshape(T, N, -1)


def weight_gradients(params, xs, h_prevs, da_x, da_h) -> dict:
    """The shared weights' gradients and dL/dx, summed over time and batch in one product each."""
    T, N, D = xs.shape
    flat_x, flat_h = da_x.reshape(T * N, -1), da_h.reshape(T * N, -1)
    return {
        "weight_ih": flat_x.T @ xs.reshape(T * N, D),
        "weight_hh": flat_h.T @ h_prevs.reshape(T * N, -1),
        "bias_ih": flat_x.sum(axis=0),
        "bias_hh": flat_h.sum(axis=0),
        "dxs": (flat_x @ params["weight_ih"]).reshape(T, N, D),
    }


def rnn(params, xs, state0, G) -> dict:
    """tanh Elman RNN: h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)."""
    W_hh = params["weight_hh"]
    a_x = project_inputs(params, xs) + params["bias_hh"]
    hs = [state0[0]]
    for t in range(len(xs)):
        hs.append(np.tanh(a_x[t] + hs[-1] @ W_hh.T))
    das = np.empty_like(a_x)
    dh = np.zeros_like(state0[0])
    for t in reversed(range(len(xs))):
        dh = dh + G[t]
        das[t] = (1 - hs[t + 1] ** 2) * dh
        dh = das[t] @ W_hh
    return {**weight_gradients(params, xs, np.stack(hs[:-1]), das, das), "dstate0": (dh,)}


def lstm(params, xs, state0, G) -> dict:
    """LSTM, gates i, f, g, o: c_t = f c_{t-1} + i g, h_t = o tanh(c_t)."""
    W_hh, H = params["weight_hh"], params["weight_hh"].shape[1]
    a_x = project_inputs(params, xs) + params["bias_hh"]
    h, c = state0
    steps = []
    for t in range(len(xs)):
        a = a_x[t] + h @ W_hh.T
        i, f = sigmoid(a[:, :H]), sigmoid(a[:, H : 2 * H])
        g, o = np.tanh(a[:, 2 * H : 3 * H]), sigmoid(a[:, 3 * H :])
        c_prev, h_prev = c, h
        c = f * c_prev + i * g
        tanh_c = np.tanh(c)
        h = o * tanh_c
        steps.append((h_prev, c_prev, i, f, g, o, tanh_c))
    das = np.empty_like(a_x)
    dh, dc = np.zeros_like(h), np.zeros_like(c)
    for t in reversed(range(len(xs))):
        h_prev, c_prev, i, f, g, o, tanh_c = steps[t]
        dh = dh + G[t]
        dc = dc + dh * o * (1 - tanh_c**2)
        das[t] = np.concatenate([
            dc * g * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - g**2), dh * tanh_c * o * (1 - o),
        ], axis=1)
        dh = das[t] @ W_hh
        dc = dc * f
    h_prevs = np.stack([step[0] for step in steps])
    return {**weight_gradients(params, xs, h_prevs, das, das), "dstate0": (dh, dc)}


def gru(params, xs, state0, G) -> dict:
    """GRU, gates r, z, n: n = tanh(a_xn + r (W_hn h + b_hn)), h_t = (1 - z) n + z h_{t-1}."""
    W_hh, b_hh, H = params["weight_hh"], params["bias_hh"], params["weight_hh"].shape[1]
    a_x = project_inputs(params, xs)
    (h,) = state0
    steps = []
    for t in range(len(xs)):
        a_h = h @ W_hh.T + b_hh
        r = sigmoid(a_x[t][:, :H] + a_h[:, :H])
        z = sigmoid(a_x[t][:, H : 2 * H] + a_h[:, H : 2 * H])
        n = np.tanh(a_x[t][:, 2 * H :] + r * a_h[:, 2 * H :])
        steps.append((h, r, z, n, a_h[:, 2 * H :]))
        h = (1 - z) * n + z * h
    da_x, da_h = np.empty_like(a_x), np.empty_like(a_x)
    dh = np.zeros_like(h)
    for t in reversed(range(len(xs))):
        h_prev, r, z, n, hn = steps[t]
        dh = dh + G[t]
        dan = dh * (1 - z) * (1 - n**2)
        dar = dan * hn * r * (1 - r)
        daz = dh * (h_prev - n) * z * (1 - z)
        da_x[t] = np.concatenate([dar, daz, dan], axis=1)
        da_h[t] = np.concatenate([dar, daz, dan * r], axis=1)
        dh = dh * z + da_h[t] @ W_hh
    h_prevs = np.stack([step[0] for step in steps])
    return {**weight_gradients(params, xs, h_prevs, da_x, da_h), "dstate0": (dh,)}


LOOPS = {"rnn": rnn, "lstm": lstm, "gru": gru}
