"""Every command pipes: results on stdout (one JSON object with --json), progress and messages on
stderr, and no progress bar unless stderr is a terminal."""

import json
import subprocess
import sys

from click.testing import CliRunner

from bptt.cli import cli

SMALL = ["--hidden", "4", "--seq-len", "6", "--batch-size", "4", "--steps", "3", "--eval-size", "8", "--eval-every", "3"]


def test_train_and_evaluate_print_one_json_object_each(tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", *SMALL, "--out", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # the whole of stdout is one object
    assert summary["steps"] == 3 and summary["run_dir"] == str(run_dir) and "eval_loss" in summary
    assert result.stderr == ""  # no progress bar: stderr is not a terminal here
    evaluated = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--json"])
    assert evaluated.exit_code == 0
    metrics = json.loads(evaluated.stdout)
    assert metrics["step"] == 3 and metrics["eval_loss"] == summary["eval_loss"]


def test_gradcheck_json_holds_every_mode_and_the_verdict():
    result = CliRunner().invoke(cli, ["gradcheck", "--cell", "rnn", "--hidden", "3", "--seq-len", "5",
                                      "--batch-size", "2", "--no-torch", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [m["mode"] for m in report["modes"]] == ["reverse (BPTT)", "reverse, checkpointed", "forward (RTRL)",
                                                    "finite differences"]
    assert report["modes"][0]["error"] is None and all(m["error"] < 1e-6 for m in report["modes"][1:])
    assert report["passed"] is True and report["failed"] == [] and report["N"] == 2
    assert result.stderr == "(PyTorch not included: --no-torch)\n"


def test_the_older_batch_spelling_still_works():
    old = CliRunner().invoke(cli, ["gradcheck", "--cell", "rnn", "--hidden", "3", "--seq-len", "4", "--batch", "3",
                                   "--no-torch", "--json"])
    assert old.exit_code == 0 and json.loads(old.stdout)["N"] == 3


def test_a_real_pipe_gets_only_the_result(tmp_path):
    """`bptt train ... --json | consumer`: stdout is the JSON, stderr holds no stray progress line."""
    run = subprocess.run([sys.executable, "-m", "bptt", "train", *SMALL, "--out", str(tmp_path / "r"), "--json"],
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["steps"] == 3
    assert "training" not in run.stderr and "training" not in run.stdout.replace('"training', "")
    plain = subprocess.run([sys.executable, "-m", "bptt", "train", *SMALL, "--out", str(tmp_path / "p")],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert plain.stdout.splitlines()[0].startswith("adding / gru: 3 steps in ")  # results, no bar
    assert plain.stderr == ""
