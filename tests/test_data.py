"""`--data FILE.npz`: one's own sequences, batch-first on disk, time-major in every batch; each target
form, lengths, the held-out share, the baseline, the file's hash in the fingerprint, and every bad file
refused (exit 2, naming the array and its shape) before a run folder exists."""

import json
import os
import threading
import tracemalloc
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

import bptt
from bptt.cli import cli
from bptt.training import data as data_module
from bptt.training.data import DataTask, read_data_file
from bptt.training.run_config import RunChangedError
from bptt.core.untrusted import UntrustedFileError

S, T, D = 30, 7, 3


def save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def inputs(seed=0, shape=(S, T, D)):
    return np.random.default_rng(seed).standard_normal(shape)


def lengths(seed=1):
    return np.random.default_rng(seed).integers(1, T + 1, S)


FORMS = {  # form -> targets of that form
    "values": lambda rng: rng.standard_normal((S, T, 2)),
    "last-values": lambda rng: rng.standard_normal((S, 2)),
    "last-class": lambda rng: rng.integers(0, 3, S),
    "classes": lambda rng: rng.integers(0, 3, (S, T)),
}


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_each_target_form_becomes_time_major_batches_with_the_loss_where_it_belongs(tmp_path, form, with_lengths):
    xs, ys = inputs(), FORMS[form](np.random.default_rng(2))
    arrays = dict(inputs=xs, targets=ys, **({"lengths": lengths()} if with_lengths else {}))
    task = DataTask(save(tmp_path / "d.npz", **arrays), eval_fraction=0.2)
    assert task.data.form == form and task.seq_len == T and task.input_size == D
    assert task.output_size == (2 if form in ("values", "last-values") else 3)
    assert task.loss_fn is (bptt.mse if form in ("values", "last-values") else bptt.softmax_cross_entropy)
    batch = task.eval_batch(500, 0)
    index = task.eval_index
    L = arrays["lengths"][index] if with_lengths else np.full(len(index), T)
    assert np.array_equal(batch.xs, xs[index].transpose(1, 0, 2))  # (T, N, D), exactly the file's numbers
    assert (batch.lengths is None) == (not with_lengths)
    steps = np.arange(T)[:, None] < L
    if form in ("values", "classes"):  # a loss at every step the sequence runs
        assert np.array_equal(batch.mask, steps)
        expect = np.swapaxes(ys[index], 0, 1)
        assert np.array_equal(batch.targets[batch.mask], expect[batch.mask])
    else:  # one loss per sequence, at its own last step
        last = np.zeros((T, len(index)), bool)
        last[L - 1, np.arange(len(index))] = True
        assert np.array_equal(batch.mask, last)
        assert np.array_equal(batch.targets[L - 1, np.arange(len(index))], ys[index])
    assert task.metrics(np.zeros(batch.xs.shape[:2] + (task.output_size,)), batch).keys() == (
        {"accuracy"} if task.data.classes else set())


def test_the_held_out_share_is_drawn_from_the_eval_seed_and_is_disjoint(tmp_path):
    numbered = inputs()
    numbered[:, :, 0] = np.arange(S)[:, None]  # each sequence carries its index
    path = save(tmp_path / "d.npz", inputs=numbered, targets=np.zeros((S, 1)))
    a, b = DataTask(path, eval_fraction=0.2, split_seed=5), DataTask(path, eval_fraction=0.2, split_seed=5)
    c = DataTask(path, eval_fraction=0.2, split_seed=6)
    assert len(a.eval_index) == 6 and len(a.train_index) == 24
    assert np.array_equal(a.eval_index, b.eval_index) and not np.array_equal(a.eval_index, c.eval_index)
    assert sorted([*a.eval_index, *a.train_index]) == list(range(S))
    assert np.array_equal(a.eval_batch(500, 0).xs[0, :, 0], a.eval_index)
    drawn = {int(s) for seed in range(50) for s in a.sample(np.random.default_rng(seed), 8).xs[0, :, 0]}
    assert drawn == set(a.train_index.tolist())  # training batches draw every training sequence, never a held-out one
    with pytest.raises(ValueError, match="eval_fraction 0.99 holds out 30 of the file's 30 sequences"):
        DataTask(path, eval_fraction=0.99)


def test_a_batch_draws_distinct_training_sequences_from_the_rng(tmp_path):
    path = save(tmp_path / "d.npz", inputs=inputs(), targets=np.zeros(S, np.int64) + np.arange(S) % 2)
    task = DataTask(path)
    one, two = task.sample(np.random.default_rng(3), 10), task.sample(np.random.default_rng(3), 10)
    assert np.array_equal(one.xs, two.xs)
    firsts = {tuple(row) for row in one.xs[0]}
    assert len(firsts) == 10  # no sequence twice in a batch when the training set holds enough


