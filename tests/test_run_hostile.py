"""Run folders as someone else may hand them over: links where files belong, JSON nested 100,000 deep,
numbers of the wrong type or size, a checkpoint that expands to gigabytes, logs that would make a
reader allocate without bound. Each is refused before anything large is read, with exit code 2 at
the command line and a message naming the file and what is wrong; no traceback, no file of yours
written through a link."""

import io
import json
import os
import re
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bptt.cli import cli
from bptt.core.untrusted import UntrustedFileError
from bptt.runs.checkpoint import read_checkpoint
from bptt.runs.folder import lock_run_folder
from bptt.runs.lock import FolderLock
from bptt.runs.logs import MAX_LOG_LINE, read_jsonl
from bptt.runs.reader import MAX_DH_VALUES, MAX_METRIC_COLUMNS, read_run
from bptt.training.config import TrainConfig
from bptt.training.trainer import evaluate, load_run, train

TINY = dict(task="parity", cell="lstm", hidden=6, seq_len=8, batch_size=4, eval_size=16, eval_every=2,
            checkpoint_every=2, record_every=2, k1=3, optimizer="adam")
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def run_dir(tmp_path):
    """A finished run of four steps, every file in it."""
    train(TrainConfig(steps=4, out=str(tmp_path / "run"), **TINY))
    return tmp_path / "run"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def refused(result, *names):
    """A command that ended with exit code 2 and "Error: ..." naming each of `names`, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Error: " in result.stderr and "Traceback" not in result.output, result.output
    for name in names:
        assert str(name) in result.stderr, (name, result.stderr)
    return result.stderr


def edit(path, change):
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))


def rewrite_checkpoint(run_dir, **change):
    """checkpoint.npz again, with some arrays replaced (a value of None drops the array)."""
    path = run_dir / "checkpoint.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays.update(change)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


# ---------------------------------------------------------------- links
def test_a_lock_file_linked_to_a_file_of_yours_is_refused_and_the_file_kept(run_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    (run_dir / ".lock").unlink()
    (run_dir / ".lock").symlink_to(notes)
    refused(invoke("train", "--resume", run_dir, "--steps", 6, "--quiet"), run_dir / ".lock", "symbolic link")
    refused(invoke("train", "--out", run_dir, "--overwrite", "--steps", 2, "--quiet"), ".lock", "symbolic link")
    assert notes.read_text() == "my notes"
    (run_dir / ".lock").unlink()
    os.link(notes, run_dir / ".lock")  # a hard link is another name for your file
    refused(invoke("train", "--resume", run_dir, "--steps", 6, "--quiet"), run_dir / ".lock", "2 hard links")
    assert notes.read_text() == "my notes"
    (run_dir / ".lock").unlink()
    os.mkfifo(run_dir / ".lock")
    with pytest.raises(UntrustedFileError, match="is not a regular file \\(it is a FIFO\\)"):
        lock_run_folder(run_dir)


def test_a_sweep_folder_whose_lock_is_a_link_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    spec = tmp_path / "spec.toml"
    spec.write_text('[base]\ntask = "parity"\nhidden = 4\nseq_len = 8\nsteps = 1\nbatch_size = 4\neval_size = 8\n'
                    "[grid]\nseed = [0]\n")
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / ".lock").symlink_to(notes)
    refused(invoke("sweep", spec, "--out", tmp_path / "sweep", "--workers", 1, "--quiet"), "sweep/.lock", "symbolic link")
    assert notes.read_text() == "my notes"
    assert FolderLock(tmp_path / "sweep" / ".lock").holder(wait=0) is None  # read without following the link


def test_a_log_linked_elsewhere_is_refused_before_resuming(run_dir, tmp_path):
    theirs = tmp_path / "theirs.jsonl"
    theirs.write_text((run_dir / "metrics.jsonl").read_text())
    (run_dir / "metrics.jsonl").unlink()
    (run_dir / "metrics.jsonl").symlink_to(theirs)
    before = theirs.read_text()
    refused(invoke("train", "--resume", run_dir, "--steps", 6, "--quiet"), run_dir / "metrics.jsonl", "symbolic link")
    refused(invoke("plot", run_dir), "metrics.jsonl", "symbolic link")
    assert theirs.read_text() == before and (run_dir / "metrics.jsonl").is_symlink()


def test_a_figure_name_linked_to_a_file_of_yours_is_replaced_not_written_through(run_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    (run_dir / "loss.png").symlink_to(notes)
    assert invoke("plot", run_dir).exit_code == 0
    assert notes.read_text() == "my notes"
    assert not (run_dir / "loss.png").is_symlink() and (run_dir / "loss.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- JSON nested without bound
@pytest.mark.parametrize("name", ["config.json", "summary.json"])
def test_json_nested_100000_deep_is_refused_by_every_reader(run_dir, name):
    (run_dir / name).write_text(DEEP)
    for args in (["plot", run_dir], ["evaluate", run_dir], ["train", "--resume", run_dir, "--steps", 6, "--quiet"]):
        if name == "summary.json" and args[0] != "plot":
            continue  # only plot reads the summary back
        refused(invoke(*args), run_dir / name, "nested more than")


@pytest.mark.parametrize("last", [False, True])
def test_a_log_line_nested_100000_deep_is_refused_even_as_the_last(run_dir, last):
    path = run_dir / "metrics.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(len(lines) if last else 1, '{"step": 2, "loss": ' + DEEP + "}\n")
    path.write_text("".join(lines))
    number = len(lines) if last else 2
    for args in (["plot", run_dir], ["train", "--resume", run_dir, "--steps", 6, "--quiet"]):
        refused(invoke(*args), f"metrics.jsonl, line {number}", "nested more than 4 levels")


def test_a_log_line_beyond_its_bound_is_refused(run_dir):
    with open(run_dir / "dh_norms.jsonl", "a") as f:
        f.write('{"step": 4, "dh_norms": [' + "1.0, " * (MAX_LOG_LINE // 5) + "1.0]}\n")
    refused(invoke("plot", run_dir), "dh_norms.jsonl", f"line 3 is longer than {MAX_LOG_LINE:,} bytes")


# ---------------------------------------------------------------- values of the wrong type or size
@pytest.mark.parametrize("step, problem", [('"five"', "its step is 'five'"), ("1e300", "its step is 1e+300"),
                                           ("-1", "its step is -1"), ("true", "its step is True"),
                                           (str(2**70), "its step is 1180591620717411303424")])
def test_a_step_that_is_not_an_integer_is_refused_by_plot_and_resume(run_dir, step, problem):
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": ' + step + ', "loss": 0.5}\n{"step": 9, "loss": 0.5}\n')
    for args in (["plot", run_dir], ["train", "--resume", run_dir, "--steps", 6, "--quiet"]):
        refused(invoke(*args), "metrics.jsonl, line 5", "expected a JSON object with an integer 'step'", problem)


@pytest.mark.parametrize("value, problem", [('"low"', "'loss' is a string, expected a number or null"),
                                            ("[1, 2]", "'loss' is a list"), (str(10**400), "too large")])
def test_a_metric_that_is_not_a_number_is_refused_by_plot(run_dir, value, problem):
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": ' + value + "}\n" + '{"step": 6, "loss": 0.5}\n')
    refused(invoke("plot", run_dir), "metrics.jsonl, line 5", problem)


def test_huge_but_finite_metrics_still_plot(run_dir):
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "loss": 1e300, "grad_norm": 1e300, "clipped": true}\n')
    result = invoke("plot", run_dir)
    assert result.exit_code == 0, result.output
    assert read_run(run_dir).column("loss")[-1] == 1e300


def test_more_metric_keys_than_a_log_holds_are_refused(run_dir):
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, **{f"k{i}": 1.0 for i in range(MAX_METRIC_COLUMNS)}}) + "\n")
    stderr = refused(invoke("plot", run_dir), "metrics.jsonl, line 5", f"beyond the {MAX_METRIC_COLUMNS} a metrics log")
    assert f"a key 'k{MAX_METRIC_COLUMNS - 7}'" in stderr  # seven keys come before: step, loss, ..., eval_accuracy


@pytest.mark.parametrize("summary, problem", [([1, 2], "expected a JSON object of results, got a list"),
                                              ({"baseline_loss": "low"}, "'baseline_loss' is a string"),
                                              ({"steps": -3}, "'steps' is -3, expected a non-negative integer")])
def test_a_summary_that_is_not_what_bptt_writes_is_refused_by_plot(run_dir, summary, problem):
    (run_dir / "summary.json").write_text(json.dumps(summary))
    refused(invoke("plot", run_dir), run_dir / "summary.json", problem)


@pytest.mark.parametrize("change, problem", [({"clip_threshold": "high"}, "'clip_threshold' is 'high'"),
                                             ({"k1": [3]}, "'k1' is [3]")])
def test_settings_plot_reads_are_checked(run_dir, change, problem):
    edit(run_dir / "config.json", change)
    refused(invoke("plot", run_dir), "config.json", problem)


def test_a_config_asking_for_a_huge_model_is_refused_before_it_is_built(run_dir):
    edit(run_dir / "config.json", {"hidden": 10**7})
    for args in (["evaluate", run_dir], ["train", "--resume", run_dir, "--steps", 6, "--quiet"]):
        refused(invoke(*args), run_dir / "config.json", "asks for about", "a run read back may hold")


# ---------------------------------------------------------------- the checkpoint
def test_a_huge_integer_in_the_rng_state_is_refused(run_dir):
    state = json.loads(str(np.load(run_dir / "checkpoint.npz")["rng_state"]))
    state["state"]["state"] = 2**200
    rewrite_checkpoint(run_dir, rng_state=np.array(json.dumps(state)))
    for args in (["evaluate", run_dir], ["train", "--resume", run_dir, "--steps", 6, "--quiet"]):
        refused(invoke(*args), run_dir / "checkpoint.npz", "rng_state is not a state of numpy's PCG64 generator")


@pytest.mark.parametrize("name, value, problem", [
    ("fingerprint", "[1, 2]", "its fingerprint must be an object"),
    ("fingerprint", '{"settings": [], "data": {}}', "its fingerprint must be an object"),
    ("last_eval", '{"loss": "low"}', "its last_eval 'loss' is 'low', expected a number"),
    ("last_eval", "[0.5]", "its last_eval must be an object"),
    ("rng_state", '"PCG64"', "rng_state is not a state"),
    ("rng_state", DEEP, "nested more than 3 levels"),
])
def test_checkpoint_texts_of_the_wrong_type_are_refused(run_dir, name, value, problem):
    rewrite_checkpoint(run_dir, **{name: np.array(value)})
    if len(value) > 10_000:
        problem = "holds 200,000 characters, more than 65,536"  # refused from its header, before it is read
    refused(invoke("train", "--resume", run_dir, "--steps", 6, "--quiet"), run_dir / "checkpoint.npz", problem)


@pytest.mark.parametrize("change, problem", [
    ({"step": np.array(-4)}, "counts out of range: step -4"),
    ({"skipped": np.array(9)}, "counts out of range"),
    ({"step": np.array(4.5)}, "array 'step' has dtype float64, expected signed integer or unsigned integer"),
    ({"elapsed": np.array(np.inf)}, "elapsed is inf"),
    ({"extra": np.zeros(3)}, "holds the array 'extra', which is no part of a checkpoint"),
    ({"param/cell.weight_hh": np.zeros((24, 7))}, "array 'param/cell.weight_hh' has shape (24, 7), expected (24, 6)"),
    ({"optim/m/cell.weight_hh": np.zeros(3)}, "array 'optim/m/cell.weight_hh' has shape (3,), expected (24, 6)"),
    ({"optim/momentum/cell.weight_hh": np.zeros((24, 6))}, "the optimizer of its config.json keeps m, v"),
    ({"carry/0": np.zeros((5, 6))}, "array 'carry/0' has shape (5, 6), expected (4, 6)"),
    ({"param/cell.bias_hh": np.zeros(24, np.float32)}, "has dtype float32, expected float64"),
])
def test_checkpoint_arrays_are_checked_against_config_json_before_they_are_read(run_dir, change, problem):
    rewrite_checkpoint(run_dir, **change)
    refused(invoke("train", "--resume", run_dir, "--steps", 6, "--quiet"), run_dir / "checkpoint.npz", problem)


def test_a_compressed_checkpoint_bomb_is_refused_from_its_header(run_dir):
    """256 MB of zeros in a 256 kB file, as the weights config.json says are (24, 6): refused from the
    headers, as more than the arrays config.json implies, without reading them (what the evaluation
    allocates stays far below the array's size)."""
    path = run_dir / "checkpoint.npz"
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "param/cell.weight_hh"}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**25,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, value in arrays.items():
            with z.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, value)
        with z.open("param/cell.weight_hh.npy", "w", force_zip64=True) as f:
            f.write(header.getvalue())
            for _ in range(2**8):
                f.write(bytes(2**20))
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"checkpoint .*checkpoint.npz: its arrays hold more than 1,316,672 bytes"):
            evaluate(run_dir)  # what config.json implies, with room for the texts
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**25, f"{peak / 2**20:.0f} MiB allocated"
    refused(invoke("evaluate", run_dir), "checkpoint.npz", "its arrays hold more than")


