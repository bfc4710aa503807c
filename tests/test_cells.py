"""The cells' two paths and their contract: the plain step pair, the fast path's single steps, a
cell written with the plain pair only, the registry, and saturated units."""

import warnings
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import bptt
from bptt.cells import Cell
from bptt.core import diagnostics
from bptt.core.sequence import StepwiseSequence, StepwiseSweep
from bptt.core.step import forward_step, vjp_step
from bptt.modes.common import parameter_gradients
from bptt.modes.finite_diff import central_difference, relative_error

from conftest import CELLS, random_state


@settings(max_examples=30, deadline=None)
@given(cell_name=st.sampled_from(sorted(CELLS)), N=st.integers(1, 4), D=st.integers(1, 5),
       H=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_single_fast_steps_equal_the_plain_pair(cell_name, N, D, H, seed):
    """forward_step / vjp_step (the fast path, one step) against step_forward / step_backward.

    Both compute the same formulas in a different order (and the fast path's tanh and sigmoid from
    one exp), so they agree to round-off, measured on the scale of what is computed: a state or
    gate value to a few ulps of max(|value|, 1) (the activations are accurate in absolute terms
    near 0), a gradient to a few ulps of |dstate| * max(|x|, |state|, 1), the size of its terms
    before they cancel. A norm-wise relative error would fail on a single value near 0.
    """
    eps = np.finfo(np.float64).eps
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    x = rng.standard_normal((N, D))
    state = cell.unpack_state(random_state(cell, N, rng))
    dstate = cell.unpack_state(random_state(cell, N, rng))

    plain_state, plain_cache = cell.step_forward(x, cell.pack_state(state))
    fast_state, fast_cache = forward_step(cell, x, state)
    for a, b in zip(cell.unpack_state(plain_state), fast_state):
        assert np.all(np.abs(a - b) <= 8 * eps * (np.abs(a) + 1))
    for field, a, b in zip(plain_cache._fields, plain_cache, fast_cache):
        assert np.all(np.abs(a - b) <= 8 * eps * (np.abs(a) + 1)), field

    dx, dstate_prev, grads = cell.step_backward(cell.pack_state(dstate), plain_cache)
    step = vjp_step(cell, fast_cache, dstate)
    scale = max(np.abs(p).max() for p in dstate) * max(1.0, np.abs(x).max(), *(np.abs(p).max() for p in state))
    for a, b in zip(cell.unpack_state(dstate_prev), step.dstate_prev):
        assert np.abs(a - b).max() <= 16 * eps * scale
    assert np.abs(dx - step.da_x @ cell.params["weight_ih"]).max() <= 16 * eps * scale  # a_x = x W_ih^T + b_ih
    fast_grads = parameter_gradients(x[None], state[0][None], step.da_x[None], step.da_h[None])
    for name in cell.params:
        assert np.abs(grads[name] - fast_grads[name]).max() <= 16 * eps * scale, name


def test_vjp_step_returns_new_arrays(cell_name):
    """A single step's gradients are not scratch that the next step overwrites."""
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name](3, 4, seed=0)
    state = cell.unpack_state(random_state(cell, 2, rng))
    _, cache = forward_step(cell, rng.standard_normal((2, 3)), state)
    ones = tuple(np.ones((2, 4)) for _ in state)
    first = vjp_step(cell, cache, ones)
    kept = [first.da_x.copy(), first.da_h.copy(), *(p.copy() for p in first.dstate_prev)]
    vjp_step(cell, cache, tuple(2 * p for p in ones))
    for a, b in zip(kept, [first.da_x, first.da_h, *first.dstate_prev]):
        assert np.array_equal(a, b)


# ----------------------------------------------------------------- a cell with only a plain pair
class MinimalCache(NamedTuple):
    inp: np.ndarray  # field names unlike the built-in cells': the unroller must not read them
    before: np.ndarray
    after: np.ndarray


class MinimalGatedCell(Cell):
    """h = (1 - z) h_prev + z tanh(x W_ih^T + b_ih), z = sigmoid(h_prev W_hh^T + b_hh): a cell that
    exists only as a step pair, with no fast path, no tangent rules and its own cache fields."""

    Cache = MinimalCache
    gate_names = ("g",)  # one block: x W_ih^T + b_ih feeds u, h_prev W_hh^T + b_hh feeds z

    def step_forward(self, x, state):
        x, (h_prev,) = self.check_step(x, state)
        p = self.params
        z = 1 / (1 + np.exp(-(h_prev @ p["weight_hh"].T + p["bias_hh"])))
        h = (1 - z) * h_prev + z * np.tanh(x @ p["weight_ih"].T + p["bias_ih"])
        return h, MinimalCache(x, h_prev, h)

    def step_backward(self, dstate, cache):
        (dh,) = self.check_step_gradient(dstate, cache)
        x, h_prev, _ = cache
        p = self.params
        z = 1 / (1 + np.exp(-(h_prev @ p["weight_hh"].T + p["bias_hh"])))
        u = np.tanh(x @ p["weight_ih"].T + p["bias_ih"])
        du = dh * z * (1 - u * u)
        dz = dh * (u - h_prev) * z * (1 - z)
        grads = {"weight_ih": du.T @ x, "weight_hh": dz.T @ h_prev, "bias_ih": du.sum(0), "bias_hh": dz.sum(0)}
        return du @ p["weight_ih"], dh * (1 - z) + dz @ p["weight_hh"], grads


