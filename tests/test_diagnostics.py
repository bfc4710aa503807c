"""Jacobian products, recurrent-matrix bounds and Lyapunov exponents: finite differences, PyTorch,
and the identities theory gives."""

import numpy as np
import pytest

import bptt
from bptt.core import diagnostics as diag
from bptt.modes.finite_diff import central_difference, relative_error

from conftest import CELLS, random_state


def make_run(cell_name, T=6, N=2, D=3, H=4, seed=0):
    rng = np.random.default_rng(seed)
    cell = CELLS[cell_name](D, H, seed=seed)
    xs = rng.standard_normal((T, N, D))
    state0 = random_state(cell, N, rng)
    hs, tape = bptt.forward(cell, xs, state0)
    return cell, xs, state0, tape


def flat_state(cell, state):
    return np.concatenate(cell.unpack_state(state), axis=-1)


def split_state(cell, flat):
    H = cell.hidden_size
    return cell.pack_state(tuple(flat[..., i * H : (i + 1) * H] for i in range(flat.shape[-1] // H)))


def fd_jacobian(fn, x):
    """d fn(x) / dx for x (S,), by central differences, as an (out, S) matrix."""
    x = x.copy()
    out = fn(x).size
    jac = np.empty((out, x.size))
    for i in range(out):
        jac[i] = central_difference(lambda: float(fn(x)[i]), x)
    return jac


def rho_orthogonal_cell(H, rho, weight_hh=None):
    """tanh RNN with zero biases: at zero input, h = 0 is a fixed point where tanh' = 1."""
    cell = bptt.RNN(2, H, seed=0)
    if weight_hh is None:
        Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((H, H)))
        weight_hh = rho * Q
    cell.params["weight_hh"] = weight_hh
    cell.params["bias_ih"][:] = 0
    cell.params["bias_hh"][:] = 0
    return cell


# ----------------------------------------------------------------- one step
def test_step_jacobian_matches_finite_differences(cell_name):
    cell, xs, state0, tape = make_run(cell_name, T=3)
    t = 1
    J = diag.step_jacobians(cell, tape.step(t))
    S = diag.state_size(cell)
    assert J.shape == (2, S, S)
    for n in range(2):
        prev = np.concatenate([f[n] for f in cell.unpack_state(tape.state_at(t))])

        def step(flat_prev):
            state, _ = cell.step_forward(xs[t, n : n + 1], split_state(cell, flat_prev[None]))
            return flat_state(cell, state)[0]

        assert relative_error(J[n], fd_jacobian(step, prev)) < 1e-8


def test_step_jacobian_of_tanh_rnn_is_diag_tanh_prime_times_weight():
    cell, xs, state0, tape = make_run("rnn", T=2)
    c = tape.step(1)
    J = diag.step_jacobians(cell, c)
    for n in range(2):
        expected = (1 - c.h[n] ** 2)[:, None] * cell.params["weight_hh"]
        np.testing.assert_allclose(J[n], expected, rtol=1e-14, atol=1e-15)


TORCH_CELLS = {"rnn": "RNNCell", "rnn-relu": "RNNCell", "lstm": "LSTMCell", "gru": "GRUCell"}


def test_step_jacobian_matches_torch_autograd(cell_name, torch):
    cell, xs, state0, tape = make_run(cell_name, T=2, N=1)
    kwargs = {"nonlinearity": cell.nonlinearity} if cell_name.startswith("rnn") else {}
    module = getattr(torch.nn, TORCH_CELLS[cell_name])(cell.input_size, cell.hidden_size, **kwargs)
    module.load_state_dict({k: torch.tensor(v) for k, v in cell.params.items()})
    x = torch.tensor(xs[1])
    H = cell.hidden_size

    def step(flat_prev):
        if cell_name == "lstm":
            h, c = module(x, (flat_prev[None, :H], flat_prev[None, H:]))
            return torch.cat([h, c], dim=1)[0]
        return module(x, flat_prev[None])[0]

    prev = torch.tensor(np.concatenate([f[0] for f in cell.unpack_state(tape.state_at(1))]))
    expected = torch.autograd.functional.jacobian(step, prev).numpy()
    assert relative_error(diag.step_jacobians(cell, tape.step(1))[0], expected) < 1e-12


# ----------------------------------------------------------------- products through time
@pytest.mark.parametrize("part", ["state", "h"])
def test_jacobian_products_match_finite_differences(cell_name, part):
    cell, xs, state0, tape = make_run(cell_name, T=5, N=2)
    T, H = 5, cell.hidden_size
    products = dict(diag.iter_jacobian_products(cell, tape, part))
    assert sorted(products) == list(range(T))
    for t in (0, 2, T - 1):
        for n in range(2):
            state_t = np.concatenate([f[n] for f in cell.unpack_state(tape.state_at(t + 1))])

            def final(flat_t, t=t, n=n):
                if part == "h":  # perturb h_t only, keep c_t, read h_T only
                    flat_t = np.concatenate([flat_t, state_t[H:]])
                if t == T - 1:
                    out = flat_t
                else:
                    _, tail = bptt.forward(cell, xs[t + 1 :, n : n + 1], split_state(cell, flat_t[None]))
                    out = flat_state(cell, tail.final_state)[0]
                return out[:H] if part == "h" else out

            start = state_t[:H] if part == "h" else state_t
            assert relative_error(products[t][n], fd_jacobian(final, start)) < 1e-7, (t, n)


def test_h_part_is_what_the_reverse_sweep_sees(cell_name):
    """Loss on h_T only: dL/dh_t = g . dh_T/dh_t, so dh_norms[t] == ||g P_t|| (one sequence)."""
    cell, xs, state0, tape = make_run(cell_name, T=8, N=1, H=5)
    g = np.random.default_rng(3).standard_normal(5)
    dhs = np.zeros((8, 1, 5))
    dhs[-1, 0] = g
    dh_norms = bptt.backward(cell, tape, dhs).dh_norms
    for t, product in diag.iter_jacobian_products(cell, tape, part="h"):
        assert np.linalg.norm(g @ product[0]) == pytest.approx(dh_norms[t], rel=1e-12)


@pytest.mark.parametrize("rho", [0.5, 1.0, 1.3])
def test_norms_at_zero_fixed_point_are_powers_of_rho(rho):
    T, H = 25, 6
    cell = rho_orthogonal_cell(H, rho)
    _, tape = bptt.forward(cell, np.zeros((T, 3, 2)))
    norms = diag.jacobian_norms(cell, tape)
    powers = rho ** (T - 1 - np.arange(T))[:, None] * np.ones((1, 3))
    np.testing.assert_allclose(norms.spectral, powers, rtol=1e-12)
    np.testing.assert_allclose(norms.frobenius, np.sqrt(H) * powers, rtol=1e-12)


def test_tanh_products_respect_pascanu_bound():
    """||J_t|| <= gamma * lambda_1 with gamma = 1 for tanh, so ||P_t|| <= lambda_1^(T-1-t)."""
    T = 30
    cell, xs, state0, tape = make_run("rnn", T=T, N=3, H=8, seed=4)
    cell.params["weight_hh"] *= 3.0  # lambda_1 well above 1, so the bound is not trivial
    _, tape = bptt.forward(cell, xs, state0)
    (bound,) = diag.recurrent_bounds(cell)
    spectral = diag.jacobian_norms(cell, tape).spectral
    limit = bound.lambda_1 ** (T - 1 - np.arange(T))[:, None]
    assert np.all(spectral <= limit * (1 + 1e-12))
    assert np.any(spectral < 0.5 * limit)  # the tanh' factors make it strictly smaller somewhere


def test_lstm_state_and_h_parts_differ_and_rnn_parts_agree():
    cell, _, _, tape = make_run("lstm", T=6)
    state = diag.jacobian_norms(cell, tape, "state")
    h = diag.jacobian_norms(cell, tape, "h")
    assert state.spectral.shape == h.spectral.shape == (6, 2)
    assert not np.allclose(state.spectral[:-1], h.spectral[:-1])
    assert np.all(h.spectral <= state.spectral * (1 + 1e-12))  # a block of a matrix, never larger
    cell, _, _, tape = make_run("gru", T=6)
    np.testing.assert_array_equal(
        diag.jacobian_norms(cell, tape, "state").spectral, diag.jacobian_norms(cell, tape, "h").spectral
    )


# ----------------------------------------------------------------- bounds from W_hh
def test_recurrent_bound_on_known_matrices():
    d = diag.recurrent_bound(np.diag([0.5, -2.0, 1.0]))
    assert (d.spectral_radius, d.lambda_1, d.bound) == pytest.approx((2.0, 2.0, 1.0))
    assert not d.vanishing_guaranteed
    nilpotent = diag.recurrent_bound(np.array([[0.0, 3.0], [0.0, 0.0]]), gamma=0.25)
    assert nilpotent.spectral_radius == pytest.approx(0.0, abs=1e-12)
    assert nilpotent.lambda_1 == pytest.approx(3.0)
    assert nilpotent.bound == 4.0 and nilpotent.vanishing_guaranteed


def test_recurrent_bounds_split_gates():
    lstm = bptt.LSTM(2, 3, seed=0)
    bounds = diag.recurrent_bounds(lstm)
    assert [b.name for b in bounds] == ["W_hi", "W_hf", "W_hg", "W_ho"]
    assert [b.gamma for b in bounds] == [0.25, 0.25, 1.0, 0.25]
    W_hg = lstm.params["weight_hh"][6:9]
    assert bounds[2].lambda_1 == pytest.approx(np.linalg.norm(W_hg, 2))
    assert [b.name for b in diag.recurrent_bounds(bptt.GRU(2, 3))] == ["W_hr", "W_hz", "W_hn"]


# ----------------------------------------------------------------- Lyapunov exponents
@pytest.mark.parametrize("rho", [0.5, 0.9, 1.0, 1.7])
def test_lyapunov_of_rho_orthogonal_is_log_rho(rho):
    cell = rho_orthogonal_cell(6, rho)
    _, tape = bptt.forward(cell, np.zeros((40, 2, 2)))
    exponents = diag.lyapunov_spectrum(cell, tape)
    assert exponents.shape == (2, 6)
    np.testing.assert_allclose(exponents, np.log(rho), rtol=0, atol=1e-8)


def test_lyapunov_of_diagonal_weight_is_sorted_log_abs_diagonal():
    d = np.array([0.3, -1.5, 0.9, -0.05, 1.2])
    cell = rho_orthogonal_cell(5, None, weight_hh=np.diag(d))
    _, tape = bptt.forward(cell, np.zeros((30, 1, 2)))
    exponents = diag.lyapunov_spectrum(cell, tape, warmup=3)
    np.testing.assert_allclose(exponents[0], np.sort(np.log(np.abs(d)))[::-1], rtol=0, atol=1e-8)


def test_lyapunov_sum_is_mean_log_abs_determinant(cell_name):
    """log|det(J Q)| = log|det J| for orthogonal Q, so the exponents sum to the mean log|det J_t|."""
    cell, _, _, tape = make_run(cell_name, T=12, N=2, H=3)
    if cell_name == "rnn-relu":  # keep every unit alive so that no determinant is zero
        cell.params["bias_ih"][:] = 5.0
        _, tape = bptt.forward(cell, np.stack([tape.step(t).x for t in range(len(tape))]))
    exponents = diag.lyapunov_spectrum(cell, tape)
    log_dets = [np.linalg.slogdet(diag.step_jacobians(cell, tape.step(t)))[1] for t in range(12)]
    np.testing.assert_allclose(exponents.sum(axis=1), np.mean(log_dets, axis=0), rtol=1e-10)
    assert np.all(np.diff(exponents, axis=1) <= 0)


def test_top_lyapunov_exponent_is_growth_rate_of_product_norm():
    """log ||P_t|| / (T - 1 - t) tends to the top exponent; on a long run they agree closely."""
    T = 400
    cell = bptt.RNN(3, 8, seed=2)
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))
    cell.params["weight_hh"] = 1.6 * Q
    _, tape = bptt.forward(cell, 0.3 * np.random.default_rng(1).standard_normal((T, 1, 3)))
    top = diag.lyapunov_spectrum(cell, tape)[0, 0]
    spectral = diag.jacobian_norms(cell, tape).spectral[:, 0]
    assert np.log(spectral[0]) / (T - 1) == pytest.approx(top, abs=0.02)


