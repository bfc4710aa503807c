"""Every backward pass against central finite differences, float64, odd sizes, non-zero state."""

import numpy as np
import pytest

import bptt
from bptt.modes.finite_diff import central_difference, relative_error

from conftest import CELLS, random_state

T, N, D, H = 7, 3, 5, 4
TOL = 1e-7


def make_problem(cell_name, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    xs = rng.standard_normal((T, N, D))
    state0 = random_state(cell, N, rng)
    dhs = rng.standard_normal((T, N, H))  # loss weights on every h_t
    dfinal = random_state(cell, N, rng)  # and on the final state, c included for LSTM
    return cell, xs, state0, dhs, dfinal


def sequence_loss(cell, xs, state0, dhs, dfinal):
    """L = sum_t <dhs_t, h_t> + <dfinal, final state>, so dL/dh_t = dhs_t exactly."""
    hs, tape = bptt.forward(cell, xs, state0)
    loss = np.sum(dhs * hs)
    for w, s in zip(cell.unpack_state(dfinal), cell.unpack_state(tape.final_state)):
        loss += np.sum(w * s)
    return loss


def test_unrolled_backward_matches_finite_differences(cell_name):
    cell, xs, state0, dhs, dfinal = make_problem(cell_name)
    _, tape = bptt.forward(cell, xs, state0)
    grads = bptt.backward(cell, tape, dhs, dfinal)
    loss = lambda: sequence_loss(cell, xs, state0, dhs, dfinal)

    for name, param in cell.params.items():
        assert relative_error(grads.params[name], central_difference(loss, param)) < TOL, name
    assert relative_error(grads.dxs, central_difference(loss, xs)) < TOL
    for analytic, part in zip(cell.unpack_state(grads.dstate0), cell.unpack_state(state0)):
        assert relative_error(analytic, central_difference(loss, part)) < TOL


def test_step_backward_matches_finite_differences(cell_name):
    cell, xs, state0, dhs, dfinal = make_problem(cell_name, seed=1)
    x = xs[0]

    def loss():
        state, _ = cell.step_forward(x, state0)
        return sum(np.sum(w * s) for w, s in zip(cell.unpack_state(dfinal), cell.unpack_state(state)))

    _, cache = cell.step_forward(x, state0)
    dx, dstate_prev, grads = cell.step_backward(dfinal, cache)
    for name, param in cell.params.items():
        assert relative_error(grads[name], central_difference(loss, param)) < TOL, name
    assert relative_error(dx, central_difference(loss, x)) < TOL
    for analytic, part in zip(cell.unpack_state(dstate_prev), cell.unpack_state(state0)):
        assert relative_error(analytic, central_difference(loss, part)) < TOL


def test_dh_norms_are_norms_of_total_hidden_gradient(cell_name):
    """dh_norms[t] = ||dL/dh_t||, with dL/dh_t measured by perturbing h_t inside the sweep."""
    cell, xs, state0, dhs, dfinal = make_problem(cell_name, seed=2)
    _, tape = bptt.forward(cell, xs, state0)
    grads = bptt.backward(cell, tape, dhs, dfinal)
    # dL/dh_t for t < T-1 is what the sweep from t+1 onward sees as dL/dstate0 of the tail, plus dhs_t.
    for t in range(T - 1):
        tail_state0 = tape.state_at(t + 1)
        _, tail = bptt.forward(cell, xs[t + 1 :], tail_state0)
        tail_grads = bptt.backward(cell, tail, dhs[t + 1 :], dfinal)
        dh_t = cell.unpack_state(tail_grads.dstate0)[0] + dhs[t]
        assert grads.dh_norms[t] == pytest.approx(np.linalg.norm(dh_t), rel=1e-12)
    last = cell.unpack_state(dfinal)[0] + dhs[-1]
    assert grads.dh_norms[-1] == pytest.approx(np.linalg.norm(last), rel=1e-12)


def test_losses_and_readout_match_finite_differences():
    rng = np.random.default_rng(3)
    readout = bptt.Linear(H, 3, seed=0)
    hs = rng.standard_normal((T, N, H))
    target = rng.standard_normal((T, N, 3))
    labels = rng.integers(0, 3, (T, N))
    bits = rng.integers(0, 2, (T, N, 3)).astype(float)

    for loss_fn, tgt in [
        (bptt.mse, target),
        (bptt.softmax_cross_entropy, labels),
        (bptt.sigmoid_binary_cross_entropy, bits),
    ]:
        def loss():
            ys, _ = readout.forward(hs)
            return loss_fn(ys, tgt)[0]

        ys, cache = readout.forward(hs)
        _, dys = loss_fn(ys, tgt)
        dhs, grads = readout.backward(dys, cache)
        assert relative_error(dhs, central_difference(loss, hs)) < TOL, loss_fn.__name__
        for name, p in readout.params.items():
            assert relative_error(grads[name], central_difference(loss, p)) < TOL, name


def test_relative_error_detects_a_wrong_gradient():
    """The check can fail: a gradient off by 1e-6 in one entry is caught."""
    cell, xs, state0, dhs, dfinal = make_problem("lstm")
    _, tape = bptt.forward(cell, xs, state0)
    grads = bptt.backward(cell, tape, dhs, dfinal)
    wrong = grads.params["weight_hh"].copy()
    wrong[0, 0] += 1e-6 * np.linalg.norm(wrong) * 1e3
    numeric = central_difference(lambda: sequence_loss(cell, xs, state0, dhs, dfinal), cell.params["weight_hh"])
    assert relative_error(wrong, numeric) > TOL
