"""Training stacked and bidirectional models and variable-length batches: settings, exact resume,
the lengths the tasks draw, what the run folder records and what `bptt plot` and `bptt sample` do
with it."""

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

import bptt
from bptt.cli import cli
from bptt.modes.finite_diff import relative_error
from bptt.training.config import SettingError, TrainConfig
from bptt.runs.logs import read_jsonl
from bptt.runs.reader import read_run
from bptt.training.tasks import make_task
from bptt.training.trainer import TrainingRun, train

TINY = dict(hidden=6, batch_size=4, eval_size=16, eval_every=4, checkpoint_every=5, record_every=3)


def load_checkpoint(run_dir):
    with np.load(run_dir / "checkpoint.npz") as data:
        return {k: data[k] for k in data.files}


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("settings", [
    dict(task="adding", cell="lstm", layers=2, bidirectional=True, dropout=0.3, proj_size=3, seq_len=8),
    dict(task="adding", cell="gru", layers=3, dropout=0.2, seq_len=12, min_seq_len=4, k1=4, k2=6),
    dict(task="reber", cell="rnn", layers=2, seq_len=14, k1=5),
])
def test_interrupted_stacked_run_resumes_to_the_uninterrupted_one(tmp_path, settings):
    """Dropout masks (the Stack's generator is in the checkpoint), lengths and TBPTT windows with a
    carried stacked state: a run stopped at step 7 and resumed ends bitwise where one never stopped."""
    config = TrainConfig(steps=13, **TINY, **settings)
    straight = train(dataclasses.replace(config, out=str(tmp_path / "straight")))

    def stop(step, record):
        if step == 7:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(dataclasses.replace(config, out=str(tmp_path / "broken")), callback=stop)
    resumed = train(resume=tmp_path / "broken")
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "broken")
    assert set(a) == set(b) and "model_rng_state" in a  # the Stack's dropout generator
    for key in a:
        if key != "elapsed":
            assert np.array_equal(a[key], b[key]), key
    assert read_jsonl(tmp_path / "straight" / "dh_norms.jsonl") == read_jsonl(tmp_path / "broken" / "dh_norms.jsonl")
    assert {k: v for k, v in straight.items() if k != "wall_seconds"} == {
        k: v for k, v in resumed.items() if k != "wall_seconds"}


def test_a_stacked_update_is_the_gradient_of_its_first_window(tmp_path):
    """The trainer's first update on a stack (sgd, lr 1, no clipping: the step is the gradient) is
    window_gradients on the first TBPTT window of the first batch, from the same initial weights."""
    from bptt.core.truncation import window_gradients

    config = TrainConfig(task="parity", cell="gru", layers=2, seq_len=12, k1=4, steps=1, optimizer="sgd",
                         clip="none", lr=1.0, **TINY)
    run = TrainingRun(config.validate())
    before = {k: v.copy() for k, v in run.params.items()}
    data = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(4)[2])  # the trainer's data stream
    batch = run.cast(run.task.sample(data, config.batch_size))
    expected = window_gradients(run.cell, run.readout, run.task.loss_fn, batch.xs[:4], None, batch.targets[:4],
                                batch.mask[:4])
    train(dataclasses.replace(config, out=str(tmp_path / "run")))
    after = load_checkpoint(tmp_path / "run")
    for name in before:
        assert relative_error(before[name] - after["param/" + name], expected.params[name]) < 1e-12, name


def test_reber_runs_each_string_its_own_length_and_learns_the_same_gradient():
    """Packed lengths change no gradient of a causal model with no loss past a string's end: the
    gradient with lengths equals the padded one to round-off."""
    task = make_task("reber", 20)
    batch = task.sample(np.random.default_rng(0), 6)
    assert batch.lengths is not None and np.all(batch.lengths <= 20) and len(set(batch.lengths)) > 1
    assert np.array_equal(batch.mask.sum(axis=0), batch.lengths - 1)  # a loss on all but the last symbol
    assert not batch.xs[np.arange(20)[:, None] >= batch.lengths].any()  # nothing past a string's end
    from bptt.core.truncation import window_gradients

    net = bptt.Stack("lstm", 7, 5, 2, seed=0)
    readout = bptt.Linear(5, 7, seed=1)
    padded = window_gradients(net, readout, bptt.softmax_cross_entropy, batch.xs, None, batch.targets, batch.mask)
    packed = window_gradients(net, readout, bptt.softmax_cross_entropy, batch.xs, None, batch.targets, batch.mask,
                              lengths=batch.lengths)
    assert packed.loss == pytest.approx(padded.loss, rel=1e-13)
    for name, value in padded.params.items():
        assert relative_error(packed.params[name], value) < 1e-12, name


