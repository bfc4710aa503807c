"""Bad input fails early with a ValueError that says what was expected and what came."""

import numpy as np
import pytest

import bptt


@pytest.fixture
def lstm():
    return bptt.LSTM(3, 4, seed=0)


def test_wrong_input_size_names_expected_and_actual_shape(lstm):
    with pytest.raises(ValueError, match=r"xs must have shape \(T, N, D=3\), got \(5, 2, 4\)"):
        bptt.forward(lstm, np.zeros((5, 2, 4)))


def test_wrong_number_of_dimensions(lstm):
    with pytest.raises(ValueError, match=r"xs must have 3 dimensions .* got 2 with shape \(5, 3\)"):
        bptt.forward(lstm, np.zeros((5, 3)))


def test_empty_sequence(lstm):
    with pytest.raises(ValueError, match="at least one timestep"):
        bptt.forward(lstm, np.zeros((0, 2, 3)))


def test_mismatched_batch_between_inputs_and_state(lstm):
    state = (np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"state0\[0\] \(h\) must have shape \(N=2, H=4\), got \(3, 4\)"):
        bptt.forward(lstm, np.zeros((5, 2, 3)), state)


def test_lstm_state_must_be_a_pair(lstm):
    with pytest.raises(ValueError, match="tuple of 2 arrays"):
        bptt.forward(lstm, np.zeros((5, 2, 3)), np.zeros((2, 4)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input(lstm, bad):
    xs = np.zeros((5, 2, 3))
    xs[2, 1, 0] = bad
    with pytest.raises(ValueError, match="xs contains 1 NaN or infinite"):
        bptt.forward(lstm, xs)


def test_non_finite_parameter(lstm):
    lstm.params["weight_hh"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"params\['weight_hh'\] contains 1 NaN"):
        bptt.forward(lstm, np.zeros((5, 2, 3)))


def test_misshapen_parameter(lstm):
    lstm.params["bias_ih"] = np.zeros(12)
    with pytest.raises(ValueError, match=r"params\['bias_ih'\] must have shape \(16,\), got \(12,\)"):
        bptt.forward(lstm, np.zeros((5, 2, 3)))


def test_backward_checks_dhs_shape(lstm):
    _, tape = bptt.forward(lstm, np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match=r"dhs must have shape \(T=5, N=2, H=4\), got \(5, 2, 3\)"):
        bptt.backward(lstm, tape, np.zeros((5, 2, 3)))


def test_backward_rejects_a_tape_from_another_cell(lstm):
    gru = bptt.GRU(3, 4)
    _, tape = bptt.forward(gru, np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match="tape must come from bptt.forward with this LSTM"):
        bptt.backward(lstm, tape, None)


def test_non_numeric_input(lstm):
    with pytest.raises(ValueError, match="xs must hold real numbers"):
        bptt.forward(lstm, np.full((5, 2, 3), "a"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(input_size=0, hidden_size=4), "input_size must be a positive integer"),
        (dict(input_size=3, hidden_size=2.5), "hidden_size must be a positive integer"),
        (dict(input_size=3, hidden_size=4, dtype=np.int32), "dtype must be float32 or float64"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bptt.GRU(**kwargs)


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        bptt.RNN(3, 4, "sigmoid")


def test_load_params_accepts_pytorch_names_and_checks_shapes(lstm):
    other = bptt.LSTM(3, 4, seed=1)
    lstm.load_params({k + "_l0": v for k, v in other.params.items()})
    for k in other.params:
        np.testing.assert_array_equal(lstm.params[k], other.params[k])
    bad = dict(other.params, weight_hh=np.zeros((16, 5)))
    with pytest.raises(ValueError, match=r"weight_hh.*must have shape \(16, 4\), got \(16, 5\)"):
        lstm.load_params(bad)
    with pytest.raises(ValueError, match=r"unknown keys \['weight_hr_l0'\], missing keys \[\]"):
        lstm.load_params(dict(other.params, weight_hr_l0=np.zeros(1)))
    with pytest.raises(ValueError, match=r"unknown keys \[\], missing keys \['bias_hh'\]"):
        lstm.load_params({k: v for k, v in other.params.items() if k != "bias_hh"})


def test_loss_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"mse: predictions have shape \(3, 2\) but targets \(3,\)"):
        bptt.mse(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        bptt.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 4, 1]))


# ----------------------------------------------------------------- the tape is honest
def test_backward_refuses_a_tape_whose_weights_changed_in_place(lstm):
    xs, dhs = np.ones((5, 2, 3)), np.ones((5, 2, 4))
    _, tape = bptt.forward(lstm, xs)
    bptt.backward(lstm, tape, dhs)  # unchanged weights: fine, any number of times
    lstm.params["weight_hh"][0, 0] += 1e-3
    with pytest.raises(ValueError, match=r"the weights of this LSTM changed since bptt.forward made the "
                                         r"tape \(weight_hh\): run the forward pass again"):
        bptt.backward(lstm, tape, dhs)
    lstm.params["bias_ih"] = lstm.params["bias_ih"] + 1  # rebinding counts too
    with pytest.raises(ValueError, match=r"\(weight_hh, bias_ih\)"):
        bptt.backward(lstm, tape, dhs)
    _, tape = bptt.forward(lstm, xs)
    assert np.isfinite(bptt.backward(lstm, tape, dhs).dh_norms).all()


def test_backward_checkpointed_refuses_changed_weights_too(lstm):
    _, tape = bptt.forward_checkpointed(lstm, np.ones((6, 2, 3)), every=2)
    lstm.params["weight_ih"] *= 2
    with pytest.raises(ValueError, match=r"since bptt.forward_checkpointed made the tape \(weight_ih\)"):
        bptt.backward_checkpointed(lstm, tape, None)


def test_the_outputs_and_caches_of_a_tape_are_read_only(lstm):
    hs, tape = bptt.forward(lstm, np.ones((5, 2, 3)))
    with pytest.raises(ValueError, match="read-only"):
        hs[0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        tape.step(2).c[...] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        tape.hs[-1] += 1
    copy = hs.copy()
    copy[0, 0, 0] = 1.0  # a copy is the caller's to change
    assert np.array_equal(tape.hs, bptt.forward(lstm, np.ones((5, 2, 3)))[0])
