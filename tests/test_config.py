"""TrainConfig's validation, the one place that checks the settings: each message names the setting,
the value and what is allowed, and `bptt train` reports it on the option with exit code 2."""

import dataclasses
import itertools
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bptt
from bptt.cells.registry import CELL_NAMES
from bptt.cli import cli
from bptt.cli.train import train_command
from bptt.core.truncation import TBPTT
from bptt.training.config import SettingError, TrainConfig
from bptt.training.optim import Schedule

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("change,message", [
    (dict(task="sorting"), "task must be a built-in task (adding, copy, temporal-order, reber, parity, chars, data), "
                           "a name an installed package registers in the entry-point group bptt.tasks, or "
                           "MODULE:CLASS naming a subclass of bptt.training.task_contract.Task importable on the Python path "
                           "('sorting' is neither a built-in task nor registered in bptt.tasks, and not "
                           "MODULE:CLASS), got 'sorting'"),
    (dict(cell="tcn"), "cell must be a built-in cell (rnn, rnn-relu, lstm, gru), a name an installed package "
                       "registers in the entry-point group bptt.cells, or MODULE:CLASS naming a subclass of "
                       "bptt.cells.cell.Cell importable on the Python path ('tcn' is neither a built-in cell nor "
                       "registered in bptt.cells, and not MODULE:CLASS), got 'tcn'"),
    (dict(init="zeros"), "init must be one of ['default', 'identity', 'orthogonal'], got 'zeros'"),
    (dict(optimizer="adagrad"), "optimizer must be one of"),
    (dict(schedule="linear"), "schedule must be one of ['constant', 'cosine', 'step'], got 'linear'"),
    (dict(clip="max"), "clip must be one of ['norm', 'value', 'none'], got 'max'"),
    (dict(dtype="float16"), "dtype must be one of ['float64', 'float32'], got 'float16'"),
    (dict(on_nonfinite="ignore"), "on_nonfinite must be one of ['stop', 'skip'], got 'ignore'"),
    (dict(hidden=0), "hidden must be a positive integer, got 0"),
    (dict(seq_len=2.5), "seq_len must be a positive integer, got 2.5"),
    (dict(steps=True), "steps must be a positive integer, got True"),
    (dict(lr_step_size=0), "lr_step_size must be a positive integer, got 0"),
    (dict(checkpoint_every=-1), "checkpoint_every must be a positive integer, got -1"),
    (dict(record_every=-1), "record_every must be a non-negative integer, got -1"),
    (dict(seed=-1), "seed must be a non-negative integer, got -1"),
    (dict(eval_seed="x"), "eval_seed must be a non-negative integer, got 'x'"),
    (dict(lr=0.0), "lr must be a positive finite number, got 0.0"),
    (dict(lr=float("inf")), "lr must be a positive finite number, got inf"),
    (dict(lr="0.1"), "lr must be a positive finite number, got '0.1'"),
    (dict(momentum=1.0), "momentum must be a number in [0, 1), got 1.0"),
    (dict(lr_gamma=0), "lr_gamma must be a number in (0, 1], got 0"),
    (dict(clip_threshold=0.0), "clip_threshold must be a positive finite number, got 0.0"),
    (dict(clip_threshold=float("nan")), "clip_threshold must be a positive finite number, got nan"),
    (dict(target_loss=float("nan")), "target_loss must be a number or None, got nan"),
    (dict(k1=0), "k1 must be a positive integer or None (the whole sequence), got 0"),
    (dict(k2=3), "k2 must be None when k1 is None (give k1 too, or neither for full BPTT), got 3"),
    (dict(k1=5, k2=3), "k2 must be >= k1 = 5 (an update backpropagates at least its k1 new steps), got 3"),
    (dict(k1=2, k2=2.5), "k2 must be a positive integer or None (k1), got 2.5"),
    (dict(task="chars"), "text must be the path of a text file for the chars task, got None"),
    (dict(task="data"), "data must be the path of an .npz file for the data task, got None"),
    (dict(task="data", data="d.npz", eval_fraction=1.0), "eval_fraction must be a share in (0, 1), got 1.0"),
    (dict(task="data", data="d.npz", eval_fraction=0), "eval_fraction must be a share in (0, 1), got 0"),
    (dict(data=["d.npz"], task="data"), "data must be a path or None, got ['d.npz']"),
    (dict(out=3), "out must be a path or None, got 3"),
])
def test_each_bad_setting_is_named_with_its_value_and_what_is_allowed(change, message):
    with pytest.raises(SettingError) as info:
        TrainConfig(**change).validate()
    assert str(info.value).startswith(message)
    assert info.value.setting == message.split()[0] and isinstance(info.value, ValueError)