def test_baselines_are_the_training_mean_and_the_majority_class_scored_on_the_held_out_share(tmp_path):
    rng = np.random.default_rng(4)
    values = rng.standard_normal((S, T, 2)) + [3.0, -1.0]
    task = DataTask(save(tmp_path / "v.npz", inputs=inputs(), targets=values, lengths=lengths()))
    run = lambda index: np.concatenate([values[s, : lengths()[s]] for s in index])  # noqa: E731
    mean = run(task.train_index).mean(axis=0)
    assert task.baseline["loss"] == pytest.approx(np.mean((run(task.eval_index) - mean) ** 2), rel=1e-12)
    classes = rng.choice(3, S, p=[0.6, 0.3, 0.1])
    task = DataTask(save(tmp_path / "c.npz", inputs=inputs(), targets=classes), eval_fraction=0.3)
    counts = np.bincount(classes[task.train_index], minlength=3)
    freq = (counts + 1) / (counts.sum() + 3)
    held = classes[task.eval_index]
    assert task.baseline["accuracy"] == pytest.approx(np.mean(held == counts.argmax()))
    assert task.baseline["loss"] == pytest.approx(-np.mean(np.log(freq[held])), rel=1e-12)


def test_padding_past_a_sequence_s_length_is_never_read(tmp_path):
    classes = np.random.default_rng(5).integers(0, 4, (S, T))
    L = lengths()
    classes[np.arange(T)[None, :] >= L[:, None]] = -100  # PyTorch's ignore_index as padding
    task = DataTask(save(tmp_path / "d.npz", inputs=inputs(), targets=classes, lengths=L))
    assert task.output_size == 4
    batch = task.sample(np.random.default_rng(0), 8)
    assert batch.targets.min() >= 0 and (batch.targets[~batch.mask] == 0).all()


def test_training_on_a_file_learns_what_it_holds(tmp_path):
    # the sum of each sequence's inputs at its own last step: learnable only if the arrays were turned
    # time-major correctly and the loss sits where the lengths put it
    rng = np.random.default_rng(6)
    xs = rng.uniform(0, 1, (400, 6, 1))
    L = rng.integers(2, 7, 400)
    xs[np.arange(6)[None, :] >= L[:, None]] = 0.0
    path = save(tmp_path / "sums.npz", inputs=xs, targets=xs.sum(axis=1), lengths=L)
    summary = bptt.train(bptt.TrainConfig(task="data", data=path, hidden=16, steps=300, lr=0.02, eval_every=300,
                                          out=str(tmp_path / "run")))
    assert summary["seq_len"] == 6 and summary["eval_loss"] < 0.1 * summary["baseline_loss"]


def test_the_cli_selects_the_data_task_and_records_the_share_and_the_hash(tmp_path):
    path = save(tmp_path / "d.npz", inputs=inputs(), targets=FORMS["last-class"](np.random.default_rng(0)))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--data", path, "--eval-fraction", "0.2", "--steps", "3",
                                      "--hidden", "4", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "(baseline" in result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["task"], config["data"], config["eval_fraction"]) == ("data", path, 0.2)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "data" and summary["seq_len"] == T and "eval_accuracy" in summary


def test_a_changed_file_refuses_resume_and_the_same_file_resumes(tmp_path):
    path = save(tmp_path / "d.npz", inputs=inputs(), targets=np.ones((S, 1)))
    out = tmp_path / "run"
    bptt.train(bptt.TrainConfig(task="data", data=path, hidden=4, steps=2, out=str(out)))
    assert bptt.train(bptt.TrainConfig(steps=3), resume=out)["steps"] == 3
    save(path, inputs=inputs(seed=9), targets=np.ones((S, 1)))
    with pytest.raises(RunChangedError, match=r"the data file '.*d.npz' is not the data the run trained on"):
        bptt.train(bptt.TrainConfig(steps=4), resume=out)


