"""TBPTT(k1, k2): window plans, the window walk, the k1 = k2 = T identity, a hand-written closed form
on a scalar linear RNN, and central differences of the truncated objective for every cell."""

from typing import NamedTuple

import numpy as np
import pytest

import bptt
from bptt.cells.cell import Cell
from bptt.modes.finite_diff import central_difference, relative_error
from bptt.core.truncation import (
    TBPTT, TBPTTGradient, Window, WindowResult, WindowWalk, model_params, tbptt_gradient, window_gradients,
)

from conftest import CELLS, random_state


# ---------------------------------------------------------------- a scalar linear cell
class LinearCache(NamedTuple):
    x: np.ndarray
    h_prev: np.ndarray
    h: np.ndarray


class ScalarLinear(Cell):
    """h_t = w h_{t-1} + x_t: a cell with only a plain step pair, so bptt.forward / backward run it
    one step at a time (the default Sequence)."""

    Cache = LinearCache
    gate_names = ("h",)

    def __init__(self, w):
        super().__init__(1, 1, seed=0)
        self.params = {"weight_ih": np.ones((1, 1)), "weight_hh": np.full((1, 1), w),
                       "bias_ih": np.zeros(1), "bias_hh": np.zeros(1)}

    def step_forward(self, x, state):
        x, (h_prev,) = self.check_step(x, state)
        h = x + h_prev @ self.params["weight_hh"].T  # h = x + w h_prev
        return h, LinearCache(x, h_prev, h)

    def step_backward(self, dstate, cache):
        (dh,) = self.check_step_gradient(dstate, cache)
        grads = {"weight_ih": np.zeros((1, 1)), "weight_hh": dh.T @ cache.h_prev,
                 "bias_ih": np.zeros(1), "bias_hh": np.zeros(1)}
        return dh, dh @ self.params["weight_hh"], grads  # dL/dx = dh, dL/dh_prev = w dh


def linear_loss(pred, weights):
    """L = mean(c * h) over the M selected entries: dL/dh = c / M."""
    return float(np.mean(pred * weights)), weights / pred.size


def test_linear_cell_matches_its_definition():
    w, h0, x = 0.7, 0.3, np.array([1.0, -2.0, 0.5])
    hs, _ = bptt.forward(ScalarLinear(w), x[:, None, None], np.array([[h0]]))
    h1 = w * h0 + x[0]
    h2 = w * h1 + x[1]
    assert np.allclose(hs[:, 0, 0], [h1, h2, w * h2 + x[2]], rtol=0, atol=1e-15)


@pytest.mark.parametrize("k1,k2", [(1, 1), (1, 2), (2, 2), (2, 3), (1, 4), (3, 4), (4, 4)])
def test_scalar_linear_rnn_closed_form(k1, k2):
    # T = 4 steps; h[j] is the state BEFORE step j (h[0] = h0), so step j computes h[j+1] = w h[j] + x_j.
    # d h[j+1] / dw, truncated at a window start s (h[s] held constant) = sum_{i=s}^{j} w^(j-i) h[i].
    w, h0 = 0.8, 0.5
    x = np.array([0.3, -1.2, 0.7, 2.0])
    c = np.array([1.5, -0.4, 0.9, 1.1])  # L = (1/4) sum_j c_j h[j+1]
    h = [h0]
    for xt in x:
        h.append(w * h[-1] + xt)

    def through(j, s):  # written out: the paths of h[j+1] back to step s
        return {0: h[j], 1: h[j] + w * h[j - 1], 2: h[j] + w * h[j - 1] + w**2 * h[j - 2],
                3: h[j] + w * h[j - 1] + w**2 * h[j - 2] + w**3 * h[j - 3]}[j - s]

    # windows by hand: losses at steps [lf, end), backprop from max(0, end - k2)
    hand = {
        (1, 1): [(0, 0), (1, 1), (2, 2), (3, 3)],  # (step j, window start s)
        (1, 2): [(0, 0), (1, 0), (2, 1), (3, 2)],
        (2, 2): [(0, 0), (1, 0), (2, 2), (3, 2)],
        (2, 3): [(0, 0), (1, 0), (2, 1), (3, 1)],
        (1, 4): [(0, 0), (1, 0), (2, 0), (3, 0)],
        (3, 4): [(0, 0), (1, 0), (2, 0), (3, 0)],
        (4, 4): [(0, 0), (1, 0), (2, 0), (3, 0)],
    }[(k1, k2)]
    expected = sum(c[j] * through(j, s) for j, s in hand) / 4

    cell = ScalarLinear(w)
    mask = np.ones(4, bool)
    got = tbptt_gradient(cell, None, linear_loss, x[:, None, None], c[:, None, None], mask, k1, k2,
                         state0=np.array([[h0]]))
    assert got.params["cell.weight_hh"][0, 0] == pytest.approx(expected, rel=1e-14, abs=1e-15)
    assert got.loss == pytest.approx(np.mean(c * np.array(h[1:])), rel=1e-14)


