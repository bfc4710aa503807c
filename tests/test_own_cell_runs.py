"""Training a cell the package does not know (tests/lab/labcells.py, named labcells:Coupled): the name is
stored in config.json as given, and train, resume, evaluate, plot, sample and gradcheck work with it, in
this process and as `python -m bptt` processes given PYTHONPATH; without it, every command says which
module it could not import (exit 2, no traceback, no run folder)."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from bptt.cli import cli
from bptt.training.config import TrainConfig
from bptt.training.trainer import evaluate, train
from conftest import LAB, bptt_command

NAME = "labcells:Coupled"
TINY = dict(hidden=5, seq_len=8, batch_size=4, eval_size=8, eval_every=2, checkpoint_every=2, record_every=2)


def checkpoint(run_dir):
    with np.load(run_dir / "checkpoint.npz") as data:
        return {k: data[k] for k in data.files if k not in ("elapsed", "last_eval")}


@pytest.mark.parametrize("shape", [dict(k1=3, k2=5), dict(layers=2, dropout=0.3)])
def test_a_run_resumed_is_the_run_not_interrupted_bitwise(lab, tmp_path, shape):
    config = TrainConfig(task="adding", cell=NAME, steps=4, **TINY, **shape)
    train(dataclasses.replace(config, out=str(tmp_path / "whole"), steps=6))
    train(dataclasses.replace(config, out=str(tmp_path / "parts")))
    train(dataclasses.replace(config, steps=6), resume=tmp_path / "parts")
    assert json.loads((tmp_path / "parts" / "config.json").read_text())["cell"] == NAME
    whole, parts = checkpoint(tmp_path / "whole"), checkpoint(tmp_path / "parts")
    assert sorted(whole) == sorted(parts) and any(k.startswith("param/cell.weight_hh") for k in whole)
    for key in whole:
        assert np.array_equal(whole[key], parts[key]), key
    assert evaluate(tmp_path / "parts")["cell"] == NAME


def test_the_commands_read_the_run_back(lab, tmp_path):
    run = tmp_path / "run"
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--cell", NAME, "--steps", "4", "--hidden", "5", "--seq-len", "8",
                                  "--eval-every", "2", "--record-every", "2", "--out", str(run), "--quiet"])
    assert trained.exit_code == 0, trained.output
    resumed = runner.invoke(cli, ["train", "--resume", str(run), "--steps", "6", "--quiet", "--json"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["cell"] == NAME and json.loads(resumed.stdout)["steps"] == 6
    evaluated = runner.invoke(cli, ["evaluate", str(run), "--json"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["cell"] == NAME
    plotted = runner.invoke(cli, ["plot", str(run)])
    assert plotted.exit_code == 0, plotted.output
    assert sorted(p.name for p in run.glob("*.png")) == ["dh_norms.png", "grad_norm.png", "loss.png"]


# ----------------------------------------------------------------- as processes
def bptt(*args, pythonpath=True):
    """`python -m bptt ARGS` with tests/lab on PYTHONPATH (or without it), run to its end."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = LAB
    return subprocess.run(bptt_command(*args), env=dict(env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=120)


def test_every_command_runs_the_cell_as_a_process_given_pythonpath(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    run = tmp_path / "run"
    done = bptt("train", "--task", "chars", "--text", text, "--cell", NAME, "--layers", "2", "--steps", "2",
                "--hidden", "6", "--seq-len", "10", "--eval-size", "4", "--out", run, "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "config.json").read_text())["cell"] == NAME
    done = bptt("train", "--resume", run, "--steps", "3", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "chars / labcells:Coupled: 3 steps" in done.stdout
    done = bptt("evaluate", run, "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["cell"] == NAME, done.stderr
    done = bptt("sample", run, "--length", "12", "--seed", "0")
    assert done.returncode == 0 and len(done.stdout.strip()) >= 12, done.stderr
    done = bptt("plot", run)
    assert done.returncode == 0 and (run / "loss.png").is_file(), done.stderr
    done = bptt("gradcheck", "--cell", NAME, "--hidden", "3", "--seq-len", "5", "--no-torch")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forward (RTRL)          skipped: bptt.rtrl needs its forward-mode rule (step_tangent)" in done.stdout
    script = ("import numpy as np, bptt; from bptt import diagnostics\n"
              f"net = bptt.Stack({NAME!r}, 2, 3, 2, seed=0)\n"
              "hs, tape = bptt.forward(net, np.ones((5, 1, 2)))\n"
              "print(diagnostics.jacobian_norms(net, tape).spectral.shape, diagnostics.lyapunov_spectrum(net, tape).shape)")
    env = dict(os.environ, PYTHONPATH=LAB)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "(5, 1) (1, 12)", done.stderr


def test_without_the_module_on_the_path_every_command_names_it(tmp_path):
    run = tmp_path / "run"
    assert bptt("train", "--cell", NAME, "--steps", "1", "--hidden", "4", "--seq-len", "6", "--eval-size", "4",
                "--out", run, "--quiet").returncode == 0
    refused = {
        "train": bptt("train", "--cell", NAME, "--out", tmp_path / "new", pythonpath=False),
        "resume": bptt("train", "--resume", run, "--steps", "2", pythonpath=False),
        "evaluate": bptt("evaluate", run, pythonpath=False),
        "gradcheck": bptt("gradcheck", "--cell", NAME, pythonpath=False),
    }
    for command, done in refused.items():
        assert done.returncode == 2, (command, done.stderr)
        assert "no module named 'labcells' on the Python path" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr, command
    assert not (tmp_path / "new").exists()
    assert json.loads((run / "summary.json").read_text())["steps"] == 1  # the refused resume left the run as it was