def test_validation_does_not_build_schedules_or_truncations(monkeypatch):
    # every value those classes reject is rejected here first, without constructing them
    def refuse(self):
        raise AssertionError("validate() built a Schedule or a TBPTT")

    monkeypatch.setattr(Schedule, "__post_init__", refuse)
    monkeypatch.setattr(TBPTT, "__post_init__", refuse)
    good = TrainConfig(schedule="cosine", k1=3, k2=5)
    assert good.validate() is good
    for change in (dict(lr=-1.0), dict(lr_gamma=1.5), dict(lr_step_size=0), dict(k1=4, k2=2), dict(k1=0)):
        with pytest.raises(SettingError):
            dataclasses.replace(good, **change).validate()


def run(*args):
    return CliRunner().invoke(cli, ["train", *args])


@pytest.mark.parametrize("args,message", [
    (["--clip-threshold", "0"], "Invalid value for '--clip-threshold': must be a positive finite number, got 0.0"),
    (["--clip-threshold", "inf"], "Invalid value for '--clip-threshold': must be a positive finite number, got inf"),
    (["--seed", "-1"], "Invalid value for '--seed': must be a non-negative integer, got -1"),
    (["--k2", "3"], "Invalid value for '--k2': must be None when k1 is None (give k1 too"),
    (["--k1", "5", "--k2", "3"], "Invalid value for '--k2': must be >= k1 = 5"),
    (["--task", "chars"], "Invalid value for '--text': must be the path of a text file for the chars task"),
    (["--target-loss", "nan"], "Invalid value for '--target-loss': must be a number or None, got nan"),
    (["--hidden", "0"], "Invalid value for '--hidden': must be a positive integer, got 0"),
    (["--lr", "0"], "Invalid value for '--lr': must be a positive finite number, got 0.0"),
    (["--momentum", "1"], "Invalid value for '--momentum': must be a number in [0, 1), got 1.0"),
    (["--lr-gamma", "1.5"], "Invalid value for '--lr-gamma': must be a number in (0, 1], got 1.5"),
    (["--record-every", "-1"], "Invalid value for '--record-every': must be a non-negative integer, got -1"),
])
def test_cli_reports_the_config_check_on_the_option_with_exit_code_2(tmp_path, args, message):
    result = run("--steps", "1", "--out", str(tmp_path / "x"), "--quiet", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_cli_reports_a_bad_saved_config_on_resume(tmp_path):
    out = tmp_path / "run"
    assert run("--steps", "1", "--hidden", "4", "--seq-len", "6", "--eval-size", "4", "--out", str(out),
               "--quiet").exit_code == 0
    (out / "config.json").write_text((out / "config.json").read_text().replace('"hidden": 4', '"hidden": -4'))
    result = run("--resume", str(out), "--quiet")
    assert result.exit_code == 2 and "config.json: hidden must be a positive integer, got -4" in result.output


def test_cli_checks_steps_given_with_resume(tmp_path):
    result = run("--resume", str(tmp_path), "--steps", "0")
    assert result.exit_code == 2 and "Invalid value for '--steps': must be a positive integer, got 0" in result.output


def test_cli_cell_help_names_every_registered_cell_and_the_other_doors():
    cell = next(p for p in train_command.params if p.name == "cell")
    assert all(name in cell.help for name in CELL_NAMES)
    assert "entry-point group bptt.cells" in cell.help and "MODULE:CLASS" in cell.help


# --- a setting the other settings leave without effect is refused, naming what it needs


@pytest.mark.parametrize("change, message", [
    (dict(dropout=0.5), "dropout 0.5 has no effect with layers = 1; it needs layers >= 2"),
    (dict(dropout=0.5, bidirectional=True), "dropout 0.5 has no effect with layers = 1"),
    (dict(momentum=0.5), "momentum 0.5 has no effect with optimizer 'adam'; it needs optimizer momentum or nesterov"),
    (dict(momentum=0.5, optimizer="sgd"), "momentum 0.5 has no effect with optimizer 'sgd'"),
    (dict(momentum=0.5, optimizer="rmsprop"), "momentum 0.5 has no effect with optimizer 'rmsprop'"),
    (dict(lr_step_size=10), "lr_step_size 10 has no effect with schedule 'constant'; it needs schedule step"),
    (dict(lr_gamma=0.5, schedule="cosine"), "lr_gamma 0.5 has no effect with schedule 'cosine'; it needs schedule step"),
    (dict(clip="none", clip_threshold=5.0), "clip_threshold 5.0 has no effect with clip 'none'; it needs clip norm or value"),
    (dict(task="parity", text="book.txt"), "text 'book.txt' has no effect with task 'parity'; it needs task chars"),
    (dict(data="d.npz"), "data 'd.npz' has no effect with task 'adding'; it needs task data"),
    (dict(eval_fraction=0.2), "eval_fraction 0.2 has no effect with task 'adding'; it needs task data"),
    (dict(task="data", data="d.npz", seq_len=50), "seq_len 50 has no effect with task 'data'; it needs a task other "
                                                  "than data (a data file's T is its sequence length)"),
    (dict(task="data", data="d.npz", eval_size=64), "eval_size 64 has no effect with task 'data'"),
    (dict(task="chars", text="book.txt", eval_seed=7), "eval_seed 7 has no effect with task 'chars'"),
])
def test_a_setting_that_would_do_nothing_is_refused(change, message):
    with pytest.raises(SettingError) as info:
        TrainConfig(**change).validate()
    assert str(info.value).startswith(message)
    setting = message.split()[0]
    assert info.value.setting == setting and info.value.value == change[setting]


@pytest.mark.parametrize("change", [
    dict(dropout=0.5, layers=2), dict(momentum=0.5, optimizer="momentum"), dict(momentum=0.5, optimizer="nesterov"),
    dict(schedule="step", lr_step_size=10, lr_gamma=0.5), dict(clip="value", clip_threshold=5.0),
    dict(task="chars", text="book.txt"), dict(task="data", data="d.npz", eval_fraction=0.3, eval_seed=7),
    dict(optimizer="sgd", momentum=0.9),  # the default value: nothing was asked for
])
def test_the_same_settings_where_they_act_are_accepted(change):
    TrainConfig(**change).validate()


@pytest.mark.parametrize("args, message", [
    (["--dropout", "0.5"], "Invalid value for '--dropout': 0.5 has no effect with layers = 1; it needs layers >= 2"),
    (["--task", "parity", "--text", "book.txt"], "Invalid value for '--text': 'book.txt' has no effect with task "
                                                 "'parity'; it needs task chars"),
    (["--momentum", "0.5"], "Invalid value for '--momentum': 0.5 has no effect with optimizer 'adam'"),
    (["--clip", "none", "--clip-threshold", "3"], "Invalid value for '--clip-threshold': 3.0 has no effect"),
    (["--eval-fraction", "0.3"], "Invalid value for '--eval-fraction': 0.3 has no effect with task 'adding'"),
])
def test_the_cli_refuses_an_option_that_would_do_nothing_with_exit_2(tmp_path, args, message):
    result = run("--steps", "1", "--out", str(tmp_path / "x"), "--quiet", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_dropout_on_one_layer_would_have_left_the_weights_bitwise_unchanged(tmp_path):
    # why it is refused: a one-layer model has no layer to drop between (measured through the Stack
    # a bidirectional layer builds, which takes the dropout setting)
    from bptt.training.trainer import TrainingRun

    def weights(dropout):
        config = TrainConfig(task="parity", bidirectional=True, seq_len=6, hidden=4, steps=3, dropout=dropout)
        run = TrainingRun(config)
        run.next_batch()
        return run.cell, run.batch

    (a, batch), (b, _) = weights(0.0), weights(0.5)
    ha, _ = bptt.forward(a, batch.xs)
    hb, _ = bptt.forward(b, batch.xs)
    assert np.array_equal(ha, hb)


def spec_points(path):
    """Every run a sweep spec asks for: [base], crossed with each [[runs]] table and the [grid]."""
    spec = tomllib.loads(path.read_text())
    grid = spec.get("grid", {})
    for run_table in spec.get("runs", [{}]):
        for values in itertools.product(*grid.values()):
            settings = {**spec.get("base", {}), **run_table, **dict(zip(grid, values))}
            settings.pop("label", None)
            yield settings


def test_no_committed_sweep_spec_asks_for_a_setting_that_does_nothing():
    paths = sorted((ROOT / "experiments" / "sweeps").glob("*.toml"))
    assert paths
    for path in paths:
        for settings in spec_points(path):
            TrainConfig(**settings).validate()
