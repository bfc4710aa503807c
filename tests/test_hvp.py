"""Hessian-vector products: exact against finite differences of the gradient, symmetric, and the
power iteration's top eigenvalue against a dense Hessian built from them. float64, all cells."""

import numpy as np
import pytest

import bptt
from bptt.modes.finite_diff import relative_error
from bptt.modes.common import flatten_params, unflatten_params

from conftest import CELLS, random_state

T, N, D, H = 6, 3, 4, 3


def make_problem(cell_name, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    xs = rng.standard_normal((T, N, D))
    state0 = random_state(cell, N, rng)
    targets = rng.standard_normal((T, N, H))
    return cell, xs, state0, targets, rng


def flat_hvp(cell, xs, targets, v, state0):
    return flatten_params(bptt.hvp(cell, xs, targets, unflatten_params(cell, v), state0))


def test_hvp_matches_finite_differences_of_the_gradient(cell_name):
    cell, xs, state0, targets, rng = make_problem(cell_name)
    v = rng.standard_normal(cell.num_params)
    hv = flat_hvp(cell, xs, targets, v, state0)

    theta, eps = flatten_params(cell.params), 1e-5

    def gradient_at(point):
        cell.params = unflatten_params(cell, point.copy())
        return flatten_params(bptt.loss_and_gradient(cell, xs, targets, state0)[1])

    numeric = (gradient_at(theta + eps * v) - gradient_at(theta - eps * v)) / (2 * eps)
    cell.params = unflatten_params(cell, theta.copy())
    assert relative_error(hv, numeric) < 1e-7


def test_hvp_is_symmetric_and_linear(cell_name):
    """<u, Hv> = <v, Hu> to round-off, and H(a u + v) = a Hu + Hv."""
    cell, xs, state0, targets, rng = make_problem(cell_name, seed=1)
    u, v = rng.standard_normal((2, cell.num_params))
    hu, hv = flat_hvp(cell, xs, targets, u, state0), flat_hvp(cell, xs, targets, v, state0)
    assert u @ hv == pytest.approx(v @ hu, rel=1e-12)
    combined = flat_hvp(cell, xs, targets, 2.5 * u + v, state0)
    assert relative_error(combined, 2.5 * hu + hv) < 1e-13


def test_power_iteration_finds_the_largest_magnitude_eigenvalue(cell_name):
    cell, xs, state0, targets, _ = make_problem(cell_name, seed=2)
    dense = np.stack([flat_hvp(cell, xs, targets, e, state0) for e in np.eye(cell.num_params)])
    assert np.abs(dense - dense.T).max() < 1e-12 * np.abs(dense).max()  # Hessians are symmetric
    eigenvalues = np.linalg.eigvalsh(dense)
    expected = eigenvalues[np.argmax(np.abs(eigenvalues))]
    value, vector, used = bptt.top_hessian_eigenvalue(cell, xs, targets, state0, iterations=500)
    assert used < 500
    assert value == pytest.approx(expected, rel=1e-6)
    v = flatten_params(vector)
    assert relative_error(dense @ v, expected * v) < 1e-3  # an eigenvector, to the iteration's accuracy


@pytest.mark.torch
def test_hvp_matches_pytorch_double_backward(torch, cell_name):
    from test_torch_reference import torch_module

    cell, xs, state0, targets, rng = make_problem(cell_name, seed=3)
    v = {name: rng.standard_normal(p.shape) for name, p in cell.params.items()}
    ours = bptt.hvp(cell, xs, targets, v, state0)

    module = torch_module(torch, cell_name, cell)
    s0 = tuple(torch.tensor(p[None]) for p in cell.unpack_state(state0))
    out, _ = module(torch.tensor(xs), s0 if cell_name == "lstm" else s0[0])
    loss = ((out - torch.from_numpy(targets)) ** 2).mean()
    weights = [getattr(module, name + "_l0") for name in cell.params]
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    dot = sum((g * torch.from_numpy(v[name])).sum() for g, name in zip(grads, cell.params))
    theirs = torch.autograd.grad(dot, weights)
    for name, t in zip(cell.params, theirs):
        assert relative_error(ours[name], t.numpy()) < 1e-10, name


def test_bad_arguments_are_rejected():
    cell, xs, state0, targets, _ = make_problem("rnn")
    with pytest.raises(ValueError, match="targets"):
        bptt.hvp(cell, xs, targets[:, :, :2], {}, state0)
    with pytest.raises(ValueError, match="unknown parameter tangents"):
        bptt.hvp(cell, xs, targets, {"w": np.zeros(3)}, state0)
    with pytest.raises(ValueError, match="iterations"):
        bptt.top_hessian_eigenvalue(cell, xs, targets, iterations=0)
