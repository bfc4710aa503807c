"""A cell the package does not know, written only as a step pair (tests/lab/labcells.py: `Coupled`, two
gate blocks, state (h, c)), named by import path, through every tool: forward and backward, stacks,
checkpointing, truncation, the diagnostics and gradcheck, each against central finite differences in
float64 or an exact identity; the contract's checks on what a cell returns; and a GRU without its
fast path through every differentiation mode, equal to the GRU with it."""

import numpy as np
import pytest
from click.testing import CliRunner

import bptt
from bptt import diagnostics
from bptt.cli import cli
from bptt.core.sequence import StepwiseSequence
from bptt.modes.finite_diff import central_difference, relative_error
from conftest import numeric_jacobian, truncated_mse_objective

NAME = "labcells:Coupled"
TOL = 1e-7


def make_problem(model, T=5, N=3, seed=0):
    """Inputs, a non-zero start state, and weights on every output and on the final state."""
    rng = np.random.default_rng(seed)
    size = model.output_size * getattr(model, "directions", 1)
    parts = tuple(0.5 * rng.standard_normal(p.shape) for p in model.unpack_state(model.initial_state(N)))
    return (rng.standard_normal((T, N, model.input_size)), model.pack_state(parts),
            rng.standard_normal((T, N, size)), model.pack_state(tuple(rng.standard_normal(p.shape) for p in parts)))


def weighted_loss(model, hs, final, dhs, dfinal):
    """L = <dhs, hs> + <dfinal, final state>: dL/dh_t = dhs_t exactly."""
    return np.sum(dhs * hs) + sum(np.sum(a * b) for a, b in zip(model.unpack_state(final),
                                                                   model.unpack_state(dfinal)))


def flat(parts):
    return np.concatenate(parts, axis=-1)


# ----------------------------------------------------------------- the step pair and the unroller
def test_the_cell_is_found_by_its_import_path_and_built_like_the_built_ins(lab):
    cell = bptt.make_cell(NAME, 3, 4, seed=0)
    assert type(cell).__name__ == "Coupled" and bptt.cells.cell_name(cell) == NAME
    assert cell.params["weight_ih"].shape == (8, 3) and cell.params["weight_hh"].shape == (8, 4)
    same = bptt.make_cell(NAME, 3, 4, seed=0, dtype=np.float32)
    assert all(np.array_equal(same.params[k], cell.params[k].astype(np.float32)) for k in cell.params)


def test_forward_and_backward_with_lengths_match_finite_differences(lab):
    cell = bptt.make_cell(NAME, 3, 4, seed=1)
    xs, state0, dhs, dfinal = make_problem(cell, seed=1)
    lengths = np.array([5, 2, 4])
    hs, tape = bptt.forward(cell, xs, state0, lengths=lengths)
    grads = bptt.backward(cell, tape, dhs, dfinal)

    def loss():
        hs, tape = bptt.forward(cell, xs, state0, lengths=lengths)
        return weighted_loss(cell, hs, tape.final_state, dhs, dfinal)

    for name, param in cell.params.items():
        assert relative_error(grads.params[name], central_difference(loss, param)) < TOL, name
    assert relative_error(grads.dxs, central_difference(loss, xs)) < TOL
    for analytic, part in zip(cell.unpack_state(grads.dstate0), cell.unpack_state(state0)):
        assert relative_error(analytic, central_difference(loss, part)) < TOL


def test_checkpointed_bptt_gives_the_full_tapes_gradient(lab):
    cell = bptt.make_cell(NAME, 3, 4, seed=2)
    xs, state0, dhs, dfinal = make_problem(cell, T=7, seed=2)
    full = bptt.backward(cell, bptt.forward(cell, xs, state0)[1], dhs, dfinal)
    hs, tape = bptt.forward_checkpointed(cell, xs, state0, every=3)
    assert np.array_equal(hs, bptt.forward(cell, xs, state0)[0])  # recomputed, not stored: the same steps
    checkpointed = bptt.backward_checkpointed(cell, tape, dhs, dfinal)
    for name in cell.params:
        assert relative_error(checkpointed.params[name], full.params[name]) < 1e-13, name
    assert relative_error(checkpointed.dxs, full.dxs) < 1e-13


