"""Forward mode (jvp, RTRL) against reverse mode, finite differences and PyTorch, float64, all cells."""

import numpy as np
import pytest

import bptt
from bptt.modes.finite_diff import central_difference, relative_error
from bptt.modes.common import affine_tangents, parameter_basis_tangents, unflatten_params

from conftest import CELLS, random_state

T, N, D, H = 7, 3, 5, 4


def make_problem(cell_name, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    xs = rng.standard_normal((T, N, D))
    state0 = random_state(cell, N, rng)
    dhs = rng.standard_normal((T, N, H))
    dfinal = random_state(cell, N, rng)
    return cell, xs, state0, dhs, dfinal, rng


def inner(cell, a, b):
    """<a, b> for two states (tuples for LSTM)."""
    return sum(np.sum(x * y) for x, y in zip(cell.unpack_state(a), cell.unpack_state(b)))


def test_dot_product_test_jvp_against_backward(cell_name):
    """<u, J v> from jvp equals <J^T u, v> from backward, for random u = (dhs, dfinal) and v on
    parameters, inputs and initial state together."""
    cell, xs, state0, dhs, dfinal, rng = make_problem(cell_name)
    v_params = {name: rng.standard_normal(p.shape) for name, p in cell.params.items()}
    v_xs = rng.standard_normal(xs.shape)
    v_state0 = random_state(cell, N, rng)

    out = bptt.jvp(cell, xs, state0, v_params, xs_tangent=v_xs, state0_tangent=v_state0)
    u_jv = np.sum(dhs * out.hs_dot) + inner(cell, dfinal, out.final_state_dot)

    _, tape = bptt.forward(cell, xs, state0)
    g = bptt.backward(cell, tape, dhs, dfinal)
    jtu_v = (
        sum(np.sum(g.params[name] * v) for name, v in v_params.items())
        + np.sum(g.dxs * v_xs)
        + inner(cell, g.dstate0, v_state0)
    )
    assert u_jv == pytest.approx(jtu_v, rel=1e-12)


def test_jvp_outputs_match_forward(cell_name):
    cell, xs, state0, *_ = make_problem(cell_name)
    hs, tape = bptt.forward(cell, xs, state0)
    out = bptt.jvp(cell, xs, state0)
    assert np.array_equal(out.hs, hs)
    for ours, theirs in zip(cell.unpack_state(out.final_state), cell.unpack_state(tape.final_state)):
        assert np.array_equal(ours, theirs)
    assert not np.any(out.hs_dot)  # no tangent, no change


@pytest.mark.parametrize("which", ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "xs", "state0"])
def test_jvp_matches_finite_differences(cell_name, which):
    """h_t_dot against (h_t(theta + eps v) - h_t(theta - eps v)) / (2 eps), one tangent at a time."""
    cell, xs, state0, _, _, rng = make_problem(cell_name, seed=1)
    parts = [p.copy() for p in cell.unpack_state(state0)]
    if which == "xs":
        target = xs
    elif which == "state0":
        target = parts[-1]  # c for LSTM, h otherwise
    else:
        target = cell.params[which]
    direction = rng.standard_normal(target.shape)
    if which == "xs":
        kwargs = {"xs_tangent": direction}
    elif which == "state0":
        zeros = tuple(np.zeros_like(p) for p in parts[:-1])
        kwargs = {"state0_tangent": cell.pack_state(zeros + (direction,))}
    else:
        kwargs = {"tangents": {which: direction}}
    out = bptt.jvp(cell, xs, cell.pack_state(tuple(parts)), **kwargs)

    eps, base = 1e-6, target.copy()
    target[...] = base + eps * direction
    up = bptt.forward(cell, xs, cell.pack_state(tuple(parts)))[0].copy()
    target[...] = base - eps * direction
    down = bptt.forward(cell, xs, cell.pack_state(tuple(parts)))[0].copy()
    target[...] = base
    assert relative_error(out.hs_dot, (up - down) / (2 * eps)) < 1e-8


def test_rtrl_equals_bptt(cell_name):
    cell, xs, state0, dhs, dfinal, _ = make_problem(cell_name)
    _, tape = bptt.forward(cell, xs, state0)
    g = bptt.backward(cell, tape, dhs, dfinal)
    r = bptt.rtrl(cell, xs, dhs, state0, dfinal)
    for name in cell.params:
        assert relative_error(r.params[name], g.params[name]) < 1e-10, name
    assert np.array_equal(r.hs, tape.hs)


def test_rtrl_matches_finite_differences(cell_name):
    cell, xs, state0, dhs, dfinal, _ = make_problem(cell_name, seed=2)

    def loss():
        hs, tape = bptt.forward(cell, xs, state0)
        return np.sum(dhs * hs) + inner(cell, dfinal, tape.final_state)

    r = bptt.rtrl(cell, xs, dhs, state0, dfinal)
    for name, param in cell.params.items():
        assert relative_error(r.params[name], central_difference(loss, param)) < 1e-7, name


