"""Run folders under real processes: `bptt train` started in loops and in parallel, two writers at
once, a writer killed with SIGKILL, a full and a read-only disk (a small tmpfs, where this machine
lets the test mount one), the umask. Every process a test starts is stopped by the test, by its id."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bptt.runs.checkpoint import read_checkpoint
from bptt.runs.folder import lock_run_folder
from bptt.runs.logs import read_jsonl
from conftest import bptt_command as command, finish

TINY = ["--hidden", "4", "--seq-len", "8", "--batch-size", "4", "--eval-size", "8", "--record-every", "0", "--quiet"]
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def bptt(*args, cwd=None, **kwargs):
    """Run `bptt ARGS` to its end (at most a minute) and return the CompletedProcess."""
    return subprocess.run(command(*args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=60, **kwargs)


def start(*args, cwd=None):
    return subprocess.Popen(command(*args), cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def steps_logged(run_dir):
    return [record["step"] for record in read_jsonl(Path(run_dir) / "metrics.jsonl")]


def temporaries(run_dir):
    return sorted(p.name for p in Path(run_dir).iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------- unique default folders
def check_one_folder_per_seed(tmp_path, seeds, outputs):
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == len(seeds), [f.name for f in folders]
    assert sorted(json.loads((f / "config.json").read_text())["seed"] for f in folders) == sorted(seeds)
    for folder in folders:
        assert folder.name.startswith("adding-gru-")
        assert steps_logged(folder) == [1]  # one run's metrics, none mixed in
        assert json.loads((folder / "summary.json").read_text())["steps"] == 1
    printed = [line.split("run folder: ", 1)[1] for out in outputs for line in out.splitlines()
               if line.startswith("run folder: ")]
    assert sorted(tmp_path / p for p in printed) == folders  # each process named its own folder


def test_runs_started_one_after_another_in_the_same_second_get_a_folder_each(tmp_path):
    seeds = range(6)
    outputs = []
    for seed in seeds:
        done = bptt("train", "--steps", 1, "--seed", seed, *TINY, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    check_one_folder_per_seed(tmp_path, seeds, outputs)


def test_runs_started_in_parallel_get_a_folder_each(tmp_path):
    seeds = range(4)
    processes = [start("train", "--steps", 1, "--seed", seed, *TINY, cwd=tmp_path) for seed in seeds]
    results = [finish(p) for p in processes]
    assert [code for code, _, _ in results] == [0] * len(seeds), [err for _, _, err in results]
    check_one_folder_per_seed(tmp_path, seeds, [out for _, out, _ in results])


# ---------------------------------------------------------------- one writer per folder
def test_two_writers_started_together_into_one_folder_one_is_refused(tmp_path):
    run_dir = tmp_path / "C"
    processes = {cell: start("train", "--cell", cell, "--steps", 300, "--out", run_dir, *TINY)
                 for cell in ("gru", "lstm")}
    results = {cell: finish(p) for cell, p in processes.items()}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 2], results
    winner = next(cell for cell, (code, _, _) in results.items() if code == 0)
    _, _, refused = next(r for r in results.values() if r[0] == 2)
    assert str(run_dir) in refused and "Traceback" not in refused
    assert "is in use: process" in refused or "already holds a run" in refused, refused
    assert json.loads((run_dir / "config.json").read_text())["cell"] == winner
    assert steps_logged(run_dir) == list(range(1, 301))  # complete, no step twice
    assert read_checkpoint(run_dir).step == 300
    assert json.loads((run_dir / "summary.json").read_text())["cell"] == winner
    done = bptt("train", "--resume", run_dir, "--steps", 305, "--quiet")
    assert done.returncode == 0, done.stderr
    assert steps_logged(run_dir) == list(range(1, 306))


def test_a_writer_killed_while_holding_the_lock_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    writer = start("train", "--steps", 10**6, "--checkpoint-every", 5, "--out", run_dir, *TINY)
    try:
        deadline = time.monotonic() + 30
        while not ((run_dir / "checkpoint.npz").exists() and read_checkpoint(run_dir).step >= 5):
            assert writer.poll() is None and time.monotonic() < deadline, "the writer did not get going"
            time.sleep(0.05)
        for args in (["--resume", run_dir], ["--out", run_dir, *TINY], ["--out", run_dir, "--overwrite", *TINY]):
            done = bptt("train", *args)
            assert done.returncode == 2, done.stderr
            assert f"{run_dir} is in use: process {writer.pid} is training in it" in done.stderr
            assert "Traceback" not in done.stderr
        assert writer.poll() is None  # refused without disturbing the writer
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.communicate()
    assert writer.returncode == -signal.SIGKILL
    done_step = read_checkpoint(run_dir).step
    done = bptt("train", "--resume", run_dir, "--steps", done_step + 3, "--quiet")
    assert done.returncode == 0, done.stderr
    assert steps_logged(run_dir) == list(range(1, done_step + 4))
    assert temporaries(run_dir) == []


def test_a_lock_taken_from_python_refuses_bptt_train_until_released(tmp_path):
    run_dir = tmp_path / "run"
    assert bptt("train", "--steps", 2, "--out", run_dir, *TINY).returncode == 0
    with lock_run_folder(run_dir):
        done = bptt("train", "--resume", run_dir, "--steps", 4, "--quiet")
        assert done.returncode == 2 and f"process {os.getpid()}" in done.stderr, done.stderr
        evaluated = bptt("evaluate", run_dir)  # readers take no lock
        assert evaluated.returncode == 0 and "eval_loss" in evaluated.stdout, evaluated.stderr
    done = bptt("train", "--resume", run_dir, "--steps", 4, "--quiet")
    assert done.returncode == 0, done.stderr
    assert steps_logged(run_dir) == [1, 2, 3, 4]


# ---------------------------------------------------------------- disk faults
def test_a_full_disk_ends_with_a_message_and_a_resumable_run(tmpfs):
    disk = tmpfs("disk", size="1m")
    filler = disk / "filler"
    stats = os.statvfs(disk)
    filler.write_bytes(b"x" * (stats.f_bavail * stats.f_frsize - 64 * 1024))  # leave 64 KiB
    run_dir = disk / "run"
    done = bptt("train", "--steps", 400, "--checkpoint-every", 10, "--eval-every", 50, "--out", run_dir, *TINY)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"Error: cannot write {run_dir}" in done.stderr and "No space left on device" in done.stderr
    assert f"bptt train --resume {run_dir}" in done.stderr and "Traceback" not in done.stderr
    assert temporaries(run_dir) == []
    saved = read_checkpoint(run_dir).step
    assert 0 < saved < 400 and not (run_dir / "summary.json").exists()
    filler.unlink()
    done = bptt("train", "--resume", run_dir, "--quiet")
    assert done.returncode == 0, done.stderr
    assert steps_logged(run_dir) == list(range(1, 401))
    assert read_checkpoint(run_dir).step == 400


def test_a_read_only_disk_ends_with_a_message_and_its_runs_stay_readable(tmpfs):
    read_only = tmpfs("ro", size="64k", read_only=True)
    done = bptt("train", "--steps", 2, "--out", read_only / "run", *TINY)
    assert done.returncode == 1
    assert f"Error: cannot write {read_only / 'run'}: Read-only file system" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr

    disk = tmpfs("disk", size="1m")
    run_dir = disk / "run"
    assert bptt("train", "--steps", 2, "--out", run_dir, *TINY).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True, timeout=30)
    done = bptt("train", "--resume", run_dir, "--steps", 4, "--quiet")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"Error: cannot write {run_dir / '.lock'}: Read-only file system" in done.stderr, done.stderr
    evaluated = bptt("evaluate", run_dir)
    assert evaluated.returncode == 0 and "eval_loss" in evaluated.stdout, evaluated.stderr


# ---------------------------------------------------------------- permissions
def test_run_files_follow_the_umask(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(command("train", "--steps", 2, "--out", run_dir, *TINY), env=ENV, capture_output=True,
                          text=True, timeout=60, preexec_fn=lambda: os.umask(0o027))
    assert done.returncode == 0, done.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir()}
    assert modes == {name: 0o640 for name in
                     (".lock", "config.json", "metrics.jsonl", "dh_norms.jsonl", "summary.json", "checkpoint.npz")}
    assert run_dir.stat().st_mode & 0o777 == 0o750
