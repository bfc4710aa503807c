"""Global-norm and element-wise clipping: exact results, the norm before clipping, bad thresholds."""

import math

import numpy as np
import pytest

from bptt.training.clipping import clip_grad_norm, clip_grad_value, global_norm, max_abs


def grads():
    return {"a": np.array([[3.0, 0.0], [0.0, 4.0]]), "b": np.array([12.0])}  # global norm 13


def test_global_norm_scales_every_gradient_by_the_same_factor():
    g = grads()
    before = clip_grad_norm(g, 6.5)
    assert before == 13.0
    assert np.array_equal(g["a"], np.array([[1.5, 0.0], [0.0, 2.0]])) and np.array_equal(g["b"], [6.0])
    assert global_norm(g) == pytest.approx(6.5, rel=1e-15)


def test_global_norm_below_threshold_changes_nothing():
    g = grads()
    assert clip_grad_norm(g, 13.0) == 13.0
    assert all(np.array_equal(g[k], v) for k, v in grads().items())


def test_value_clipping_clamps_elements_and_reports_the_norm_before():
    g = grads()
    assert clip_grad_value(g, 3.5) == 13.0
    assert np.array_equal(g["a"], np.array([[3.0, 0.0], [0.0, 3.5]])) and np.array_equal(g["b"], [3.5])
    assert max_abs(g) == 3.5


def test_non_finite_norm_is_reported_and_nothing_is_touched():
    g = {"a": np.array([1.0, np.inf]), "b": np.array([np.nan])}
    assert math.isnan(clip_grad_norm(g, 1.0))
    assert g["a"][0] == 1.0


@pytest.mark.parametrize("threshold", [0, -1.0, float("nan"), float("inf"), "1", True])
@pytest.mark.parametrize("clip", [clip_grad_norm, clip_grad_value])
def test_non_positive_threshold_is_a_value_error(clip, threshold):
    with pytest.raises(ValueError, match="positive"):
        clip(grads(), threshold)