def test_window_plan_partitions_losses_and_never_reaches_past_k2():
    for T in (1, 5, 12, 13):
        for k1 in (1, 2, 3, 5):
            for k2 in (k1, k1 + 1, 2 * k1 + 3):
                windows = TBPTT(k1, k2).windows(T)
                covered = [t for w in windows for t in range(w.loss_from, w.end)]
                assert covered == list(range(T))  # every step's loss injected exactly once
                for w in windows:
                    assert w.end - w.loss_from <= k1
                    assert w.end - w.start == min(k2, w.end)  # backprop k2 steps, or to t = 0
    assert TBPTT(2, 3).windows(5) == [Window(0, 0, 2), Window(1, 2, 4), Window(2, 4, 5)]


@pytest.mark.parametrize("k1,k2", [(0, 1), (3, 2), (2.5, 3)])
def test_bad_truncation_is_a_value_error(k1, k2):
    with pytest.raises(ValueError, match="k"):
        TBPTT(k1, k2)


def test_walk_masks_the_new_steps_and_carries_the_state_from_each_tape(cell_name):
    # TBPTT(2, 3) on T = 5: windows [0, 2), [1, 4) with losses from 2, [2, 5) with losses from 4
    cell = CELLS[cell_name](2, 3, seed=0)
    rng = np.random.default_rng(0)
    xs, mask = rng.standard_normal((5, 2, 2)), rng.random((5, 2)) < 0.8
    state0 = random_state(cell, 2, rng)
    _, full = bptt.forward(cell, xs, state0)
    walk = WindowWalk(TBPTT(2, 3), mask, state0)
    seen = []
    while not walk.done:
        start, loss_from, end = walk.window
        expected = mask[start:end].copy()
        expected[: loss_from - start] = False
        assert np.array_equal(walk.loss_mask(), expected)
        for a, b in zip(cell.unpack_state(walk.state), cell.unpack_state(full.state_at(start))):
            assert np.array_equal(a, b)  # the carried state is the full forward's state at `start`
        _, tape = bptt.forward(cell, xs[start:end], walk.state)
        seen.append(walk.window)
        walk.advance(tape)
    assert seen == walk.windows == [Window(0, 0, 2), Window(1, 2, 4), Window(2, 4, 5)]
    assert walk.state is None
    with pytest.raises(ValueError, match="the walk is done"):
        walk.advance(tape)


