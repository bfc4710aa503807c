"""The fast path's own arrangements, against the plain step pair: both branches of each size rule,
lengths, float32, the work arrays kept between calls, and sequences stepped in turn."""

import numpy as np
import pytest

import bptt
from bptt.cells import fast
from bptt.core.scratch import ScratchArrays
from bptt.core.sequence import StepwiseSequence
from bptt.modes.finite_diff import relative_error

from conftest import CELLS, assert_gradients_agree, random_state


def both_paths(cell_name, D, H, dtype=np.float64, proj_size=0):
    options = {"proj_size": proj_size} if proj_size else {}
    fast_cell = bptt.make_cell(cell_name, D, H, seed=3, dtype=dtype, **options)
    plain = bptt.make_cell(cell_name, D, H, seed=3, dtype=dtype, **options)
    plain.Sequence = StepwiseSequence
    return fast_cell, plain


def run(cell, xs, state0, dhs, dfinal, lengths=None):
    hs, tape = bptt.forward(cell, xs, state0, lengths=lengths)
    return hs, tape, bptt.backward(cell, tape, dhs, dfinal)


# H = 63 and 64 sit on both sides of the GRU's rule for the direct path h_prev -> h (inside the
# product below H = 64); the LSTM runs with and without its projection.
@pytest.mark.parametrize("cell_name, H, proj", [("gru", 63, 0), ("gru", 64, 0), ("lstm", 64, 0), ("lstm", 9, 5),
                                                ("rnn", 64, 0), ("rnn-relu", 9, 0)])
@pytest.mark.parametrize("lengths", [None, [3, 7, 1, 7, 5]])
def test_fast_path_equals_the_plain_pair_on_both_sides_of_its_size_rules(cell_name, H, proj, lengths):
    rng = np.random.default_rng(0)
    fast_cell, plain = both_paths(cell_name, 4, H, proj_size=proj)
    T, N = 7, 5
    xs = rng.standard_normal((T, N, 4))
    state0 = random_state(fast_cell, N, rng) if not proj else (0.5 * rng.standard_normal((N, proj)),
                                                                0.5 * rng.standard_normal((N, H)))
    dfinal = random_state(fast_cell, N, rng) if not proj else (rng.standard_normal((N, proj)),
                                                                rng.standard_normal((N, H)))
    dhs = rng.standard_normal((T, N, fast_cell.output_size))
    hs, tape, grads = run(fast_cell, xs, state0, dhs, dfinal, lengths)
    hs_p, tape_p, grads_p = run(plain, xs, state0, dhs, dfinal, lengths)
    assert relative_error(hs, hs_p) < 1e-13
    for a, b in zip(fast_cell.unpack_state(tape.final_state), plain.unpack_state(tape_p.final_state)):
        assert relative_error(a, b) < 1e-13
    assert_gradients_agree(fast_cell, grads, grads_p, 1e-12)
    np.testing.assert_allclose(grads.dh_norms, grads_p.dh_norms, rtol=1e-12)
    for t in (0, T - 1):
        for field, a, b in zip(tape.step(t)._fields, tape.step(t), tape_p.step(t)):
            assert relative_error(a, b) < 1e-13, (t, field)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_float32_fast_path_agrees_with_the_float64_plain_pair(cell_name):
    rng = np.random.default_rng(1)
    cell32, _ = both_paths(cell_name, 3, 65, np.float32)
    _, plain64 = both_paths(cell_name, 3, 65)
    xs, dhs = rng.standard_normal((20, 4, 3)), rng.standard_normal((20, 4, 65))
    hs, _, grads = run(cell32, xs, None, dhs, None)
    hs64, _, grads64 = run(plain64, xs, None, dhs, None)
    assert hs.dtype == np.float32 and grads.dxs.dtype == np.float32
    assert relative_error(hs, hs64) < 1e-5
    assert_gradients_agree(cell32, grads, grads64, 1e-4)


def test_results_do_not_share_memory_with_the_work_arrays_kept_for_the_next_call(cell_name):
    """A second forward and backward reuse the kept work arrays; the first call's tape and
    gradients must not change."""
    rng = np.random.default_rng(2)
    cell = CELLS[cell_name](3, 6, seed=0)
    first = [rng.standard_normal(shape) for shape in ((5, 4, 3), (5, 4, 6))]
    second = [rng.standard_normal(shape) for shape in ((5, 4, 3), (5, 4, 6))]
    hs, tape = bptt.forward(cell, first[0])
    grads = bptt.backward(cell, tape, first[1])
    kept = [np.copy(a) for a in (hs, *tape.step(2), grads.dxs, grads.dh_norms, *grads.params.values(),
                                 *cell.unpack_state(grads.dstate0), *cell.unpack_state(tape.final_state))]
    hs2, tape2 = bptt.forward(cell, second[0])
    bptt.backward(cell, tape2, second[1])
    again = [hs, *tape.step(2), grads.dxs, grads.dh_norms, *grads.params.values(),
             *cell.unpack_state(grads.dstate0), *cell.unpack_state(tape.final_state)]
    for before, after in zip(kept, again):
        assert np.array_equal(before, after)
    assert bptt.backward(cell, tape, first[1]).params.keys() == grads.params.keys()
    for name, value in bptt.backward(cell, tape, first[1]).params.items():  # the tape still gives the same
        assert np.array_equal(value, grads.params[name]), name


