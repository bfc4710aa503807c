"""scripts/bench.py --quick as a smoke test: it runs without JAX, checks every row's gradients (so a
wrong gradient fails it), and appends a result record. No time is asserted. Also: the stepwise
peer and its flop limit, --against REV (bptt at another revision, timed beside the working tree's),
--show on every stored record, and the split modules loading by path as bench.py does."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bptt
from bptt.cells.registry import CELL_NAMES

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SCRIPT = SCRIPTS / "bench.py"
REPO = SCRIPTS.parent
SPLIT_MODULES = ["bench_harness", "bench_machine", "bench_peers", "bench_report", "bench_revision",
                 "bench_stack", "bench_timing", "bench_train"]


def load(name: str, path: Path):
    """Import the file at `path` as module `name` (importlib's recipe for a source file)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load("bench", SCRIPT)


@pytest.fixture(scope="module")
def harness(bench):
    return bench.bench_harness


@pytest.fixture(scope="module")
def peers(bench):
    return bench.bench_peers


@pytest.fixture(scope="module")
def revision(bench):
    return bench.bench_revision


def test_quick_runs_without_jax_checks_gradients_and_appends_a_record(bench, harness, tmp_path, monkeypatch):
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
        assert "stepwise" in row["gradient_error"] and "jax" not in row["gradient_error"]
        assert ("torch" in row["gradient_error"]) == torch_installed
        assert 0 < row["peer_fraction_of_gemm"]["stepwise"] and row["ratio"]["stepwise"] > 0
        for error in row["gradient_error"].values():
            assert error <= harness.GRADIENT_TOLERANCE[row["dtype"]]
        assert row["tape_bytes_per_step"] > row["state_bytes_per_step"] > 0
    assert [r["dtype"] for r in first["train_rows"]] == ["float32", "float64"]
    assert all(r["steps_per_second"]["bptt"] > 0 for r in first["train_rows"])
    stacked = {(r["cell"], r["dtype"], r["variant"]) for r in first["stack_rows"]}
    assert stacked == {(c, d, v) for c in ("lstm", "gru") for d in ("float32", "float64")
                       for v in ("2 layers, bidirectional", "2 layers, bidirectional, lengths")}
    for row in first["stack_rows"]:  # checked against the plain step pairs, and torch when installed
        assert set(row["gradient_error"]) == ({"stepwise", "torch"} if torch_installed else {"stepwise"})
        assert all(e <= harness.GRADIENT_TOLERANCE[row["dtype"]] for e in row["gradient_error"].values())
        assert (row["lengths"] is not None) == row["variant"].endswith("lengths")
        if row["lengths"] is not None:
            assert max(row["lengths"]) == row["T"] and min(row["lengths"]) >= row["T"] // 4


def test_a_stacked_row_with_a_wrong_gradient_fails(bench, harness, monkeypatch):
    stack = bench.bench_stack
    original = stack.stepwise_runner

    def broken(problem):
        right = original(problem)

        def run():
            grads = right()
            grads["weight_hh_l1_reverse"] = grads["weight_hh_l1_reverse"] * (1 + 1e-6)
            return grads

        return run

    monkeypatch.setattr(stack, "stepwise_runner", broken)
    with pytest.raises(harness.GradientMismatch, match="stepwise"):
        stack.bench_stack_row("gru", (5, 2, 3, 4), "float64", True, False, reps=3, row_budget=1.0)


def test_a_peer_with_a_wrong_gradient_fails_its_row(harness, peers):
    def broken_peer(problem, cell_name):
        right = peers.bptt_runner(problem)

        def run():
            grads = right()
            grads["weight_hh"] = grads["weight_hh"] * (1 + 1e-6)  # off by one part in a million
            return grads

        return run

    with pytest.raises(harness.GradientMismatch, match="broken"):
        harness.bench_row("lstm", (5, 2, 3, 4), "float64", {"broken": broken_peer}, reps=3, row_budget=1.0)


def test_flop_count_of_an_rnn_row_by_hand(harness):
    # forward: x W_ih^T and h W_hh^T; backward: dh_prev, dW_hh, dx, dW_ih: 6 products of 2 T B H (D + H)
    T, B, D, H = 3, 2, 5, 7
    assert harness.bptt_flops("rnn", T, B, D, H) == 3 * 2 * T * B * H * D + 3 * 2 * T * B * H * H
    assert harness.bptt_flops("lstm", T, B, D, H) == 4 * harness.bptt_flops("rnn", T, B, D, H)


def test_unknown_peer_is_an_error_that_names_the_known_ones(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--peers", "torch,tensorflow"])
    err = capsys.readouterr().err
    assert "tensorflow" in err and "stepwise" in err


@pytest.mark.parametrize("cell_name", CELL_NAMES)
def test_stepwise_peer_agrees_with_bptt_to_float64_roundoff(harness, peers, cell_name):
    problem = harness.make_problem(cell_name, 7, 3, 4, 5, "float64", seed=1)
    reference = peers.bptt_runner(problem)()
    stepwise = peers.stepwise_runner(problem, cell_name)()
    assert set(stepwise) == set(reference)
    assert harness.max_gradient_error(reference, stepwise) < 1e-12


def test_above_its_flop_limit_stepwise_is_not_timed_yet_every_row_is_checked(bench, harness, peers, monkeypatch):
    monkeypatch.setattr(harness, "STEPWISE_MAX_FLOPS", 0.0)  # every row is "big"
    other = lambda problem, cell_name: peers.bptt_runner(problem)  # noqa: E731  (stands in for torch)
    row = harness.bench_row("gru", (4, 2, 3, 5), "float64", {"torch": other, "stepwise": peers.stepwise_runner},
                            reps=3, row_budget=1.0)
    assert "stepwise" not in row["ratio"] and "stepwise" not in row["gradient_error"]
    assert "torch" in row["gradient_error"]
    line = bench.bench_report.format_table([row], ["torch", "stepwise"]).splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[11:14] == ["-", "-", "-"]  # the stepwise columns, after bptt's and torch's
    alone = harness.bench_row("gru", (4, 2, 3, 5), "float64", {"stepwise": peers.stepwise_runner},
                              reps=3, row_budget=1.0)
    assert "stepwise" not in alone["ratio"] and "stepwise" in alone["gradient_error"]  # checked untimed


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="--against needs the git repository")
def test_against_head_times_that_revision_beside_the_working_tree_and_records_it(bench, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    record = bench.main(["--quick", "--against", "HEAD", "--cells", "lstm", "--dtypes", "float64",
                         "--peers", "stepwise", "--no-train", "--out", str(out)])
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert record["against"] == {"revision": "HEAD", "commit": head}
    assert json.loads(out.read_text())["against"] == record["against"]
    (row,) = record["rows"]
    assert row["gradient_error"]["ref"] <= 1e-12 and row["ratio"]["ref"] > 0
    assert "stepwise" in row["gradient_error"]
    assert record["stack_rows"]  # the stacked rows time HEAD's Stack too
    for stacked in record["stack_rows"]:
        assert stacked["gradient_error"]["ref"] <= 1e-12 and stacked["ratio"]["ref"] > 0
    printed = capsys.readouterr().out
    assert "ref ms" in printed and "bptt/ref" in printed and f"commit {head[:12]}" in printed
    assert "| stack | bptt ms | ref ms | bptt/ref | torch ms |" in printed
    bench.main(["--show", str(out)])
    assert f"ref: bptt at HEAD (commit {head[:12]})" in capsys.readouterr().out


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="--against needs the git repository")
def test_a_revision_is_its_own_package_and_is_forgotten_afterwards(revision):
    with revision.bptt_at("HEAD") as rev:
        name = rev.package.__name__
        assert name.startswith("bptt_at_") and name in sys.modules
        assert rev.package.LSTM is not bptt.LSTM
        assert REPO not in Path(rev.package.__file__).parents  # from the archive, not the working tree
        assert sys.modules[rev.package.LSTM.__module__].__name__.startswith(name + ".")
    assert not [k for k in sys.modules if k == name or k.startswith(name + ".")]


def test_a_bad_revision_is_an_error_that_names_it(bench, revision, tmp_path):
    with pytest.raises(revision.RevisionError, match="no-such-revision"):
        bench.main(["--quick", "--against", "no-such-revision", "--out", str(tmp_path / "r.jsonl")])
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--against", "no-such-revision",
                           "--out", str(tmp_path / "r.jsonl")], capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "error: --against: revision 'no-such-revision'" in done.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_code_importing_bptt_by_its_absolute_name_is_found(revision, tmp_path):
    package = tmp_path / "bptt"
    package.mkdir()
    (package / "__init__.py").write_text('"""import bptt in a docstring is fine"""\nfrom .a import f\n')
    (package / "a.py").write_text("import numpy\n\n\ndef f():\n    from bptt.cells import LSTM\n")
    assert revision.absolute_bptt_imports(package) == ["bptt/a.py:5"]