def test_walk_resumes_at_a_window_and_rejects_bad_positions_and_tapes():
    cell = bptt.GRU(2, 3, seed=0)
    xs, mask = np.ones((5, 2, 2)), np.ones((5, 2), bool)
    carried = np.full((2, 3), 0.25)
    walk = WindowWalk(TBPTT(2, 2), mask, carried, index=1)
    assert walk.window == Window(2, 2, 4) and walk.state is carried
    with pytest.raises(ValueError, match=r"tape must cover the window's 2 steps \[2, 4\), got 3"):
        walk.advance(bptt.forward(cell, xs[:3])[1])
    with pytest.raises(ValueError, match=r"window index must lie in \[0, 3\).*TBPTT\(2, 2\); got 3"):
        WindowWalk(TBPTT(2, 2), mask, index=3)
    with pytest.raises(ValueError, match=r"loss_mask must have shape \(T, N\), got \(5,\)"):
        WindowWalk(TBPTT(2, 2), np.ones(5, bool))


def test_results_follow_the_result_convention():
    cell, readout = bptt.LSTM(2, 3, seed=0), bptt.Linear(3, 1, seed=1)
    xs, targets, mask = np.ones((4, 2, 2)), np.zeros((4, 2, 1)), np.ones((4, 2), bool)
    got = tbptt_gradient(cell, readout, bptt.mse, xs, targets, mask, 2, 2)
    assert isinstance(got, TBPTTGradient) and set(got.params) == set(model_params(cell, readout))
    loss, params, windows, dh_norms = got  # unpacks by field order
    assert params is got.params and windows == [Window(0, 0, 2), Window(2, 2, 4)] and len(dh_norms) == 2
    assert "\n" not in repr(got) and "params={cell.weight_ih, " in repr(got)  # names, never values
    one = window_gradients(cell, readout, bptt.mse, xs, None, targets, mask)
    assert isinstance(one, WindowResult)
    loss, count, params, dh_norms, tape = one
    assert count == 8 and params is one.params and dh_norms.shape == (4,) and len(tape) == 4
    assert repr(one).startswith("WindowResult(loss=") and "dh_norms=array(4,) float64" in repr(one)


