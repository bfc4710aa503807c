"""Global-norm and element-wise clipping: exact results, the norm before clipping, whether anything
was clipped, bad thresholds."""

import math

import numpy as np
import pytest

from bptt.training.clipping import (
    Clipping, clip_grad_norm, clip_grad_value, clip_gradients, global_norm, max_abs,
)


def grads():
    return {"a": np.array([[3.0, 0.0], [0.0, 4.0]]), "b": np.array([12.0])}  # global norm 13


def test_global_norm_scales_every_gradient_by_the_same_factor():
    g = grads()
    assert clip_grad_norm(g, 6.5) == Clipping(13.0, True)
    assert np.array_equal(g["a"], np.array([[1.5, 0.0], [0.0, 2.0]])) and np.array_equal(g["b"], [6.0])
    assert global_norm(g) == pytest.approx(6.5, rel=1e-15)


def test_global_norm_below_threshold_changes_nothing():
    g = grads()
    assert clip_grad_norm(g, 13.0) == Clipping(13.0, False)  # at the threshold: nothing to do
    assert all(np.array_equal(g[k], v) for k, v in grads().items())


def test_value_clipping_clamps_elements_and_reports_the_norm_before():
    g = grads()
    before, clipped = clip_grad_value(g, 3.5)
    assert before == 13.0 and clipped is True
    assert np.array_equal(g["a"], np.array([[3.0, 0.0], [0.0, 3.5]])) and np.array_equal(g["b"], [3.5])
    assert max_abs(g) == 3.5


def test_value_clipping_flag_follows_the_elements_not_the_norm():
    g = grads()
    result = clip_grad_value(g, 12.0)  # the norm 13 exceeds 12, but no element does
    assert result == Clipping(13.0, False) and isinstance(result.clipped, bool)
    assert all(np.array_equal(g[k], v) for k, v in grads().items())


def test_non_finite_norm_is_reported_and_nothing_is_touched():
    g = {"a": np.array([1.0, np.inf]), "b": np.array([np.nan])}
    for clip in (clip_grad_norm, clip_grad_value):
        norm, clipped = clip(g, 1.0)
        assert math.isnan(norm) and clipped is False
    assert g["a"][0] == 1.0 and g["a"][1] == np.inf


@pytest.mark.parametrize("threshold", [0, -1.0, float("nan"), float("inf"), "1", True])
@pytest.mark.parametrize("clip", [clip_grad_norm, clip_grad_value])
def test_non_positive_threshold_is_a_value_error(clip, threshold):
    with pytest.raises(ValueError, match="positive"):
        clip(grads(), threshold)


@pytest.mark.parametrize("mode,threshold,expect", [
    ("norm", 6.5, Clipping(13.0, True)), ("value", 3.5, Clipping(13.0, True)),
    ("value", 12.0, Clipping(13.0, False)), ("none", 1.0, Clipping(13.0, False)),
])
def test_clipping_by_name(mode, threshold, expect):
    g = grads()
    assert clip_gradients(g, mode, threshold) == expect
    assert (global_norm(g) < 13.0) == expect.clipped  # "none" only measures


def test_unknown_clipping_mode_names_the_choices():
    with pytest.raises(ValueError, match=r"clip must be one of \['norm', 'value', 'none'\], got 'max'"):
        clip_gradients(grads(), "max", 1.0)


# --- a list of dicts (a cell's and a readout's gradients): one global norm over all of them


def test_a_list_of_dicts_is_clipped_by_the_global_norm_over_all():
    whole = grads()
    parts = [{"a": whole["a"].copy()}, {"b": whole["b"].copy()}]
    assert clip_grad_norm(parts, 6.5) == clip_grad_norm(whole, 6.5) == Clipping(13.0, True)
    assert np.array_equal(parts[0]["a"], whole["a"]) and np.array_equal(parts[1]["b"], whole["b"])
    assert global_norm(parts) == 6.5 and max_abs(parts) == max_abs(whole)
    parts = [{"a": grads()["a"]}, {"b": grads()["b"]}]
    assert clip_grad_value(parts, 3.5) == Clipping(13.0, True)
    assert parts[1]["b"][0] == 3.5 and parts[0]["a"][0, 0] == 3.0


def test_the_public_names_are_these_functions():
    import bptt

    assert bptt.clip_grad_norm is clip_grad_norm and bptt.clip_grad_value is clip_grad_value


def test_a_list_holding_something_else_is_named():
    with pytest.raises(TypeError, match="item 1 is a ndarray"):
        clip_grad_norm([{"a": np.ones(2)}, np.ones(2)], 1.0)