# ----------------------------------------------------------------- bad input
def test_bad_arguments_raise_clear_errors():
    cell, xs, state0, tape = make_run("rnn")
    with pytest.raises(ValueError, match="part must be one of"):
        diag.jacobian_norms(cell, tape, part="c")
    with pytest.raises(ValueError, match="warmup must be an integer"):
        diag.lyapunov_spectrum(cell, tape, warmup=6)
    with pytest.raises(ValueError, match="tape must come from bptt.forward with this LSTM"):
        diag.jacobian_norms(bptt.LSTM(3, 4), tape)
    with pytest.raises(ValueError, match=r"square matrix \(H, H\), got shape \(2, 3\)"):
        diag.recurrent_bound(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="gamma must be positive"):
        diag.recurrent_bound(np.eye(2), gamma=0)


# ----------------------------------------------------------------- comparing gradients
def test_gradient_agreement_on_known_vectors():
    exact = {"a": np.array([1.0, 0.0]), "b": np.array([[0.0]])}
    same = diag.gradient_agreement({"a": np.array([2.0, 0.0]), "b": np.array([[0.0]])}, exact)
    assert same.cosine == pytest.approx(1.0) and same.relative_error == pytest.approx(1.0)
    orthogonal = diag.gradient_agreement({"a": np.array([0.0, 0.0]), "b": np.array([[3.0]])}, exact)
    assert orthogonal.cosine == pytest.approx(0.0) and orthogonal.relative_error == pytest.approx(np.sqrt(10))
    assert diag.gradient_agreement(exact, exact) == (pytest.approx(1.0), 0.0)
    with pytest.raises(ValueError, match="same keys"):
        diag.gradient_agreement({"a": exact["a"]}, exact)
    with pytest.raises(ValueError, match=r"'b' has shape \(1,\) here and \(1, 1\)"):
        diag.gradient_agreement({"a": exact["a"], "b": np.zeros(1)}, exact)
