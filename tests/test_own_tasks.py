"""A task of one's own, named MODULE:CLASS or registered in the entry-point group bptt.tasks: built as
cls(seq_len=...), checked against the contract it claims, trained, resumed and evaluated like a
built-in, its own metrics in metrics.jsonl, summary.json and `bptt train`'s output."""

import json
import textwrap
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from click.testing import CliRunner

import bptt
from bptt.cli import cli
from bptt.core import import_path
from bptt.training.task_contract import TaskContractError, metric_names
from bptt.training.tasks import make_task, task_factory

# A module the package does not know: an echo task (recall the input one step later, MSE) with a
# metric of its own, and tasks that each break one clause of the contract.
MODULE = '''
import numpy as np
import bptt


class Echo(bptt.Task):
    input_size, output_size = 2, 2
    loss_fn = staticmethod(bptt.mse)

    def sample(self, rng, batch_size):
        T, N = self.seq_len, batch_size
        xs = rng.standard_normal((T, N, 2))
        targets = np.zeros((T, N, 2))
        targets[1:] = xs[:-1]
        mask = np.ones((T, N), bool)
        mask[0] = False
        return bptt.Batch(xs, targets, mask)

    def metrics(self, outputs, batch):
        error = np.abs(outputs - batch.targets)[batch.mask]
        return {"within_half": float(np.mean(error < 0.5))}

    @property
    def baseline(self):
        return {"loss": 1.0, "within_half": 0.383}


class Wrong(Echo):
    """Each subclass below breaks the contract in one place."""


class WideInputs(Echo):
    input_size = 3


class FloatClasses(Echo):
    loss_fn = staticmethod(bptt.softmax_cross_entropy)


class IntValues(Echo):
    def sample(self, rng, batch_size):
        batch = super().sample(rng, batch_size)
        return batch._replace(targets=batch.targets.astype(np.int64))


class ClassTooHigh(Echo):
    loss_fn = staticmethod(bptt.softmax_cross_entropy)

    def sample(self, rng, batch_size):
        batch = super().sample(rng, batch_size)
        return batch._replace(targets=np.full(batch.mask.shape, 5))


class NoLossBaseline(Echo):
    @property
    def baseline(self):
        return {"within_half": 0.4}


class LossAsMetric(Echo):
    def metrics(self, outputs, batch):
        return {"loss": 0.0}


class NotABatch(Echo):
    def sample(self, rng, batch_size):
        return tuple(super().sample(rng, batch_size))


class ShortBatch(Echo):
    def sample(self, rng, batch_size):
        return super().sample(rng, batch_size - 1)


class Nowhere(Echo):
    def sample(self, rng, batch_size):
        return super().sample(rng, batch_size)._replace(mask=np.zeros((self.seq_len, batch_size), bool))


class PastItsLength(Echo):
    def sample(self, rng, batch_size):
        return super().sample(rng, batch_size)._replace(lengths=np.full(batch_size, 2))


class NaNLater(Echo):
    """Keeps the contract for its first batches, then draws a NaN input: caught at that batch."""
    calls = 0

    def sample(self, rng, batch_size):
        NaNLater.calls += 1
        batch = super().sample(rng, batch_size)
        if NaNLater.calls > 4:
            batch.xs[0, 0, 0] = np.nan
        return batch


class Broken(Echo):
    def __init__(self, seq_len):
        raise RuntimeError("no such corpus")


class NotATask:
    pass
'''


