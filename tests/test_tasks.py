"""Toy tasks: seeded and reproducible, targets that follow from the inputs, baselines that are
what the best input-blind predictor scores."""

import math

import numpy as np
import pytest

import bptt
from bptt.training.tasks import TASKS, make_task


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("the cat sat on the mat. " * 40)
    return str(path)


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "data.npz"
    rng = np.random.default_rng(0)
    np.savez(path, inputs=rng.standard_normal((40, 20, 3)), targets=rng.integers(0, 4, (40, 20)))
    return str(path)


def task_named(name, text_file, data_file=None, seq_len=20):
    return make_task(name, seq_len, text_file if name == "chars" else None, data=data_file if name == "data" else None)


@pytest.mark.parametrize("name", TASKS)
def test_batches_are_seeded_and_shaped(name, text_file, data_file):
    task = task_named(name, text_file, data_file)
    a = task.sample(np.random.default_rng(3), 5)
    b = task.sample(np.random.default_rng(3), 5)
    c = task.sample(np.random.default_rng(4), 5)
    assert all(np.array_equal(x, y) for x, y in zip(a[:3], b[:3]))
    assert not np.array_equal(a.xs, c.xs)
    T = a.xs.shape[0]
    assert a.xs.shape[1:] == (5, task.input_size) and a.mask.shape == (T, 5) and a.mask.any()
    if a.targets.dtype.kind == "f":
        assert a.targets.shape == (T, 5, task.output_size)
    else:
        assert a.targets.shape == (T, 5) and a.targets.min() >= 0 and a.targets.max() < task.output_size
    # the held-out set is fixed by its own seed and differs from training batches
    e1, e2 = task.eval_batch(7, 11), task.eval_batch(7, 11)
    assert np.array_equal(e1.xs, e2.xs)


def test_adding_target_is_the_sum_of_the_marked_values():
    batch = make_task("adding", 50).sample(np.random.default_rng(0), 64)
    values, markers = batch.xs[..., 0], batch.xs[..., 1]
    assert np.array_equal(markers.sum(axis=0), np.full(64, 2.0))
    assert (markers[:25].sum(axis=0) == 1).all()  # one marker per half
    assert np.allclose(batch.targets[-1, :, 0], (values * markers).sum(axis=0), rtol=0, atol=1e-15)
    assert batch.mask[-1].all() and not batch.mask[:-1].any()


def test_adding_baseline_is_the_variance_of_the_sum():
    batch = make_task("adding", 20).sample(np.random.default_rng(1), 200_000)
    loss, _ = bptt.mse(np.ones(200_000), batch.targets[-1, :, 0])
    assert loss == pytest.approx(make_task("adding", 20).baseline["loss"], rel=0.01)


def test_copy_baseline_is_the_loss_of_blanks_then_a_uniform_guess():
    task = make_task("copy", 15)
    batch = task.sample(np.random.default_rng(0), 8)
    T = 15 + 20
    assert batch.xs.shape[0] == T
    data = batch.xs[:10].argmax(-1)
    assert np.array_equal(batch.targets[-10:], data)  # recall what was shown
    assert batch.xs[T - 11].argmax(-1).tolist() == [9] * 8  # the delimiter
    logits = np.full((T, 8, 10), -np.inf)
    logits[:-10, :, 0] = 0.0  # certain blank ...
    logits[-10:, :, 1:9] = 0.0  # ... then uniform over the 8 symbols
    probs = np.exp(logits)
    picked = np.take_along_axis(probs / probs.sum(-1, keepdims=True), batch.targets[..., None], -1)
    assert -np.log(picked).mean() == pytest.approx(task.baseline["loss"], rel=1e-12)
    assert task.baseline["loss"] == pytest.approx(10 * math.log(8) / 35)


def test_temporal_order_class_is_the_order_of_x_and_y():
    task = make_task("temporal-order", 100)
    batch = task.sample(np.random.default_rng(0), 200)
    symbols = batch.xs.argmax(-1)
    for n in range(200):
        relevant = [s for s in symbols[:, n] if s in (task.X, task.Y)]
        assert len(relevant) == 2
        first, second = (s - task.X for s in relevant)
        assert batch.targets[-1, n] == 2 * first + second
        positions = np.flatnonzero((symbols[:, n] == task.X) | (symbols[:, n] == task.Y))
        assert 10 <= positions[0] <= 20 and 50 <= positions[1] <= 60
    assert np.bincount(batch.targets[-1], minlength=4).min() > 30  # the 4 classes all occur


def test_parity_is_the_running_xor():
    batch = make_task("parity", 30).sample(np.random.default_rng(0), 10)
    bits = batch.xs[..., 0].astype(int)
    assert np.array_equal(batch.targets, np.cumsum(bits, axis=0) % 2)


