"""One row of the bench: build a problem, check every runner's gradients against bptt's, time them
interleaved (bench_timing), and report medians, ratios and fractions of the GEMM rate.

The loss is L = sum_t <h_t, G_t> with a fixed random G, so every step's output has a loss on it; the
gradients taken are those of all four parameters, the inputs and the initial state.

Letters: T time, B batch, D input size, H hidden size.
"""

from __future__ import annotations

import statistics

import numpy as np

import bench_peers
import bench_timing
import bptt
from bptt.cells.registry import make_cell
from bptt.modes.finite_diff import relative_error

GRADIENT_TOLERANCE = {"float32": 1e-3, "float64": 1e-9}  # norm-wise relative error
GEMM_SAMPLES = 3  # timed products per repetition
# Rows above this leave the stepwise peer out: a row calls each runner at least five times, and one
# stepwise call costs seconds there (10 s for the float64 LSTM at T 200, B 128, H 512). Such rows are
# checked against torch and jax, and against the stepwise path, untimed, when neither is there.
STEPWISE_MAX_FLOPS = 2e10
INDEPENDENT_PEERS = {"torch", "jax", "stepwise"}  # checks that do not share bptt's fast path


class GradientMismatch(RuntimeError):
    """Raised when a peer's gradient differs from bptt's: a fast wrong answer must not pass."""


def make_problem(cell_name: str, T: int, B: int, D: int, H: int, dtype: str, seed: int = 0) -> dict:
    """The registry's cell (weights in PyTorch's layout), inputs xs (T, B, D), initial state parts
    (B, H) each, and loss weights G (T, B, H)."""
    rng = np.random.default_rng(seed)
    cell = make_cell(cell_name, D, H, seed=seed, dtype=dtype)
    state0 = tuple(0.5 * rng.standard_normal((B, H)).astype(dtype) for _ in cell.state_fields)
    return {
        "cell": cell,
        "xs": rng.standard_normal((T, B, D)).astype(dtype),
        "state0": state0,
        "G": rng.standard_normal((T, B, H)).astype(dtype),
    }


def bptt_flops(cell_name: str, T: int, B: int, D: int, H: int) -> float:
    """Multiply-adds x 2 in the matrix products of forward + backward (element-wise work left out).

    Forward: input and recurrent projections, 2 T B GH (D + H). Backward: dL/dh_prev, dW_hh
    (2 T B GH H each), dL/dx and dW_ih (2 T B GH D each).
    """
    GH = make_cell(cell_name, 1, 1).gates * H
    return 6.0 * T * B * GH * (D + H)


def gemm_fraction(flops: float, best_seconds: dict, runner: str) -> float:
    """A runner's rate (`flops` over its time) over numpy's GEMM rate, from the fastest runs."""
    return (flops / best_seconds[runner]) / (bench_peers.gemm_flops() / best_seconds["gemm"])


def max_gradient_error(reference: dict, other: dict) -> float:
    errors = []
    for key, value in reference.items():
        pairs = zip(value, other[key]) if isinstance(value, tuple) else [(value, other[key])]
        errors.extend(relative_error(a, b) for a, b in pairs)
    return max(errors)


def check_gradients(peer: str, reference: dict, other: dict, dtype: str) -> float:
    """The largest relative error over all gradients; raise GradientMismatch above the tolerance."""
    error = max_gradient_error(reference, other)
    if not error <= GRADIENT_TOLERANCE[dtype]:
        raise GradientMismatch(
            f"{peer}'s gradients differ from bptt's: relative error {error:.3g} > {GRADIENT_TOLERANCE[dtype]}"
        )
    return error


def bench_row(cell_name: str, size: tuple, dtype: str, peers: dict, reps: int, row_budget: float,
              settle: float = 0.0) -> dict:
    """Warm up and cross-check every runner, then time them interleaved; medians in seconds.

    peers: {name: runner factory} (bench_peers). settle: seconds to wait before each timed call.
    """
    T, B, D, H = size
    flops = bptt_flops(cell_name, T, B, D, H)
    if flops > STEPWISE_MAX_FLOPS:
        peers = {name: make for name, make in peers.items() if name != "stepwise"}
    problem = make_problem(cell_name, T, B, D, H, dtype)
    runners = {"bptt": bench_peers.bptt_runner(problem)}
    for peer, make in peers.items():
        runners[peer] = make(problem, cell_name)
    runners["gemm"] = bench_peers.gemm_runner(dtype)

    reference = runners["bptt"]()
    checks = {}
    if "stepwise" not in peers and (flops <= STEPWISE_MAX_FLOPS or not INDEPENDENT_PEERS & set(peers)):
        # untimed, so a row is checked against a path independent of bptt's even with no peer installed
        stepwise = bench_peers.stepwise_runner(problem, cell_name)()
        checks["stepwise"] = check_gradients("stepwise", reference, stepwise, dtype)
    for name, run in runners.items():
        result = run()  # warm-up (and JAX's compilation)
        if name in peers:
            checks[name] = check_gradients(name, reference, result, dtype)
    reps = bench_timing.repetitions(runners, reps, row_budget)
    times = bench_timing.interleave(runners, reps, settle, samples={"gemm": GEMM_SAMPLES},
                                   evicting=("gemm",))
    median = {name: statistics.median(wall for wall, _ in ts) for name, ts in times.items()}
    median_cpu = {name: statistics.median(cpu for _, cpu in ts) for name, ts in times.items()}
    best = {name: min(wall for wall, _ in ts) for name, ts in times.items()}

    cell = problem["cell"]
    _, tape = bptt.forward(cell, problem["xs"], cell.pack_state(problem["state0"]))
    state_bytes = B * H * cell.dtype.itemsize * len(cell.state_fields)
    gemm_rate = bench_peers.gemm_flops() / median["gemm"]
    bptt_rate = flops / median["bptt"]
    return {
        "cell": cell_name, "T": T, "B": B, "D": D, "H": H, "dtype": dtype, "reps": reps,
        "seconds": median,
        "cpu_seconds": median_cpu,
        "best_seconds": best,
        "ratio": {peer: median["bptt"] / median[peer] for peer in peers},
        "cpu_ratio": {peer: median_cpu["bptt"] / median_cpu[peer] for peer in peers},
        "gradient_error": checks,
        "bptt_gflops": bptt_rate / 1e9,
        "gemm_gflops": gemm_rate / 1e9,
        "fraction_of_gemm": bptt_rate / gemm_rate,  # from medians; the table uses the fastest runs
        "peer_fraction_of_gemm": {peer: gemm_fraction(flops, best, peer) for peer in peers},
        "tape_bytes_per_step": tape.nbytes / T,
        "notes": problem.get("notes", {}),
        "state_bytes_per_step": state_bytes,
    }