def test_tbptt_matches_finite_differences_of_the_truncated_objective(lab):
    cell, readout = bptt.make_cell(NAME, 2, 3, seed=4), bptt.Linear(3, 1, seed=0)
    rng = np.random.default_rng(4)
    T, N, k1, k2 = 8, 2, 3, 5
    xs, targets = rng.standard_normal((T, N, 2)), rng.standard_normal((T, N, 1))
    got = bptt.tbptt_gradient(cell, readout, bptt.mse, xs, targets, np.ones((T, N), bool), k1, k2)
    truncated_loss = truncated_mse_objective(cell, readout, xs, targets, k1, k2)

    assert got.loss == pytest.approx(truncated_loss(), rel=1e-12)
    for name, param in cell.params.items():
        assert relative_error(got.params["cell." + name], central_difference(truncated_loss, param)) < TOL, name


# ----------------------------------------------------------------- stacks
def test_a_stack_of_the_cell_with_dropout_and_lengths_matches_finite_differences(lab):
    net = bptt.Stack(NAME, 2, 3, 2, bidirectional=True, dropout=0.4, seed=3)
    assert net.cell_name == NAME and "weight_hh_l1_reverse" in net.params
    xs, state0, dhs, dfinal = make_problem(net, T=4, N=3, seed=3)
    lengths = np.array([4, 1, 3])
    _, tape = bptt.forward(net, xs, state0, lengths=lengths)

    def loss():
        hs, t = net.forward(xs, state0, lengths=lengths, masks=tape.masks)  # the same dropout every time
        return weighted_loss(net, hs, t.final_state, dhs, dfinal)

    grads = bptt.backward(net, tape, dhs, dfinal)
    for name in ("weight_hh_l0", "weight_ih_l1_reverse", "bias_hh_l1"):
        assert relative_error(grads.params[name], central_difference(loss, net.params[name])) < TOL, name
    assert relative_error(grads.dxs, central_difference(loss, xs)) < TOL


def test_a_stack_takes_a_cell_class_as_well_as_its_name(lab):
    from labcells import Coupled

    by_class, by_name = bptt.Stack(Coupled, 2, 3, 2, seed=0), bptt.Stack(NAME, 2, 3, 2, seed=0)
    assert by_class.cell_name == NAME and repr(by_class) == repr(by_name)
    assert all(np.array_equal(by_class.params[k], by_name.params[k]) for k in by_name.params)


def test_the_stacked_step_jacobian_matches_finite_differences(lab):
    """J_t = ds_t / ds_(t-1) of the whole stacked state (every layer's h and c, through dropout): the
    map the stack's diagnostics pull rows back through."""
    net = bptt.Stack(NAME, 2, 3, 2, dropout=0.3, seed=5)
    xs, state0, _, _ = make_problem(net, T=4, N=1, seed=5)
    _, tape = bptt.forward(net, xs, state0)
    t, S = 2, diagnostics.state_size(net)
    J = diagnostics.pull_back(net, tape, t, np.eye(S)[None])[0]  # row i = e_i J_t
    masks = [None if m is None else m[t : t + 1] for m in tape.masks]

    def as_vector(state):  # (layer 0's h, c, layer 1's h, c)
        h, c = net.unpack_state(state)
        return np.concatenate([np.concatenate([h[layer, 0], c[layer, 0]]) for layer in range(2)])

    def as_state(vector):
        blocks = vector.reshape(2, 2, 3)
        return (blocks[:, 0, None, :].copy(), blocks[:, 1, None, :].copy())

    numeric = numeric_jacobian(  # column j: d s_t / d s_(t-1)[j]
        lambda s: as_vector(net.forward(xs[t : t + 1], as_state(s), masks=masks)[1].final_state),
        as_vector(tape.state_at(t)))
    assert relative_error(J, numeric) < 1e-8
    norms = diagnostics.jacobian_norms(net, tape)
    layers = diagnostics.layer_jacobian_norms(net, tape)
    assert norms.spectral.shape == (4, 1) and [n.spectral.shape for n in layers] == [(4, 1), (4, 1)]


