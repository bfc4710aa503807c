"""`bptt train`, `evaluate`, `sample` through click's CliRunner: outputs, run folders, usage errors."""

import json

import pytest
from click.testing import CliRunner

from bptt.cli import cli

FAST = ["--hidden", "6", "--seq-len", "8", "--batch-size", "4", "--eval-size", "8", "--quiet"]


def run(*args):
    return CliRunner().invoke(cli, list(args))


def test_train_then_evaluate(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--steps", "3", "--cell", "gru", "--out", str(out), *FAST)
    assert result.exit_code == 0, result.output
    assert "baseline 0.1667" in result.output and str(out) in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["cell"] == "gru"
    result = run("evaluate", str(out))
    assert result.exit_code == 0 and f"eval_loss: {summary['eval_loss']:.6g}" in result.output


def test_resume_continues_and_refuses_other_settings(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", "2", "--out", str(out), *FAST).exit_code == 0
    result = run("train", "--resume", str(out), "--steps", "4", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    result = run("train", "--resume", str(out), "--lr", "0.1")
    assert result.exit_code == 2 and "--lr" in result.output and "Traceback" not in result.output


def test_init_is_saved_and_kept_on_resume(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--steps", "2", "--cell", "rnn-relu", "--init", "identity", "--out", str(out), *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["init"] == "identity"
    result = run("train", "--resume", str(out), "--init", "orthogonal")
    assert result.exit_code == 2 and "--init" in result.output and "Traceback" not in result.output
    assert json.loads((out / "config.json").read_text())["init"] == "identity"


def test_train_and_sample_chars(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 30)
    out = tmp_path / "chars"
    result = run("train", "--task", "chars", "--text", str(text), "--steps", "2", "--out", str(out), *FAST)
    assert result.exit_code == 0, result.output
    result = run("sample", str(out), "--length", "25", "--prime", "ab", "--seed", "1")
    assert result.exit_code == 0, result.output
    sampled = result.output.rstrip("\n")
    assert sampled.startswith("ab") and len(sampled) == 27 and set(sampled) <= set("abcd ")


@pytest.mark.parametrize("args,message", [
    (["--task", "sorting"], "Invalid value for '--task'"),
    (["--init", "bogus"], "Invalid value for '--init'"),
    (["--k1", "5", "--k2", "3"], "must be >= k1 = 5"),
    (["--clip-threshold", "0"], "--clip-threshold"),
    (["--clip-threshold", "-1"], "--clip-threshold"),
    (["--task", "chars"], "text file"),
    (["--task", "chars", "--text", "/nonexistent.txt"], "cannot read text file"),
])
def test_train_usage_errors(tmp_path, args, message):
    result = run("train", "--steps", "1", "--out", str(tmp_path / "x"), *FAST, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_unreadable_checkpoint_is_a_usage_error(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", "1", "--out", str(out), *FAST).exit_code == 0
    (out / "checkpoint.npz").write_bytes(b"not a checkpoint")
    for args in (["evaluate", str(out)], ["train", "--resume", str(out)]):
        result = run(*args)
        assert result.exit_code == 2 and "cannot read checkpoint" in result.output, result.output
    result = run("evaluate", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "does not exist" in result.output


def test_sample_needs_a_chars_run(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", "1", "--out", str(out), *FAST).exit_code == 0
    result = run("sample", str(out))
    assert result.exit_code == 2 and "chars task" in result.output


def test_non_finite_stop_is_a_clean_error(tmp_path):
    result = run("train", "--cell", "rnn-relu", "--optimizer", "sgd", "--lr", "10000", "--clip", "none",
                 "--seq-len", "30", "--steps", "30", "--out", str(tmp_path / "nan"), "--quiet")
    assert result.exit_code == 1 and "non-finite" in result.output and "Traceback" not in result.output


def test_skipped_steps_and_a_non_finite_final_loss_are_reported(tmp_path):
    out = tmp_path / "skip"
    result = run("train", "--cell", "rnn-relu", "--optimizer", "sgd", "--lr", "10000", "--clip", "none",
                 "--seq-len", "30", "--steps", "30", "--on-nonfinite", "skip", "--eval-size", "16", "--record-every", "0",
                 "--out", str(out), "--quiet")
    assert result.exit_code == 0 and result.exception is None, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_loss"] is None and summary["skipped_steps"] > 0
    skipped = summary["skipped_steps"]
    assert "adding / rnn-relu: 30 steps in" in result.stdout
    assert f", {skipped} of them skipped (non-finite)" in result.stdout
    assert "eval loss not finite (baseline 0.1667)" in result.stdout
    assert result.stderr == (f"warning: {skipped} of 30 steps were skipped (non-finite loss, gradient or updated "
                             "weights); the final held-out loss is not finite\n")