def test_rtrl_online_loss_equals_offline(cell_name):
    """dhs given step by step from h_t (an online MSE) gives the gradient of the whole-sequence MSE."""
    cell, xs, state0, targets, _, _ = make_problem(cell_name, seed=3)
    scale = 2.0 / targets.size  # mse's gradient factor
    seen = []

    def online(t, h_t):
        seen.append(t)
        return scale * (h_t - targets[t])

    r = bptt.rtrl(cell, xs, online, state0, keep_hs=False)
    assert r.hs is None
    hs, tape = bptt.forward(cell, xs, state0)
    g = bptt.backward(cell, tape, bptt.mse(hs, targets)[1])
    assert seen == list(range(T))
    for name in cell.params:
        assert relative_error(r.params[name], g.params[name]) < 1e-10, name


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # inside torch.func
def test_jvp_rtrl_checkpointed_bptt_and_pytorch_agree(torch, cell_name):
    """One gradient five ways: BPTT, checkpointed BPTT, RTRL, PyTorch autograd; and jvp against
    PyTorch's forward-mode jvp (torch.func.jvp) for the same direction."""
    from test_torch_reference import torch_module

    cell, xs, state0, dhs, dfinal, rng = make_problem(cell_name, seed=4)
    _, tape = bptt.forward(cell, xs, state0)
    g = bptt.backward(cell, tape, dhs, dfinal)
    _, ctape = bptt.forward_checkpointed(cell, xs, state0, every=3)
    gc = bptt.backward_checkpointed(cell, ctape, dhs, dfinal)
    r = bptt.rtrl(cell, xs, dhs, state0, dfinal)

    module = torch_module(torch, cell_name, cell)
    s0 = tuple(torch.tensor(p[None]) for p in cell.unpack_state(state0))
    s0_arg = s0 if cell_name == "lstm" else s0[0]
    out, final = module(torch.tensor(xs), s0_arg)
    final = final if cell_name == "lstm" else (final,)
    loss = (out * torch.from_numpy(dhs)).sum()
    for w, s in zip(cell.unpack_state(dfinal), final):
        loss = loss + (s[0] * torch.from_numpy(w)).sum()
    loss.backward()
    for name in cell.params:
        theirs = getattr(module, name + "_l0").grad.numpy()
        for ours in (g.params[name], gc.params[name], r.params[name]):
            assert relative_error(ours, theirs) < 1e-10, name

    v = {name: rng.standard_normal(p.shape) for name, p in cell.params.items()}
    ours = bptt.jvp(cell, xs, state0, v)
    params = {name + "_l0": torch.from_numpy(cell.params[name]) for name in cell.params}
    tangents = {name + "_l0": torch.from_numpy(v[name]) for name in cell.params}
    run = lambda p: torch.func.functional_call(module, p, (torch.tensor(xs), s0_arg))[0]
    _, out_dot = torch.func.jvp(run, (params,), (tangents,))
    assert relative_error(ours.hs_dot, out_dot.numpy()) < 1e-10


def test_parameter_basis_tangents_are_unit_directions():
    """RTRL's immediate term, direction k, equals affine_tangents for the k-th unit tangent."""
    cell = bptt.GRU(3, 2, seed=0)
    rng = np.random.default_rng(0)
    c = bptt.GRUCache(rng.standard_normal((2, 3)), rng.standard_normal((2, 2)), None, None, None)
    c_dot = bptt.GRUCache(np.zeros((2, 3)), np.zeros((2, 2)), None, None, None)
    basis_x, basis_h = parameter_basis_tangents(cell, c)
    for k, e in enumerate(np.eye(cell.num_params)):
        a_x, a_h = affine_tangents(cell, c, c_dot.x, c_dot.h_prev, unflatten_params(cell, e))
        assert np.array_equal(basis_x[k], a_x) and np.array_equal(basis_h[k], a_h), k


def test_bad_tangents_and_online_gradients_are_rejected():
    cell, xs, state0, dhs, _, _ = make_problem("lstm")
    with pytest.raises(ValueError, match="unknown parameter tangents"):
        bptt.jvp(cell, xs, state0, {"weight_xx": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="weight_hh"):
        bptt.jvp(cell, xs, state0, {"weight_hh": np.zeros((4, 4))})
    with pytest.raises(ValueError, match="xs_tangent"):
        bptt.jvp(cell, xs, state0, xs_tangent=np.zeros((T, N, D + 1)))
    with pytest.raises(ValueError, match="state0_tangent"):
        bptt.jvp(cell, xs, state0, state0_tangent=np.zeros((N, H)))
    with pytest.raises(ValueError, match="dhs"):
        bptt.rtrl(cell, xs, dhs[:-1], state0)
    with pytest.raises(ValueError, match=r"dhs\(0, h_t\)"):
        bptt.rtrl(cell, xs, lambda t, h: np.zeros((N, H + 1)), state0)
