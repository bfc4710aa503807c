"""A fault while writing a run folder ends with "Error: cannot write PATH: REASON" and exit code 1,
leaves no temporary file, and leaves a run that resumes to the run that never failed (or, before
the first checkpoint, no run at all). The faults here are injected (an OSError raised at the write);
test_run_processes.py makes real ones on a tmpfs where the machine lets it mount one."""

import errno
import json

import numpy as np
import pytest
from click.testing import CliRunner

from bptt.cli import cli
from bptt.runs import logs
from bptt.runs.atomic import RunWriteError
from bptt.runs.checkpoint import read_checkpoint
from bptt.runs.folder import run_files
from bptt.runs.logs import read_jsonl
from bptt.training.config import TrainConfig
from bptt.training.trainer import train

FAST = ["--hidden", "4", "--seq-len", "8", "--batch-size", "4", "--eval-size", "8", "--eval-every", "4",
        "--record-every", "3", "--quiet"]
FULL = "No space left on device"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ended_cleanly(result, code):
    """Exit `code` through click, not an exception escaping the command (which would be a traceback)."""
    return result.exit_code == code and isinstance(result.exception, (SystemExit, type(None)))


def fill_disk_at_checkpoint(monkeypatch, number):
    """Make the `number`-th checkpoint written from now on fail halfway, as a full disk does."""
    real, calls = np.savez, [0]

    def savez(file, **arrays):
        calls[0] += 1
        if calls[0] == number:
            file.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, FULL)
        return real(file, **arrays)

    monkeypatch.setattr(np, "savez", savez)


class FullAfter:
    """A log file that takes `lines` lines, then writes part of the next one and reports a full disk."""

    def __init__(self, file, lines):
        self.file, self.left = file, lines

    def write(self, text):
        if self.left == 0:
            self.file.write(text[:12])
            self.file.flush()
            raise OSError(errno.ENOSPC, FULL)
        self.left -= 1
        return self.file.write(text)

    def flush(self):
        self.file.flush()

    def close(self):
        self.file.close()


def without_elapsed(records):
    return [{k: v for k, v in r.items() if k != "elapsed"} for r in records]


def same_run(a, b):
    """Two run folders hold the same weights, state and logs (elapsed times aside)."""
    with np.load(a / "checkpoint.npz") as x, np.load(b / "checkpoint.npz") as y:
        assert set(x.files) == set(y.files)
        for key in x.files:
            if key != "elapsed":
                assert np.array_equal(x[key], y[key]), key
    assert without_elapsed(read_jsonl(a / "metrics.jsonl")) == without_elapsed(read_jsonl(b / "metrics.jsonl"))
    assert read_jsonl(a / "dh_norms.jsonl") == read_jsonl(b / "dh_norms.jsonl")


def hidden_temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_full_disk_at_a_checkpoint_ends_with_a_message_and_the_run_resumes(tmp_path, monkeypatch):
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert run("train", "--steps", 12, "--checkpoint-every", 5, "--out", straight, *FAST).exit_code == 0
    fill_disk_at_checkpoint(monkeypatch, 3)  # steps 0 and 5 are saved, step 10 is not
    result = run("train", "--steps", 12, "--checkpoint-every", 5, "--out", out, *FAST)
    assert ended_cleanly(result, 1), result.output
    assert f"Error: cannot write {out / 'checkpoint.npz'}: {FULL}" in result.stderr
    assert f"continue it with:  bptt train --resume {out}" in result.stderr
    assert hidden_temporaries(out) == []
    assert read_checkpoint(out).step == 5 and not (out / "summary.json").exists()
    monkeypatch.undo()
    result = run("train", "--resume", out, "--quiet")
    assert result.exit_code == 0, result.output
    same_run(out, straight)


