"""`bptt train` stopped from outside: SIGTERM (what schedulers and `timeout` send) and Ctrl-C's SIGINT
checkpoint the step reached and exit 143 or 130 with the resume command; a run killed outright
between config.json and its first checkpoint resumes from step 0. Each resumed run ends bitwise
equal to the run that never stopped. The processes are real and stopped by their ids; the tests wait
for files, never for time, so they hold on a loaded machine."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bptt.runs.logs import read_jsonl
from bptt.training.config import TrainConfig
from bptt.training.trainer import TrainingInterrupted, train
from conftest import bptt_command as command, finish

ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
# parity answers at every step, and k1 = 3 of T = 8 makes three updates a batch: a signal mostly lands
# mid-batch, with an LSTM's (h, c) carried into the next window
ARGS = ["--task", "parity", "--cell", "lstm", "--hidden", "5", "--seq-len", "8", "--k1", "3", "--batch-size", "4",
        "--eval-size", "8", "--eval-every", "7", "--record-every", "2", "--optimizer", "adam", "--quiet"]
LIVENESS = 300  # seconds a started process may take to log its first lines, however loaded the machine


def bptt(*args):
    return subprocess.run(command(*args), env=ENV, capture_output=True, text=True, timeout=LIVENESS)


def start(*args):
    return subprocess.Popen(command(*args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lines(process, path, count):
    """Until `path` holds `count` lines, while the process runs (a deadline only against a hang)."""
    deadline = time.monotonic() + LIVENESS
    while not (path.exists() and path.read_text().count("\n") >= count):
        assert process.poll() is None, finish(process)
        assert time.monotonic() < deadline, f"{path} did not reach {count} lines"
        time.sleep(0.02)


def same_run(a, b):
    """Two run folders that trained the same: every checkpoint array and text, and the logs and
    summaries but for the times they record."""
    with np.load(a / "checkpoint.npz") as x, np.load(b / "checkpoint.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
            if key != "elapsed":
                assert np.array_equal(x[key], y[key]), key
    for log in ("metrics.jsonl", "dh_norms.jsonl"):
        strip = [{k: v for k, v in r.items() if k != "elapsed"} for r in read_jsonl(a / log)]
        assert strip == [{k: v for k, v in r.items() if k != "elapsed"} for r in read_jsonl(b / log)], log
    summaries = [json.loads((f / "summary.json").read_text()) for f in (a, b)]
    for summary in summaries:
        summary.pop("wall_seconds")
    assert summaries[0] == summaries[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_the_step_reached_and_the_resumed_run_is_bitwise_the_same(tmp_path, signum):
    stopped, reference = tmp_path / "stopped", tmp_path / "reference"
    process = start("train", "--steps", 10**6, "--checkpoint-every", 10**5, "--out", stopped, *ARGS)
    try:
        wait_for_lines(process, stopped / "metrics.jsonl", 5)
    except BaseException:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    os.kill(process.pid, signum)
    code, _, err = finish(process, timeout=LIVENESS)
    assert code == 128 + signum, err
    match = re.search(rf"interrupted by {signal.Signals(signum).name}; step (\d+) is saved, continue with:  "
                      rf"bptt train --resume {re.escape(str(stopped))}\n", err)
    assert match and "Traceback" not in err, err
    step = int(match[1])
    with np.load(stopped / "checkpoint.npz") as data:
        assert int(data["step"]) == step  # checkpointed at the step reached, not at the last --checkpoint-every
    assert read_jsonl(stopped / "metrics.jsonl")[-1]["step"] == step
    assert not (stopped / "summary.json").exists()
    assert sorted(p.name for p in stopped.iterdir() if p.name.endswith(".tmp")) == []

    total = step + 7
    done = bptt("train", "--resume", stopped, "--steps", total, "--quiet")
    assert done.returncode == 0, done.stderr
    done = bptt("train", "--steps", total, "--checkpoint-every", 10**5, "--out", reference, *ARGS)
    assert done.returncode == 0, done.stderr
    assert [r["step"] for r in read_jsonl(stopped / "metrics.jsonl")] == list(range(1, total + 1))
    same_run(stopped, reference)


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_zero(tmp_path):
    """SIGKILL (nothing to handle) as the first checkpoint is written: config.json and empty logs
    are there, no checkpoint. --resume starts it again from step 0 instead of refusing it."""
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    kill_at_first_checkpoint = (
        "import os, signal, sys; import bptt.training.trainer as trainer; "
        "trainer.write_checkpoint = lambda *args: os.kill(os.getpid(), signal.SIGKILL); "
        "from bptt.cli import cli; cli(sys.argv[1:], prog_name='bptt')")
    done = subprocess.run([sys.executable, "-c", kill_at_first_checkpoint, "train", "--steps", "9", "--out", str(killed),
                           *ARGS], env=ENV, capture_output=True, text=True, timeout=LIVENESS)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert sorted(p.name for p in killed.iterdir()) == [".lock", "config.json", "dh_norms.jsonl", "metrics.jsonl"]

    again = bptt("train", "--steps", 9, "--out", killed, *ARGS)  # a new run there is still refused: it holds one
    assert again.returncode == 2 and f"bptt train --resume {killed}" in again.stderr, again.stderr
    done = bptt("train", "--resume", killed, "--quiet")
    assert done.returncode == 0, done.stderr
    done = bptt("train", "--steps", 9, "--out", reference, *ARGS)
    assert done.returncode == 0, done.stderr
    same_run(killed, reference)


def test_a_folder_holding_only_a_lock_is_no_run_and_can_be_used(tmp_path):
    """Killed between the folder's lock and config.json: nothing to resume, and nothing in the way."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text("")
    done = bptt("train", "--resume", folder, "--quiet")
    assert done.returncode == 2 and f"{folder} holds no run: it has no config.json" in done.stderr, done.stderr
    done = bptt("train", "--steps", 2, "--out", folder, *ARGS)
    assert done.returncode == 0, done.stderr


