"""The experiment scripts in quick mode: their numbers say what the figures claim."""

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bptt.modes.finite_diff import central_difference

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_quick(name, out):
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, str(EXPERIMENTS / f"{name}.py"), "--out", str(out), "--quick"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return out


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000, path


def load_experiment(name):
    sys.path.insert(0, str(EXPERIMENTS))
    try:
        spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXPERIMENTS))
    return module


@pytest.fixture(scope="module")
def vanishing(tmp_path_factory):
    return run_quick("vanishing_exploding", tmp_path_factory.mktemp("vanishing"))


@pytest.fixture(scope="module")
def cliff(tmp_path_factory):
    return run_quick("clipping", tmp_path_factory.mktemp("clipping"))


def test_vanishing_slopes_follow_the_lyapunov_exponent(vanishing):
    result = json.loads((vanishing / "results.json").read_text())
    runs = result["runs"]
    assert [r["cell"] for r in runs] == ["RNN"] * 6 + ["LSTM", "GRU"]
    for r in runs:  # the measured decay of ||ds_T/ds_t|| has the slope the exponent predicts
        assert r["slope_jacobian"] == pytest.approx(r["lyapunov_top"], abs=0.03), r["label"]
        assert r["slope_dl_dh"] == pytest.approx(r["lyapunov_top"], abs=0.05), r["label"]
    tanh = runs[:6]
    lambdas = [r["lambda_1"][0] for r in tanh]
    np.testing.assert_allclose(lambdas, [0.5, 0.9, 1.0, 1.1, 1.5, 2.0], rtol=1e-12)
    tops = [r["lyapunov_top"] for r in tanh]
    assert all(top <= math.log(lam) + 1e-12 for top, lam in zip(tops, lambdas))  # Pascanu's bound
    assert tops == sorted(tops) and tops[0] < -0.5 and tops[-1] > 0  # vanishing ... exploding


