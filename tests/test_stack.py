"""bptt.Stack against PyTorch's nn.RNN/LSTM/GRU with every option, against finite differences (with
dropout and lengths), exact identities, and bad input; variable lengths for the one-layer cells."""

import itertools

import numpy as np
import pytest

import bptt
from bptt.core.sequence import StepwiseSequence
from bptt.modes.finite_diff import central_difference, relative_error
from conftest import numeric_jacobian, truncated_mse_objective

TOL = 1e-10


def make_problem(net, T=6, N=4, seed=0, lengths=None):
    """Inputs, a non-zero initial state, output and final-state gradients for `net`."""
    rng = np.random.default_rng(seed)
    dirs, H_out = net.directions, net.output_size
    xs = rng.standard_normal((N, T, net.input_size) if net.batch_first else (T, N, net.input_size))
    parts = [0.5 * rng.standard_normal(p.shape) for p in net.unpack_state(net.initial_state(N))]
    dhs = rng.standard_normal((N, T, dirs * H_out) if net.batch_first else (T, N, dirs * H_out))
    dfinal = [rng.standard_normal(p.shape) for p in parts]
    return xs, net.pack_state(tuple(parts)), dhs, net.pack_state(tuple(dfinal))


def torch_module(torch, net):
    kind = {"rnn": torch.nn.RNN, "rnn-relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[net.cell_name]
    options = {"nonlinearity": "relu" if net.cell_name == "rnn-relu" else "tanh"} if net.cell_name.startswith("rnn") else {}
    if net.proj_size:
        options["proj_size"] = net.proj_size
    module = kind(net.input_size, net.hidden_size, num_layers=net.num_layers, bidirectional=net.bidirectional,
                  batch_first=net.batch_first, **options)
    module.load_state_dict(net.state_dict(tensors=True))
    return module


def torch_run(torch, net, xs, state0, dhs, dfinal, lengths):
    """PyTorch's outputs, final state and gradients for L = <hs, dhs> + <final state, dfinal>."""
    module = torch_module(torch, net)
    x = torch.tensor(xs, requires_grad=True)
    s0 = [torch.tensor(p, requires_grad=True) for p in net.unpack_state(state0)]
    inputs = x if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=net.batch_first, enforce_sorted=False)
    out, final = module(inputs, tuple(s0) if net.cell_name == "lstm" else s0[0])
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=net.batch_first, total_length=xs.shape[1 if net.batch_first else 0])
    final = final if net.cell_name == "lstm" else (final,)
    loss = (out * torch.from_numpy(dhs)).sum()
    for f, w in zip(final, net.unpack_state(dfinal)):
        loss = loss + (f * torch.from_numpy(w)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    return out.detach().numpy(), [f.detach().numpy() for f in final], grads, x.grad.numpy(), [p.grad.numpy() for p in s0]


CONFIGS = [(cell, layers, bidirectional, proj, batch_first, lengths)
           for cell, layers, bidirectional, proj, batch_first, lengths in itertools.product(
               bptt.CELL_NAMES, (1, 2, 3), (False, True), (0, 2), (False, True), (None, (3, 6, 1, 5)))
           if not (proj and cell != "lstm") and (layers != 2 or not batch_first)]


@pytest.mark.torch
@pytest.mark.parametrize("cell, layers, bidirectional, proj, batch_first, lengths", CONFIGS)
def test_stack_matches_pytorch(torch, cell, layers, bidirectional, proj, batch_first, lengths):
    """Outputs, final states and the gradients of every parameter, the inputs and the initial state,
    for every cell, 1-3 layers, both directions, projections, batch_first and packed lengths
    (including a length of 1, no two alike)."""
    net = bptt.Stack(cell, 3, 5, layers, bidirectional=bidirectional, proj_size=proj, batch_first=batch_first, seed=1)
    xs, state0, dhs, dfinal = make_problem(net)
    lengths = None if lengths is None else np.array(lengths)
    hs, tape = bptt.forward(net, xs, state0, lengths=lengths)
    grads = bptt.backward(net, tape, dhs, dfinal)
    out, final, their_grads, dxs, dstate0 = torch_run(torch, net, xs, state0, dhs, dfinal, lengths)

    assert relative_error(hs, out) < TOL
    for ours, theirs in zip(net.unpack_state(tape.final_state), final):
        assert relative_error(ours, theirs) < TOL
    assert list(grads.params) == list(their_grads) == list(net.params)
    for name, theirs in their_grads.items():
        assert relative_error(grads.params[name], theirs) < TOL, name
    assert relative_error(grads.dxs, dxs) < TOL
    for ours, theirs in zip(net.unpack_state(grads.dstate0), dstate0):
        assert relative_error(ours, theirs) < TOL


@pytest.mark.torch
def test_parameters_have_pytorchs_keys_shapes_and_initial_bound(torch):
    net = bptt.Stack("lstm", 8, 32, 3, bidirectional=True, proj_size=4, seed=0)
    module = torch.nn.LSTM(8, 32, num_layers=3, bidirectional=True, proj_size=4)
    reference = module.state_dict()
    assert list(net.params) == list(reference)
    for name, value in net.params.items():
        assert value.shape == tuple(reference[name].shape), name
        assert np.abs(value).max() <= 1 / np.sqrt(32)
    module.load_state_dict(net.state_dict(tensors=True))  # the way back
    net.load_params(module.state_dict())  # tensors are taken as they are
    for name, value in module.state_dict().items():
        assert np.array_equal(net.params[name], value.numpy())


@pytest.mark.torch
def test_dh_norms_are_the_norms_of_each_layers_total_hidden_gradient(torch):
    """grads.dh_norms[l, d, t] = ||dL/dh_t|| over the batch, the total gradient reaching layer l's
    output at time t (from the layer above and from step t + 1), against the same net unrolled step
    by step in PyTorch (nn.GRUCell), every h_t keeping its gradient; the reverse direction reads each
    sequence reversed within its length, and a finished sequence's state is held."""
    net = bptt.Stack("gru", 3, 4, 2, bidirectional=True, seed=2)
    T, lengths = 5, np.array([5, 2, 4])
    xs, state0, dhs, _ = make_problem(net, T=T, N=3)
    _, tape = bptt.forward(net, xs, state0, lengths=lengths)
    grads = bptt.backward(net, tape, dhs)

    t = np.arange(T)[:, None]
    index = torch.from_numpy(np.where(t < lengths, lengths - 1 - t, t))
    reverse = lambda a: torch.gather(a, 0, index[..., None].expand(-1, -1, a.shape[-1]))  # noqa: E731
    running = torch.from_numpy(t < lengths)[..., None]  # (T, N, 1)
    layer_in, hidden = torch.tensor(xs), {}
    for layer in range(2):
        directions = []
        for d, suffix in enumerate(("", "_reverse")):
            step = torch.nn.GRUCell(layer_in.shape[-1], 4)
            with torch.no_grad():
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(step, name).copy_(torch.from_numpy(net.params[f"{name}_l{layer}{suffix}"]))
            x = layer_in if d == 0 else reverse(layer_in)
            h, hs = torch.tensor(net.unpack_state(state0)[0][layer * 2 + d]), []
            for k in range(T):
                h = torch.where(running[k], step(x[k], h), h)  # a finished sequence holds its state
                h.retain_grad()
                hs.append(h)
            hidden[layer, d] = hs
            out = torch.stack(hs) * running
            directions.append(out if d == 0 else reverse(out))
        layer_in = torch.cat(directions, dim=-1)
    (layer_in * torch.from_numpy(dhs)).sum().backward()
    for (layer, d), hs in hidden.items():
        total = torch.stack([h.grad for h in hs]) * running  # only the steps each sequence ran
        total = total if d == 0 else reverse(total)  # the reverse run's steps back to forward time
        expected = np.linalg.norm(total.numpy(), axis=(1, 2))
        assert relative_error(grads.dh_norms[layer, d], expected) < 1e-12, (layer, d)


@pytest.mark.parametrize("cell", bptt.CELL_NAMES)
def test_stack_with_dropout_and_lengths_matches_finite_differences(cell):
    net = bptt.Stack(cell, 2, 3, 2, bidirectional=True, dropout=0.4, proj_size=2 if cell == "lstm" else 0, seed=3)
    xs, state0, dhs, dfinal = make_problem(net, T=4, N=3)
    lengths = np.array([4, 1, 3])
    _, tape = bptt.forward(net, xs, state0, lengths=lengths)
    masks = tape.masks
    assert masks[0] is not None and 0 < (masks[0] == 0).mean() < 1  # some units dropped, some kept

    def loss():
        hs, t = net.forward(xs, state0, lengths=lengths, masks=masks)  # the same mask every time
        return np.sum(hs * dhs) + sum(np.sum(a * b) for a, b in zip(net.unpack_state(t.final_state),
                                                                    net.unpack_state(dfinal)))

    grads = bptt.backward(net, tape, dhs, dfinal)
    for name in ("weight_hh_l0", "weight_ih_l1_reverse", "bias_hh_l1"):
        assert relative_error(grads.params[name], central_difference(loss, net.params[name])) < 1e-7, name
    assert relative_error(grads.dxs, central_difference(loss, xs)) < 1e-7
    for analytic, part in zip(net.unpack_state(grads.dstate0), net.unpack_state(state0)):
        assert relative_error(analytic, central_difference(loss, part)) < 1e-7


@pytest.mark.parametrize("cell", bptt.CELL_NAMES)
def test_one_layer_unidirectional_stack_is_the_cell_bitwise(cell):
    net = bptt.Stack(cell, 3, 4, seed=7)
    single = bptt.make_cell(cell, 3, 4, seed=7)
    for name, value in single.params.items():
        assert np.array_equal(net.params[name + "_l0"], value)  # the same draws, in the same order
    xs, state0, dhs, dfinal = make_problem(net)
    hs, tape = bptt.forward(net, xs, state0)
    grads = bptt.backward(net, tape, dhs, dfinal)
    hs1, tape1 = bptt.forward(single, xs, net.unpack_state(state0)[0][0] if cell != "lstm"
                              else tuple(p[0] for p in state0))
    unstack = (lambda s: s[0]) if cell != "lstm" else (lambda s: tuple(p[0] for p in s))
    grads1 = bptt.backward(single, tape1, dhs, unstack(dfinal))
    assert np.array_equal(hs, hs1)
    for name in single.params:
        assert np.array_equal(grads.params[name + "_l0"], grads1.params[name])
    assert np.array_equal(grads.dxs, grads1.dxs)
    assert np.array_equal(grads.dh_norms[0, 0], grads1.dh_norms)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_every_length_equal_to_T_is_no_lengths_bitwise(cell):
    net = bptt.Stack(cell, 3, 4, 2, bidirectional=True, seed=1)
    xs, state0, dhs, dfinal = make_problem(net, T=5, N=3)
    hs, tape = bptt.forward(net, xs, state0)
    grads = bptt.backward(net, tape, dhs, dfinal)
    hs_l, tape_l = bptt.forward(net, xs, state0, lengths=[5, 5, 5])
    grads_l = bptt.backward(net, tape_l, dhs, dfinal)
    assert np.array_equal(hs, hs_l)
    for a, b in zip(net.unpack_state(tape.final_state), net.unpack_state(tape_l.final_state)):
        assert np.array_equal(a, b)
    for name in net.params:
        assert np.array_equal(grads.params[name], grads_l.params[name]), name
    assert np.array_equal(grads.dxs, grads_l.dxs)


@pytest.mark.parametrize("cell", bptt.CELL_NAMES)
def test_cell_lengths_fast_path_equals_plain_pair(cell):
    """The fast path's packed rows against the plain step pair run by the same unroller."""
    rng = np.random.default_rng(0)
    fast, plain = bptt.make_cell(cell, 3, 4, seed=1), bptt.make_cell(cell, 3, 4, seed=1)
    plain.Sequence = StepwiseSequence
    xs, dhs = rng.standard_normal((6, 5, 3)), rng.standard_normal((6, 5, 4))
    lengths = [2, 6, 1, 4, 6]
    results = []
    for c in (fast, plain):
        hs, tape = bptt.forward(c, xs, lengths=lengths)
        results.append((hs, tape, bptt.backward(c, tape, dhs)))
    (hs, tape, g), (hs_p, tape_p, g_p) = results
    assert relative_error(hs, hs_p) < 1e-14 and not hs[2:, 0].any() and not hs[1:, 2].any()
    for name in fast.params:
        assert relative_error(g.params[name], g_p.params[name]) < 1e-13, name
    assert relative_error(g.dxs, g_p.dxs) < 1e-13 and not g.dxs[1:, 2].any()  # padding gets no gradient
    assert relative_error(g.dh_norms, g_p.dh_norms) < 1e-13
    for a, b in zip(tape.step(3), tape_p.step(3)):
        assert relative_error(a, b) < 1e-14


# ----------------------------------------------------------------- bad input
@pytest.fixture
def net():
    return bptt.Stack("lstm", 3, 4, 2, seed=0)


@pytest.mark.parametrize("lengths, message", [
    ([5, 5], r"lengths must have shape \(N=3,\)"),
    ([5, 0, 2], r"lengths must lie in 1..T=5, got \[0\] at sequences \[1\]"),
    ([5, -1, 2], r"lengths must lie in 1..T=5, got \[-1\]"),
    ([5, 6, 2], r"lengths must lie in 1..T=5, got \[6\]"),
    ([5, 2.5, 2], "lengths must be integers"),
])
def test_bad_lengths_are_named(net, lengths, message):
    with pytest.raises(ValueError, match=message):
        bptt.forward(net, np.zeros((5, 3, 3)), lengths=lengths)
    with pytest.raises(ValueError, match=message):
        bptt.forward(bptt.GRU(3, 4), np.zeros((5, 3, 3)), lengths=lengths)


def test_a_state_with_the_wrong_layer_count_is_named(net):
    h, c = net.initial_state(3)
    with pytest.raises(ValueError, match=r"state0\[0\] \(h\) must have shape \(L\*directions=2, N=3, H=4\), "
                                         r"got \(3, 3, 4\)"):
        bptt.forward(net, np.zeros((5, 3, 3)), (np.zeros((3, 3, 4)), c))


def test_a_state_dict_of_another_configuration_names_keys_and_shapes(net):
    other = bptt.Stack("lstm", 3, 4, 3, bidirectional=True, seed=0).state_dict()
    with pytest.raises(ValueError) as error:
        net.load_params(other)
    text = str(error.value)
    assert "unknown weight_ih_l0_reverse (16, 3)" in text and "unknown weight_hh_l2 (16, 4)" in text
    misshapen = dict(net.state_dict(), weight_ih_l1=np.zeros((16, 5)))
    with pytest.raises(ValueError, match=r"weight_ih_l1 has shape \(16, 5\), expected \(16, 4\)"):
        net.load_params(misshapen)
    missing = {k: v for k, v in net.state_dict().items() if k != "bias_hh_l1"}
    with pytest.raises(ValueError, match=r"missing bias_hh_l1 \(16,\)"):
        net.load_params(missing)


@pytest.mark.parametrize("options, message", [
    (dict(cell="lsm"), r"cell 'lsm': 'lsm' is neither a built-in cell nor registered in bptt.cells, and not "
                       r"MODULE:CLASS. Expected a built-in cell \(rnn, rnn-relu, lstm, gru\)"),
    (dict(cell="no_such_module_here:MGU"), r"no module named 'no_such_module_here' on the Python path"),
    (dict(cell=3), "cell must be a cell's name"),
    (dict(cell="gru", proj_size=2), "proj_size is only for the lstm cell"),
    (dict(cell="lstm", proj_size=4), r"proj_size must be an integer in \[0, hidden_size=4\)"),
    (dict(cell="lstm", dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
    (dict(cell="lstm", num_layers=0), "num_layers must be a positive integer"),
])
def test_bad_settings_are_named(options, message):
    options = {"input_size": 3, "hidden_size": 4, **options}
    with pytest.raises(ValueError, match=message):
        bptt.Stack(**options)


def test_the_tape_is_the_nets_and_its_weights_must_not_change(net):
    hs, tape = bptt.forward(net, np.ones((5, 3, 3)))
    with pytest.raises(ValueError, match="tape must come from bptt.forward with this Stack"):
        bptt.backward(bptt.Stack("lstm", 3, 4, 2, seed=0), tape, None)
    net.params["weight_hh_l1"][0, 0] += 1
    with pytest.raises(ValueError, match=r"changed since bptt.forward made the tape \(weight_hh_l1\)"):
        bptt.backward(net, tape, np.ones_like(hs))


def test_eval_turns_dropout_off_and_train_on():
    net = bptt.Stack("rnn", 3, 4, 2, dropout=0.5, seed=0)
    xs = np.ones((4, 2, 3))
    assert bptt.forward(net, xs)[1].masks[0] is not None
    net.eval()
    a, b = bptt.forward(net, xs)[0], bptt.forward(net, xs)[0]
    assert np.array_equal(a, b)  # no mask, nothing random
    assert net.train().training and bptt.forward(net, xs)[1].masks[0] is not None


# ----------------------------------------------------------------- every method on a stack
def stack_problem(cell="lstm", bidirectional=True, dropout=0.3, seed=0):
    net = bptt.Stack(cell, 2, 3, 2, bidirectional=bidirectional, dropout=dropout,
                     proj_size=2 if cell == "lstm" else 0, seed=seed)
    xs, state0, dhs, dfinal = make_problem(net, T=7, N=2, seed=seed)
    return net, xs, state0, dhs, dfinal


@pytest.mark.parametrize("cell", bptt.CELL_NAMES)
def test_checkpointed_stack_equals_the_full_tape(cell):
    net, xs, state0, dhs, dfinal = stack_problem(cell)
    net.eval()  # the same function both ways: no fresh dropout mask
    hs, tape = bptt.forward(net, xs, state0)
    full = bptt.backward(net, tape, dhs, dfinal)
    hs_c, checkpoints = bptt.forward_checkpointed(net, xs, state0, every=3)
    kept = bptt.backward_checkpointed(net, checkpoints, dhs, dfinal)
    assert relative_error(hs, hs_c) < 1e-14
    for name in net.params:
        assert relative_error(full.params[name], kept.params[name]) < 1e-13, name
    assert relative_error(full.dxs, kept.dxs) < 1e-13 and relative_error(full.dh_norms, kept.dh_norms) < 1e-13


def test_a_checkpointed_stack_tape_says_it_has_no_state_after_any_step_and_no_step_caches():
    """As for one cell's CheckpointTape: a ValueError that says why, not an AttributeError from inside."""
    net = bptt.Stack("gru", 2, 3, 2, seed=0)
    xs = np.ones((6, 1, 2))
    _, tape = bptt.forward_checkpointed(net, xs, every=2)
    with pytest.raises(ValueError, match="a checkpointed tape keeps a state only every `every` steps"):
        tape.state_at(2)
    with pytest.raises(ValueError, match="needs the tape of bptt.forward: a checkpointed tape keeps no step caches"):
        bptt.diagnostics.jacobian_norms(net, tape)
    cell = bptt.GRU(2, 3, seed=0)
    with pytest.raises(ValueError, match="tape must come from bptt.forward"):
        bptt.diagnostics.jacobian_norms(cell, bptt.forward_checkpointed(cell, xs, every=2)[1])
    assert tape.final_state.shape == (2, 1, 3)  # what a checkpointed tape does keep


@pytest.mark.parametrize("cell", bptt.CELL_NAMES)
def test_stack_jvp_matches_finite_differences_and_the_dot_product_test(cell):
    net, xs, state0, dhs, dfinal = stack_problem(cell)
    net.eval()
    rng = np.random.default_rng(1)
    v = {name: rng.standard_normal(p.shape) for name, p in net.params.items()}
    v_xs = rng.standard_normal(xs.shape)
    out = bptt.jvp(net, xs, state0, v, xs_tangent=v_xs)
    eps, base = 1e-6, {k: p.copy() for k, p in net.params.items()}

    def at(sign):
        for k in net.params:
            net.params[k][...] = base[k] + sign * eps * v[k]
        hs = bptt.forward(net, xs + sign * eps * v_xs, state0)[0].copy()
        for k in net.params:
            net.params[k][...] = base[k]
        return hs

    assert relative_error(out.hs_dot, (at(1) - at(-1)) / (2 * eps)) < 1e-8
    _, tape = bptt.forward(net, xs, state0)  # <u, J v> = <J^T u, v> with u = dhs
    g = bptt.backward(net, tape, dhs)
    jtu_v = sum(np.sum(g.params[k] * v[k]) for k in v) + np.sum(g.dxs * v_xs)
    assert np.sum(dhs * out.hs_dot) == pytest.approx(jtu_v, rel=1e-12)


@pytest.mark.parametrize("cell", bptt.CELL_NAMES)
def test_stack_hvp_matches_finite_differences_of_the_gradient_with_dropout(cell):
    net, xs, _, dhs, _ = stack_problem(cell)
    rng = np.random.default_rng(2)
    targets = rng.standard_normal(dhs.shape)
    v = {name: rng.standard_normal(p.shape) for name, p in net.params.items()}
    net.rng = np.random.default_rng(9)
    hv = bptt.hvp(net, xs, targets, v)
    eps, base = 1e-6, {k: p.copy() for k, p in net.params.items()}

    def gradient(sign):
        for k in net.params:
            net.params[k][...] = base[k] + sign * eps * v[k]
        net.rng = np.random.default_rng(9)  # the same dropout mask as the hvp's
        g = bptt.loss_and_gradient(net, xs, targets).params
        for k in net.params:
            net.params[k][...] = base[k]
        return g

    up, down = gradient(1), gradient(-1)
    for name in net.params:
        assert relative_error(hv[name], (up[name] - down[name]) / (2 * eps)) < 1e-7, name


def test_stack_hvp_is_symmetric():
    net, xs, _, dhs, _ = stack_problem("gru", dropout=0.0)
    rng = np.random.default_rng(3)
    targets = rng.standard_normal(dhs.shape)
    u = {k: rng.standard_normal(p.shape) for k, p in net.params.items()}
    w = {k: rng.standard_normal(p.shape) for k, p in net.params.items()}
    hu, hw = bptt.hvp(net, xs, targets, u), bptt.hvp(net, xs, targets, w)
    assert sum(np.sum(u[k] * hw[k]) for k in u) == pytest.approx(sum(np.sum(w[k] * hu[k]) for k in u), rel=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stack_tbptt_matches_finite_differences_of_the_truncated_objective(cell):
    net = bptt.Stack(cell, 2, 3, 2, seed=4)
    readout = bptt.Linear(3, 1, seed=0)
    rng = np.random.default_rng(4)
    T, N, k1, k2 = 8, 2, 3, 5
    xs, targets = rng.standard_normal((T, N, 2)), rng.standard_normal((T, N, 1))
    mask = np.ones((T, N), bool)
    got = bptt.tbptt_gradient(net, readout, bptt.mse, xs, targets, mask, k1, k2)
    truncated_loss = truncated_mse_objective(net, readout, xs, targets, k1, k2)

    assert got.loss == pytest.approx(truncated_loss(), rel=1e-12)
    for name in ("weight_hh_l0", "weight_ih_l1", "bias_hh_l1"):
        numeric = central_difference(truncated_loss, net.params[name])
        # 1e-6: layer 0's gradients are ~1e-5 of a loss ~1, near central differences' own error
        assert relative_error(got.params["cell." + name], numeric) < 1e-6, name


def test_methods_a_stack_cannot_run_say_so():
    net = bptt.Stack("gru", 2, 3, 2, bidirectional=True, seed=0)
    xs, dhs = np.zeros((4, 1, 2)), np.zeros((4, 1, 6))
    for method in (bptt.rtrl, bptt.uoro):
        with pytest.raises(NotImplementedError, match="works on one cell, and a Stack has several layers"):
            method(net, xs, dhs)
    with pytest.raises(ValueError, match="a bidirectional model cannot be truncated"):
        bptt.tbptt_gradient(net, None, bptt.mse, xs, dhs, np.ones((4, 1), bool), 2, 2)
    _, tape = bptt.forward(net, xs)
    with pytest.raises(ValueError, match="needs one direction and no lengths"):
        bptt.diagnostics.jacobian_norms(net, tape)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_stacked_step_jacobian_matches_finite_differences(cell):
    """J_t = ds_t / ds_(t-1) of the whole stacked state (every layer's, through the dropout mask)."""
    from bptt import diagnostics

    net = bptt.Stack(cell, 2, 3, 3, dropout=0.3, seed=5)
    xs, state0, _, _ = make_problem(net, T=4, N=1, seed=5)
    _, tape = bptt.forward(net, xs, state0)
    t, S = 2, diagnostics.state_size(net)
    J = diagnostics.pull_back(net, tape, t, np.eye(S)[None])[0]  # row i = e_i J_t
    masks = [None if m is None else m[t : t + 1] for m in tape.masks]

    def flat(state):
        return np.concatenate([np.concatenate([p[layer] for p in net.unpack_state(state)], axis=-1).ravel()
                               for layer in range(3)]) if cell == "lstm" else state.reshape(-1)

    def unflat(vector):
        if cell != "lstm":
            return vector.reshape(3, 1, 3)
        blocks = vector.reshape(3, 6)
        return (blocks[:, None, :3].copy(), blocks[:, None, 3:].copy())

    numeric = numeric_jacobian(  # column j: d s_t / d s_(t-1)[j]
        lambda s: flat(net.forward(xs[t : t + 1], unflat(s), masks=masks)[1].final_state), flat(tape.state_at(t)))
    assert relative_error(J, numeric) < 1e-8


def test_stack_dh_norms_of_the_top_layer_are_its_jacobian_products():
    from bptt import diagnostics

    net = bptt.Stack("lstm", 2, 3, 3, dropout=0.3, seed=6)
    xs, _, _, _ = make_problem(net, T=6, N=1, seed=6)
    hs, tape = bptt.forward(net, xs)
    g = np.random.default_rng(6).standard_normal((1, 3))
    dhs = np.zeros_like(hs)
    dhs[-1] = g
    grads = bptt.backward(net, tape, dhs)
    S = diagnostics.state_size(net)
    top = slice(2 * S // 3, 2 * S // 3 + 3)  # the top layer's h in the stacked state
    v = np.zeros(S)
    v[top] = g[0]
    for t, product in diagnostics.iter_jacobian_products(net, tape):
        assert np.linalg.norm((v @ product[0])[top]) == pytest.approx(grads.dh_norms[2, 0, t], rel=1e-12)
    per_layer = diagnostics.layer_jacobian_norms(net, tape)
    assert len(per_layer) == 3 and all(n.spectral.shape == (6, 1) for n in per_layer)
    assert diagnostics.lyapunov_spectrum(net, tape).shape == (1, S)