def test_a_full_disk_at_a_log_line_leaves_a_torn_line_that_resuming_drops(tmp_path, monkeypatch):
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert run("train", "--steps", 12, "--checkpoint-every", 5, "--out", straight, *FAST).exit_code == 0
    real_init = logs.Logs.__init__

    def init(self, run_dir):
        real_init(self, run_dir)
        self._metrics = FullAfter(self._metrics, lines=7)

    monkeypatch.setattr(logs.Logs, "__init__", init)
    result = run("train", "--steps", 12, "--checkpoint-every", 5, "--out", out, *FAST)
    assert ended_cleanly(result, 1), result.output
    assert f"Error: cannot write {out / 'metrics.jsonl'}: {FULL}" in result.stderr
    assert (out / "metrics.jsonl").read_text().splitlines()[-1] == '{"step": 8, '  # torn
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == list(range(1, 8))
    monkeypatch.undo()
    assert run("train", "--resume", out, "--quiet").exit_code == 0
    same_run(out, straight)


def test_the_library_raises_run_write_error_an_oserror_naming_the_file(tmp_path, monkeypatch):
    fill_disk_at_checkpoint(monkeypatch, 2)
    config = TrainConfig(task="parity", hidden=4, seq_len=8, batch_size=4, eval_size=8, steps=6, checkpoint_every=3,
                         out=str(tmp_path / "run"))
    with pytest.raises(RunWriteError) as info:
        train(config)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert info.value.filename == str(tmp_path / "run" / "checkpoint.npz")
    assert str(info.value) == f"cannot write {tmp_path / 'run' / 'checkpoint.npz'}: {FULL}"


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_no_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    fill_disk_at_checkpoint(monkeypatch, 1)
    result = run("train", "--steps", 2, "--out", out, *FAST)
    assert ended_cleanly(result, 1) and f"cannot write {out / 'checkpoint.npz'}: {FULL}" in result.stderr
    assert "--resume" not in result.stderr  # nothing to resume
    assert run_files(out) == [] and hidden_temporaries(out) == []
    fill_disk_at_checkpoint(monkeypatch, 1)
    monkeypatch.chdir(tmp_path)
    result = run("train", "--steps", 2, *FAST)  # a default folder: taken away again
    assert ended_cleanly(result, 1) and f"{FULL}" in result.stderr
    assert list((tmp_path / "runs").iterdir()) == []
    monkeypatch.undo()
    result = run("train", "--steps", 2, "--out", out, *FAST)  # the same --out, no --overwrite needed
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("make_path, reason", [
    (lambda tmp: (tmp / "afile").write_text("") or tmp / "afile" / "sub", "Not a directory"),
    (lambda tmp: tmp / ("x" * 300), "File name too long"),
])
def test_a_folder_that_cannot_be_made_ends_with_a_message(tmp_path, make_path, reason):
    out = make_path(tmp_path)
    result = run("train", "--steps", 1, "--out", out, *FAST)
    assert ended_cleanly(result, 1), result.output
    assert result.stderr.strip() == f"Error: cannot write {out}: {reason}"


def test_stale_temporaries_are_swept_when_a_writer_next_takes_the_folder(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", 2, "--out", out, *FAST).exit_code == 0
    stale = [".checkpoint.npz.1a2b3c4d.tmp", ".metrics.jsonl.tmpab12.tmp", ".config.json.x.tmp"]
    others = [".notes.tmp", "keep.tmp", "checkpoint.npz.tmp"]  # not a temporary of the run's writes
    for name in stale + others:
        (out / name).write_bytes(b"left by a killed writer")
    assert run("evaluate", out).exit_code == 0  # a reader changes nothing
    assert set(hidden_temporaries(out)) == set(stale + others)
    assert run("train", "--resume", out, "--steps", 3, "--quiet").exit_code == 0
    assert hidden_temporaries(out) == sorted(others)
    assert json.loads((out / "summary.json").read_text())["steps"] == 3


def test_a_log_that_cannot_be_read_stops_a_resume_with_a_message(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", 2, "--out", out, *FAST).exit_code == 0
    (out / "dh_norms.jsonl").unlink()
    (out / "dh_norms.jsonl").mkdir()  # unreadable as a file, even for root
    result = run("train", "--resume", out, "--steps", 3, "--quiet")
    assert ended_cleanly(result, 2), result.output
    assert f"{out / 'dh_norms.jsonl'}: is not a regular file (it is a folder)" in result.stderr
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]  # nothing truncated or rewritten