def test_a_run_that_logged_steps_but_lost_its_checkpoint_is_not_restarted(tmp_path):
    """Starting again from step 0 is only for a run that never got going: logs with records and no
    checkpoint are refused, and kept."""
    run_dir = tmp_path / "run"
    train(TrainConfig(task="parity", hidden=4, seq_len=8, batch_size=4, eval_size=8, steps=3, out=str(run_dir)))
    (run_dir / "checkpoint.npz").unlink()
    before = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="cannot read checkpoint .*No such file"):
        train(resume=run_dir)
    assert (run_dir / "metrics.jsonl").read_text() == before


# ---------------------------------------------------------------- in one process: the library's side
def tiny(out, steps):
    return TrainConfig(task="parity", cell="lstm", hidden=5, seq_len=8, k1=3, batch_size=4, eval_size=8,
                       eval_every=7, record_every=2, optimizer="adam", checkpoint_every=1000, steps=steps,
                       out=str(out))


def test_train_stops_between_updates_on_its_stop_signals_and_puts_the_handlers_back(tmp_path):
    def send(signums):
        def callback(step, record):
            if step == 4:
                for signum in signums:
                    os.kill(os.getpid(), signum)
        return callback

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as info:
        train(tiny(tmp_path / "a", 10), callback=send([signal.SIGTERM]), stop_signals=(signal.SIGINT, signal.SIGTERM))
    assert (info.value.signum, info.value.step, info.value.run_dir) == (signal.SIGTERM, 4, tmp_path / "a")
    assert str(info.value) == f"stopped by SIGTERM at step 4, checkpointed in {tmp_path / 'a'}"
    assert signal.getsignal(signal.SIGTERM) is before and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    train(resume=tmp_path / "a")
    train(tiny(tmp_path / "b", 10))
    same_run(tmp_path / "a", tmp_path / "b")

    with pytest.raises(TrainingInterrupted) as info:  # a second signal leaves at once, in the callback
        train(tiny(tmp_path / "c", 10), callback=send([signal.SIGINT, signal.SIGINT]),
              stop_signals=(signal.SIGINT, signal.SIGTERM))
    assert info.value.step is None and isinstance(info.value, KeyboardInterrupt)
    with np.load(tmp_path / "c" / "checkpoint.npz") as data:
        assert int(data["step"]) == 0  # the checkpoint before: step 4 was never saved
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_stop_signals_ctrl_c_is_a_keyboard_interrupt_as_before(tmp_path):
    def interrupt(step, record):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt) as info:
        train(tiny(tmp_path / "a", 10), callback=interrupt)
    assert not isinstance(info.value, TrainingInterrupted)
    with np.load(Path(tmp_path / "a" / "checkpoint.npz")) as data:
        assert int(data["step"]) == 0
