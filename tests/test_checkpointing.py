"""Checkpointed BPTT gives the full tape's gradients, for every segment length, with less memory."""

import numpy as np
import pytest

import bptt
from bptt.modes.finite_diff import central_difference, relative_error

from conftest import CELLS, assert_gradients_agree, random_state

T, N, D, H = 10, 3, 5, 4


def make_problem(cell_name, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    xs = rng.standard_normal((T, N, D))
    return cell, xs, random_state(cell, N, rng), rng.standard_normal((T, N, H)), random_state(cell, N, rng)


@pytest.mark.parametrize("every", [1, 3, 4, 10, 11, None])
def test_checkpointed_equals_full_tape(cell_name, every):
    cell, xs, state0, dhs, dfinal = make_problem(cell_name)
    hs, tape = bptt.forward(cell, xs, state0)
    full = bptt.backward(cell, tape, dhs, dfinal)
    hs_c, ctape = bptt.forward_checkpointed(cell, xs, state0, every=every)
    ckpt = bptt.backward_checkpointed(cell, ctape, dhs, dfinal)

    assert np.array_equal(hs_c, hs)
    for ours, theirs in zip(cell.unpack_state(ctape.final_state), cell.unpack_state(tape.final_state)):
        assert np.array_equal(ours, theirs)
    assert_gradients_agree(cell, ckpt, full, 1e-14)
    np.testing.assert_allclose(ckpt.dh_norms, full.dh_norms, rtol=1e-14)


def test_checkpointed_matches_finite_differences(cell_name):
    cell, xs, state0, dhs, dfinal = make_problem(cell_name, seed=1)

    def loss():
        hs, ctape = bptt.forward_checkpointed(cell, xs, state0, every=3)
        final = cell.unpack_state(ctape.final_state)
        return np.sum(dhs * hs) + sum(np.sum(w * s) for w, s in zip(cell.unpack_state(dfinal), final))

    _, ctape = bptt.forward_checkpointed(cell, xs, state0, every=3)
    grads = bptt.backward_checkpointed(cell, ctape, dhs, dfinal)
    for name, param in cell.params.items():
        assert relative_error(grads.params[name], central_difference(loss, param)) < 1e-7, name
    assert relative_error(grads.dxs, central_difference(loss, xs)) < 1e-7


def test_default_segment_is_sqrt_t_and_tape_is_smaller():
    cell = bptt.LSTM(3, 16, seed=0)
    xs = np.random.default_rng(0).standard_normal((400, 2, 3))
    _, tape = bptt.forward(cell, xs)
    _, ctape = bptt.forward_checkpointed(cell, xs)
    assert ctape.every == 20 and len(ctape.checkpoints) == 20
    # held between passes: inputs + 20 checkpoints of (h, c), against inputs + every step's cache
    state_bytes = 2 * 2 * 16 * 8
    assert ctape.nbytes == xs.nbytes + 20 * state_bytes
    # the full tape: h and c (T+1 each), 4 gates and tanh(c) (T each)
    assert tape.nbytes == xs.nbytes + (2 * 401 + 5 * 400) * 2 * 16 * 8


def test_bad_arguments_are_rejected():
    cell, xs, state0, dhs, _ = make_problem("gru")
    with pytest.raises(ValueError, match="every"):
        bptt.forward_checkpointed(cell, xs, state0, every=0)
    _, tape = bptt.forward(cell, xs, state0)
    with pytest.raises(ValueError, match="forward_checkpointed"):
        bptt.backward_checkpointed(cell, tape, dhs)
    _, ctape = bptt.forward_checkpointed(bptt.LSTM(D, H), xs)
    with pytest.raises(ValueError, match="GRU"):
        bptt.backward_checkpointed(cell, ctape, dhs)
    _, ctape = bptt.forward_checkpointed(cell, xs, state0)
    with pytest.raises(ValueError, match="dhs"):
        bptt.backward_checkpointed(cell, ctape, dhs[:, :2])