def test_vanishing_writes_the_norms_and_figures(vanishing):
    T = json.loads((vanishing / "results.json").read_text())["setup"]["T"]
    with open(vanishing / "norms.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 * T
    first = [r for r in rows if r["config"] == "tanh RNN, lambda_1 = 0.5"]
    assert float(first[-1]["jacobian_spectral"]) == pytest.approx(1.0)  # the identity at t = T-1
    assert float(first[0]["jacobian_spectral"]) < 1e-15
    for name in ("tanh_rnn.png", "gated.png", "lyapunov_vs_lambda.png"):
        assert_png(vanishing / name)


def test_clipping_stops_the_jump_off_the_cliff(cliff):
    result = json.loads((cliff / "cliff.json").read_text())
    setup, plain, clipped = result["setup"], result["without_clipping"], result["with_clipping"]
    longest_clipped = setup["learning_rate"] * setup["clip_threshold"]
    assert clipped["largest_step"] <= longest_clipped * (1 + 1e-9)
    assert plain["largest_step"] > 100 * longest_clipped  # the jump
    assert plain["largest_gradient_norm"] > 1000
    assert clipped["final_loss"] < 1e-2 < plain["final_loss"]
    assert len(plain["path"]) == setup["iterations"] + 1
    for name in ("loss_surface.png", "loss_along_paths.png"):
        assert_png(cliff / name)


def test_cliff_gradient_matches_finite_differences():
    clipping = load_experiment("clipping")
    for w, b in [(6.75, -4.0), (3.0, -1.0), (9.0, -4.5)]:
        params = np.array([w, b])
        _, dw, db = clipping.loss_and_gradient(*params)
        numeric = central_difference(lambda: float(clipping.loss_and_gradient(*params)[0]), params, eps=1e-7)
        np.testing.assert_allclose([dw, db], numeric, rtol=1e-5)


def test_experiments_reject_missing_out():
    done = subprocess.run([sys.executable, str(EXPERIMENTS / "clipping.py")], capture_output=True, text=True)
    assert done.returncode == 2 and "--out" in done.stderr


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    return run_quick("stack_gradients", tmp_path_factory.mktemp("stacks"))


def test_stack_gradients_vanish_along_time_at_the_lyapunov_rate_and_down_the_layers(stacks):
    result = json.loads((stacks / "results.json").read_text())
    setup, runs = result["setup"], result["runs"]
    assert [r["cell"] for r in runs] == ["rnn", "lstm", "gru"]
    for r in runs:
        top = r["time_slopes"][-1]
        assert top < -0.2 and top == pytest.approx(r["lyapunov_top_layer"], abs=0.05), r["cell"]
        assert len(r["down_per_layer"]) == setup["layers"] - 1 and all(d < 0 for d in r["down_per_layer"])
        assert r["down_mean"] == pytest.approx(np.mean(r["down_per_layer"]))
    with open(stacks / "norms.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * setup["layers"] * setup["T"]
    last = {(r["cell"], int(r["layer"])): float(r["dl_dh"]) for r in rows if int(r["t"]) == setup["T"] - 1}
    for r in runs:  # the per-layer rates are the logs of the written norms' ratios
        ratios = [math.log(last[r["cell"], layer] / last[r["cell"], layer + 1]) for layer in range(setup["layers"] - 1)]
        np.testing.assert_allclose(ratios, r["down_per_layer"], rtol=1e-9)
    assert_png(stacks / "stack_gradients.png")


@pytest.fixture(scope="module")
def truncation(tmp_path_factory):
    return run_quick("truncation", tmp_path_factory.mktemp("truncation"))


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    return run_quick("cells_adding", tmp_path_factory.mktemp("cells"))


@pytest.fixture(scope="module")
def during_training(tmp_path_factory):
    return run_quick("training_gradients", tmp_path_factory.mktemp("training_gradients"))


def test_truncation_bias_vanishes_at_full_length(truncation):
    result = json.loads((truncation / "results.json").read_text())
    T = result["setup"]["T"]
    assert len(result["bias"]) == 4
    for name, b in result["bias"].items():
        assert b["ks"][-1] == T and b["ks"][0] == 1
        assert b["relative_error"][-1] < 1e-12 and b["cosine"][-1] == pytest.approx(1.0, abs=1e-12)  # k = T is BPTT
        assert b["relative_error"][0] > 10 * b["relative_error"][-2] > 0, name  # longer windows, less bias
        assert b["cosine"][0] < 0.999
        assert b["error_decay_slope"] < 0
    assert sorted(result["training"], key=int) == ["5", "20"]
    for k, t in result["training"].items():
        assert (truncation / "runs" / f"lstm-k{k}" / "metrics.jsonl").exists()
        assert t["final_mse"] == pytest.approx(t["held_out_mse"][-1])
    for name in ("bias.png", "training.png"):
        assert_png(truncation / name)


def test_truncation_bias_matches_a_direct_computation():
    """One entry of the bias curve, recomputed from tbptt_gradient and gradient_agreement directly."""
    import bptt
    from bptt import diagnostics
    from bptt.training.tasks import make_task
    from bptt.core.truncation import tbptt_gradient

    truncation = load_experiment("truncation")
    batch = make_task("adding", 12).sample(np.random.default_rng(0), 5)
    cell, readout = bptt.GRU(2, 3, seed=0), bptt.Linear(3, 1, seed=0)
    curve = truncation.bias_curve(cell, readout, batch, [3, 12])
    grads = [tbptt_gradient(cell, readout, bptt.mse, batch.xs, batch.targets, batch.mask, k, k).params
             for k in (3, 12)]
    cell_only = [{n: g for n, g in gr.items() if n.startswith("cell.")} for gr in grads]
    expected = diagnostics.gradient_agreement(*cell_only)
    assert curve["cosine"][0] == pytest.approx(expected.cosine, rel=1e-12)
    assert curve["relative_error"][0] == pytest.approx(expected.relative_error, rel=1e-12)


def test_cells_adding_trains_every_cell(cells):
    result = json.loads((cells / "results.json").read_text())
    assert {r["cell"] for r in result["runs"]} == {"tanh RNN", "relu RNN, identity init", "LSTM", "GRU"}
    assert all(np.isfinite(r["final_mse"]) for r in result["runs"])
    with open(cells / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    final = {r["cell"]: float(r["held_out_mse"]) for r in rows}  # the last row per cell
    for r in result["runs"]:
        assert final[r["cell"]] == pytest.approx(r["final_mse"], rel=1e-5)
    assert_png(cells / "learning_curves.png")


def test_cells_adding_runs_are_trainer_runs_with_their_init(cells):
    result = json.loads((cells / "results.json").read_text())
    expected = {"tanh RNN": ("rnn", "default"), "relu RNN, identity init": ("rnn-relu", "identity"),
                "LSTM": ("lstm", "default"), "GRU": ("gru", "default")}
    for r in result["runs"]:
        run = cells / r["run"]
        config = json.loads((run / "config.json").read_text())
        assert (config["cell"], config["init"]) == expected[r["cell"]]
        assert config["task"] == "adding" and config["seq_len"] == r["T"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["eval_loss"] == r["final_mse"] and summary["steps"] == result["setup"]["steps"]
    relu = next(r for r in result["runs"] if r["cell"] == "relu RNN, identity init")
    assert relu["final_mse"] < 0.9 * result["setup"]["baseline"]  # leaves the plateau within 40 updates


def test_training_gradients_heatmap_is_the_recorded_norms(during_training):
    result = json.loads((during_training / "results.json").read_text())
    assert result["recorded_steps"] == list(range(5, 41, 5))
    records = [json.loads(line) for line in (during_training / "lstm-adding" / "dh_norms.jsonl").read_text().splitlines()]
    reach = [math.log10(r["dh_norms"][0] / r["dh_norms"][-1]) for r in records]
    np.testing.assert_allclose(result["log10_reach"], reach, rtol=1e-12)
    assert all(value < 0 for value in reach)  # at initialisation the gradient vanishes towards t = 0
    assert_png(during_training / "heatmap.png")
    for name in ("loss.png", "grad_norm.png", "dh_norms.png"):
        assert_png(during_training / "lstm-adding" / name)


@pytest.fixture(scope="module")
def own_cell(tmp_path_factory):
    return run_quick("own_cell", tmp_path_factory.mktemp("own_cell"))


def test_own_cell_gradients_vanish_at_the_lyapunov_rate(own_cell):
    result = json.loads((own_cell / "results.json").read_text())
    flows = {f["label"]: f for f in result["gradient_flow"]}
    assert list(flows) == ["MGU", "GRU", "LSTM"]
    for label, f in flows.items():
        assert f["slope_jacobian"] == pytest.approx(f["lyapunov_top"], abs=0.03), label
        assert f["slope_dl_dh"] == pytest.approx(f["lyapunov_top"], abs=0.05), label
        assert f["lyapunov_top"] < 0, label  # default initialisation: every cell's gradient vanishes
    assert flows["MGU"]["parameters"] * 3 == flows["GRU"]["parameters"] * 2  # two gate blocks to three
    assert_png(own_cell / "gradient_flow.png")


def test_own_cell_sweep_trained_the_cell_from_the_experiments_folder(own_cell):
    result = json.loads((own_cell / "results.json").read_text())
    with open(own_cell / "sweep" / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["cell"] for r in rows) == sorted(["own_cell:MGU", "gru", "lstm"] * 2)
    assert all(r["status"] == "done" for r in rows)
    for r in rows:  # each run folder says which cell it trained, as named in the spec
        run = own_cell / "sweep" / r["run"]
        assert json.loads((run / "config.json").read_text())["cell"] == r["cell"]
        entry = next(e for e in result["adding_sweep"] if e["T"] == int(r["seq_len"])
                     and {"MGU": "own_cell:MGU", "GRU": "gru", "LSTM": "lstm"}[e["cell"]] == r["cell"])
        assert entry["eval_loss"] == [json.loads((run / "summary.json").read_text())["eval_loss"]]
    assert_png(own_cell / "adding_sweep.png")


def test_own_cell_mgu_matches_finite_differences():
    import bptt
    from bptt import diagnostics
    from bptt.modes.finite_diff import relative_error

    cell = load_experiment("own_cell").MGU(3, 4, seed=0)
    rng = np.random.default_rng(0)
    xs, state0, dhs = rng.standard_normal((6, 2, 3)), 0.5 * rng.standard_normal((2, 4)), rng.standard_normal((6, 2, 4))

    def loss():
        return float(np.sum(dhs * bptt.forward(cell, xs, state0)[0]))

    grads = bptt.backward(cell, bptt.forward(cell, xs, state0)[1], dhs)
    for name, param in cell.params.items():
        assert relative_error(grads.params[name], central_difference(loss, param)) < 1e-7, name
    assert relative_error(grads.dxs, central_difference(loss, xs)) < 1e-7
    assert relative_error(grads.dstate0, central_difference(loss, state0)) < 1e-7
    _, tape = bptt.forward(cell, xs, state0)  # the diagnostics run on the step pair alone
    assert diagnostics.jacobian_norms(cell, tape).spectral.shape == (6, 2)