def test_an_object_array_in_a_checkpoint_is_never_unpickled(run_dir, tmp_path):
    marker = tmp_path / "ran"
    rewrite_checkpoint(run_dir, vocab=np.array([Unpickled(str(marker))], dtype=object))
    refused(invoke("evaluate", run_dir), "checkpoint.npz", "holds Python objects")
    assert not marker.exists()


class Unpickled:
    """Would create a file when unpickled, if anything unpickled it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_sample_vocab_of_repeated_characters_is_refused(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 30)
    run = tmp_path / "chars"
    train(TrainConfig(task="chars", text=str(text), steps=2, hidden=4, seq_len=8, batch_size=4, eval_size=8,
                      out=str(run)))
    rewrite_checkpoint(run, vocab=np.array("aabcd"))
    refused(invoke("sample", run), "checkpoint.npz", "vocab must be a string of distinct characters")


# ---------------------------------------------------------------- logs that would ask for gigabytes
def test_a_dh_norms_log_of_ragged_widths_is_read_in_bounded_memory(run_dir):
    """100,000 one-step records and one of 100,000 steps (2 MB): padded whole, 80 GB; kept evenly
    spaced to at most MAX_DH_VALUES numbers, the last record always among them."""
    with open(run_dir / "dh_norms.jsonl", "w") as f:
        f.writelines(f'{{"step": {step}, "dh_norms": [1.5]}}\n' for step in range(1, 100_001))
        f.write('{"step": 100001, "dh_norms": [' + "2.5, " * 99_999 + "2.5]}\n")
    run = read_run(run_dir)
    assert run.dh_norms.size <= MAX_DH_VALUES and run.dh_norms.shape[1] == 100_000
    assert run.dh_steps[-1] == 100_001 and np.all(run.dh_norms[-1] == 2.5)
    gaps = np.diff(run.dh_steps[:-1])
    assert len(set(gaps.tolist())) == 1  # evenly spaced
    assert invoke("plot", run_dir).exit_code == 0


def test_read_run_gives_columns_and_keeps_the_one_policy(run_dir):
    run = read_run(run_dir)
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert run.steps.tolist() == [r["step"] for r in records]
    for key in ("loss", "grad_norm", "eval_loss"):
        expected = [np.nan if r.get(key) is None else r[key] for r in records]
        np.testing.assert_array_equal(run.column(key), expected)
    np.testing.assert_array_equal(run.column("clipped"), [float(r["clipped"]) for r in records])
    assert run.column("absent") is None


def test_resume_reads_checkpoints_it_wrote_and_old_ones(run_dir):
    """The checks refuse nothing bptt writes: the run resumes, and load_run reads it back."""
    train(TrainConfig(steps=6), resume=run_dir)
    assert read_checkpoint(run_dir).step == 6 and load_run(run_dir).step == 6


# ---------------------------------------------------------------- the text a chars run names
def test_a_text_path_naming_a_device_is_refused_on_resume(tmp_path):
    """config.json's text is a path read back from the folder: /dev/zero would be read until memory
    runs out. Run in a child limited to 2 GiB of address space, so that today's unbounded read fails
    fast (MemoryError) instead of taking the machine's memory."""
    import resource
    import subprocess
    import sys

    text = tmp_path / "t.txt"
    text.write_text("abcabcabd " * 30)
    run = tmp_path / "chars"
    train(TrainConfig(task="chars", text=str(text), steps=2, hidden=4, seq_len=8, batch_size=4, eval_size=8,
                      out=str(run)))
    edit(run / "config.json", {"text": "/dev/zero"})

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31))

    done = subprocess.run([sys.executable, "-m", "bptt", "train", "--resume", str(run), "--steps", "4", "--quiet"],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "/dev/zero" in done.stderr and "not a regular file" in done.stderr


def test_the_security_page_quotes_every_limit_as_it_is():
    from bptt.runs import checkpoint, files, logs, reader
    from bptt.training import data, run_config

    page = Path(__file__).resolve().parent.parent / "docs" / "security.md"
    if not page.exists():
        pytest.skip("the docs are not beside the tests")
    quoted = {name: int(value.replace(",", "")) for name, value in re.findall(r"`(MAX_[A-Z_]+)` \(([\d,]+)", page.read_text())}
    actual = {name: getattr(module, name) for module in (checkpoint, files, logs, reader, run_config, data)
              for name in vars(module) if name.startswith("MAX_") and isinstance(getattr(module, name), int)}
    assert quoted == {name: value for name, value in actual.items() if name != "MAX_STEP"}