@pytest.mark.parametrize("option, message", [
    (["--task", "adding"], "Invalid value for '--data'"),
    (["--task", "adding", "--eval-fraction", "0.2"], "Invalid value for '--eval-fraction'"),
])
def test_data_with_another_task_is_refused(tmp_path, option, message):
    path = save(tmp_path / "d.npz", inputs=inputs(), targets=np.ones((S, 1)))
    args = option if "--eval-fraction" in option else [*option, "--data", path]
    result = CliRunner().invoke(cli, ["train", *args, "--steps", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


# --- bad files: each refused before a run folder exists, naming the array and its shape

def bad_files(tmp_path):
    x, L = inputs(), lengths()
    nan = x.copy()
    nan[4, 2, 1] = np.nan
    inf = np.ones((S, 2))
    inf[7, 1] = np.inf
    return {
        "no targets": (dict(inputs=x), "has no array 'targets'"),
        "no inputs": (dict(targets=np.ones(S, int)), "has no array 'inputs'"),
        "unknown key": (dict(inputs=x, targets=np.ones((S, 1)), length=L), "holds array 'length', which is none of"),
        "S differ": (dict(inputs=x, targets=np.ones((S - 1, 1))),
                     f"array 'targets' float64 ({S - 1}, 1) does not hold S = {S} sequences"),
        "inputs 2-D": (dict(inputs=x[:, :, 0], targets=np.ones((S, 1))),
                       f"array 'inputs' float64 ({S}, {T}) is not float (S, T, D)"),
        "integer inputs": (dict(inputs=np.ones((S, T, D), int), targets=np.ones((S, 1))),
                           f"array 'inputs' int64 ({S}, {T}, {D}) is not float"),
        "targets of another T": (dict(inputs=x, targets=np.ones((S, T + 1, 2))),
                                 f"array 'targets' float64 ({S}, {T + 1}, 2) is none of the four forms"),
        "float classes (S,)": (dict(inputs=x, targets=np.ones(S)), f"array 'targets' float64 ({S},) is none"),
        "NaN": (dict(inputs=nan, targets=np.ones((S, 1))),
                f"array 'inputs' float64 ({S}, {T}, {D}) holds nan at index [4, 2, 1]"),
        "infinity": (dict(inputs=x, targets=inf), f"array 'targets' float64 ({S}, 2) holds inf at index [7, 1]"),
        "length 0": (dict(inputs=x, targets=np.ones((S, 1)), lengths=np.where(np.arange(S) == 3, 0, L)),
                     f"array 'lengths' int64 ({S},) holds 0 at index 3; expected each in [1, T = {T}]"),
        "length past T": (dict(inputs=x, targets=np.ones((S, 1)), lengths=np.full(S, T + 1)),
                          f"holds {T + 1} at index 0; expected each in [1, T = {T}]"),
        "float lengths": (dict(inputs=x, targets=np.ones((S, 1)), lengths=L.astype(float)),
                          f"array 'lengths' float64 ({S},) is not integer"),
        "negative class": (dict(inputs=x, targets=np.where(np.arange(S) == 2, -1, 1)), "holds class -1"),
        "one class": (dict(inputs=x, targets=np.zeros(S, int)), "holds class 0 only"),
        "one sequence": (dict(inputs=x[:1], targets=np.ones((1, 1))), "needs S >= 2 sequences"),
        "object array": (dict(inputs=x, targets=np.array([{}] * S, dtype=object)),
                         "holds Python objects"),
    }


@pytest.mark.parametrize("case", list(bad_files("")))
def test_a_bad_file_is_refused_naming_the_array_and_its_shape(tmp_path, case):
    arrays, message = bad_files(tmp_path)[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays, allow_pickle=True) if case == "object array" else np.savez(path, **arrays)
    with pytest.raises(UntrustedFileError) as info:
        read_data_file(path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("case", ["S differ", "NaN", "length 0", "object array"])
def test_the_cli_exits_2_on_a_bad_file_with_no_run_folder(tmp_path, monkeypatch, case):
    arrays, message = bad_files(tmp_path)[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays, allow_pickle=True) if case == "object array" else np.savez(path, **arrays)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "--data", str(path), "--steps", "1"])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_what_is_not_a_regular_npz_is_refused_without_reading_it(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not a zip")
    with pytest.raises(UntrustedFileError, match="not an npz file"):
        read_data_file(text)
    with pytest.raises(UntrustedFileError, match="is not a regular file"):
        read_data_file(tmp_path)
    with pytest.raises(UntrustedFileError, match="is not a regular file .it is a character device."):
        read_data_file("/dev/zero")
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(UntrustedFileError, read_data_file, fifo)))
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # it blocked on the FIFO: open it for writing to release the reader, then fail
        with open(fifo, "wb"):
            pass
        reader.join()
        pytest.fail("reading a FIFO blocked")
    assert "is not a regular file (it is a FIFO)" in str(outcome[0].value)


def test_a_member_cut_short_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    save(path, inputs=inputs(), targets=np.ones((S, 1)))
    with zipfile.ZipFile(path) as z:
        members = {name: z.read(name) for name in z.namelist()}
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in members.items():
            z.writestr(name, raw[:-8] if name == "inputs.npy" else raw)
    with pytest.raises(UntrustedFileError, match="array 'inputs' declares"):
        read_data_file(path)


def test_a_file_is_read_a_piece_at_a_time_never_held_twice(tmp_path, monkeypatch):
    # the arrays are 9.6 MB; read in 256 kB pieces, the peak of what numpy allocates stays near one copy
    monkeypatch.setattr(data_module, "PIECE_BYTES", 2**18)
    rng = np.random.default_rng(0)
    arrays = dict(inputs=rng.standard_normal((4000, 50, 5)), targets=rng.standard_normal((4000, 50, 1)))
    path = save(tmp_path / "big.npz", **arrays)
    size = sum(a.nbytes for a in arrays.values())
    tracemalloc.start()
    try:
        data = read_data_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert data.inputs.shape == (50, 4000, 5) and np.array_equal(data.inputs[:, 7], arrays["inputs"][7])
    assert peak < 1.25 * size, (peak, size)
