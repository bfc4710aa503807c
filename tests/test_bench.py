"""scripts/bench.py --quick as a smoke test: it runs without JAX, checks every row's gradients (so a
wrong gradient fails it), and appends a result record. No time is asserted."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_runs_without_jax_checks_gradients_and_appends_a_record(bench, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # `import jax` now fails as if it were not installed
    out = tmp_path / "results.jsonl"
    out.write_text('{"earlier": "run"}\n')
    bench.main(["--quick", "--out", str(out)])
    earlier, first = [json.loads(line) for line in out.read_text().splitlines()]
    assert earlier == {"earlier": "run"}  # appended, not overwritten
    assert {"date", "machine", "versions", "blas", "command"} <= set(first)
    assert first["versions"]["numpy"] == np.__version__
    cells = {(row["cell"], row["dtype"]) for row in first["rows"]}
    assert cells == {(c, d) for c in ("rnn", "lstm", "gru") for d in ("float32", "float64")}
    torch_installed = importlib.util.find_spec("torch") is not None
    for row in first["rows"]:
        assert {"stepwise", "naive"} <= set(row["gradient_error"]) and "jax" not in row["gradient_error"]
        assert ("torch" in row["gradient_error"]) == torch_installed
        assert 0 < row["peer_fraction_of_gemm"]["naive"] and row["ratio"]["naive"] > 0
        for error in row["gradient_error"].values():
            assert error <= bench.GRADIENT_TOLERANCE[row["dtype"]]
        assert row["tape_bytes_per_step"] > row["state_bytes_per_step"] > 0
    assert [r["dtype"] for r in first["train_rows"]] == ["float32", "float64"]
    assert all(r["steps_per_second"]["bptt"] > 0 for r in first["train_rows"])


def test_a_peer_with_a_wrong_gradient_fails_its_row(bench):
    def broken_peer(problem, cell_name):
        right = bench.bptt_runner(problem)

        def run():
            grads = right()
            grads["weight_hh"] = grads["weight_hh"] * (1 + 1e-6)  # off by one part in a million
            return grads

        return run

    with pytest.raises(bench.GradientMismatch, match="broken"):
        bench.bench_row("lstm", (5, 2, 3, 4), "float64", {"broken": broken_peer}, reps=3, row_budget=1.0)


def test_flop_count_of_an_rnn_row_by_hand(bench):
    # forward: x W_ih^T and h W_hh^T; backward: dh_prev, dW_hh, dx, dW_ih: 6 products of 2 T B H (D + H)
    T, B, D, H = 3, 2, 5, 7
    assert bench.bptt_flops("rnn", T, B, D, H) == 3 * 2 * T * B * H * D + 3 * 2 * T * B * H * H
    assert bench.bptt_flops("lstm", T, B, D, H) == 4 * bench.bptt_flops("rnn", T, B, D, H)


def test_unknown_peer_is_an_error_that_names_the_known_ones(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--peers", "torch,tensorflow"])
    err = capsys.readouterr().err
    assert "tensorflow" in err and "naive" in err


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
def test_naive_loops_agree_with_bptt_to_float64_roundoff(bench, cell_name):
    problem = bench.make_problem(cell_name, 7, 3, 4, 5, "float64", seed=1)
    reference = bench.bptt_runner(problem)()
    naive = bench.naive_runner(problem, cell_name)()
    assert set(naive) == set(reference)
    assert bench.max_gradient_error(reference, naive) < 1e-12