def test_reber_strings_follow_the_grammar_and_the_legal_sets():
    task = make_task("reber", 40)
    batch = task.sample(np.random.default_rng(0), 300)
    alphabet = task.alphabet
    for n in range(300):
        L = int(batch.xs[:, n].sum())
        string = "".join(alphabet[i] for i in batch.xs[:L, n].argmax(-1))
        assert string[0] == "B" and string[-1] == "E" and string[1] == string[-2] and string[1] in "TP"
        assert string[2] == "B" and string[-3] == "E"
        for t in range(L - 1):
            assert batch.legal[t, n, batch.targets[t, n]]  # the actual next symbol is always legal
        assert batch.mask[: L - 1, n].all() and not batch.mask[L - 1 :, n].any()
        assert batch.legal[L - 3, n].sum() == 1  # after the inner E: only the first branch symbol
    # a predictor that knows the legal sets succeeds; the unigram baseline does not
    perfect = np.where(batch.legal, 1.0, 0.0)
    assert task.metrics(perfect, batch)["success"] == 1.0
    assert task.baseline["success"] < 0.05


def test_chars_splits_the_text_and_reports_the_unigram_entropy(text_file):
    task = make_task("chars", 10, text_file)
    with open(text_file) as f:
        text = f.read()
    counts = np.array([text.count(ch) for ch in task.vocab], float)
    p = counts / counts.sum()
    assert task.baseline["loss"] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
    batch = task.sample(np.random.default_rng(0), 4)
    decoded = "".join(task.vocab[i] for i in batch.xs[:, 0].argmax(-1))
    assert decoded in text[: int(0.9 * len(text))]
    assert np.array_equal(batch.targets[:-1], batch.xs[1:].argmax(-1))  # next character
    held = task.eval_batch(1000, 0)
    assert held.xs.shape[1] == (len(text) - int(0.9 * len(text)) - 1) // 10


@pytest.mark.parametrize("name,seq_len,message", [("sorting", 10, "'sorting' is neither a built-in task"), ("adding", 1, "seq_len"),
                                                  ("reber", 5, "seq_len"), ("temporal-order", 4, "seq_len"),
                                                  ("chars", 10, "needs a text file"),
                                                  ("data", 10, "needs a data file")])
def test_bad_task_settings_are_value_errors(name, seq_len, message):
    with pytest.raises(ValueError, match=message):
        make_task(name, seq_len)


def test_chars_text_too_short_is_a_value_error(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("abc")
    with pytest.raises(ValueError, match="at least"):
        make_task("chars", 10, str(path))


# --- the chars text: read through the untrusted reader, bounded, a regular file only


def test_chars_vocabulary_and_codes_are_the_sorted_characters_of_any_unicode_text(tmp_path):
    text = "Größe 𝄞 naïve — ça va? " * 30 + "∑ x² 🎵 日本語"
    path = tmp_path / "u.txt"
    path.write_text(text, encoding="utf-8")
    task = make_task("chars", 5, str(path))
    assert task.vocab == "".join(sorted(set(text)))
    assert "".join(task.vocab[i] for i in task.codes) == text and task.codes.dtype == np.int64


def capped():
    """Run a child with 4 GiB of address space: a reader that regressed to reading /dev/zero whole
    fails there with a MemoryError instead of taking the machine's memory."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_a_chars_text_that_is_not_a_regular_file_is_refused_unread(tmp_path, special):
    import os
    import subprocess
    import sys

    path = {"/dev/zero": "/dev/zero", "fifo": str(tmp_path / "pipe"), "folder": str(tmp_path)}[special]
    if special == "fifo":
        os.mkfifo(path)  # no writer: a reader that opened it blocking would wait forever (the timeout ends it)
    code = ("import sys\nfrom bptt.training.tasks import make_task\ntry:\n    make_task('chars', 10, sys.argv[1])\n"
            "except ValueError as exc:\n    print(exc)\n")
    child = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120,
                           preexec_fn=capped)
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith(f"text file {path!r}: is not a regular file"), child.stdout


def test_a_chars_text_above_the_limit_is_refused_naming_it(tmp_path, monkeypatch):
    from bptt.training import tasks

    assert tasks.MAX_TEXT_BYTES >= 100 * 10**6  # a real corpus (enwik8: 10^8 bytes) fits the real limit
    path = tmp_path / "big.txt"
    path.write_text("abcdefgh" * 200)
    monkeypatch.setattr(tasks, "MAX_TEXT_BYTES", 1000)
    with pytest.raises(ValueError, match=r"text file '.*big.txt': is larger than 1,000 bytes"):
        make_task("chars", 10, str(path))


def test_a_run_folder_whose_config_names_dev_zero_is_refused_on_resume(tmp_path, text_file):
    import json
    import subprocess

    from conftest import bptt_command, finish

    out = tmp_path / "run"
    bptt.train(bptt.TrainConfig(task="chars", text=text_file, seq_len=8, hidden=4, steps=1, eval_size=4,
                                out=str(out)))
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "text": "/dev/zero"}))
    process = subprocess.Popen(bptt_command("train", "--resume", out, "--steps", "2", "--quiet"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=capped)
    code, _, err = finish(process, timeout=120)
    assert code == 2 and "text file '/dev/zero': is not a regular file" in err
    assert "Traceback" not in err
