"""Every cell against PyTorch autograd with the same weights: outputs and all gradients, float64."""

import numpy as np
import pytest

import bptt
from bptt.modes.finite_diff import relative_error

from conftest import CELLS, random_state

TOL = 1e-10


def torch_module(torch, cell_name, cell):
    D, H = cell.input_size, cell.hidden_size
    if cell_name.startswith("rnn"):
        module = torch.nn.RNN(D, H, nonlinearity=cell.nonlinearity)
    elif cell_name == "lstm":
        module = torch.nn.LSTM(D, H)
    else:
        module = torch.nn.GRU(D, H)
    with torch.no_grad():
        for name, value in cell.params.items():
            getattr(module, name + "_l0").copy_(torch.from_numpy(value))
    return module.double()


@pytest.mark.torch
@pytest.mark.parametrize("shape", [(7, 3, 5, 4), (40, 8, 3, 16)])
def test_cell_matches_pytorch_autograd(torch, cell_name, shape):
    T, N, D, H = shape
    rng = np.random.default_rng(0)
    cell = CELLS[cell_name](D, H, seed=1)
    xs = rng.standard_normal((T, N, D))
    state0 = random_state(cell, N, rng)
    dhs = rng.standard_normal((T, N, H))
    dfinal = random_state(cell, N, rng)

    hs, tape = bptt.forward(cell, xs, state0)
    grads = bptt.backward(cell, tape, dhs, dfinal)

    module = torch_module(torch, cell_name, cell)
    x_t = torch.tensor(xs, requires_grad=True)
    s0 = [torch.tensor(p[None], requires_grad=True) for p in cell.unpack_state(state0)]
    out, final = module(x_t, tuple(s0) if cell_name == "lstm" else s0[0])
    final = final if cell_name == "lstm" else (final,)
    loss = (out * torch.from_numpy(dhs)).sum()
    for w, s in zip(cell.unpack_state(dfinal), final):
        loss = loss + (s[0] * torch.from_numpy(w)).sum()
    loss.backward()

    assert relative_error(hs, out.detach().numpy()) < TOL
    for ours, theirs in zip(cell.unpack_state(tape.final_state), final):
        assert relative_error(ours, theirs[0].detach().numpy()) < TOL
    for name in cell.params:
        theirs = getattr(module, name + "_l0").grad.numpy()
        assert relative_error(grads.params[name], theirs) < TOL, name
    assert relative_error(grads.dxs, x_t.grad.numpy()) < TOL
    for ours, theirs in zip(cell.unpack_state(grads.dstate0), s0):
        assert relative_error(ours, theirs.grad[0].numpy()) < TOL


@pytest.mark.torch
def test_default_initialisation_has_pytorchs_distribution(torch, cell_name):
    """Same bound as PyTorch's reset_parameters: uniform in +-1/sqrt(H), all parameters."""
    cell = CELLS[cell_name](5, 64, seed=0)
    module = torch_module(torch, cell_name, CELLS[cell_name](5, 64, seed=0))
    torch.manual_seed(0)
    module.reset_parameters()
    bound = 1 / np.sqrt(64)
    for name, value in cell.params.items():
        reference = getattr(module, name + "_l0").detach().numpy()
        assert value.shape == reference.shape
        assert np.abs(value).max() <= bound and np.abs(reference).max() <= bound
        # both fill the interval: the largest magnitude is close to the bound
        assert np.abs(value).max() > 0.9 * bound and np.abs(reference).max() > 0.9 * bound


@pytest.mark.torch
@pytest.mark.parametrize(
    "loss_name", ["mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy"]
)
def test_losses_match_pytorch(torch, loss_name):
    rng = np.random.default_rng(0)
    logits = 3 * rng.standard_normal((6, 4, 5))
    targets = {
        "mse": rng.standard_normal((6, 4, 5)),
        "softmax_cross_entropy": rng.integers(0, 5, (6, 4)),
        "sigmoid_binary_cross_entropy": rng.integers(0, 2, (6, 4, 5)).astype(float),
    }[loss_name]
    loss, grad = getattr(bptt, loss_name)(logits, targets)

    z = torch.tensor(logits, requires_grad=True)
    y = torch.from_numpy(targets)
    F = torch.nn.functional
    if loss_name == "mse":
        ref = F.mse_loss(z, y)
    elif loss_name == "softmax_cross_entropy":
        ref = F.cross_entropy(z.reshape(-1, 5), y.reshape(-1))
    else:
        ref = F.binary_cross_entropy_with_logits(z, y)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    assert relative_error(grad, z.grad.numpy()) < 1e-12