def test_interleaving_varies_the_order_and_warms_the_runner_after_the_gemm(bench):
    calls = []
    runners = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "gemm")}
    times = bench.bench_timing.interleave(runners, reps=30, samples={"gemm": 2}, evicting=("gemm",))
    assert {name: len(t) for name, t in times.items()} == {"a": 30, "b": 30, "gemm": 60}
    predecessors = {calls[i - 1] for i in range(1, len(calls)) if calls[i] == "a" and calls[i - 1] != "a"}
    assert predecessors == {"b", "gemm"}  # a fixed rotation would always put the same one before a
    for i in range(1, len(calls) - 1):
        if calls[i] == "gemm" and calls[i + 1] != "gemm":
            assert calls[i + 2] == calls[i + 1]  # one untimed call, then the timed one


def test_show_prints_every_stored_record(bench, tmp_path, capsys):
    for line in (REPO / "benchmarks" / "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        path = tmp_path / "one.jsonl"
        path.write_text(line + "\n")
        bench.main(["--show", str(path)])
        printed = capsys.readouterr().out
        assert record["command"] in printed
        for peer in {peer for row in record["rows"] for peer in row["ratio"]}:
            assert f"{peer} ms" in printed and f"bptt/{peer}" in printed
        assert len([r for r in printed.splitlines() if r.startswith("| ") and "float" in r]) == len(
            record["rows"]) + len(record.get("train_rows", [])) + len(record.get("stack_rows", []))


@pytest.mark.parametrize("name", SPLIT_MODULES)
def test_each_split_module_loads_by_path_as_bench_does(name, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # as when bench.py runs: its folder is on the path
    monkeypatch.setitem(sys.modules, f"{name}_by_path", None)  # removed again after the test
    module = load(f"{name}_by_path", SCRIPTS / f"{name}.py")
    assert module.__doc__.strip()


def test_pin_puts_every_thread_of_the_process_on_the_chosen_core():
    """Threads started before the pinning are moved too, and threads started after inherit it."""
    code = """
import os, sys, threading, time
sys.path.insert(0, sys.argv[1])
from bench_machine import pin
stop = threading.Event()
early = threading.Thread(target=stop.wait)
early.start()
core = sorted(os.sched_getaffinity(0))[-1]
assert pin(1) == [core]
late = threading.Thread(target=stop.wait)
late.start()
tasks = [int(t) for t in os.listdir("/proc/self/task")]
print(sorted({c for t in tasks for c in os.sched_getaffinity(t)}) == [core], len(tasks))
stop.set()
"""
    if not hasattr(__import__("os"), "sched_setaffinity"):
        pytest.skip("no CPU affinity on this OS")
    done = subprocess.run([sys.executable, "-c", code, str(SCRIPTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    pinned, threads = done.stdout.split()
    assert pinned == "True" and int(threads) >= 3


def test_the_header_says_where_the_run_was_pinned(bench):
    report = bench.bench_report
    assert "pinned to CPU 1 (os.sched_setaffinity)" in report.pinning_line([1])
    assert report.pinning_line(None).startswith("not pinned")


@pytest.mark.parametrize("argv, message", [(["--cores", "x"], "--cores takes"),
                                           (["--cores", "0,1"], "names 2 CPUs for 1 thread")])
def test_bad_cores_are_refused_by_name(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("cell_name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("H", [6, 64])  # both sides of the GRU's identity-block rule
def test_each_floor_prototype_computes_bptts_gradients(harness, peers, cell_name, H):
    """scripts/floor.py times what it claims to: the same forward and backward as bptt."""
    floor = load("floor", SCRIPTS / "floor.py")
    problem = harness.make_problem(cell_name, 5, 3, 4, H, "float64", seed=2)
    reference = peers.bptt_runner(problem)()
    assert harness.max_gradient_error(reference, floor.FLOORS[cell_name](problem)()) < 1e-12


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="revisions need the git repository")
def test_bench_history_times_each_revision_and_its_ratio_to_the_one_before(capsys):
    history = load("bench_history", SCRIPTS / "bench_history.py")
    assert history.main(["HEAD", "HEAD~1", "--cells", "rnn", "--dtypes", "float64", "--sizes", "1",
                         "--rounds", "3"]) == 0
    out = capsys.readouterr().out
    header, _, row = out.splitlines()[1:4]
    assert header.count("ratio") == 1 and "HEAD (" in header and "HEAD~1 (" in header
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:6] == ["rnn", "float64", "100", "32", "16", "64"]
    first, second, ratio = map(float, cells[6:9])
    assert ratio == pytest.approx(second / first, abs=0.006)


def test_bench_history_names_a_bad_revision_without_a_traceback():
    done = subprocess.run([sys.executable, str(SCRIPTS / "bench_history.py"), "HEAD", "no-such-revision"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "revision 'no-such-revision'" in done.stderr
