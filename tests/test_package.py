"""The package's shape: folders as the README draws them, no name hiding a module, one result
convention."""

import ast
import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import bptt

PACKAGE = Path(bptt.__file__).parent


def all_modules():
    """Every module of the package but __main__, which runs the command line when imported."""
    return [info.name for info in pkgutil.walk_packages([str(PACKAGE)], "bptt.") if info.name != "bptt.__main__"]


def test_the_package_is_its_groups_and_the_cli_no_deeper():
    subpackages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert subpackages == ["cells", "cli", "core", "modes", "runs", "sweep", "training"]
    for sub in subpackages:
        assert not [p for p in (PACKAGE / sub).iterdir() if (p / "__init__.py").exists()], sub
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py", "plots.py"]


def imported_packages(path):
    """The bptt subpackages (bptt.X) that a source file of the package imports, absolute or relative."""
    package = path.relative_to(PACKAGE.parent).parent.parts  # e.g. ("bptt", "runs")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(".".join(name.split(".")[:2]) for name in names if name.startswith("bptt."))
    return found


def test_run_folders_sit_below_training():
    """bptt.runs (the files of a run folder) needs nothing of training, the model or the CLI: no cycle
    training <-> runs, and a reader of a run folder loads no model code."""
    for path in sorted((PACKAGE / "runs").glob("*.py")):
        assert imported_packages(path) <= {"bptt.runs", "bptt.core"}, path.name
    assert "bptt.runs" in imported_packages(PACKAGE / "training" / "trainer.py")  # the check sees imports


@pytest.mark.parametrize("name", all_modules())
def test_no_package_attribute_hides_a_module_of_the_same_name(name):
    parent, _, last = name.rpartition(".")
    module = importlib.import_module(name)
    attribute = getattr(importlib.import_module(parent), last)
    assert attribute is module, f"{parent}.{last} is {type(attribute).__name__}, not the module {name}"


def test_the_readme_calls_are_public_names():
    for name in ["RNN", "LSTM", "GRU", "forward", "backward", "forward_stepwise", "backward_stepwise",
                 "Linear", "mse", "softmax_cross_entropy", "sigmoid_binary_cross_entropy", "train",
                 "evaluate", "TrainConfig", "jvp", "rtrl", "uoro", "hvp", "loss_and_gradient",
                 "top_hessian_eigenvalue", "forward_checkpointed", "backward_checkpointed", "diagnostics",
                 "tbptt_gradient", "central_difference", "relative_error", "make_cell"]:
        assert name in bptt.__all__ and hasattr(bptt, name), name


def gradient_results():
    """(name, result) for every gradient method on one small problem."""
    rng = np.random.default_rng(0)
    cell = bptt.LSTM(2, 3, seed=0)
    xs, dhs = rng.standard_normal((4, 2, 2)), rng.standard_normal((4, 2, 3))
    _, tape = bptt.forward(cell, xs)
    _, caches, _ = bptt.forward_stepwise(cell, xs)
    _, checkpoint_tape = bptt.forward_checkpointed(cell, xs, every=2)
    return cell, {
        "backward": bptt.backward(cell, tape, dhs),
        "backward_stepwise": bptt.backward_stepwise(cell, caches, dhs),
        "backward_checkpointed": bptt.backward_checkpointed(cell, checkpoint_tape, dhs),
        "rtrl": bptt.rtrl(cell, xs, dhs),
        "uoro": bptt.uoro(cell, xs, dhs, seed=0),
        "loss_and_gradient": bptt.loss_and_gradient(cell, xs, dhs),
    }


def test_every_gradient_result_keeps_the_gradient_in_params():
    cell, results = gradient_results()
    exact = results["backward"].params
    for name, result in results.items():
        assert set(result.params) == set(cell.params), name
        for key, value in result.params.items():
            assert value.shape == cell.params[key].shape, (name, key)
        if name not in ("uoro", "loss_and_gradient"):  # an estimate; another loss
            assert all(np.allclose(result.params[k], exact[k], rtol=1e-10, atol=0) for k in exact), name


def test_results_print_one_line_of_shapes_and_unpack_like_tuples():
    cell, results = gradient_results()
    for name, result in results.items():
        text = repr(result)
        assert "\n" not in text and len(text) < 300, (name, text)
        assert "[" not in text and "array([" not in text, (name, text)  # shapes, never contents
    g = results["backward"]
    assert repr(g) == ("Gradients(params={weight_ih, weight_hh, bias_ih, bias_hh}, dxs=array(4, 2, 2) float64, "
                       "dstate0=(array(2, 3) float64, array(2, 3) float64), dh_norms=array(4,) float64)")
    params, dxs, dstate0, dh_norms = g
    assert params is g.params and dxs is g.dxs and g[3] is dh_norms
    loss, grads = results["loss_and_gradient"]
    assert isinstance(loss, float) and grads is results["loss_and_gradient"].params


def test_tapes_print_their_size_not_their_arrays():
    cell = bptt.GRU(2, 3, seed=0)
    _, tape = bptt.forward(cell, np.zeros((5, 4, 2)))
    assert repr(tape) == f"Tape(GRU, T=5, N=4, {tape.nbytes / 2**20:.2f} MiB)"
    _, checkpoints = bptt.forward_checkpointed(cell, np.zeros((5, 4, 2)), every=2)
    assert repr(checkpoints).startswith("CheckpointTape(GRU, T=5, every=2, 3 checkpoints, ")