def make_model(cell_name, T=9, N=3, D=4, H=5, O=2, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    readout = bptt.Linear(H, O, seed=seed + 1)
    xs = rng.standard_normal((T, N, D))
    targets = rng.standard_normal((T, N, O))
    mask = rng.random((T, N)) < 0.7
    mask[-1] = True
    return cell, readout, xs, targets, mask, random_state(cell, N, rng)


def test_full_window_equals_full_bptt_exactly(cell_name):
    cell, readout, xs, targets, mask, state0 = make_model(cell_name)
    T = xs.shape[0]
    got = tbptt_gradient(cell, readout, bptt.mse, xs, targets, mask, T, T, state0)
    # full BPTT written directly with the core API
    hs, tape = bptt.forward(cell, xs, state0)
    pred, cache = readout.forward(hs[mask])
    loss, dpred = bptt.mse(pred, targets[mask])
    dh_sel, readout_grads = readout.backward(dpred, cache)
    dhs = np.zeros_like(hs)
    dhs[mask] = dh_sel
    full = bptt.backward(cell, tape, dhs)
    assert got.loss == loss
    for name, g in full.params.items():
        assert np.array_equal(got.params[f"cell.{name}"], g)
    for name, g in readout_grads.items():
        assert np.array_equal(got.params[f"readout.{name}"], g)


@pytest.mark.parametrize("k1,k2", [(2, 2), (2, 4), (3, 5)])
def test_tbptt_gradient_matches_central_differences_of_the_truncated_objective(cell_name, k1, k2):
    # The truncated objective: window w's loss computed from its start state, which is taken from
    # the forward pass at the ORIGINAL weights and held constant while the weights are perturbed.
    cell, readout, xs, targets, mask, state0 = make_model(cell_name)
    T, N = xs.shape[:2]
    got = tbptt_gradient(cell, readout, bptt.mse, xs, targets, mask, k1, k2, state0)
    hs, tape = bptt.forward(cell, xs, state0)
    starts = {0: state0}
    for s in range(1, T):
        starts[s] = tape.state_at(s)
    total = mask.sum()

    def truncated_loss():
        loss = 0.0
        for start, loss_from, end in TBPTT(k1, k2).windows(T):
            window_mask = mask[start:end].copy()
            window_mask[: loss_from - start] = False
            loss += window_gradients(cell, readout, bptt.mse, xs[start:end], starts[start],
                                     targets[start:end], window_mask, total).loss
        return loss

    assert got.loss == pytest.approx(truncated_loss(), rel=1e-13)
    for name, param in model_params(cell, readout).items():
        numeric = central_difference(truncated_loss, param)
        assert relative_error(got.params[name], numeric) < 1e-7, name
    if k1 < T:  # and truncation changes the gradient: the test above could fail
        full = tbptt_gradient(cell, readout, bptt.mse, xs, targets, mask, T, T, state0)
        assert relative_error(got.params["cell.weight_hh"], full.params["cell.weight_hh"]) > 1e-4


def test_state_is_carried_and_each_backward_spans_at_most_k2_steps(cell_name):
    # At fixed weights the carried state makes every window's forward the full forward, so the window
    # losses add up to the full mean loss for any (k1, k2); each reverse sweep covers end - start
    # <= k2 steps, and dL/dh at its first step is non-zero: only the cut stops it going further.
    cell, readout, xs, targets, mask, state0 = make_model(cell_name, T=12)
    full = tbptt_gradient(cell, readout, bptt.mse, xs, targets, mask, 12, 12, state0)
    for k1, k2 in [(1, 1), (3, 5), (4, 4), (5, 11)]:
        got = tbptt_gradient(cell, readout, bptt.mse, xs, targets, mask, k1, k2, state0)
        assert got.loss == pytest.approx(full.loss, rel=1e-13)
        for (start, loss_from, end), norms in zip(got.windows, got.dh_norms):
            assert len(norms) == end - start <= k2
            assert norms[0] > 0


@pytest.mark.torch
@pytest.mark.parametrize("k1,k2", [(3, 3), (2, 5), (9, 9)])
def test_tbptt_gradient_matches_a_pytorch_loop_with_detach(torch, k1, k2):
    # PyTorch reference: each window re-runs nn.LSTM from its start state, detached, and its loss
    # (the k1 new steps only) is backpropagated and accumulated in .grad.
    cell, readout, xs, targets, mask, state0 = make_model("lstm")
    T, N = xs.shape[:2]
    got = tbptt_gradient(cell, readout, bptt.mse, xs, targets, mask, k1, k2, state0)
    lstm = torch.nn.LSTM(cell.input_size, cell.hidden_size)
    linear = torch.nn.Linear(cell.hidden_size, readout.out_features)
    with torch.no_grad():
        for name, p in cell.params.items():
            getattr(lstm, f"{name}_l0").copy_(torch.tensor(p))
        linear.weight.copy_(torch.tensor(readout.params["weight"]))
        linear.bias.copy_(torch.tensor(readout.params["bias"]))
    x, y, m = torch.tensor(xs), torch.tensor(targets), torch.tensor(mask)
    h0, c0 = (torch.tensor(s)[None] for s in state0)
    with torch.no_grad():  # the states every window starts from, at these fixed weights
        starts = {0: (h0, c0)}
        for s in range(1, T):
            _, (h, c) = lstm(x[:s], (h0, c0))
            starts[s] = (h, c)
    total = m.sum()
    for start, loss_from, end in TBPTT(k1, k2).windows(T):
        h, c = (s.detach() for s in starts[start])
        out, _ = lstm(x[start:end], (h, c))
        keep = m[start:end].clone()
        keep[: loss_from - start] = False
        diff = linear(out[keep]) - y[start:end][keep]
        (diff.pow(2).sum() / (total * diff.shape[-1])).backward()
    for name in cell.params:
        ref = getattr(lstm, f"{name}_l0").grad.numpy()
        assert relative_error(got.params[f"cell.{name}"], ref) < 1e-12, name
    assert relative_error(got.params["readout.weight"], linear.weight.grad.numpy()) < 1e-12
