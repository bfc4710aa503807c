"""The unroller: fast path against the per-step reference, exact identities, dtypes."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import bptt
from bptt.modes.finite_diff import relative_error

from conftest import CELLS, assert_gradients_agree, random_state


def run_both(cell, xs, state0, dhs, dfinal):
    hs, tape = bptt.forward(cell, xs, state0)
    fast = bptt.backward(cell, tape, dhs, dfinal)
    hs_ref, caches, final_ref = bptt.forward_stepwise(cell, xs, state0)
    ref = bptt.backward_stepwise(cell, caches, dhs, dfinal)
    return (hs, tape, fast), (hs_ref, final_ref, ref)


@settings(max_examples=25, deadline=None)
@given(
    cell_name=st.sampled_from(sorted(CELLS)),
    T=st.integers(1, 9), N=st.integers(1, 4), D=st.integers(1, 6), H=st.integers(1, 7),
    seed=st.integers(0, 2**16),
)
def test_fast_path_equals_stepwise_accumulation(cell_name, T, N, D, H, seed):
    """Batched input projection and one-product weight gradients == per-step `+=`, to round-off."""
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    xs = rng.standard_normal((T, N, D))
    state0, dfinal = random_state(cell, N, rng), random_state(cell, N, rng)
    dhs = rng.standard_normal((T, N, H))
    (hs, tape, fast), (hs_ref, final_ref, ref) = run_both(cell, xs, state0, dhs, dfinal)

    assert relative_error(hs, hs_ref) < 1e-13
    for a, b in zip(cell.unpack_state(tape.final_state), cell.unpack_state(final_ref)):
        assert relative_error(a, b) < 1e-13
    assert_gradients_agree(cell, fast, ref, 1e-12)
    np.testing.assert_allclose(fast.dh_norms, ref.dh_norms, rtol=1e-12)


def test_tape_step_is_what_step_forward_returns(cell_name):
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name](3, 5, seed=0)
    xs = rng.standard_normal((4, 2, 3))
    _, tape = bptt.forward(cell, xs)
    _, caches, _ = bptt.forward_stepwise(cell, xs)
    assert len(tape) == 4
    for t in range(4):
        step = tape.step(t)
        assert type(step) is cell.Cache
        for field, a, b in zip(step._fields, step, caches[t]):
            assert relative_error(a, b) < 1e-14, (t, field)  # the fast path against the plain pair


@pytest.mark.parametrize("rho", [0.5, 0.9, 1.0, 1.3])
def test_orthogonal_linear_regime_scales_gradient_norm_by_rho_per_step(rho):
    """At h = 0 with zero input and bias, tanh' = 1, so dL/dh_t = (rho Q^T)^(T-1-t) dL/dh_T exactly."""
    T, N, H = 30, 4, 8
    cell = bptt.RNN(3, H, seed=0)
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((H, H)))
    cell.params["weight_hh"] = rho * Q
    cell.params["bias_ih"][:] = 0
    cell.params["bias_hh"][:] = 0
    xs = np.zeros((T, N, 3))
    hs, tape = bptt.forward(cell, xs)
    assert np.all(hs == 0)
    dhs = np.zeros((T, N, H))
    dhs[-1] = np.random.default_rng(2).standard_normal((N, H))
    norms = bptt.backward(cell, tape, dhs).dh_norms
    expected = rho ** (T - 1 - np.arange(T)) * norms[-1]
    np.testing.assert_allclose(norms, expected, rtol=1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_float_dtypes_run_end_to_end_and_keep_their_dtype(cell_name, dtype):
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name](3, 6, seed=0, dtype=dtype)
    xs = rng.standard_normal((10, 4, 3))  # float64 input is cast to the cell's dtype
    hs, tape = bptt.forward(cell, xs)
    grads = bptt.backward(cell, tape, np.ones_like(hs))
    assert hs.dtype == dtype and grads.dxs.dtype == dtype
    assert all(g.dtype == dtype for g in grads.params.values())


def test_float32_agrees_with_float64(cell_name):
    rng = np.random.default_rng(0)
    cell64 = CELLS[cell_name](3, 6, seed=0)
    cell32 = CELLS[cell_name](3, 6, seed=0, dtype=np.float32)
    xs = rng.standard_normal((20, 4, 3))
    dhs = rng.standard_normal((20, 4, 6))
    out = []
    for cell in (cell64, cell32):
        hs, tape = bptt.forward(cell, xs)
        out.append((hs, bptt.backward(cell, tape, dhs)))
    assert relative_error(out[0][0], out[1][0]) < 1e-5
    for name in cell64.params:
        assert relative_error(out[0][1].params[name], out[1][1].params[name]) < 1e-4


def test_backward_without_step_losses_uses_final_state_gradient_only(cell_name):
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name](3, 4, seed=0)
    xs = rng.standard_normal((6, 2, 3))
    _, tape = bptt.forward(cell, xs)
    dfinal = random_state(cell, 2, rng)
    a = bptt.backward(cell, tape, None, dfinal)
    b = bptt.backward(cell, tape, np.zeros((6, 2, 4)), dfinal)
    for name in cell.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])


def test_tape_bytes_count_each_buffer_once():
    cell = bptt.RNN(3, 8)
    xs = np.zeros((10, 2, 3))
    _, tape = bptt.forward(cell, xs)
    # xs (10*2*3) + one (T+1, N, H) buffer for h_prev and h, in float64
    assert tape.nbytes == 8 * (10 * 2 * 3 + 11 * 2 * 8)


def test_the_reference_sweep_reads_nothing_of_a_cache_but_what_the_contract_names():
    """A cache without an `x` field (its input kept under another name) runs backward_stepwise."""
    from typing import NamedTuple

    class HalfCache(NamedTuple):
        inputs: np.ndarray
        h_prev: np.ndarray
        h: np.ndarray

    class Half(bptt.Cell):  # h = tanh(x W_ih^T + b_ih) + h_prev / 2
        Cache = HalfCache
        gate_names = ("h",)

        def step_forward(self, x, state):
            x, (h_prev,) = self.check_step(x, state)
            h = np.tanh(x @ self.params["weight_ih"].T + self.params["bias_ih"]) + h_prev / 2
            return h, HalfCache(x, h_prev, h)

        def step_backward(self, dstate, cache):
            (dh,) = self.check_step_gradient(dstate, cache)
            u = cache.h - cache.h_prev / 2
            da = dh * (1 - u * u)  # backprop through tanh
            grads = {"weight_ih": da.T @ cache.inputs, "weight_hh": np.zeros_like(self.params["weight_hh"]),
                     "bias_ih": da.sum(0), "bias_hh": np.zeros_like(self.params["bias_hh"])}
            return da @ self.params["weight_ih"], dh / 2, grads

    cell = Half(2, 3, seed=0)
    xs = np.random.default_rng(0).standard_normal((4, 5, 2))
    hs, caches, _ = bptt.forward_stepwise(cell, xs)
    slow = bptt.backward_stepwise(cell, caches, np.ones_like(hs))
    fast = bptt.backward(cell, bptt.forward(cell, xs)[1], np.ones_like(hs))
    assert slow.dxs.shape == (4, 5, 2)
    np.testing.assert_allclose(slow.params["weight_ih"], fast.params["weight_ih"], rtol=1e-12)