@pytest.fixture
def tasks_module(tmp_path, monkeypatch):
    """The module above, importable as `owntasks` from a folder only this test puts on sys.path."""
    (tmp_path / "owntasks.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "owntasks", raising=False)
    monkeypatch.setattr(import_path, "_resolved", {})  # a fresh module per test
    return "owntasks"


def test_a_task_by_import_path_trains_resumes_and_reports_its_own_metric(tasks_module, tmp_path):
    out = tmp_path / "run"
    config = bptt.TrainConfig(task="owntasks:Echo", seq_len=6, hidden=8, steps=60, lr=0.02, eval_every=20,
                              eval_size=64, out=str(out))
    summary = bptt.train(config)
    assert summary["task"] == "owntasks:Echo" and summary["seq_len"] == 6
    assert summary["baseline_within_half"] == 0.383 and 0 <= summary["eval_within_half"] <= 1
    assert summary["eval_loss"] < summary["baseline_loss"]  # it learnt something a blind guess cannot
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval_within_half" in r] == [20, 40, 60]
    assert json.loads((out / "config.json").read_text())["task"] == "owntasks:Echo"
    resumed = bptt.train(bptt.TrainConfig(steps=80), resume=out)
    assert resumed["steps"] == 80 and "eval_within_half" in resumed
    evaluated = bptt.evaluate(out)
    assert evaluated["eval_within_half"] == resumed["eval_within_half"]


def test_the_cli_prints_a_custom_metric_next_to_its_baseline(tasks_module, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--task", "owntasks:Echo", "--steps", "3", "--seq-len", "5",
                                      "--hidden", "4", "--eval-size", "8", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "within_half " in result.output and "(baseline 0.383)" in result.output


def test_an_entry_point_in_bptt_tasks_names_a_task(tasks_module, monkeypatch):
    echo = EntryPoint(name="echo", value="owntasks:Echo", group="bptt.tasks")
    monkeypatch.setattr(import_path, "_registered", {"bptt.tasks": {"echo": echo}})
    assert task_factory("echo").__name__ == "Echo"
    assert bptt.TrainConfig(task="echo").validate().task == "echo"
    task = make_task("echo", 7)
    assert task.seq_len == 7 and task.sample(np.random.default_rng(0), 3).xs.shape == (7, 3, 2)


@pytest.mark.parametrize("name, message", [
    ("WideInputs", "task 'owntasks:WideInputs': sample's xs is float64 (6, 2, 2), expected float (T, 2, 3) "
                   "(D = input_size)"),
    ("FloatClasses", "task 'owntasks:FloatClasses': sample's targets is float64 (6, 2, 2), expected integer "
                     "class indices (6, 2) (T, N) for softmax_cross_entropy"),
    ("IntValues", "task 'owntasks:IntValues': sample's targets is int64 (6, 2, 2), expected float values (6, 2, 2) "
                  "(T, N, O) for mse"),
    ("ClassTooHigh", "task 'owntasks:ClassTooHigh': sample's targets is classes in [5, 5], expected classes in "
                     "[0, 2) (O = output_size)"),
    ("NoLossBaseline", "task 'owntasks:NoLossBaseline': baseline is a dict with keys ['within_half'], expected "
                       "a dict with \"loss\""),
    ("LossAsMetric", "task 'owntasks:LossAsMetric': metrics(outputs, batch)'s key 'loss' is not a metric's name, "
                     "expected a lower-case identifier other than \"loss\""),
    ("NotABatch", "task 'owntasks:NotABatch': sample's result is tuple, expected a bptt.Batch"),
    ("ShortBatch", "task 'owntasks:ShortBatch': sample's xs is float64 (6, 1, 2), expected float (T, 2, 2)"),
    ("Nowhere", "task 'owntasks:Nowhere': sample's mask is False everywhere, expected at least one"),
    ("PastItsLength", "task 'owntasks:PastItsLength': sample's mask is True past a sequence's length, expected "
                      "a loss only at steps t < lengths[n]"),
    ("Broken", "task 'owntasks:Broken': owntasks:Broken(seq_len=6) raised RuntimeError: no such corpus"),
])
def test_a_task_that_breaks_the_contract_is_refused_naming_the_task_the_field_and_both_sides(
        tasks_module, name, message):
    with pytest.raises(ValueError) as info:
        make_task(f"owntasks:{name}", 6)
    assert str(info.value).startswith(message)


def test_a_class_that_is_no_task_and_a_missing_module_are_refused_by_validate(tasks_module):
    with pytest.raises(ValueError, match=r"owntasks:NotATask is not a subclass of bptt.training.task_contract.Task"):
        bptt.TrainConfig(task="owntasks:NotATask").validate()
    with pytest.raises(ValueError, match=r"no module named 'nosuchtasks'"):
        bptt.TrainConfig(task="nosuchtasks:Echo").validate()


def test_every_batch_of_a_custom_task_is_checked_as_it_is_drawn(tasks_module, tmp_path):
    config = bptt.TrainConfig(task="owntasks:NaNLater", seq_len=5, hidden=4, steps=10, eval_size=4, out=str(tmp_path / "r"))
    with pytest.raises(TaskContractError, match="task 'owntasks:NaNLater': sample's xs is not finite everywhere"):
        bptt.train(config)


@pytest.mark.parametrize("task, named", [("owntasks:Broken", "no such corpus"),
                                         ("owntasks:WideInputs", "D = input_size"),
                                         ("nosuchtasks:Echo", "no module named 'nosuchtasks'")])
def test_the_cli_refuses_a_bad_task_with_exit_2_and_no_run_folder(tasks_module, tmp_path, monkeypatch, task, named):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--task", task, "--steps", "2", "--quiet"])
    assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_a_default_run_folder_is_named_after_the_class(tasks_module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bptt.train(bptt.TrainConfig(task="owntasks:Echo", cell="bptt:LSTM", seq_len=4, hidden=4, steps=1, eval_size=4))
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.startswith("Echo-LSTM-")


def test_metric_names_come_from_the_record_not_a_fixed_list():
    record = {"eval_loss": 1.0, "eval_within_half": 0.5, "baseline_within_half": 0.3, "eval_accuracy": 0.9}
    assert metric_names(record) == ["within_half", "accuracy"]
