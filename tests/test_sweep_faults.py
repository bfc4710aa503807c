"""`bptt sweep` when the world is not kind: folders it cannot write, a full disk, a read-only
folder, a results.csv that is not UTF-8, a refused scheduler, worker temporaries left by killed
workers, failed runs run again, too many workers asked for, and a results.csv a spreadsheet opens.

Write errors are made in this process (the one that writes DIR) by making a system call fail as the
system would: `os.fsync` of a checkpoint with ENOSPC for a full disk, `os.open` and `os.mkdir`
under DIR with EROFS for a read-only file system. The workers are real spawned processes.
"""

import csv
import errno
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bptt.cli import cli
from test_sweep_spec import TINY, sweep

GRID = TINY + "[grid]\nseed = [0, 1]\n"


def results(out):
    with open(Path(out) / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in ("wall_seconds", "worker")} for row in rows]


def temporaries(folder):
    return [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- folders that cannot be written
def test_an_out_folder_under_a_file_is_a_write_error_not_a_traceback(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = sweep(tmp_path, GRID, out=tmp_path / "afile" / "sub")
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"Error: cannot write {tmp_path / 'afile' / 'sub'}: Not a directory"


def test_runs_being_a_file_is_a_write_error_and_the_folder_stays_as_it_was(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs").write_text("a file where the runs go")
    result = sweep(tmp_path, GRID)
    assert result.exit_code == 1, result.output
    assert f"Error: cannot write {out / 'runs'}: it is a file, not a folder" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in out.iterdir()) == ["runs"]  # not even its lock file is left


@pytest.fixture
def reference(tmp_path_factory):
    """The two-run sweep, uninterrupted."""
    folder = tmp_path_factory.mktemp("reference")
    result = sweep(folder, GRID, "--workers", 2)
    assert result.exit_code == 0, result.output
    return folder / "out"


def test_a_full_disk_stops_the_sweep_with_the_file_it_could_not_write_and_loses_nothing(tmp_path, monkeypatch,
                                                                                     reference):
    real_fsync = os.fsync

    def fsync(fd):  # the disk fills up when a checkpoint reaches DIR
        if "checkpoint.npz" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("finds the file being written through /proc")
    monkeypatch.setattr(os, "fsync", fsync)
    result = sweep(tmp_path, GRID, "--workers", 2)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert result.exit_code == 1, result.output
    out = tmp_path / "out"
    assert f"Error: cannot write {out / 'runs'}" in result.output
    assert "checkpoint.npz: No space left on device" in result.output
    assert "the sweep stopped (done 0, failed 0, to go 2 of 2); every run is saved" in result.output
    assert "once the folder is writable again" in result.output and "Traceback" not in result.output
    assert not temporaries(out) and not (out / ".workers").exists()
    again = sweep(tmp_path, GRID, "--workers", 2)  # the disk has room again
    assert again.exit_code == 0, again.output
    assert without_timing(results(out)) == without_timing(results(reference))


def _read_only(monkeypatch, root):
    """Every write under `root` fails as on a read-only file system (EROFS)."""
    root = os.fspath(root)
    real_open, real_mkdir = os.open, os.mkdir
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def under(path):
        return os.path.abspath(os.fspath(path)).startswith(root)

    def open_(path, flags, *args, **kwargs):
        if flags & writing and under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)


def test_a_read_only_folder_is_a_write_error_naming_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    _read_only(monkeypatch, out)
    result = sweep(tmp_path, GRID)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == f"Error: cannot write {out / '.lock'}: Read-only file system"
    assert list(out.iterdir()) == []


def test_a_folder_that_becomes_read_only_mid_sweep_stops_it(tmp_path, monkeypatch):
    real_fsync = os.fsync
    calls = []

    def fsync(fd):  # the first file of a run reaching DIR makes it read-only
        calls.append(fd)
        if len(calls) == 2:
            _read_only(monkeypatch, tmp_path / "out" / "runs")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    result = sweep(tmp_path, GRID, "--workers", 1)
    assert result.exit_code == 1, result.output
    assert "Read-only file system" in result.output and "the sweep stopped" in result.output
    assert "Traceback" not in result.output


def test_a_folder_it_may_not_write(tmp_path, tmpfs):
    """Without write permission (root writes anyway: for root, a read-only file system instead)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        out, reason = tmpfs("disk", size="64k", read_only=True), "Read-only file system"
        result = sweep(tmp_path, GRID, out=out)
    else:
        out, reason = tmp_path / "out", "Permission denied"
        out.mkdir()
        out.chmod(0o555)
        try:
            result = sweep(tmp_path, GRID)
        finally:
            out.chmod(0o755)
    assert result.exit_code == 1 and f"Error: cannot write {out / '.lock'}: {reason}" in result.output
    assert list(out.iterdir()) == []


def test_a_results_csv_that_is_not_utf8_is_replaced_not_read(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_bytes(b"seed,run,worker\n\xff\xfe,runs/seed=0,\x80\n")
    result = sweep(tmp_path, GRID, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert [row["status"] for row in results(out)] == ["done", "done"]


# ---------------------------------------------------------------- a refused start leaves no folder
def test_a_refused_scheduler_leaves_no_folder(tmp_path, distributed):
    result = sweep(tmp_path, GRID, "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "0.5")
    assert result.exit_code == 2 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    ((), "needs TLS settings: the cluster's CA certificate and a client certificate signed by it; missing "
         "--tls-ca-file (or Dask's config distributed.comm.tls.ca-file) and --tls-cert"),
    (("--tls-ca-file", "missing-ca.pem", "--tls-cert", "missing.pem"), "--tls-ca-file missing-ca.pem: cannot read it: "
                                                                        "No such file or directory"),
])
def test_tls_without_usable_settings_is_one_clear_message(tmp_path, distributed, monkeypatch, args, expected):
    for name in [n for n in os.environ if n.startswith("DASK_DISTRIBUTED__COMM__TLS")]:
        monkeypatch.delenv(name)
    result = sweep(tmp_path, GRID, "--scheduler", "tls://127.0.0.1:1", *args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Exception ignored" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_tls_files_without_a_tls_scheduler_are_refused(tmp_path):
    result = sweep(tmp_path, GRID, "--tls-cert", "client.pem")
    assert result.exit_code == 2 and "are for --scheduler tls://" in result.output


def test_a_scheduler_neither_tls_nor_on_this_machine_gets_a_warning(tmp_path, distributed):
    result = sweep(tmp_path, GRID, "--scheduler", "tcp://192.0.2.1:8786", "--connect-timeout", "0.3")  # TEST-NET-1
    assert result.exit_code == 2
    assert ("warning: tcp://192.0.2.1:8786 is neither TLS nor on this machine. Dask sends work and results with "
            "pickle, and a plain tcp:// scheduler has no authentication") in result.output
    quiet = sweep(tmp_path, GRID, "--scheduler", "tcp://127.0.0.1:1", "--connect-timeout", "0.3")
    assert "warning" not in quiet.output


# ---------------------------------------------------------------- workers and their temporaries
def test_workers_are_capped_at_the_runs_and_the_cores_with_a_note(tmp_path):
    from bptt.sweep.engines import local_cores
    from bptt.sweep.run import SweepProgress, _local_workers

    notes = []

    class Notes(SweepProgress):
        def note(self, message):
            notes.append(message)

    assert _local_workers(99999999999999, 10**6, Notes()) == local_cores()
    assert notes == [f"note: --workers 99999999999999 capped at {local_cores()}: one per core this process may use "
                     f"({local_cores()})"]
    result = CliRunner().invoke(cli, ["sweep", str(_write(tmp_path, TINY + "[grid]\nseed = [0]\n")), "--out",
                                      str(tmp_path / "out"), "--workers", "99999999999999"])
    assert result.exit_code == 0, result.output
    assert "note: --workers 99999999999999 capped at 1: one per run to do (1)" in result.output
    assert [row["worker"] for row in results(tmp_path / "out")] == ["local-1"]


def _write(tmp_path, text):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_worker_temporaries_stay_in_the_sweep_folder_and_the_next_sweep_removes_a_killed_workers(
        tmp_path, monkeypatch):
    system_tmp = tmp_path / "tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))  # the spawned workers' temporary folder
    out = tmp_path / "out"
    left = out / ".workers" / "bptt-sweep-local-1-abcd1234" / "run"  # what a killed local worker leaves
    left.mkdir(parents=True)
    (left / "checkpoint.npz").write_bytes(b"x" * 1000)
    result = sweep(tmp_path, GRID, "--workers", 2)
    assert result.exit_code == 0, result.output
    assert not (out / ".workers").exists()
    assert list(system_tmp.iterdir()) == []


def test_a_workers_link_in_the_folder_is_removed_not_followed(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".workers").symlink_to(keep)
    result = sweep(tmp_path, GRID, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert (keep / "notes.txt").read_text() == "mine" and not os.path.lexists(out / ".workers")


# ---------------------------------------------------------------- failed runs run again
FLAKY = '''
"""A GRU that fails while the file FAIL exists: in its constructor for H = 5 (a run that fails before
its first checkpoint), after 100 steps of its own for H = 4 (after a checkpoint)."""
import os
import bptt

FAIL = {fail!r}


class FlakyGRU(bptt.GRU):
    def __init__(self, input_size, hidden_size, **kwargs):
        if hidden_size == 5 and os.path.exists(FAIL):
            raise RuntimeError("the constructor failed")
        super().__init__(input_size, hidden_size, **kwargs)
        self.calls = 0

    def sequence(self, *args, **kwargs):
        self.calls += 1
        if self.hidden_size == 4 and self.calls > 15 and os.path.exists(FAIL):
            raise RuntimeError("a step failed")
        return super().sequence(*args, **kwargs)
'''


def test_failed_runs_run_again_from_their_checkpoint_or_from_the_start(tmp_path, monkeypatch):
    modules = tmp_path / "modules"
    modules.mkdir()
    fail = tmp_path / "FAIL"
    (modules / "flaky_cell.py").write_text(FLAKY.format(fail=str(fail)))
    monkeypatch.syspath_prepend(str(modules))  # on this process's path only: spawned workers start with it
    spec = (TINY.replace("steps = 20", "steps = 30").replace("hidden = 4\n", "") + 'cell = "flaky_cell:FlakyGRU"\n'
            "[grid]\nhidden = [4, 5]\n")
    fail.write_text("")
    first = sweep(tmp_path, spec, "--workers", 1, "--sync-seconds", 1000)
    assert first.exit_code == 1, first.output
    assert "2 runs: 0 done, 2 failed" in first.output
    assert "failed  hidden=4: RuntimeError: a step failed" in first.output  # shown as it happens, with --quiet
    assert "failed runs (2):\n  hidden=4: RuntimeError: a step failed\n  hidden=5: RuntimeError: the constructor" \
           in first.output
    runs = tmp_path / "out" / "runs"
    assert (runs / "hidden=4" / "checkpoint.npz").exists() and not (runs / "hidden=5").exists()
    record = (tmp_path / "out" / "record.jsonl").read_text().splitlines()
    assert len(record) == 2 and '"status": "failed"' in record[0]

    fail.unlink()
    second = sweep(tmp_path, spec, "--workers", 1)
    assert second.exit_code == 0, second.output
    assert [(row["run"], row["status"], row["error"]) for row in results(tmp_path / "out")] == [
        ("runs/hidden=4", "done", ""), ("runs/hidden=5", "done", "")]

    import bptt
    from test_sweep_processes import assert_same_run

    plain = bptt.TrainConfig(**{**_settings(spec), "hidden": 4, "out": str(tmp_path / "plain")})
    bptt.train(plain)
    assert_same_run(runs / "hidden=4", tmp_path / "plain")  # resumed from its checkpoint, exactly


def _settings(spec_text):
    from bptt.sweep.spec import parse_spec

    return {k: v for k, v in parse_spec(spec_text).base.items()}


# ---------------------------------------------------------------- what it records and writes
def test_results_are_written_once_at_the_end_and_each_finished_run_appends_one_line(tmp_path, monkeypatch):
    import bptt.sweep.run as run_module

    written = []
    real = run_module.write_results
    monkeypatch.setattr(run_module, "write_results", lambda *a, **k: (written.append(1), real(*a, **k)))
    result = sweep(tmp_path, TINY + "[grid]\nseed = [0, 1, 2, 3]\n", "--workers", 2)
    assert result.exit_code == 0, result.output
    assert written == [1]
    lines = (tmp_path / "out" / "record.jsonl").read_text().splitlines()
    assert sorted(lines) == sorted(f'{{"run": "seed={i}", "status": "done", "error": null, "workers": '
                                   f'["{row["worker"]}"]}}' for i, row in enumerate(results(tmp_path / "out")))


def test_results_csv_is_safe_to_open_in_a_spreadsheet(tmp_path):
    spec = TINY + ('[grid]\nseed = [0]\n[[runs]]\nlabel = "=HYPERLINK(\\"http://x\\")"\nlr = 0.01\n'
                   '[[runs]]\nlabel = "@SUM(A1)"\nlr = 0.02\n[[runs]]\nlabel = "-1"\nlr = -0.0\n')
    spec = spec.replace("lr = -0.0", "lr = 0.03")
    result = sweep(tmp_path, spec, "--workers", 1)
    assert result.exit_code == 0, result.output
    rows = results(tmp_path / "out")
    assert [row["label"] for row in rows] == ["'=HYPERLINK(\"http://x\")", "'@SUM(A1)", "'-1"]
    for row in rows:
        for key, value in row.items():
            assert not value.startswith(("=", "+", "@", "\t", "\r")), (key, value)
            if key in ("eval_loss", "baseline_loss", "lr", "steps"):
                float(value)  # numbers stay numbers
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == [
        "%3DHYPERLINK%28%22http%3A%2F%2Fx%22%29,seed=0", "%40SUM%28A1%29,seed=0", "-1,seed=0"]


def test_a_record_from_someone_else_is_read_with_bounds(tmp_path):
    from bptt.sweep.record import MAX_LINE, read_record

    out = tmp_path / "out"
    out.mkdir()
    (out / "record.jsonl").write_bytes(b"[" * 50_000 + b"\n" + b'{"run": "a", "status": "done", "error": null, '
                                       b'"workers": ["w"]}\n' + b"x" * (MAX_LINE + 10) + b"\n")
    assert read_record(out) == {"a": {"status": "done", "error": None, "workers": ["w"]}}
    (out / "record.jsonl").unlink()
    (out / "record.jsonl").symlink_to("/dev/zero")
    assert read_record(out) == {}


def test_sigint_while_a_large_spec_is_checked_is_not_a_traceback(tmp_path, monkeypatch):
    import bptt.sweep.spec as spec_module

    def interrupted(spec):
        raise KeyboardInterrupt

    monkeypatch.setattr(spec_module, "_check_points", interrupted)
    result = sweep(tmp_path, GRID)
    assert result.exit_code == 130 and "interrupted before any run started" in result.output
    assert not (tmp_path / "out").exists()