def test_two_sequences_stepped_in_turn_equal_each_run_alone(cell_name):
    """A sequence's work arrays are its own until its last step: another one started meanwhile
    gets other arrays."""
    rng = np.random.default_rng(3)
    cell = CELLS[cell_name](3, 5, seed=0)
    xs_a, xs_b = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 3))
    alone = [bptt.forward(cell, xs)[0].copy() for xs in (xs_a, xs_b)]
    zeros = cell.unpack_state(cell.initial_state(2))
    a, b = cell.sequence(cell.check_inputs(xs_a), zeros), cell.sequence(cell.check_inputs(xs_b), zeros)
    with np.errstate(over="ignore"):
        for t in range(6):
            a.step(t)
            b.step(t)
    assert np.array_equal(a.outputs, alone[0]) and np.array_equal(b.outputs, alone[1])


def test_scratch_take_is_the_callers_until_given_back():
    kept = ScratchArrays()
    a = kept.take("x", (3,), np.dtype(np.float64))
    b = kept.take("x", (3,), np.dtype(np.float64))
    assert a is not b  # a was taken, so the second take got its own array
    kept.give("x", a)
    assert kept.take("x", (3,), np.dtype(np.float64)) is a
    assert kept.get("y", (2,), np.dtype(np.float32)) is kept.get("y", (2,), np.dtype(np.float32))
    assert kept.get("y", (3,), np.dtype(np.float32)).shape == (3,)
    assert [a.shape for a in kept.arrays["y"]] == [(3,)]  # another shape replaces those kept
    for array in [np.empty(4) for _ in range(kept.MAX_PER_ROLE + 2)]:  # several of one shape, up to a limit
        kept.give("z", array)
    assert len(kept.arrays["z"]) == kept.MAX_PER_ROLE
    views_a, views_b = ["views of a and b"], ["views of c"]
    kept.give_views("r", (1, 2), views_a)
    kept.give_views("r", (3,), views_b)
    assert kept.take_views({2, 9}) == [("r", (1, 2), views_a)]  # taking array 2 takes what refers to it
    assert kept.views["r"] == [((3,), views_b)]
    kept.clear()
    assert not kept.arrays


def test_exp_tanh_equals_numpys_to_a_few_ulps(monkeypatch):
    """The float64 tanh through exp, taken where numpy's is not vectorised, whatever this CPU is."""
    monkeypatch.setattr(fast, "EXP_TANH_MIN_SIZE", 1024)
    x = np.linspace(-30, 30, 4001)
    out = np.empty_like(x)
    with np.errstate(over="ignore"):
        fast.tanh(x, out)
    assert np.abs(out - np.tanh(x)).max() <= 4 * np.finfo(np.float64).eps


@pytest.mark.parametrize("keep", ["outputs", "a step's cache", "the final state", "nothing"])
def test_a_freed_tapes_arrays_are_reused_only_when_no_view_of_them_is_held(cell_name, keep):
    """A tape's arrays go back to the kept ones when the tape is freed, unless the caller still
    holds a view of one: what the caller holds never changes under it."""
    rng = np.random.default_rng(4)
    cell = CELLS[cell_name](3, 5, seed=0)
    xs = rng.standard_normal((6, 2, 3))
    hs, tape = bptt.forward(cell, xs)
    held = {"outputs": hs, "a step's cache": tape.step(3).gates if hasattr(tape.step(3), "gates") else tape.step(3).h,
            "the final state": cell.unpack_state(tape.final_state)[-1], "nothing": None}[keep]
    copy = None if held is None else held.copy()
    del hs, tape
    for _ in range(3):  # later sequences of the same shapes take whatever was kept
        bptt.backward(cell, *bptt.forward(cell, 10 * rng.standard_normal((6, 2, 3)))[::-1], None)
    if held is not None:
        assert np.array_equal(held, copy)


def test_a_dropped_tape_and_its_sweep_are_freed_at_once_not_by_the_garbage_collector(cell_name):
    """No reference cycle holds a sequence: its memory comes back when the caller lets go."""
    import gc
    import weakref

    cell = CELLS[cell_name](3, 5, seed=0)
    xs = np.random.default_rng(5).standard_normal((6, 2, 3))
    gc.disable()
    try:
        hs, tape = bptt.forward(cell, xs)
        sweep = tape.sequence.reverse()
        refs = [weakref.ref(tape.sequence), weakref.ref(sweep)]
        del hs, tape, sweep
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


def test_views_kept_with_a_freed_tapes_arrays_follow_the_new_weights(cell_name):
    """A sequence that takes over a freed tape's arrays may take its per-step views too: the
    weights each step uses are the current call's, not those the views were built with."""
    rng = np.random.default_rng(6)
    cell = CELLS[cell_name](3, 5, seed=0)
    plain = CELLS[cell_name](3, 5, seed=0)
    plain.Sequence = StepwiseSequence
    xs, dhs = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 5))
    for _ in range(3):
        for c in (cell, plain):  # new weights each round, as a training loop would
            c.params = {name: value + 0.1 * rng.standard_normal(value.shape) for name, value in c.params.items()}
        plain.params = {name: value.copy() for name, value in cell.params.items()}
        hs, tape = bptt.forward(cell, xs)
        hs_p, tape_p = bptt.forward(plain, xs)
        assert relative_error(hs, hs_p) < 1e-13
        assert_gradients_agree(cell, bptt.backward(cell, tape, dhs), bptt.backward(plain, tape_p, dhs), 1e-12)
        del hs, tape