# ----------------------------------------------------------------- diagnostics
def test_the_step_jacobian_matches_finite_differences(lab):
    cell = bptt.make_cell(NAME, 3, 4, seed=6)
    xs, state0, _, _ = make_problem(cell, T=3, N=2, seed=6)
    _, tape = bptt.forward(cell, xs, state0)
    t = 1
    J = diagnostics.step_jacobians(cell, tape.step(t))
    before = flat(cell.unpack_state(tape.state_at(t)))
    for n in range(2):
        numeric = numeric_jacobian(
            lambda s: flat(cell.unpack_state(cell.step_forward(xs[t, n : n + 1], (s[None, :4], s[None, 4:]))[0]))[0],
            before[n])
        assert relative_error(J[n], numeric) < 1e-8


def test_jacobian_norms_and_lyapunov_exponents_are_those_of_the_step_jacobians(lab):
    """P_t = J_(T-1) ... J_(t+1) (the norms are its singular values'), and the exponents add up to the
    mean log |det J_t| (the volume's growth rate)."""
    cell = bptt.make_cell(NAME, 3, 4, seed=7)
    xs, state0, _, _ = make_problem(cell, T=6, N=2, seed=7)
    _, tape = bptt.forward(cell, xs, state0)
    steps = [diagnostics.step_jacobians(cell, tape.step(t)) for t in range(6)]
    norms = diagnostics.jacobian_norms(cell, tape)
    product = np.broadcast_to(np.eye(8), (2, 8, 8))
    for t in range(5, -1, -1):
        assert np.allclose(norms.spectral[t], np.linalg.svd(product, compute_uv=False)[:, 0], rtol=1e-12)
        assert np.allclose(norms.frobenius[t], np.linalg.norm(product, axis=(1, 2)), rtol=1e-12)
        product = product @ steps[t]
    exponents = diagnostics.lyapunov_spectrum(cell, tape, warmup=1)
    volume = np.mean([np.log(np.abs(np.linalg.det(J))) for J in steps[1:]], axis=0)
    assert np.allclose(exponents.sum(axis=1), volume, rtol=1e-10)
    bounds = diagnostics.recurrent_bounds(cell)
    assert [(b.name, b.gamma) for b in bounds] == [("W_hf", 0.25), ("W_hg", 1.0)]


# ----------------------------------------------------------------- what the modes need
class PlainGRU(bptt.GRU):
    """The GRU without its fast path: its plain step pair and tangent rules, one step at a time."""

    Sequence = StepwiseSequence


def test_every_mode_runs_a_cell_without_a_fast_path_on_its_step_pair():
    """jvp, RTRL, UORO and the Hessian-vector product of a GRU that has only its step pair and tangent
    rules equal those of the GRU with its fast path, to round-off."""
    fast, plain = bptt.GRU(3, 4, seed=8), PlainGRU(3, 4, seed=8)
    rng = np.random.default_rng(8)
    xs, dhs = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 4))
    v = {name: rng.standard_normal(p.shape) for name, p in fast.params.items()}
    a, b = bptt.jvp(fast, xs, tangents=v), bptt.jvp(plain, xs, tangents=v)
    assert relative_error(a.hs_dot, b.hs_dot) < 1e-13
    for method in (lambda c: bptt.rtrl(c, xs, dhs), lambda c: bptt.uoro(c, xs, dhs, seed=3),
                   lambda c: bptt.hvp(c, xs, dhs, v)):
        a, b = method(fast), method(plain)
        for name in fast.params:
            got_a, got_b = (a if isinstance(a, dict) else a.params)[name], (b if isinstance(b, dict) else b.params)[name]
            assert relative_error(got_a, got_b) < 1e-12, name


def test_a_mode_that_needs_a_tangent_rule_names_it(lab):
    cell = bptt.make_cell(NAME, 3, 4, seed=0)
    xs, dhs = np.zeros((2, 1, 3)), np.zeros((2, 1, 4))
    for method, call in (("bptt.jvp", lambda: bptt.jvp(cell, xs)), ("bptt.rtrl", lambda: bptt.rtrl(cell, xs, dhs)),
                         ("bptt.uoro", lambda: bptt.uoro(cell, xs, dhs)),
                         ("bptt.hvp", lambda: bptt.hvp(cell, xs, dhs, {}))):
        with pytest.raises(NotImplementedError, match=rf"{method} needs its forward-mode rule \(step_tangent\), "
                                                      "which Coupled does not define"):
            call()


