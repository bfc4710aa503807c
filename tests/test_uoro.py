"""UORO is unbiased: averaged over every possible draw of its random signs it equals RTRL exactly."""

import itertools

import numpy as np
import pytest

import bptt
from bptt.modes.finite_diff import relative_error
from bptt.modes.common import flatten_params

from conftest import CELLS, random_state


def make_problem(cell_name, T, N=1, H=2, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](3, H, seed=seed)
    xs = rng.standard_normal((T, N, 3))
    return cell, xs, random_state(cell, N, rng), rng.standard_normal((T, N, H)), random_state(cell, N, rng)


def test_average_over_all_sign_draws_is_the_exact_gradient(cell_name):
    """E over nu of the estimate = RTRL's gradient: enumerate all 2^(T S N H) sign sequences."""
    T = 2 if cell_name == "lstm" else 3  # LSTM's state (h, c) doubles the signs per step
    cell, xs, state0, dhs, dfinal = make_problem(cell_name, T)
    S = len(cell.state_fields)
    exact = flatten_params(bptt.rtrl(cell, xs, dhs, state0, dfinal).params)
    draws = list(itertools.product([-1.0, 1.0], repeat=T * S * cell.hidden_size))
    total = np.zeros_like(exact)
    single_errors = []
    for bits in draws:
        signs = np.array(bits).reshape(T, S, 1, cell.hidden_size)
        estimate = flatten_params(bptt.uoro(cell, xs, dhs, state0, dfinal, signs=signs).params)
        total += estimate
        single_errors.append(relative_error(estimate, exact))
    assert relative_error(total / len(draws), exact) < 1e-13
    assert max(single_errors) > 0.1  # each single estimate is noisy: the average does the work


def test_batch_sequences_are_estimated_independently():
    """With N sequences, the estimate is the sum of each sequence's own estimate (same signs)."""
    cell, xs, state0, dhs, _ = make_problem("gru", T=4, N=3, H=3)
    signs = np.random.default_rng(5).choice([-1.0, 1.0], size=(4, 1, 3, 3))
    together = flatten_params(bptt.uoro(cell, xs, dhs, state0, signs=signs).params)
    apart = sum(
        flatten_params(bptt.uoro(cell, xs[:, n : n + 1], dhs[:, n : n + 1], state0[n : n + 1],
                                 signs=signs[:, :, n : n + 1]).params)
        for n in range(3)
    )
    assert relative_error(together, apart) < 1e-13


def test_seed_reproduces_and_online_gradients_match():
    cell, xs, state0, dhs, _ = make_problem("lstm", T=5, N=2)
    a = flatten_params(bptt.uoro(cell, xs, dhs, state0, seed=3).params)
    b = flatten_params(bptt.uoro(cell, xs, lambda t, h: dhs[t], state0, seed=3).params)
    c = flatten_params(bptt.uoro(cell, xs, dhs, state0, seed=4).params)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_bad_signs_are_rejected():
    cell, xs, state0, dhs, _ = make_problem("rnn", T=3)
    with pytest.raises(ValueError, match="signs"):
        bptt.uoro(cell, xs, dhs, state0, signs=np.ones((3, 1, 1, 3)))
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        bptt.uoro(cell, xs, dhs, state0, signs=np.full((3, 1, 1, 2), 0.5))