def test_adding_draws_lengths_with_markers_inside_each():
    task = make_task("adding", 30, min_seq_len=10)
    batch = task.sample(np.random.default_rng(1), 200)
    L = batch.lengths
    assert L.min() >= 10 and L.max() <= 30 and len(set(L.tolist())) > 10
    values, markers = batch.xs[..., 0], batch.xs[..., 1]
    inside = np.arange(30)[:, None] < L
    assert np.all(markers.sum(axis=0) == 2) and not markers[~inside].any() and not values[~inside].any()
    first, second = np.argmax(markers, axis=0), 29 - np.argmax(markers[::-1], axis=0)
    assert np.all(first < L // 2) and np.all((L // 2 <= second) & (second < L))
    assert np.array_equal(np.argwhere(batch.mask.T)[:, 1], L - 1)  # the loss at each one's last step
    np.testing.assert_allclose(batch.targets[L - 1, np.arange(200), 0], (values * markers).sum(axis=0))
    assert make_task("adding", 30).sample(np.random.default_rng(1), 4).lengths is None


@pytest.mark.parametrize("changes, setting, message", [
    (dict(cell="gru", proj_size=2), "proj_size", "0 for the gru cell"),
    (dict(cell="lstm", proj_size=6), "proj_size", "below hidden = 6"),
    (dict(cell="lstm", proj_size=2, init="orthogonal"), "init", "default with proj_size"),
    (dict(bidirectional=True, k1=5), "k1", "None with bidirectional"),
    (dict(dropout=1.0), "dropout", r"a probability in \[0, 1\)"),
    (dict(layers=0), "layers", "a positive integer"),
    (dict(task="copy", min_seq_len=3), "min_seq_len", "None for the copy task"),
    (dict(min_seq_len=1), "min_seq_len", "an integer >= 2"),
    (dict(min_seq_len=40, seq_len=30), "min_seq_len", "at most seq_len = 30"),
])
def test_stacked_settings_are_checked(changes, setting, message):
    with pytest.raises(SettingError, match=message) as error:
        TrainConfig(**{**dict(hidden=6), **changes}).validate()
    assert error.value.setting == setting


def test_train_command_writes_a_stacked_run_that_plot_draws_per_layer(tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--cell", "lstm", "--layers", "2", "--bidirectional", "--dropout", "0.2",
                                      "--proj-size", "3", "--hidden", "6", "--seq-len", "8", "--steps", "6",
                                      "--record-every", "3", "--eval-every", "3", "--out", str(run_dir), "--quiet"])
    assert result.exit_code == 0, result.output
    run = read_run(run_dir)
    assert run.dh_layers.shape == (2, 2, 2, 8) and np.array_equal(run.dh_norms, run.dh_layers[:, -1, 0])
    assert run.config["layers"] == 2 and run.config["bidirectional"] is True
    result = CliRunner().invoke(cli, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    for name in ("loss.png", "grad_norm.png", "dh_norms.png", "dh_layers.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    bad = CliRunner().invoke(cli, ["train", "--bidirectional", "--k1", "3", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "None with bidirectional" in bad.output


def test_sampling_from_a_stacked_chars_run_and_refusing_a_bidirectional_one(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    common = dict(task="chars", text=str(text), seq_len=10, steps=4, **TINY)
    train(TrainConfig(cell="gru", layers=2, dropout=0.1, out=str(tmp_path / "stack"), **common))
    sample = bptt.training.sampling.sample(tmp_path / "stack", 30, prime="the ", seed=0)
    assert sample.startswith("the ") and len(sample) == 34
    assert sample == bptt.training.sampling.sample(tmp_path / "stack", 30, prime="the ", seed=0)  # no dropout
    train(TrainConfig(cell="gru", bidirectional=True, out=str(tmp_path / "both"), **common))
    with pytest.raises(ValueError, match="is bidirectional: generating reads one character at a time"):
        bptt.training.sampling.sample(tmp_path / "both", 5)