# ----------------------------------------------------------------- the contract, checked
def corrupted(**changes):
    """A Coupled whose step pair returns something else in place of one of its results."""
    from labcells import Coupled

    class Broken(Coupled):
        def step_forward(self, x, state):
            state, cache = super().step_forward(x, state)
            return changes.get("forward", lambda s, c: (s, c))(state, cache)

        def step_backward(self, dstate, cache):
            dx, dprev, grads = super().step_backward(dstate, cache)
            return changes.get("backward", lambda dx, dp, g: (dx, dp, g))(dx, dprev, grads)

    return Broken(3, 4, seed=0)


@pytest.mark.parametrize("change, message", [
    (dict(backward=lambda dx, dp, g: (dx, dp, {**g, "weight_hh": g["weight_hh"].T})),
     r"Broken.step_backward returned grads\['weight_hh'\] of shape \(4, 8\); expected \(8, 4\), the shape of "
     r"params\['weight_hh'\]"),
    (dict(backward=lambda dx, dp, g: (dx, dp, {k: v for k, v in g.items() if k != "bias_hh"})),
     r"returned grads with keys \['bias_ih', 'weight_hh', 'weight_ih'\], expected those of params .*"
     r"\(missing \['bias_hh'\], unknown \[\]\)"),
    (dict(backward=lambda dx, dp, g: (dx[:, :2], dp, g)),
     r"Broken.step_backward returned dx of shape \(2, 2\); expected \(N, D\) = \(2, 3\)"),
    (dict(backward=lambda dx, dp, g: (dx, dp[0], g)),
     r"returned dstate_prev as an array of shape \(2, 4\); expected a tuple of 2 arrays \('h', 'c'\)"),
    (dict(backward=lambda dx, dp, g: (dx, (dp[0], dp[1][:, :3]), g)),
     r"returned dstate_prev part 'c' of shape \(2, 3\); expected \(N, H\) = \(2, 4\)"),
    (dict(forward=lambda s, c: ((s[0].astype(np.float32), s[1]), c)),
     r"Broken.step_forward returned the state part 'h' of dtype float32; expected the cell's float64"),
    (dict(forward=lambda s, c: (s, c._replace(f=c.f[0]))),
     r"Broken.step_forward returned cache field 'f' as an array of shape \(4,\); expected an array with the "
     r"batch first, \(N=2, ...\)"),
    (dict(forward=lambda s, c: (s, tuple(c))),
     r"Broken.step_forward must return a CoupledCache \(the class's Cache\) as its cache, got a tuple of 8 items"),
])
def test_what_a_step_pair_returns_is_checked_and_named(lab, change, message):
    cell = corrupted(**change)
    xs = np.random.default_rng(0).standard_normal((3, 2, 3))
    with pytest.raises(ValueError, match=message):
        hs, tape = bptt.forward(cell, xs)
        bptt.backward(cell, tape, np.ones_like(hs))
    if "backward" in change:  # and where the diagnostics take single steps (a batch of N * S rows there)
        with pytest.raises(ValueError, match=message.replace(r"\(2, ", r"\(16, ")):
            diagnostics.jacobian_norms(cell, bptt.forward(cell, xs)[1])


def test_a_cell_that_does_not_say_its_gates_is_refused_by_name(lab):
    with pytest.raises(TypeError, match=r"Forgetful does not fill in the Cell contract: it must set gate_names, "
                                        r"the names of the G gate blocks stacked in weight_ih and weight_hh"):
        __import__("labcells").Forgetful(3, 4)
    with pytest.raises(ValueError, match=r"cell 'labcells:Forgetful': Forgetful does not fill in the Cell "
                                         r"contract: it must set gate_names"):
        bptt.make_cell("labcells:Forgetful", 3, 4)


def test_the_class_contract_names_everything_missing():
    class Empty(bptt.Cell):
        gate_slope_bounds = (0.25, 1.0)

    with pytest.raises(TypeError) as caught:
        Empty.check_class()
    for part in ("set Cache", "write step_forward", "write step_backward", "set gate_names",
                 "set gate_slope_bounds to () or one positive number per gate"):
        assert part in str(caught.value), part


