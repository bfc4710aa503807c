"""`bptt sweep`'s spec and its bad input: each refused with a message naming what was wrong and exit
code 2, before any run starts and before the sweep's folder is made; a grid point whose settings are
invalid, alone or only in combination, is refused the same way. Folder names that cannot collide, and
a grid of any size made one point at a time."""

import io
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bptt.cli import cli
from bptt.training.config import TrainConfig
from bptt.sweep.spec import MAX_RUNS, SpecError, load_spec, parse_spec, point_name

ROOT = Path(__file__).resolve().parent.parent
TINY = """
[base]
task = "adding"
steps = 20
hidden = 4
seq_len = 6
batch_size = 4
eval_size = 8
eval_every = 10
checkpoint_every = 10
record_every = 0
"""


def sweep(tmp_path, spec_text, *args, out=None):
    """`bptt sweep` on a spec written to tmp_path, in-process, into `out` (default tmp_path/out); the
    click Result."""
    spec = tmp_path / "spec.toml"
    spec.write_text(textwrap.dedent(spec_text))
    out = tmp_path / "out" if out is None else out
    return CliRunner().invoke(cli, ["sweep", str(spec), "--out", str(out), "--quiet", *map(str, args)])


def refused(tmp_path, spec_text, *args):
    result = sweep(tmp_path, spec_text, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing ran, no folder was made
    return result.output


# ---------------------------------------------------------------- what a spec expands to
def test_the_issues_spec_expands_to_every_combination_named_by_its_swept_values():
    spec = load_spec(ROOT / "experiments" / "sweeps" / "long_dependencies.toml")
    assert len(spec.points) == 3 * 4 * 5
    assert spec.swept == ["cell", "seq_len", "seed"]
    assert spec.points[0].name == "cell=rnn,seq_len=25,seed=0"
    assert spec.points[-1].name == "cell=gru,seq_len=200,seed=4"
    point = spec.points[7]  # rnn, T = 50, seed 2
    assert point.swept == {"cell": "rnn", "seq_len": 50, "seed": 2}
    assert point.config == TrainConfig(task="adding", steps=2000, target_loss=0.01, cell="rnn", seq_len=50, seed=2)
    assert len({p.name for p in spec.points}) == 60


def test_runs_tables_cross_the_grid_with_their_own_settings_and_labels():
    spec = load_spec(ROOT / "experiments" / "sweeps" / "results.toml")
    assert len(spec.points) == 6 * 3 * 3
    assert [p.name for p in spec.points[:4]] == ["adding,cell=rnn,seed=0", "adding,cell=rnn,seed=1",
                                                 "adding,cell=rnn,seed=2", "adding,cell=lstm,seed=0"]
    assert spec.swept[0] == "label" and spec.swept[-2:] == ["cell", "seed"]
    assert {"task", "seq_len", "hidden", "lr", "text", "target_loss"} <= set(spec.swept)
    chars = spec.points[-1]
    assert chars.name == "chars,cell=gru,seed=2"
    assert (chars.config.task, chars.config.lr, chars.config.text) == ("chars", 0.005, "scripts/data/unroll_source.txt")
    assert [p.index for p in spec.points] == list(range(len(spec.points)))
    assert [spec.points[i] for i in range(len(spec.points))] == list(spec.points)  # indexing agrees with iterating


def test_values_take_their_settings_types():
    spec = parse_spec('[base]\nlr = 1\n[grid]\nk1 = ["none", 5]\n')
    assert [p.config.k1 for p in spec.points] == [None, 5]
    assert isinstance(spec.points[0].config.lr, float)  # as `bptt train --lr 1` gives it
    assert [p.name for p in spec.points] == ["k1=none", "k1=5"]


def test_names_keep_to_safe_characters_and_a_bounded_length():
    assert point_name({"text": "a/b c.txt", "lr": 1e-05}) == "text=a%2Fb%20c.txt,lr=1e-05"
    long = point_name({"text": "x" * 400})
    assert len(long) <= 180 and long != point_name({"text": "x" * 399})
    assert not point_name({"label": ".hidden"}, named_by_label=True).startswith(".")


@pytest.mark.parametrize("a, b", [("é", "ü"), ("a,b=c", "a_b_c"), ("x%2C", "x,"), ("a b", "a_b"), ("1", "1.0"),
                                  ("mod:Cell", "mod_Cell"), ("..", "%2E."), ("é", "%C3%A9")])
def test_different_values_never_share_a_name(a, b):
    for named_by_label in (False, True):
        names = [point_name({"label": value, "seed": 0}, named_by_label) for value in (a, b)]
        assert names[0] != names[1], names


def test_labels_that_used_to_collide_run_as_two_runs(tmp_path):
    result = sweep(tmp_path, TINY + '[grid]\nseed = [0]\n[[runs]]\nlabel = "é"\nlr = 0.1\n[[runs]]\n'
                                    'label = "ü"\nlr = 0.2\n', "--workers", "1")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out" / "runs").iterdir()) == ["%C3%A9,seed=0", "%C3%BC,seed=0"]


def test_values_whose_names_differ_only_in_case_are_refused(tmp_path):
    output = refused(tmp_path, TINY + '[grid]\nseed = [0]\n[[runs]]\nlabel = "Adding"\nlr = 0.1\n[[runs]]\n'
                                      'label = "adding"\nlr = 0.2\n')
    assert "label takes both 'Adding' and 'adding', whose folder names differ only in case" in output


# ---------------------------------------------------------------- every grid point checked before anything starts
def test_a_misspelt_grid_value_is_refused_naming_the_run_the_value_and_where_it_is(tmp_path):
    output = refused(tmp_path, TINY + "[grid]\ncell = ['gru', 'lstmm']\nseed = [0, 1, 2]\n")
    assert "3 of 6 runs have invalid settings; nothing was started" in output
    assert "run cell=lstmm,seed=0 and 2 more runs: cell must be" in output
    assert "got 'lstmm' ([grid] cell)" in output


def test_a_point_invalid_only_in_combination_is_refused_the_same_way(tmp_path):
    output = refused(tmp_path, TINY + "proj_size = 2\n[grid]\ncell = ['lstm', 'gru']\n")
    assert "1 of 2 runs have invalid settings" in output
    assert "run cell=gru: proj_size must be 0 for the gru cell" in output and "([base] proj_size)" in output
    with pytest.raises(SpecError, match=r"run k2=2: k2 must be >= k1 = 4 .*\(\[grid\] k2\)"):
        parse_spec('[base]\nk1 = 4\n[grid]\nk2 = [2, 8]\n')


def test_a_cell_module_that_cannot_be_imported_is_refused(tmp_path):
    output = refused(tmp_path, TINY + "[grid]\ncell = ['gru', 'no_such_module_here:Cell']\n")
    assert "run cell=no_such_module_here%3ACell: cell must be" in output and "no_such_module_here" in output


def test_a_grid_too_large_to_check_is_refused_at_once():
    values = ", ".join(str(i) for i in range(1000))
    with pytest.raises(SpecError, match=f"more than the {MAX_RUNS:,} a sweep takes"):
        parse_spec(f"[grid]\nseed = [{values}]\nlr = [{', '.join(str(i + 1) for i in range(100))}]\n"
                   f"eval_seed = [{values}]\n")


def test_a_large_grid_is_made_one_point_at_a_time():
    import tracemalloc

    hidden = ", ".join(str(h) for h in range(2, 100))
    seeds = ", ".join(str(s) for s in range(1000))
    text = f"[base]\nsteps = 10\n[grid]\ncell = ['rnn', 'gru']\nhidden = [{hidden}]\nseed = [{seeds}]\n"
    tracemalloc.start()
    try:
        spec = parse_spec(text)  # checks all 196,000 points
        last = spec.points[-1]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(spec.points) == 2 * 98 * 1000
    assert last.name == "cell=gru,hidden=99,seed=999" and last.config.hidden == 99 and last.index == 195_999
    assert peak < 5_000_000, peak  # a list of the points would take hundreds of MB


def test_a_text_file_that_cannot_be_read_is_refused_before_anything_starts(tmp_path):
    output = refused(tmp_path, TINY.replace('task = "adding"', 'task = "chars"') + 'text = "missing.txt"\n'
                     "[grid]\nseed = [0]\n")
    assert "text = 'missing.txt' (the chars task's text): cannot read it: No such file or directory" in output


# ---------------------------------------------------------------- bad input: exit code 2, a clear message
def test_a_spec_that_is_not_toml(tmp_path):
    output = refused(tmp_path, "[base\ntask = adding\n")
    assert "is not valid TOML" in output and "line 1" in output


def test_a_missing_spec_file(tmp_path):
    result = CliRunner().invoke(cli, ["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "cannot read the spec" in result.output and "nope.toml" in result.output


def test_an_unknown_key_is_named_with_the_valid_ones(tmp_path):
    output = refused(tmp_path, TINY + "[grid]\ncells = ['rnn', 'gru']\n")
    assert "[grid]: unknown key 'cells'; valid keys: task, cell, hidden," in output
    assert "seed" in output and "target_loss" in output


def test_an_unknown_table(tmp_path):
    output = refused(tmp_path, TINY + "[grids]\nseed = [0, 1]\n")
    assert "unknown table or key 'grids'" in output and "[base], [grid] and [[runs]]" in output


@pytest.mark.parametrize("grid, expected", [
    ('k1 = [6, "12"]', "[grid] k1[1]: k1 takes an integer or \"none\", got '12' (a string)"),
    ("seed = [6, 12.5]", "[grid] seed[1]: seed takes an integer, got 12.5 (a number)"),
    ("lr = [0.01, true]", "lr takes a number, got True (a boolean)"),
    ('cell = ["rnn", 3]', "cell takes a string, got 3 (an integer)"),
    ('target_loss = ["nothing"]', 'target_loss takes a number or "none", got \'nothing\''),
    ("seed = 3", "[grid] seed must be a list of values, e.g. seed = [3], got an integer"),
])
def test_a_value_of_the_wrong_type(tmp_path, grid, expected):
    assert expected in refused(tmp_path, TINY + "[grid]\n" + grid + "\n")


def test_an_empty_grid(tmp_path):
    assert "the grid is empty" in refused(tmp_path, TINY)
    assert "[grid] seed is an empty list" in refused(tmp_path, TINY + "[grid]\nseed = []\n")


def test_a_key_both_in_base_and_grid(tmp_path):
    output = refused(tmp_path, TINY + "[grid]\nhidden = [4, 8]\n")
    assert "hidden is both in [base] and in [grid]" in output


def test_a_key_both_in_grid_and_runs(tmp_path):
    output = refused(tmp_path, TINY + "[grid]\nseed = [0]\n[[runs]]\nseed = 3\n")
    assert "seed is both in [grid] and in [[runs]] #1" in output


def test_a_value_listed_twice_and_runs_with_the_same_settings(tmp_path):
    assert "[grid] seed lists 1 twice" in refused(tmp_path, TINY + "[grid]\nseed = [0, 1, 1]\n")
    output = refused(tmp_path, TINY + "[grid]\nseed = [0]\n[[runs]]\nlr = 0.1\n[[runs]]\nlr = 0.1\n")
    assert "have the same settings" in output


def test_out_is_the_sweeps_to_set(tmp_path):
    assert "[base].out: the sweep places every run in DIR/runs/<name>" in refused(tmp_path, TINY + 'out = "x"\n'
                                                                                  "[grid]\nseed = [0]\n")


def test_labels_on_every_runs_table_or_none(tmp_path):
    output = refused(tmp_path, TINY + '[grid]\nseed = [0]\n[[runs]]\nlabel = "a"\nlr = 0.1\n[[runs]]\nlr = 0.2\n')
    assert "[[runs]] #2 has no label" in output


def test_a_spec_where_no_run_has_valid_settings(tmp_path):
    output = refused(tmp_path, TINY + "[grid]\ncell = ['lstmm', 'grru']\n")
    assert "2 of 2 runs have invalid settings" in output
    assert "run cell=lstmm: cell must be" in output and "run cell=grru: cell must be" in output


def test_workers_and_scheduler_together(tmp_path):
    result = sweep(tmp_path, TINY + "[grid]\nseed = [0]\n", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1")
    assert result.exit_code == 2 and "--workers sets local processes" in result.output


def test_an_unreachable_scheduler_is_named_after_a_short_timeout(tmp_path, distributed):
    with socket.socket() as s:  # a loopback port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    output = refused(tmp_path, TINY + "[grid]\nseed = [0]\n", "--scheduler", address, "--connect-timeout", "1")
    assert f"cannot reach the Dask scheduler at {address} within 1 s" in output
    output = refused(tmp_path, TINY + "[grid]\nseed = [0]\n", "--scheduler", "scheduler-host:port")
    assert "--scheduler 'scheduler-host:port' is not a scheduler address: expected tcp://HOST:PORT" in output
    assert "Exception ignored" not in output


def test_a_folder_holding_runs_with_other_settings(tmp_path):
    assert sweep(tmp_path, TINY + "[grid]\nseed = [0]\n", "--workers", "1").exit_code == 0
    second = sweep(tmp_path, TINY.replace("steps = 20", "steps = 30") + "[grid]\nseed = [0]\n")
    assert second.exit_code == 2, second.output
    assert "steps: 20 there, 30 in the spec" in second.output and "seed=0" in second.output


def test_a_folder_another_sweep_is_writing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from bptt.runs.lock import FolderLock; "
        f"lock = FolderLock({str(out / '.lock')!r}); assert lock.try_acquire(); print('held', flush=True); "
        "sys.stdin.read()")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = sweep(tmp_path, TINY + "[grid]\nseed = [0]\n")
        assert result.exit_code == 2 and f"is being swept by process {holder.pid}" in result.output
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing else was made
    finally:
        os.kill(holder.pid, signal.SIGTERM)
        holder.communicate(timeout=30)


def test_a_summary_that_cannot_be_read_is_named_not_a_traceback(tmp_path):
    assert sweep(tmp_path, TINY + "[grid]\nseed = [0]\n", "--workers", "1").exit_code == 0
    summary = tmp_path / "out" / "runs" / "seed=0" / "summary.json"
    summary.write_text("{not json")
    again = sweep(tmp_path, TINY + "[grid]\nseed = [0]\n", "--workers", "1")
    assert again.exit_code == 2, again.output
    assert f"{summary}: not valid JSON" in again.output and "Traceback" not in again.output
    assert summary.read_text() == "{not json"  # refused, not overwritten


def test_temporaries_a_killed_sweep_left_are_removed_by_the_next(tmp_path):
    spec = TINY + "[grid]\nseed = [0]\n"
    assert sweep(tmp_path, spec, "--workers", "1").exit_code == 0
    out = tmp_path / "out"
    stale = [out / ".results.csv.1a2b3c4d.tmp", out / ".summary.md.0f0f0f0f.tmp", out / ".spec.toml.12345678.tmp",
             out / "figures" / ".seed.png.abcdef01.tmp"]
    others = [out / ".notes.tmp", out / "keep.tmp"]  # not the sweep's
    for path in stale + others:
        path.parent.mkdir(exist_ok=True)
        path.write_text("left by a killed sweep")
    assert sweep(tmp_path, spec, "--workers", "1").exit_code == 0
    assert [path for path in stale + others if path.exists()] == others


# ---------------------------------------------------------------- failures are isolated
def test_a_failing_run_is_marked_and_the_others_go_on(tmp_path):
    import csv

    spec = TINY + "[grid]\nlr = [0.01, 1e308]\nseed = [0, 1]\n"
    result = sweep(tmp_path, spec, "--workers", "2")
    assert result.exit_code == 1, result.output
    assert "4 runs: 2 done, 2 failed" in result.output
    assert "failed runs (2):\n  lr=1e+308,seed=0: TrainingStopped: step 1: non-finite" in result.output
    with open(tmp_path / "out" / "results.csv", newline="") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert rows["runs/lr=0.01,seed=1"]["status"] == "done" and float(rows["runs/lr=0.01,seed=1"]["eval_loss"]) > 0
    overflow = rows["runs/lr=1e+308,seed=0"]
    assert overflow["status"] == "failed" and overflow["error"].startswith("TrainingStopped: step 1: non-finite")
    assert str(tmp_path / "out" / "runs" / "lr=1e+308,seed=0") in overflow["error"]  # not a worker's folder
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "## Failed runs" in summary and "`lr=1e+308,seed=1`: TrainingStopped" in summary


# ---------------------------------------------------------------- what the command shows
def test_help_documents_the_spec_and_the_folder():
    result = CliRunner().invoke(cli, ["sweep", "--help"])
    assert result.exit_code == 0
    for text in ("[base]", "[grid]", "[[runs]]", "--scheduler", "--workers", "results.csv", "summary.md",
                 "Exit codes: 0 all done; 1 some runs failed, or the sweep stopped", "--tls-ca-file",
                 "record.jsonl"):
        assert text in result.output, text


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_counts_runs_and_prints_a_line_per_finished_run():
    from bptt.cli.sweep import _Progress
    from bptt.sweep.record import RunOutcome
    from bptt.sweep.run import SweepResult

    spec = parse_spec("[grid]\nseed = [0, 1]\n")
    terminal = _Terminal()
    progress = _Progress(quiet=False, stream=terminal)
    progress.planned(SweepResult(Path("out"), spec), 2)
    progress.update({"done": 0, "failed": 0, "running": 2, "pending": 0})
    summary = {"eval_loss": 0.01, "baseline_loss": 0.1667, "eval_accuracy": 0.5, "steps": 40, "wall_seconds": 1.25,
               "reached_target": None}
    progress.finished(RunOutcome(0, "seed=0", "done", summary=summary, workers=["local-1"]))
    progress.finished(RunOutcome(1, "seed=1", "failed", "TrainingStopped: step 3: non-finite loss"))
    progress.update({"done": 1, "failed": 1, "running": 0, "pending": 0})
    progress.close()
    shown = terminal.getvalue()
    assert "2 runs in out: 2 to run" in shown
    assert "running 2" in shown and "done 1, failed 1, running 0" in shown and "2/2" in shown
    assert "done    seed=0: eval loss 0.01 (baseline 0.1667), accuracy 50.0%, 40 steps, 1.2 s on local-1" in shown
    assert "failed  seed=1: TrainingStopped: step 3: non-finite loss" in shown


def test_quiet_still_shows_failures_as_they_happen():
    from bptt.cli.sweep import _Progress
    from bptt.sweep.record import RunOutcome

    terminal = _Terminal()
    progress = _Progress(quiet=True, stream=terminal)
    progress.finished(RunOutcome(0, "seed=0", "done", summary={"eval_loss": 0.1, "steps": 4}))
    progress.finished(RunOutcome(1, "seed=1", "failed", "TrainingStopped: step 3: non-finite loss"))
    assert terminal.getvalue() == "failed  seed=1: TrainingStopped: step 3: non-finite loss\n"