def test_a_cell_with_only_a_plain_pair_runs_through_forward_and_backward():
    rng = np.random.default_rng(0)
    cell = MinimalGatedCell(3, 4, seed=0)
    xs, state0 = rng.standard_normal((6, 2, 3)), 0.5 * rng.standard_normal((2, 4))
    dhs, dfinal = rng.standard_normal((6, 2, 4)), rng.standard_normal((2, 4))

    def loss():
        hs, tape = bptt.forward(cell, xs, state0)
        return np.sum(dhs * hs) + np.sum(dfinal * tape.final_state)

    hs, tape = bptt.forward(cell, xs, state0)
    grads = bptt.backward(cell, tape, dhs, dfinal)
    for name, param in cell.params.items():
        assert relative_error(grads.params[name], central_difference(loss, param)) < 1e-7, name
    assert relative_error(grads.dxs, central_difference(loss, xs)) < 1e-7
    assert relative_error(grads.dstate0, central_difference(loss, state0)) < 1e-7
    assert type(tape.step(2)) is MinimalCache and np.array_equal(tape.step(2).after, hs[2])
    assert np.array_equal(tape.state_at(3), hs[2]) and tape.nbytes > 0


class NewArraySweep(StepwiseSweep):
    """Returns dL/dh_{t-1} as a new array and leaves `out` untouched (filled with NaN here), as a
    cell author who missed the `out` convention would."""

    def step(self, t, dstate, out):
        result = super().step(t, dstate, out)
        fresh = result[0].copy()
        out[...] = np.nan
        return (fresh, *result[1:])


class NewArraySequence(StepwiseSequence):
    def reverse(self):
        return NewArraySweep(self)


def test_a_sweep_that_returns_a_new_array_instead_of_writing_out_gives_the_same_gradients():
    rng = np.random.default_rng(1)
    plain, custom = MinimalGatedCell(3, 4, seed=0), MinimalGatedCell(3, 4, seed=0)
    custom.Sequence = NewArraySequence
    xs, dhs = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    expected = bptt.backward(plain, bptt.forward(plain, xs)[1], dhs)
    got = bptt.backward(custom, bptt.forward(custom, xs)[1], dhs)
    for name in expected.params:
        assert np.array_equal(got.params[name], expected.params[name]), name
    assert np.array_equal(got.dxs, expected.dxs) and np.array_equal(got.dstate0, expected.dstate0)
    assert np.array_equal(got.dh_norms, expected.dh_norms)


def test_a_cell_without_forward_mode_rules_says_so():
    cell = MinimalGatedCell(3, 4, seed=0)
    xs = np.zeros((2, 1, 3))
    with pytest.raises(NotImplementedError, match=r"bptt.jvp needs its forward-mode rule \(step_tangent\), "
                                                  "which MinimalGatedCell does not define"):
        bptt.jvp(cell, xs)
    with pytest.raises(NotImplementedError, match="bptt.hvp needs .*MinimalGatedCell does not define"):
        bptt.hvp(cell, xs, np.zeros((2, 1, 4)), {})


# ----------------------------------------------------------------- the registry
def test_the_registry_builds_every_cell_and_names_it_back():
    for name in bptt.CELL_NAMES:
        cell = bptt.make_cell(name, 2, 3, seed=0)
        assert bptt.cells.cell_name(cell) == name
    assert bptt.make_cell("rnn-relu", 2, 3).nonlinearity == "relu"
    same = bptt.make_cell("lstm", 2, 3, seed=5, dtype=np.float32), bptt.LSTM(2, 3, seed=5, dtype=np.float32)
    for name in same[1].params:
        assert np.array_equal(same[0].params[name], same[1].params[name])
    with pytest.raises(ValueError, match=r"cell 'lsm': 'lsm' is neither a built-in cell nor registered in "
                                         r"bptt.cells.*Expected a built-in cell \(rnn, rnn-relu, lstm, gru\)"):
        bptt.make_cell("lsm", 2, 3)


# ----------------------------------------------------------------- saturated units
@pytest.mark.parametrize("cell_name", ["lstm", "gru", "rnn"])
def test_saturated_cells_run_every_method_without_a_warning(cell_name):
    """Weights x 40 and inputs x 30 drive exp to overflow; inf is the activations' exact limit, so
    no method may warn, whichever single-step or sequence path it runs."""
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name](3, 4, seed=0)
    for p in cell.params.values():
        p *= 40
    xs = 30 * rng.standard_normal((5, 2, 3))
    targets = rng.standard_normal((5, 2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hs, tape = bptt.forward(cell, xs)
        bptt.backward(cell, tape, hs)
        _, caches, _ = bptt.forward_stepwise(cell, xs)
        bptt.backward_stepwise(cell, caches, hs)
        bptt.jvp(cell, xs, tangents={"weight_hh": np.ones_like(cell.params["weight_hh"])})
        bptt.rtrl(cell, xs, targets)
        bptt.uoro(cell, xs, targets, seed=0)
        bptt.hvp(cell, xs, targets, {"bias_ih": np.ones_like(cell.params["bias_ih"])})
        diagnostics.jacobian_norms(cell, tape)
        diagnostics.lyapunov_spectrum(cell, tape)
    assert np.isfinite(hs).all()