def test_a_one_gate_cell_may_leave_the_slope_bounds_to_the_default():
    cell = bptt.make_cell("bptt.cells.rnn:RNN", 2, 3, seed=0)  # the class, not the name: tanh, one gate
    assert [b.gamma for b in diagnostics.recurrent_bounds(cell)] == [1.0]

    class OneGate(PlainGRU):
        gate_slope_bounds = ()

    assert [b.gamma for b in diagnostics.recurrent_bounds(OneGate(2, 3, seed=0))] == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------- gradcheck
def gradcheck(*args):
    result = CliRunner().invoke(cli, ["gradcheck", "--hidden", "3", "--input-size", "2", "--seq-len", "6",
                                      "--batch", "2", *args])
    rows = {}
    for line in result.output.splitlines():
        parts = line.split(None, 1) if line.startswith(("reverse", "forward", "finite", "PyTorch")) else None
        if parts:
            label = next(l for l in ("reverse (BPTT)", "reverse, checkpointed", "forward (RTRL)", "forward (jvp)",
                                     "finite differences", "PyTorch autograd") if line.startswith(l))
            rows[label] = line[len(label):].strip()
    return result, rows


@pytest.mark.parametrize("shape", [[], ["--truncate", "4"], ["--layers", "2"], ["--layers", "2", "--bidirectional"]])
def test_gradcheck_runs_the_cell_and_lists_what_it_cannot_run_as_skipped(lab, shape, torch):
    result, rows = gradcheck("--cell", NAME, "--torch", *shape)
    assert result.exit_code == 0, result.output
    forward = "forward (jvp)" if shape[:1] == ["--layers"] else "forward (RTRL)"
    method = "bptt.jvp" if forward == "forward (jvp)" else "bptt.rtrl"
    assert rows[forward] == (f"skipped: {method} needs its forward-mode rule (step_tangent), which Coupled does not "
                             "define")
    assert rows["PyTorch autograd"] == "skipped: PyTorch has no labcells:Coupled cell (it has rnn, rnn-relu, lstm and gru)"
    assert float(rows["reverse, checkpointed"].split()[0]) < 1e-13
    assert float(rows["finite differences"].split()[0]) < 1e-7
    assert "PASS: every mode run (2 skipped) within 1e-06 of reverse mode" in result.output


def test_gradcheck_fails_a_wrong_gradient_of_the_cell(lab, monkeypatch):
    from labcells import Coupled

    original = Coupled.step_backward

    def wrong(self, dstate, cache):
        dx, dprev, grads = original(self, dstate, cache)
        return dx, (1.01 * dprev[0], dprev[1]), grads  # dL/dh_prev 1% too large

    monkeypatch.setattr(Coupled, "step_backward", wrong)
    result, rows = gradcheck("--cell", NAME, "--no-torch")
    assert result.exit_code == 1, result.output
    assert float(rows["finite differences"].split()[0]) > 1e-4
    assert "FAIL: finite differences above tolerance" in result.output


@pytest.mark.parametrize("name, problem", [
    ("no_such_module_here:MGU", "no module named 'no_such_module_here' on the Python path"),
    ("labcells:Missing", "module 'labcells' has no attribute 'Missing'"),
    ("labcells:Forgetful", "Forgetful does not fill in the Cell contract: it must set gate_names"),
    ("lsm", "'lsm' is neither a built-in cell nor registered in bptt.cells, and not MODULE:CLASS"),
])
def test_gradcheck_refuses_a_cell_it_cannot_find_naming_what_was_tried(lab, name, problem):
    result, _ = gradcheck("--cell", name, "--no-torch")
    assert result.exit_code == 2
    assert "Invalid value for --cell: " + problem in result.output
    assert "Traceback" not in result.output and "reverse (BPTT)" not in result.output


def test_gradcheck_json_lists_the_skipped_modes(lab):
    import json

    result, _ = gradcheck("--cell", NAME, "--no-torch", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["cell"] == NAME and report["passed"] and report["skipped"] == ["forward (RTRL)"]
    row = next(r for r in report["modes"] if r["mode"] == "forward (RTRL)")
    assert row["error"] is None and row["skipped"].startswith("bptt.rtrl needs its forward-mode rule")
