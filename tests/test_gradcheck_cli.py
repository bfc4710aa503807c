"""`bptt gradcheck`: passes on correct gradients, fails (exit 1) on a wrong one or an impossible tolerance."""

import importlib.util
import re

import numpy as np
import pytest
from click.testing import CliRunner

import bptt
from bptt.cli import cli

SMALL = ["--hidden", "3", "--input-size", "2", "--seq-len", "6", "--batch", "2"]


def run(*args):
    return CliRunner().invoke(cli, ["gradcheck", *SMALL, *args])


def table(output):
    """{mode label: error} from the printed table (the reference row has no number)."""
    rows = {}
    for line in output.splitlines():
        match = re.match(r"(\S.*?)\s{2,}(\S+)\s+[\d.]+ ms$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


@pytest.mark.parametrize("cell", ["rnn", "rnn-relu", "lstm", "gru"])
@pytest.mark.parametrize("truncate", [None, "4"])
def test_gradcheck_passes_for_every_cell(cell, truncate):
    args = ["--cell", cell, "--no-torch"] + (["--truncate", truncate] if truncate else [])
    result = run(*args)
    assert result.exit_code == 0, result.output
    rows = table(result.output)
    assert set(rows) == {"reverse (BPTT)", "reverse, checkpointed", "forward (RTRL)", "finite differences"}
    assert rows["reverse (BPTT)"] == "(reference)"
    assert float(rows["reverse, checkpointed"]) < 1e-13 and float(rows["forward (RTRL)"]) < 1e-13
    assert float(rows["finite differences"]) < 1e-6
    assert "PASS" in result.output


@pytest.mark.torch
def test_gradcheck_includes_pytorch(torch):
    result = run("--cell", "lstm", "--truncate", "4", "--torch")
    assert result.exit_code == 0, result.output
    assert float(table(result.output)["PyTorch autograd"]) < 1e-13


def test_an_impossible_tolerance_fails():
    result = run("--cell", "gru", "--tol", "1e-14", "--no-torch")
    assert result.exit_code == 1
    assert "FAIL: finite differences above tolerance 1e-14" in result.output


def test_a_corrupted_reverse_sweep_fails(monkeypatch):
    """Scale dL/dc_prev by 1.01 in LSTM's backward: forward mode and finite differences disagree."""
    from bptt.cells.lstm_fast import LSTMSweep

    original = LSTMSweep.step

    def corrupted(self, t, dstate, out):
        dh_prev, dc_prev = original(self, t, dstate, out)
        return dh_prev, 1.01 * dc_prev

    monkeypatch.setattr(LSTMSweep, "step", corrupted)
    result = run("--cell", "lstm", "--no-torch")
    assert result.exit_code == 1
    rows = table(result.output)
    assert float(rows["forward (RTRL)"]) > 1e-6 and float(rows["finite differences"]) > 1e-6
    assert "FAIL" in result.output


def test_truncation_changes_the_gradient():
    """The truncated gradient really is a different quantity (and every mode agrees on it)."""
    from bptt.cli.gradcheck import choose_coordinates, chunk_starts, reverse_mode

    rng = np.random.default_rng(0)
    cell = bptt.cells.make_cell("rnn", 2, 3, seed=0)
    xs, targets = rng.standard_normal((8, 1, 2)), rng.standard_normal((8, 1, 3))
    full = [slice(0, 8)]
    cut = [slice(0, 4), slice(4, 8)]
    every = choose_coordinates(cell, None, rng)
    g_full = reverse_mode(cell, xs, targets, full, chunk_starts(cell, xs, full), every, lambda n: None)
    g_cut = reverse_mode(cell, xs, targets, cut, chunk_starts(cell, xs, cut), every, lambda n: None)
    assert not np.allclose(g_full["weight_hh"], g_cut["weight_hh"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cell", "lsm"], "Invalid value for --cell: 'lsm' is neither a built-in cell nor registered in bptt.cells"),
        (["--hidden", "0"], "--hidden"),
        (["--truncate", "0"], "--truncate"),
        (["--tol", "0"], "--tol"),
    ],
)
def test_bad_options_are_usage_errors(args, message):
    result = CliRunner().invoke(cli, ["gradcheck", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_asking_for_torch_without_it_is_a_usage_error(monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else find_spec(name, *a))
    result = run("--torch")
    assert result.exit_code == 2 and "torch is not installed" in result.output


def test_a_cut_longer_than_the_sequence_is_a_usage_error():
    result = run("--cell", "rnn", "--truncate", "7", "--no-torch")  # SMALL has --seq-len 6
    assert result.exit_code == 2
    assert "Invalid value for --truncate: 7 is longer than the sequence (--seq-len 6)" in result.output
    assert run("--cell", "rnn", "--truncate", "6", "--no-torch").exit_code == 0  # one cut: full BPTT


def test_no_torch_says_why_pytorch_is_left_out():
    result = run("--cell", "gru", "--no-torch")
    assert result.exit_code == 0
    if importlib.util.find_spec("torch") is not None:
        assert "(PyTorch not included: --no-torch)" in result.output
        assert "install" not in result.output
    else:
        assert "it is not installed; pip install torch==2.13.0 adds it" in result.output


def test_sampled_coordinates_check_a_large_cell_quickly():
    result = CliRunner().invoke(cli, ["gradcheck", "--cell", "gru", "--hidden", "24", "--seq-len", "5",
                                      "--sample", "3", "--no-torch"])
    assert result.exit_code == 0, result.output
    assert "checked: 3 random coordinates of each parameter (12 of 2088)" in result.output
    rows = table(result.output)
    assert set(rows) == {"reverse (BPTT)", "reverse, checkpointed", "forward (jvp)", "finite differences"}
    assert float(rows["forward (jvp)"]) < 1e-12 and float(rows["finite differences"]) < 1e-6


def test_a_large_cell_is_sampled_by_default_and_a_small_one_is_not():
    big = CliRunner().invoke(cli, ["gradcheck", "--cell", "lstm", "--hidden", "24", "--seq-len", "4", "--no-torch"])
    assert big.exit_code == 0, big.output
    assert "checked: 20 random coordinates of each parameter (80 of 2784)" in big.output
    small = run("--cell", "lstm", "--no-torch")
    assert "checked: all 84 parameters" in small.output and "forward (RTRL)" in small.output


def test_sampling_still_catches_a_wrong_gradient(monkeypatch):
    from bptt.cells.gru_fast import GRUSweep

    original = GRUSweep.step

    def corrupted(self, t, dstate, out):
        (dh_prev,) = original(self, t, dstate, out)
        dh_prev *= 1.01  # in place: the sweep writes dL/dh_prev into `out`
        return (dh_prev,)

    monkeypatch.setattr(GRUSweep, "step", corrupted)
    result = run("--cell", "gru", "--sample", "2", "--no-torch")
    assert result.exit_code == 1
    assert float(table(result.output)["finite differences"]) > 1e-6


def test_progress_goes_to_stderr_and_the_table_to_stdout():
    result = CliRunner().invoke(cli, ["gradcheck", *SMALL, "--cell", "rnn", "--no-torch"])
    assert result.exit_code == 0
    assert "checking" not in result.stdout
    assert "reverse (BPTT)" in result.stdout


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_gradcheck_checks_a_stack(cell):
    result = run("--cell", cell, "--layers", "2", "--bidirectional", "--no-torch")
    assert result.exit_code == 0, result.output
    assert f"gradcheck {cell}: L=2 bidirectional" in result.output
    rows = table(result.output)
    assert set(rows) == {"reverse (BPTT)", "reverse, checkpointed", "forward (jvp)", "finite differences"}
    assert float(rows["forward (jvp)"]) < 1e-12 and float(rows["finite differences"]) < 1e-6


@pytest.mark.torch
def test_gradcheck_checks_a_truncated_stack_against_pytorch(torch):
    result = run("--cell", "lstm", "--layers", "3", "--truncate", "3", "--torch")
    assert result.exit_code == 0, result.output
    assert float(table(result.output)["PyTorch autograd"]) < 1e-13


def test_a_truncated_bidirectional_stack_is_a_usage_error():
    result = run("--bidirectional", "--truncate", "3", "--no-torch")
    assert result.exit_code == 2
    assert "a bidirectional stack cannot be truncated" in result.output


@pytest.mark.parametrize("cell", ["lstm", "rnn-relu"])
def test_finite_differences_pass_correct_code_at_h128_t100(cell):
    """At H = 128, T = 100 the MSE is ~1 and a coordinate's gradient ~4e-5: differences of the loss
    itself lose 3.9e-6 to round-off (a FAIL at the default 1e-6); differences of its change from the
    unperturbed loss keep the error near 1e-8, with the same step (so relu's kinks stay uncrossed)."""
    from bptt.cli.gradcheck import choose_coordinates, finite_differences, max_relative_error, reverse_mode

    rng = np.random.default_rng(0)
    net = bptt.make_cell(cell, 3, 128, seed=0)
    xs, targets = rng.standard_normal((100, 2, 3)), rng.standard_normal((100, 2, 128))
    coordinates = choose_coordinates(net, 5, rng)
    chunks, starts = [slice(0, 100)], [None]
    exact = reverse_mode(net, xs, targets, chunks, starts, coordinates, lambda n: None)
    numeric = finite_differences(net, xs, targets, chunks, starts, coordinates, lambda n: None)
    assert max_relative_error(numeric, exact, reverse_mode.rms) < 1e-7
