"""The run folder: old folders still resume and are still read by `bptt evaluate`, `plot`, `sample`."""

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
from click.testing import CliRunner

import bptt
from bptt.cli import cli

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
    summary = bptt.train(resume=old)
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
