"""What a run folder refuses, and what it names when it does: a new run in a folder that holds one
(unless --overwrite), a second writer, a resume whose config.json or text changed since the
checkpoint, --steps below the steps done; new folders are unique; a run that fails its settings
check makes no folder."""

import dataclasses
import json
import os
import pickle
import shutil
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from bptt.cli import cli
from bptt.runs import folder as run_folder
from bptt.runs.atomic import RunWriteError
from bptt.runs.checkpoint import read_checkpoint
from bptt.runs.folder import (
    RunExistsError, RunLockedError, claim_run_folder, lock_run_folder, new_run_dir, release_run_folder,
)
from bptt.runs.logs import read_jsonl
from bptt.training.config import SettingError, TrainConfig
from bptt.training.run_config import UNCHECKED_SETTINGS, RunChangedError
from bptt.training.trainer import train

FAST = ["--hidden", "4", "--seq-len", "8", "--batch-size", "4", "--eval-size", "8", "--quiet"]
TINY = dict(task="parity", cell="gru", hidden=4, seq_len=8, batch_size=4, eval_size=8, eval_every=2, checkpoint_every=2)
OLD = Path(__file__).parent / "data" / "old_run_folders"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def snapshot(folder):
    """Every file of a folder with its bytes and modification time, but the lock, which each writer
    that comes (and is refused) takes and releases."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(Path(folder).iterdir()) if p.name != ".lock"}


# ---------------------------------------------------------------- no silent overwrite
def test_out_on_an_existing_run_is_refused_and_the_run_is_unchanged(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", 3, "--out", out, *FAST).exit_code == 0
    before = snapshot(out)
    result = run("train", "--steps", 5, "--cell", "lstm", "--out", out, *FAST)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: {out} already holds a run (config.json, metrics.jsonl, dh_norms.jsonl, "
                                    "summary.json, checkpoint.npz)")
    for way in (f"bptt train --resume {out}", "another --out folder", "--overwrite"):
        assert way in result.stderr
    with pytest.raises(RunExistsError) as info:
        train(TrainConfig(steps=5, out=str(out), **TINY))
    assert info.value.path == str(out) and "overwrite=True" in str(info.value)
    assert snapshot(out) == before  # byte for byte, not even touched


@pytest.mark.parametrize("one_file", ["config.json", "metrics.jsonl", "checkpoint.npz"])
def test_any_file_of_a_run_makes_the_folder_a_run(tmp_path, one_file):
    out = tmp_path / "run"
    out.mkdir()
    (out / one_file).write_text("left from a run")
    result = run("train", "--steps", 1, "--out", out, *FAST)
    assert result.exit_code == 2 and f"already holds a run ({one_file})" in result.stderr
    assert (out / one_file).read_text() == "left from a run"


def test_an_empty_folder_or_one_without_a_run_is_fine(tmp_path):
    empty, other = tmp_path / "empty", tmp_path / "other"
    empty.mkdir()
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for out in (empty, other):
        result = run("train", "--steps", 1, "--out", out, *FAST)
        assert result.exit_code == 0, result.output
        assert json.loads((out / "summary.json").read_text())["steps"] == 1
    assert (other / "notes.txt").read_text() == "mine"


def test_overwrite_deletes_the_old_run_first_and_keeps_other_files(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", 4, "--record-every", 2, "--out", out, *FAST).exit_code == 0
    (out / "notes.txt").write_text("mine")
    result = run("train", "--steps", 2, "--cell", "lstm", "--record-every", 0, "--out", out, "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["cell"] == "lstm"
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]
    assert read_jsonl(out / "dh_norms.jsonl") == []  # the old run's records are gone, not appended to
    assert read_checkpoint(out).step == 2 and (out / "notes.txt").read_text() == "mine"
    summary = train(TrainConfig(steps=1, out=str(out), **TINY), overwrite=True)
    assert summary["cell"] == "gru" and read_checkpoint(out).step == 1


def test_overwrite_is_for_a_new_run_in_out(tmp_path):
    out = tmp_path / "run"
    assert run("train", "--steps", 1, "--out", out, *FAST).exit_code == 0
    result = run("train", "--resume", out, "--overwrite")
    assert result.exit_code == 2 and "cannot be combined with --resume" in result.output
    result = run("train", "--steps", 1, "--overwrite", *FAST)
    assert result.exit_code == 2 and "--overwrite needs --out DIR" in result.output
    with pytest.raises(ValueError, match="cannot be combined with resume"):
        train(resume=out, overwrite=True)


# ---------------------------------------------------------------- unique new folders
def test_new_run_dir_draws_another_name_when_one_is_taken(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder.time, "time", lambda: 1_700_000_000.25)  # every call in one millisecond
    suffixes = iter(["aaaa", "aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(run_folder.secrets, "token_hex", lambda n: next(suffixes))
    first, second = new_run_dir(tmp_path, "adding-gru"), new_run_dir(tmp_path, "adding-gru")
    assert first.name.endswith(".250-aaaa") and second.name.endswith(".250-bbbb")
    assert first.name.startswith("adding-gru-2023") and first.is_dir() and second.is_dir()


def test_new_run_dir_from_many_threads_at_once_gives_a_folder_each(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder.time, "time", lambda: 1_700_000_000.0)
    barrier, made = threading.Barrier(16), []

    def make():
        barrier.wait()
        made.append(new_run_dir(tmp_path / "runs", "sweep"))

    threads = [threading.Thread(target=make) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 16 == len(list((tmp_path / "runs").iterdir()))


@pytest.mark.parametrize("stem", ["", "a/b", "..", 3])
def test_new_run_dir_wants_a_folder_name(tmp_path, stem):
    with pytest.raises(ValueError, match=r"stem must be a folder name without a path separator, e\.g\. 'adding-gru'"):
        new_run_dir(tmp_path, stem)


def test_a_run_that_fails_its_settings_check_makes_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["--k1", "5", "--k2", "3"], ["--task", "chars", "--text", "missing.txt"], ["--task", "chars"]):
        result = run("train", "--steps", 1, *FAST, *args)
        assert result.exit_code == 2, result.output
    with pytest.raises(ValueError, match="cannot read text file"):
        train(TrainConfig(task="chars", text="missing.txt", out=str(tmp_path / "x")))
    assert sorted(os.listdir(tmp_path)) == []


# ---------------------------------------------------------------- one writer
def test_one_lock_per_folder_even_within_one_process(tmp_path):
    with lock_run_folder(tmp_path) as held:
        assert held.held and (tmp_path / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(RunLockedError) as info:
            lock_run_folder(tmp_path)
        assert info.value.pid == os.getpid()
        assert str(info.value) == (f"run folder {tmp_path} is being written by process {os.getpid()}; "
                                   "one writer at a time")
        with pytest.raises(RunLockedError):
            train(TrainConfig(steps=1, out=str(tmp_path), **TINY))
    assert not held.held and (tmp_path / ".lock").read_text() == ""
    lock_run_folder(tmp_path).release()
    with pytest.raises(ValueError, match="does not exist"):
        lock_run_folder(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


def test_releasing_an_empty_folder_removes_it_while_still_locked(tmp_path):
    empty, kept = tmp_path / "empty", tmp_path / "kept"
    release_run_folder(lock_run_folder(empty, create=True), remove_if_empty=True)
    assert not empty.exists()
    lock = lock_run_folder(kept, create=True)
    (kept / "notes.txt").write_text("someone's")
    release_run_folder(lock, remove_if_empty=True)
    assert sorted(p.name for p in kept.iterdir()) == [".lock", "notes.txt"]
    release_run_folder(lock_run_folder(kept))  # released: the folder can be taken again


def test_claim_refuses_a_run_or_clears_it(tmp_path):
    for name in ("config.json", "checkpoint.npz", "plot.png"):
        (tmp_path / name).write_text("x")
    with pytest.raises(RunExistsError) as info:
        claim_run_folder(tmp_path)
    assert info.value.files == ("config.json", "checkpoint.npz")
    claim_run_folder(tmp_path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["plot.png"]


def test_errors_survive_pickling_for_runs_in_other_processes():
    for error in (RunExistsError("d", ["config.json"]), RunLockedError("d", 42), RunChangedError("d", ["lr"]),
                  RunWriteError(28, "No space left on device", "d/checkpoint.npz")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)


# ---------------------------------------------------------------- resume checks what it resumes
def finished(tmp_path, **change):
    config = TrainConfig(steps=4, out=str(tmp_path / "run"), **{**TINY, **change})
    train(config)
    return tmp_path / "run"


def edit_config(run_dir, **change):
    path = run_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}, indent=2))


def test_a_resume_after_config_json_changed_is_refused_naming_the_settings(tmp_path):
    run_dir = finished(tmp_path)
    edit_config(run_dir, seq_len=12, lr=0.5)
    before = snapshot(run_dir)
    with pytest.raises(RunChangedError) as info:
        train(TrainConfig(steps=6), resume=run_dir)
    assert info.value.changes == ("seq_len was 8, config.json now says 12", "lr was 0.01, config.json now says 0.5")
    result = run("train", "--resume", run_dir, "--steps", 6, "--quiet")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"Error: cannot resume {run_dir}: it no longer matches its checkpoint: "
                                    "seq_len was 8, config.json now says 12; lr was 0.01")
    assert snapshot(run_dir) == before


def test_steps_and_a_moved_folder_may_change(tmp_path):
    run_dir = finished(tmp_path)
    moved = Path(shutil.copytree(run_dir, tmp_path / "moved"))  # config.json still names the old out
    edit_config(moved, steps=6)
    train(resume=moved)
    assert [r["step"] for r in read_jsonl(moved / "metrics.jsonl")] == list(range(1, 7))


def test_a_resume_after_the_text_changed_is_refused_naming_the_file(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 30)
    run_dir = finished(tmp_path, task="chars", text=str(text))
    text.write_text("abcabcabd " * 29 + "abcabcabdd")
    with pytest.raises(RunChangedError, match=rf"the text file '{text}' is not the text the run trained on"):
        train(TrainConfig(steps=6), resume=run_dir)
    result = run("train", "--resume", run_dir, "--steps", 6, "--quiet")
    assert result.exit_code == 2 and f"the text file '{text}' is not the text" in result.stderr
    moved = tmp_path / "moved.txt"  # the same text elsewhere is the same data
    moved.write_text("abcabcabd " * 30)
    edit_config(run_dir, text=str(moved))
    assert train(TrainConfig(steps=6), resume=run_dir)["steps"] == 6


def test_resume_steps_below_the_steps_done_is_an_error(tmp_path):
    run_dir = finished(tmp_path)
    before = snapshot(run_dir)
    result = run("train", "--resume", run_dir, "--steps", 3, "--quiet")
    assert result.exit_code == 2
    assert f"Invalid value for '--steps': must be at least 4 (the updates {run_dir} has already done), got 3" in \
        result.output
    with pytest.raises(SettingError, match="steps must be at least 4"):
        train(TrainConfig(steps=3), resume=run_dir)
    assert snapshot(run_dir) == before
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 4


def test_an_old_checkpoint_resumes_unchecked_and_is_checked_from_then_on(tmp_path):
    old = Path(shutil.copytree(OLD / "lstm-parity", tmp_path / "old"))
    assert read_checkpoint(old).fingerprint is None
    train(resume=old)
    recorded = read_checkpoint(old).fingerprint
    saved = TrainConfig(**json.loads((old / "config.json").read_text()))
    assert recorded["settings"] == {k: v for k, v in dataclasses.asdict(saved).items()
                                    if k not in UNCHECKED_SETTINGS}
    edit_config(old, hidden=7)
    with pytest.raises(RunChangedError, match="hidden was 6, config.json now says 7"):
        train(TrainConfig(steps=20), resume=old)
