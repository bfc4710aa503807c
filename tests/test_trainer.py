"""The training loop: short runs learn, interrupted runs resume bitwise, non-finite steps never
reach the weights, the run folder holds what it promises."""

import dataclasses
import json

import numpy as np
import pytest

import bptt
from bptt.core.truncation import tbptt_gradient
from bptt.modes.finite_diff import relative_error
from bptt.training import trainer
from bptt.training.config import TrainConfig
from bptt.training.optim import Optimizer
from bptt.runs.logs import read_jsonl
from bptt.training.trainer import TrainingStopped, train

TINY = dict(hidden=6, seq_len=8, batch_size=4, eval_size=16, eval_every=4, checkpoint_every=5,
            record_every=3)


def load_checkpoint(run_dir):
    with np.load(run_dir / "checkpoint.npz") as data:
        return {k: data[k] for k in data.files}


def without_elapsed(records):
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in records]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("cell,stop_at,exc,init", [
    ("lstm", 7, KeyboardInterrupt, "default"), ("gru", 13, Interrupt, "orthogonal"),
    ("rnn", 10, KeyboardInterrupt, "default"), ("rnn-relu", 12, Interrupt, "identity"),
])
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, cell, stop_at, exc, init):
    # parity with TBPTT(3, 5) on T = 8: checkpoints fall mid-batch, with a carried state; a resumed
    # run takes its weights from the checkpoint, never from a second initialisation
    config = TrainConfig(task="parity", cell=cell, steps=17, k1=3, k2=5, optimizer="momentum", init=init,
                         **TINY)
    straight = train(dataclasses.replace(config, out=str(tmp_path / "straight")))

    def stop(step, record):
        if step == stop_at:
            raise exc("stop")

    broken = tmp_path / "broken"
    with pytest.raises(exc):
        train(dataclasses.replace(config, out=str(broken)), callback=stop)
    assert load_checkpoint(broken)["step"] == 5 * (stop_at // 5)  # the last checkpoint, not stop_at
    with open(broken / "metrics.jsonl", "a") as f:
        f.write('{"step": 99, "loss')  # what a kill in the middle of a write leaves behind
    resumed = train(resume=broken)

    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(broken)
    assert set(a) == set(b)
    for key in a:
        if key != "elapsed":
            assert np.array_equal(a[key], b[key]), key
    metrics_a = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    metrics_b = read_jsonl(broken / "metrics.jsonl")
    assert [r["step"] for r in metrics_b] == list(range(1, 18))  # each step once
    assert without_elapsed(metrics_a) == without_elapsed(metrics_b)
    dh_a = read_jsonl(tmp_path / "straight" / "dh_norms.jsonl")
    assert [r["step"] for r in dh_a] == [3, 6, 9, 12, 15]
    assert dh_a == read_jsonl(broken / "dh_norms.jsonl")
    assert {k: v for k, v in straight.items() if k != "wall_seconds"} == {
        k: v for k, v in resumed.items() if k != "wall_seconds"}


def test_resume_can_extend_a_finished_run(tmp_path):
    config = TrainConfig(task="adding", cell="gru", steps=10, **TINY)
    train(dataclasses.replace(config, out=str(tmp_path / "a"), steps=20))
    train(dataclasses.replace(config, out=str(tmp_path / "b")))
    train(dataclasses.replace(config, steps=20), resume=tmp_path / "b")
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    for key in a:
        if key not in ("elapsed", "last_eval"):
            assert np.array_equal(a[key], b[key]), key


def test_run_folder_contents(tmp_path):
    config = TrainConfig(task="temporal-order", cell="rnn", steps=6, seq_len=12, hidden=5, batch_size=3,
                         eval_size=8, eval_every=3, record_every=2, out=str(tmp_path / "run"))
    summary = train(config)
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    assert saved == dataclasses.asdict(config)
    records = read_jsonl(run / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 7))
    for r in records:
        assert {"step", "loss", "grad_norm", "clipped", "lr", "elapsed"} <= set(r)
        assert r["clipped"] == (r["grad_norm"] > config.clip_threshold)
    assert "eval_loss" in records[2] and "eval_loss" not in records[1]
    dh = read_jsonl(run / "dh_norms.jsonl")
    assert [r["step"] for r in dh] == [2, 4, 6] and all(len(r["dh_norms"]) == 12 for r in dh)
    on_disk = json.loads((run / "summary.json").read_text())
    assert on_disk == summary
    assert summary["steps"] == 6 and summary["baseline_loss"] == pytest.approx(np.log(4))
    assert summary["eval_loss"] == records[-1]["eval_loss"]
    assert bptt.evaluate(run)["eval_loss"] == pytest.approx(summary["eval_loss"], rel=1e-12)
    assert not list(run.glob("*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_short_runs_learn_adding(tmp_path, cell):
    config = TrainConfig(task="adding", cell=cell, hidden=12, seq_len=10, steps=250, batch_size=16,
                         lr=0.02, eval_size=200, eval_every=200, record_every=0, out=str(tmp_path / cell))
    summary = train(config)
    assert summary["eval_loss"] < 0.35 * summary["baseline_loss"]


def test_truncated_training_learns_parity(tmp_path):
    # running parity needs one step of memory: TBPTT(4, 8) is enough, the windows carry the state
    config = TrainConfig(task="parity", cell="gru", hidden=8, seq_len=20, steps=600, batch_size=16, k1=4, k2=8,
                         eval_size=100, eval_every=600, record_every=0, lr=0.02, out=str(tmp_path / "p"))
    summary = train(config)
    assert summary["eval_loss"] < 0.3 * summary["baseline_loss"] and summary["eval_accuracy"] > 0.95


def diverging(tmp_path, on_nonfinite):
    return TrainConfig(task="adding", cell="rnn-relu", hidden=8, seq_len=30, steps=30, optimizer="sgd", lr=1e4,
                       clip="none", on_nonfinite=on_nonfinite, checkpoint_every=1000, record_every=0,
                       eval_size=16, eval_every=1000, out=str(tmp_path / on_nonfinite))


def test_non_finite_step_stops_with_the_last_good_weights_saved(tmp_path):
    with pytest.raises(TrainingStopped, match=r"step (\d+): non-finite") as info:
        train(diverging(tmp_path, "stop"))
    bad_step = int(info.value.args[0].split()[1].rstrip(":"))
    saved = load_checkpoint(tmp_path / "stop")
    assert int(saved["step"]) == bad_step - 1
    assert all(np.isfinite(v).all() for k, v in saved.items() if k.startswith("param/"))
    assert len(read_jsonl(tmp_path / "stop" / "metrics.jsonl")) == bad_step - 1


def test_non_finite_steps_can_be_skipped_and_counted(tmp_path):
    summary = train(diverging(tmp_path, "skip"))
    records = read_jsonl(tmp_path / "skip" / "metrics.jsonl")
    skipped = [r for r in records if r.get("skipped")]
    assert summary["skipped_steps"] == len(skipped) > 0
    assert all(r["loss"] is None for r in skipped)
    saved = load_checkpoint(tmp_path / "skip")
    assert all(np.isfinite(v).all() for k, v in saved.items() if k.startswith("param/"))


@pytest.mark.parametrize("on_nonfinite", ["skip", "stop"])
def test_an_update_that_makes_the_weights_non_finite_never_reaches_them(tmp_path, on_nonfinite):
    # Adam's first step moves every weight by about lr: 1e308 overflows although the gradient is finite
    config = TrainConfig(task="adding", cell="gru", steps=3, lr=1e308, optimizer="adam", on_nonfinite=on_nonfinite,
                         out=str(tmp_path / "run"), **TINY)
    initial = trainer.TrainingRun(config).params
    if on_nonfinite == "skip":
        summary = train(config)
        assert summary["skipped_steps"] == 3 and summary["eval_loss"] is not None
        assert [r.get("skipped") for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [True] * 3
    else:
        with pytest.raises(TrainingStopped, match=r"step 1: non-finite weights \(the update at lr 1e\+308 would make "
                                                  r"cell\.\S+ non-finite; it was undone\); the weights of step 0"):
            train(config)
    saved = load_checkpoint(tmp_path / "run")
    assert int(saved["step"]) == (3 if on_nonfinite == "skip" else 0)
    for name, value in initial.items():
        assert np.array_equal(saved[f"param/{name}"], value), name  # never moved
    assert int(saved["optim/t"]) == 0  # the optimizer's state was put back too


@pytest.mark.parametrize("change,message", [
    (dict(task="sorting"), "task must be a built-in task"),
    (dict(k1=5, k2=3), r"k2 must be >= k1 = 5"),
    (dict(k2=3), "give k1 too"),
    (dict(clip_threshold=0.0), "clip_threshold"),
    (dict(clip_threshold=-1.0), "clip_threshold"),
    (dict(steps=0), "steps"),
    (dict(task="chars"), "text file"),
    (dict(task="chars", text="/nonexistent/file.txt"), "cannot read text file"),
])
def test_bad_settings_are_value_errors(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        train(TrainConfig(out=str(tmp_path / "x"), **change))


def test_unreadable_checkpoint_is_a_value_error(tmp_path):
    config = TrainConfig(steps=2, out=str(tmp_path / "r"), **{k: v for k, v in TINY.items()})
    train(config)
    path = tmp_path / "r" / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        train(resume=tmp_path / "r")


@pytest.mark.parametrize("clip,threshold,expect", [("value", 1e-9, True), ("value", 1e9, False),
                                                   ("norm", 1e-9, True), ("none", 1.0, False)])
def test_clipped_flag_follows_the_rule(tmp_path, clip, threshold, expect):
    config = TrainConfig(steps=3, clip=clip, clip_threshold=threshold, out=str(tmp_path / "c"), **TINY)
    summary = train(config)
    records = read_jsonl(tmp_path / "c" / "metrics.jsonl")
    assert [r["clipped"] for r in records] == [expect] * 3
    assert summary["clipped_steps"] == 3 * expect
    assert all(r["grad_norm"] > 0 for r in records)


class FrozenWeights(Optimizer):
    """Records the gradient of every update and leaves the weights alone: training at fixed weights."""

    def __init__(self, updates):
        super().__init__(1.0)
        self.updates = updates

    def step(self, params, grads):
        self.updates.append({name: g.copy() for name, g in grads.items()})
        return super().step(params, grads)

    def _update(self, name, p, g, lr):
        pass


@pytest.mark.parametrize("task,k1,k2", [("parity", 3, 5), ("parity", 4, 4), ("adding", 3, 4), ("adding", 8, 8)])
def test_training_updates_take_the_windows_of_tbptt_gradient(tmp_path, monkeypatch, task, k1, k2):
    # At fixed weights, the updates of the first batch are tbptt_gradient's windows: same windows,
    # loss masks and carried states. Adding's windows before the last carry the state with no update.
    updates, losses = [], []
    monkeypatch.setattr(trainer, "make_optimizer", lambda *args, **kwargs: FrozenWeights(updates))
    config = TrainConfig(task=task, cell="lstm", k1=k1, k2=k2, clip="none", steps=1, out=str(tmp_path / "run"),
                         **TINY)
    run = trainer.TrainingRun(config, tmp_path / "run")  # the weights and data RNG that train() starts from
    run.next_batch()
    batch = run.batch
    reference = tbptt_gradient(run.cell, run.readout, run.task.loss_fn, batch.xs, batch.targets, batch.mask, k1, k2)
    counts = [int(batch.mask[lf:end].sum()) for _, lf, end in reference.windows if batch.mask[lf:end].any()]
    total = int(batch.mask.sum())

    train(dataclasses.replace(config, steps=len(counts)), callback=lambda step, record: losses.append(record["loss"]))
    assert len(updates) == len(counts) == {("parity", 3): 3, ("parity", 4): 2}.get((task, k1), 1)
    first = reference.windows[0].end if task == "parity" else len(batch.xs)  # the first update's steps
    alone = tbptt_gradient(run.cell, run.readout, run.task.loss_fn, batch.xs[:first], batch.targets[:first],
                           batch.mask[:first], k1, k2)
    for name, g in alone.params.items():
        assert np.array_equal(updates[0][name], g), name  # bitwise: the same computation
    assert losses[0] == alone.loss
    for name, g in reference.params.items():  # every window, each weighted as tbptt_gradient weighs it
        weighted = sum(update[name] * count / total for update, count in zip(updates, counts))
        assert relative_error(weighted, g) < 1e-13, name
    assert sum(loss * count / total for loss, count in zip(losses, counts)) == pytest.approx(reference.loss, rel=1e-13)
