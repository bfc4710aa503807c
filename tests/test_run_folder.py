"""The run folder: one JSONL policy for every reader, truncation on resume, one checkpoint schema,
config.json, files written whole; and old folders still resume and are read by evaluate, plot, sample."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bptt
from bptt.cli import cli
from bptt.training.config import TrainConfig
from bptt.runs.checkpoint import read_checkpoint, write_checkpoint
from bptt.runs.files import json_safe
from bptt.runs.logs import Logs, read_jsonl, truncate_logs
from bptt.runs.reader import read_run
from bptt.training.run_config import load_config, start_run_folder
from bptt.training.trainer import load_run, train

# Written by the trainer of commit fd31fd3, before the run folder had one owner:
#   lstm-parity  TrainConfig(task="parity", cell="lstm", steps=17, k1=3, k2=5, optimizer="adam",
#                hidden=6, seq_len=8, batch_size=4, eval_size=16, eval_every=4, checkpoint_every=5,
#                record_every=3), stopped by its callback at step 13: the checkpoint is step 10,
#                mid-batch with a carried (h, c); metrics.jsonl then got a torn last line
#   rnn-chars    a finished 3-step chars run (its checkpoint holds the vocabulary)
#   expected.json  what that code returned for the uninterrupted run, and printed for
#                `bptt evaluate lstm-parity` and `bptt sample rnn-chars --length 25 --prime ab --seed 1`
OLD = Path(__file__).parent / "data" / "old_run_folders"


def copy_old(tmp_path, name):
    return Path(shutil.copytree(OLD / name, tmp_path / name))


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_elapsed(records):
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in records]


def test_an_old_run_folder_resumes_to_the_run_that_never_stopped(tmp_path):
    old = copy_old(tmp_path, "lstm-parity")
    expected = json.loads((OLD / "expected.json").read_text())
    summary = train(resume=old)
    assert {k: v for k, v in summary.items() if k != "wall_seconds"} == expected["summary"]

    config = bptt.TrainConfig(**json.loads((old / "config.json").read_text()))
    straight = tmp_path / "straight"
    bptt.train(dataclasses.replace(config, out=str(straight)))
    with np.load(old / "checkpoint.npz") as a, np.load(straight / "checkpoint.npz") as b:
        assert set(a.files) == set(b.files)
        for key in a.files:
            if key != "elapsed":
                assert np.array_equal(a[key], b[key]), key
    assert [r["step"] for r in lines(old / "metrics.jsonl")] == list(range(1, 18))
    assert without_elapsed(lines(old / "metrics.jsonl")) == without_elapsed(lines(straight / "metrics.jsonl"))
    assert lines(old / "dh_norms.jsonl") == lines(straight / "dh_norms.jsonl")


def test_old_run_folders_are_read_by_evaluate_plot_and_sample(tmp_path):
    expected = json.loads((OLD / "expected.json").read_text())
    parity, chars = copy_old(tmp_path, "lstm-parity"), copy_old(tmp_path, "rnn-chars")
    result = CliRunner().invoke(cli, ["evaluate", str(parity)])
    assert result.exit_code == 0 and result.output == expected["evaluate"], result.output
    result = CliRunner().invoke(cli, ["plot", str(parity)])
    assert result.exit_code == 0, result.output
    assert all((parity / name).exists() for name in ("loss.png", "grad_norm.png", "dh_norms.png"))
    result = CliRunner().invoke(cli, ["sample", str(chars), "--length", "25", "--prime", "ab", "--seed", "1"])
    assert result.exit_code == 0 and result.output == expected["sample"], result.output


# ---------------------------------------------------------------- every file, one owner
TINY = dict(task="parity", cell="lstm", hidden=6, seq_len=8, batch_size=4, eval_size=16, eval_every=4,
            checkpoint_every=5, record_every=3, k1=3, k2=5)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def break_line(path, number, text="{not json"):
    rows = path.read_text().splitlines(keepends=True)
    rows[number - 1] = text + "\n"
    path.write_text("".join(rows))


def stopped_run(tmp_path, stop_at=7):
    """A run folder whose last checkpoint (step 5) is older than its logs (step `stop_at`)."""
    def stop(step, record):
        if step == stop_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(steps=12, out=str(tmp_path / "run"), **TINY), callback=stop)
    return tmp_path / "run"


def test_one_jsonl_policy_a_torn_last_line_is_dropped_by_every_reader(tmp_path):
    run_dir = stopped_run(tmp_path)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "lo')
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, 8))
    assert list(read_run(run_dir).steps) == list(range(1, 8))
    train(resume=run_dir)
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, 13))


@pytest.mark.parametrize("log", ["metrics.jsonl", "dh_norms.jsonl"])
def test_one_jsonl_policy_a_broken_line_before_the_last_stops_every_reader(tmp_path, log):
    run_dir = stopped_run(tmp_path)
    break_line(run_dir / log, 1)
    message = rf"{run_dir / log}, line 1: not valid JSON"
    with pytest.raises(ValueError, match=message):
        read_jsonl(run_dir / log)
    with pytest.raises(ValueError, match=message):
        read_run(run_dir)
    before = snapshot(run_dir)
    with pytest.raises(ValueError, match=message):
        train(resume=run_dir)  # the trainer does not skip it (and lose it when it truncates the log)
    assert snapshot(run_dir) == before  # nothing written: no work lost


def test_resume_truncates_both_logs_to_the_checkpoint(tmp_path):
    run_dir = stopped_run(tmp_path)
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, 8))
    truncate_logs(run_dir, 5)
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5]
    assert [r["step"] for r in read_jsonl(run_dir / "dh_norms.jsonl")] == [3]
    (run_dir / "dh_norms.jsonl").write_text('{"dh_norms": [1.0]}\n')
    with pytest.raises(ValueError, match=r"dh_norms.jsonl, line 1: expected a JSON object with an integer 'step'"):
        truncate_logs(run_dir, 0)
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 5  # neither log rewritten


def test_checkpoint_schema_round_trips_and_names_every_key(tmp_path):
    run_dir = stopped_run(tmp_path)
    checkpoint = read_checkpoint(run_dir)
    assert checkpoint.step == 5 and checkpoint.window == 2 and len(checkpoint.carry) == 2  # mid-batch, (h, c)
    with np.load(run_dir / "checkpoint.npz") as data:
        keys = set(data.files)
    params = {f"param/cell.{k}" for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    params |= {"param/readout.weight", "param/readout.bias"}
    assert keys == params | {f"optim/{slot}/{name[len('param/'):]}" for slot in "mv" for name in params} | {
        "optim/t", "step", "window", "elapsed", "skipped", "clipped", "rng_state", "carry/0", "carry/1", "last_eval",
        "fingerprint"}
    write_checkpoint(tmp_path, checkpoint)
    again = read_checkpoint(tmp_path)
    for name in ("step", "window", "elapsed", "skipped", "clipped", "rng_state", "last_eval", "vocab", "fingerprint"):
        assert getattr(again, name) == getattr(checkpoint, name), name
    for name in ("params", "optimizer"):
        assert all(np.array_equal(getattr(again, name)[k], v) for k, v in getattr(checkpoint, name).items())
    assert all(np.array_equal(a, b) for a, b in zip(again.carry, checkpoint.carry))
    assert again.path == str(tmp_path / "checkpoint.npz")


def test_checkpoint_problems_name_the_file_and_change_no_weight(tmp_path):
    run_dir = stopped_run(tmp_path)
    checkpoint = read_checkpoint(run_dir)
    run = load_run(run_dir)
    before = {k: v.copy() for k, v in run.params.items()}
    bad = dataclasses.replace(checkpoint, params={**checkpoint.params, "readout.bias": np.zeros(3)})
    with pytest.raises(ValueError, match=r"does not match its config.json: parameter readout.bias has shape \(3,\)"):
        bad.load_params(run.params)
    assert all(np.array_equal(run.params[k], v) for k, v in before.items())
    with np.load(run_dir / "checkpoint.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "rng_state"}
    np.savez(run_dir / "checkpoint.npz", **arrays)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint.npz lacks \['rng_state'\]"):
        read_checkpoint(run_dir)
    arrays["rng_state"], arrays["window"] = np.array(json.dumps(checkpoint.rng_state)), np.array(9)
    np.savez(run_dir / "checkpoint.npz", **arrays)
    with pytest.raises(ValueError, match=r"does not match its config.json: window index must lie in \[0, 3\)"):
        load_run(run_dir)


def test_config_json_problems_name_the_file_and_the_setting(tmp_path):
    run_dir = stopped_run(tmp_path)
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    assert load_config(run_dir) == TrainConfig(**saved)
    path.write_text(json.dumps({**saved, "hidden": 0}))
    with pytest.raises(ValueError, match=r"config.json: hidden must be a positive integer, got 0"):
        load_config(run_dir)
    path.write_text(json.dumps({**saved, "attention_heads": 2}))
    with pytest.raises(ValueError, match=r"config.json has unknown settings \['attention_heads'\]"):
        load_config(run_dir)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"config.json: expected a JSON object of settings, got a list"):
        load_config(run_dir)
    with pytest.raises(ValueError, match=r"run folder '.*nowhere' does not exist"):
        load_config(tmp_path / "nowhere")


def test_files_hold_no_nan_and_are_written_whole(tmp_path):
    assert json_safe({"a": [1.0, float("nan")], "b": float("inf"), "c": (2, None)}) == {
        "a": [1.0, None], "b": None, "c": [2, None]}
    folder = start_run_folder(tmp_path / "new", TrainConfig(out=str(tmp_path / "new")))
    with Logs(folder) as logs:
        written = logs.write_metrics({"step": 1, "loss": 0.5, "eval_loss": float("nan")})
        logs.write_dh_norms(1, np.array([1.0, 2.0]))
    assert written == {"step": 1, "loss": 0.5, "eval_loss": None}
    assert read_jsonl(folder / "metrics.jsonl") == [written]
    assert read_jsonl(folder / "dh_norms.jsonl") == [{"step": 1, "dh_norms": [1.0, 2.0]}]
    assert json.loads((folder / "config.json").read_text())["out"] == str(tmp_path / "new")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "dh_norms.jsonl", "metrics.jsonl"]


def test_a_checkpoint_of_arrays_in_any_memory_order_reads_back(tmp_path):
    """The reader takes C order only; the writer gives it whatever the live arrays are (an LSTM's
    cell state is a transposed view of its gate-major tape)."""
    checkpoint = read_checkpoint(stopped_run(tmp_path))
    transposed = [np.asfortranarray(part) for part in checkpoint.carry]
    assert not transposed[1].flags.c_contiguous
    write_checkpoint(tmp_path, dataclasses.replace(checkpoint, carry=tuple(transposed)))
    again = read_checkpoint(tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(again.carry, checkpoint.carry))
