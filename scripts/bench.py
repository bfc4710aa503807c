"""Time bptt's forward + full backward against PyTorch and JAX on the same computation, in one process.

    python scripts/bench.py                 # the full grid, both dtypes, every cell
    python scripts/bench.py --quick         # one small row per cell (the CI smoke test)
    python scripts/bench.py --cells lstm --dtypes float32 --sizes 1,2

Every row runs the three frameworks interleaved (after one warm-up run each, which also checks that
their gradients agree) and reports medians, the ratio bptt / peer, bptt's matrix-product rate as a
fraction of numpy's own large-product rate measured in the same repetitions, and the bytes the tape
holds per timestep against the states alone. The loss is sum_t <h_t, G_t> with a fixed random G,
so every step's output has a loss on it; the gradients taken are those of all four parameters, the
inputs and the initial state. Results are appended as one JSON line to benchmarks/results.jsonl.

Letters: T time, B batch, D input size, H hidden size.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path


def thread_environment(threads: int) -> dict:
    """Variables that cap numpy's BLAS, PyTorch's OpenMP and XLA's thread pools at `threads`."""
    return {
        "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                     f"intra_op_parallelism_threads={threads}",
    }


# Thread pools are sized when numpy, torch and jax load, so --threads acts before any of them.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=1)
if __name__ == "__main__":
    os.environ.update(thread_environment(max(1, _pre.parse_known_args()[0].threads)))

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt.modes.finite_diff import relative_error  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/, also when the tests load this file
import naive_numpy  # noqa: E402

GRID = [(100, 32, 16, 64), (100, 64, 64, 128), (100, 64, 128, 256), (200, 128, 256, 512), (1000, 16, 8, 32)]
QUICK = [(20, 8, 8, 16)]
CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
PEER_ORDER = ["torch", "jax", "naive"]
GRADIENT_TOLERANCE = {"float32": 1e-3, "float64": 1e-9}  # norm-wise relative error
GEMM_SIZE = 1024  # square matrix product that measures the machine's rate
GEMM_SAMPLES = 3  # timed products per repetition
STEPWISE_MAX_FLOPS = 2e9  # larger rows are checked against the peers only (the stepwise path is slow)
TRAIN_QUICK = dict(seq_len=20, hidden=16, batch_size=8, steps=6)
TRAIN_FULL = dict(seq_len=100, hidden=64, batch_size=32, steps=40)  # adding, LSTM: the row
RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results.jsonl"


class GradientMismatch(RuntimeError):
    """Raised when a peer's gradient differs from bptt's: a fast wrong answer must not pass."""


# --------------------------------------------------------------------------- problems and runners
def make_problem(cell_name: str, T: int, B: int, D: int, H: int, dtype: str, seed: int = 0) -> dict:
    """Weights in PyTorch's layout, inputs xs (T, B, D), initial state, and loss weights G (T, B, H)."""
    rng = np.random.default_rng(seed)
    cell = {"rnn": lambda: bptt.RNN(D, H, seed=seed, dtype=dtype),
            "lstm": lambda: bptt.LSTM(D, H, seed=seed, dtype=dtype),
            "gru": lambda: bptt.GRU(D, H, seed=seed, dtype=dtype)}[cell_name]()
    state0 = tuple(0.5 * rng.standard_normal((B, H)).astype(dtype) for _ in cell.state_fields)
    return {
        "cell": cell,
        "xs": rng.standard_normal((T, B, D)).astype(dtype),
        "state0": state0,
        "G": rng.standard_normal((T, B, H)).astype(dtype),
    }


def bptt_runner(problem: dict):
    cell, xs, G = problem["cell"], problem["xs"], problem["G"]
    state0 = cell.pack_state(problem["state0"])

    def run() -> dict:
        hs, tape = bptt.forward(cell, xs, state0)
        grads = bptt.backward(cell, tape, G)
        return {**grads.params, "dxs": grads.dxs, "dstate0": cell.unpack_state(grads.dstate0)}

    return run


def torch_runner(problem: dict, cell_name: str):
    """PyTorch in the faster of its two CPU recurrent paths: oneDNN (its default here) or native ATen.

    On a busy 2-core machine the oneDNN path can be 10x slower at small sizes, so both are tried in
    the warm-up and the faster is timed: bptt is compared with PyTorch at its best, not its default.
    """
    import torch

    cell = problem["cell"]
    dtype = torch.float32 if cell.dtype == np.float32 else torch.float64
    module_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell_name]
    module = module_class(cell.input_size, cell.hidden_size, dtype=dtype)
    with torch.no_grad():
        for name, value in cell.params.items():
            getattr(module, name + "_l0").copy_(torch.from_numpy(value))
    xs = torch.from_numpy(problem["xs"]).requires_grad_()
    state0 = [torch.from_numpy(s)[None].requires_grad_() for s in problem["state0"]]
    G = torch.from_numpy(problem["G"])

    def make_run(onednn: bool):
        def run() -> dict:
            for tensor in (xs, *state0, *module.parameters()):
                tensor.grad = None
            with torch.backends.mkldnn.flags(enabled=onednn):
                hs, _ = module(xs, state0[0] if cell_name != "lstm" else tuple(state0))
                hs.backward(G)  # d/dtheta of sum_t <h_t, G_t>
            grads = {name: getattr(module, name + "_l0").grad.numpy() for name in cell.params}
            return {**grads, "dxs": xs.grad.numpy(), "dstate0": tuple(s.grad[0].numpy() for s in state0)}

        return run

    candidates = {onednn: make_run(onednn) for onednn in (True, False)}
    first = {k: time_once(run) for k, run in candidates.items()}  # first calls build oneDNN primitives
    tries = 1 if max(first.values()) > 1.0 else 2  # slow rows: one timed call each is enough
    best = min(candidates, key=lambda k: min(time_once(candidates[k]) for _ in range(tries)))
    problem.setdefault("notes", {})["torch_onednn"] = best
    return candidates[best]


def naive_runner(problem: dict, cell_name: str):
    """The issue's reference: a plain numpy loop with temporaries (scripts/naive_numpy.py)."""
    loop = naive_numpy.LOOPS[cell_name]
    params, xs, state0, G = problem["cell"].params, problem["xs"], problem["state0"], problem["G"]

    def run() -> dict:
        with np.errstate(over="ignore"):  # exp(-a) may overflow to inf, which gives sigmoid's limit 0
            return loop(params, xs, state0, G)

    return run


def jax_step(cell_name: str, jnp):
    """The recurrent part of one step in PyTorch's equations; a_x (B, G*H) is projected beforehand."""
    sigmoid = lambda a: 0.5 * jnp.tanh(0.5 * a) + 0.5  # noqa: E731

    def rnn(p, state, a_x):
        (h,) = state
        h = jnp.tanh(a_x + h @ p["weight_hh"].T + p["bias_hh"])
        return (h,), h

    def lstm(p, state, a_x):
        h, c = state
        a = a_x + h @ p["weight_hh"].T + p["bias_hh"]
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
        h = sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def gru(p, state, a_x):
        (h,) = state
        a_h = h @ p["weight_hh"].T + p["bias_hh"]
        xr, xz, xn = jnp.split(a_x, 3, axis=-1)
        hr, hz, hn = jnp.split(a_h, 3, axis=-1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return (h,), h

    return {"rnn": rnn, "lstm": lstm, "gru": gru}[cell_name]


def jax_runner(problem: dict, cell_name: str):
    import jax
    import jax.numpy as jnp

    step = jax_step(cell_name, jnp)

    def loss(params, xs, state0, G):
        a_x = xs @ params["weight_ih"].T + params["bias_ih"]  # all T input projections at once
        _, hs = jax.lax.scan(lambda s, a: step(params, s, a), state0, a_x)
        return jnp.sum(hs * G)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    params = {k: jnp.asarray(v) for k, v in problem["cell"].params.items()}
    xs, G = jnp.asarray(problem["xs"]), jnp.asarray(problem["G"])
    state0 = tuple(jnp.asarray(s) for s in problem["state0"])

    def run() -> dict:
        dparams, dxs, dstate0 = jax.block_until_ready(grad(params, xs, state0, G))
        return {**{k: np.asarray(v) for k, v in dparams.items()}, "dxs": np.asarray(dxs),
                "dstate0": tuple(np.asarray(s) for s in dstate0)}

    return run


def gemm_runner(dtype: str, rng=np.random.default_rng(0)):
    """One GEMM_SIZE^3 numpy matrix product: the rate the machine's BLAS reaches when it can."""
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype)
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype)
    out = np.empty_like(a)

    def run():
        np.matmul(a, b, out=out)

    return run


def gemm_flops(n: int = GEMM_SIZE) -> float:
    return 2.0 * n**3


def bptt_flops(cell_name: str, T: int, B: int, D: int, H: int) -> float:
    """Multiply-adds x 2 in the matrix products of forward + backward (element-wise work left out).

    Forward: input and recurrent projections, 2 T B GH (D + H). Backward: dL/dh_prev, dW_hh
    (2 T B GH H each), dL/dx and dW_ih (2 T B GH D each).
    """
    GH = GATES[cell_name] * H
    return 6.0 * T * B * GH * (D + H)


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


# --------------------------------------------------------------------------- one row
def time_once(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def time_wall_cpu(run) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call. With one thread per framework, CPU time is
    the work itself, unaffected by other processes competing for the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_row(cell_name: str, size: tuple, dtype: str, peers: dict, reps: int, row_budget: float,
              settle: float = 0.0) -> dict:
    """Warm up and cross-check every runner, then time them interleaved; medians in seconds.

    settle: seconds to wait before each timed call, so the previous runner's idle worker threads
    (OpenBLAS and OpenMP spin for a while after their work) have gone to sleep and take no core.
    """
    T, B, D, H = size
    problem = make_problem(cell_name, T, B, D, H, dtype)
    runners = {"bptt": bptt_runner(problem)}
    for peer, make in peers.items():
        runners[peer] = make(problem, cell_name)
    runners["gemm"] = gemm_runner(dtype)

    reference = runners["bptt"]()
    cell = problem["cell"]
    checks = {}
    if not peers or bptt_flops(cell_name, T, B, D, H) < STEPWISE_MAX_FLOPS:
        # the per-step reference path, so a row is checked even with no peer installed
        _, caches, _ = bptt.forward_stepwise(cell, problem["xs"], cell.pack_state(problem["state0"]))
        stepwise = bptt.backward_stepwise(cell, caches, problem["G"])
        checks["stepwise"] = check_gradients("stepwise", reference, {
            **stepwise.params, "dxs": stepwise.dxs, "dstate0": cell.unpack_state(stepwise.dstate0)}, dtype)
    warm = {}
    for name, run in runners.items():
        start = time.perf_counter()
        result = run()  # warm-up (and JAX's compilation)
        warm[name] = time.perf_counter() - start
        if name in peers:
            checks[name] = check_gradients(name, reference, result, dtype)
    per_rep = sum(time_once(run) for run in runners.values())
    reps = max(3, min(reps, int(row_budget / per_rep)))

    times = {name: [] for name in runners}
    names = list(runners)
    for rep in range(reps):
        for k in range(len(names)):  # rotate the order so no runner always follows another
            name = names[(rep + k) % len(names)]
            for _ in range(GEMM_SAMPLES if name == "gemm" else 1):  # short: sample it more often
                time.sleep(settle)
                times[name].append(time_wall_cpu(runners[name]))
    median = {name: statistics.median(wall for wall, _ in ts) for name, ts in times.items()}
    median_cpu = {name: statistics.median(cpu for _, cpu in ts) for name, ts in times.items()}

    _, tape = bptt.forward(cell, problem["xs"], cell.pack_state(problem["state0"]))
    best = {name: min(wall for wall, _ in ts) for name, ts in times.items()}
    state_bytes = B * H * cell.dtype.itemsize * len(cell.state_fields)
    gemm_rate = gemm_flops() / median["gemm"]
    bptt_rate = bptt_flops(cell_name, T, B, D, H) / median["bptt"]
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
        "fraction_of_gemm": bptt_rate / gemm_rate,  # from medians; the table shows fraction_of_gemm()
        "peer_fraction_of_gemm": {peer: gemm_fraction(bptt_flops(cell_name, T, B, D, H), best, peer)
                                  for peer in peers},
        "tape_bytes_per_step": tape.nbytes / T,
        "notes": problem.get("notes", {}),
        "state_bytes_per_step": state_bytes,
    }


# --------------------------------------------------------------------------- the training loop
def bptt_train_runner(dtype: str, settings: dict, workdir: Path):
    """`bptt train`'s loop (bptt.training.trainer.train) on adding with LSTM, Adam and global-norm clipping.

    Steps per second come from the loop's own per-step `elapsed` stamps, so setup, the first step,
    the final evaluation and checkpoint are left out.
    """
    from bptt.training.trainer import TrainConfig, train

    runs = iter(range(10**6))

    def run(steps: int) -> float:
        out = workdir / f"bptt-{dtype}-{next(runs)}"
        train(TrainConfig(
            task="adding", cell="lstm", hidden=settings["hidden"], seq_len=settings["seq_len"],
            batch_size=settings["batch_size"], steps=steps, optimizer="adam", lr=1e-2, clip="norm",
            clip_threshold=1.0, dtype=dtype, eval_every=10**9, eval_size=settings["batch_size"],
            checkpoint_every=10**9, record_every=0, out=str(out),
        ))
        elapsed = [json.loads(line)["elapsed"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        return (len(elapsed) - 1) / (elapsed[-1] - elapsed[0])

    return run


def torch_train_runner(dtype: str, settings: dict):
    """The same loop in PyTorch: same task and data source, LSTM + linear readout on the last step,
    MSE, torch.optim.Adam(lr=1e-2), clip_grad_norm_(1.0), the loss read back every step."""
    import torch

    from bptt.training.tasks import make_task

    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    H, B = settings["hidden"], settings["batch_size"]
    task = make_task("adding", settings["seq_len"])
    lstm = torch.nn.LSTM(task.input_size, H, dtype=torch_dtype)
    readout = torch.nn.Linear(H, task.output_size, dtype=torch_dtype)
    params = [*lstm.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    rng = np.random.default_rng(0)

    def make_run(onednn: bool):
        def run(steps: int) -> float:
            stamps = []
            with torch.backends.mkldnn.flags(enabled=onednn):
                for _ in range(steps):
                    batch = task.sample(rng, B)
                    mask = torch.from_numpy(batch.mask)
                    hs, _ = lstm(torch.from_numpy(batch.xs.astype(dtype)))
                    pred = readout(hs[mask])
                    loss = torch.mean((pred - torch.from_numpy(batch.targets.astype(dtype))[mask]) ** 2)
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    loss.item()  # the loss read back, as bptt's loop logs it
                    stamps.append(time.perf_counter())
            return (len(stamps) - 1) / (stamps[-1] - stamps[0])

        return run

    candidates = {onednn: make_run(onednn) for onednn in (True, False)}
    best = max(candidates, key=lambda k: candidates[k](5))
    return candidates[best], best


def bench_train(dtype: str, settings: dict, reps: int, settle: float = 0.0) -> dict:
    """Steps per second of both loops, interleaved, medians over `reps` runs of settings["steps"]."""
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        runners = {"bptt": bptt_train_runner(dtype, settings, Path(workdir))}
        notes = {}
        try:
            runners["torch"], notes["torch_onednn"] = torch_train_runner(dtype, settings)
        except ImportError:
            pass
        for run in runners.values():
            run(3)  # warm-up
        rates = {name: [] for name in runners}
        for _ in range(reps):
            for name, run in runners.items():
                time.sleep(settle)
                rates[name].append(run(settings["steps"]))
    median = {name: statistics.median(r) for name, r in rates.items()}
    return {"task": "adding", "cell": "lstm", "dtype": dtype, **settings, "reps": reps,
            "steps_per_second": median, "notes": notes,
            "ratio": {"torch": median["bptt"] / median["torch"]} if "torch" in median else {}}


def format_train(rows: list[dict]) -> str:
    lines = ["| loop | dtype | T | B | H | bptt steps/s | torch steps/s | bptt/torch (higher is faster) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        torch_rate = r["steps_per_second"].get("torch")
        lines.append(
            f"| adding, LSTM, Adam, clip 1.0 | {r['dtype']} | {r['seq_len']} | {r['batch_size']} | {r['hidden']} "
            f"| {r['steps_per_second']['bptt']:.1f} | {'-' if torch_rate is None else f'{torch_rate:.1f}'} "
            f"| {r['ratio'].get('torch', float('nan')):.2f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- the machine
def blas_description() -> list[dict]:
    """numpy's BLAS: library, version, kernel (architecture) and threads, from threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts") if np.lib.NumpyVersion(np.__version__) >= "1.26.0" else {}
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return [{"library": blas.get("name", "unknown"), "version": blas.get("version", "unknown"),
                 "kernel": "unknown (pip install threadpoolctl to see it)"}]
    return [
        {"library": info.get("internal_api"), "version": info.get("version"),
         "kernel": info.get("architecture"), "threads": info.get("num_threads"),
         "path": info.get("filepath")}
        for info in threadpool_info()
    ]


def versions() -> dict:
    found = {"python": platform.python_version(), "numpy": np.__version__, "bptt": bptt.__version__}
    for name in ("torch", "jax", "jaxlib"):
        if name in sys.modules:
            found[name] = getattr(sys.modules[name], "__version__", "?")
    try:
        found["bptt_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).parent, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return found


def machine() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(), "cpu": model, "cores": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }


def available_peers(wanted: list[str]) -> dict:
    peers = {}
    if "torch" in wanted:
        try:
            import torch  # noqa: F401
            peers["torch"] = torch_runner
        except ImportError:
            print("torch not installed: no PyTorch column")
    if "jax" in wanted:
        try:
            import jax

            jax.config.update("jax_enable_x64", True)  # float64 rows; float32 arrays stay float32
            peers["jax"] = jax_runner
        except ImportError:
            print("jax not installed: no JAX column (pip install jax)")
    if "naive" in wanted:
        peers["naive"] = naive_runner
    return peers


# --------------------------------------------------------------------------- output
def fraction_of_gemm(row: dict, runner: str = "bptt") -> float:
    """A runner's matrix-product rate (bptt's flop count over its time) over numpy's GEMM rate, each
    from its fastest run in the row: on a shared machine the fastest run is the one least disturbed,
    and the 30 ms GEMM is disturbed most. A peer at fraction p of the GEMM rate can only be beaten by
    a factor r if bptt reaches p / r of it."""
    if "best_seconds" not in row:  # records written before best times were kept
        return row["fraction_of_gemm"]
    flops = bptt_flops(row["cell"], row["T"], row["B"], row["D"], row["H"])
    return gemm_fraction(flops, row["best_seconds"], runner)


def gemm_fraction(flops: float, best_seconds: dict, runner: str) -> float:
    return (flops / best_seconds[runner]) / (gemm_flops() / best_seconds["gemm"])


def format_table(rows: list[dict], peers: list[str]) -> str:
    header = ["cell", "dtype", "T", "B", "D", "H", "bptt ms", "bptt of gemm"]
    for peer in peers:
        header += [f"{peer} ms", f"bptt/{peer}", f"{peer} of gemm"]
    header += ["bptt GFLOP/s", "tape B/step", "/ states", "max grad err"]
    lines = [header]
    for r in rows:
        line = [r["cell"], r["dtype"], r["T"], r["B"], r["D"], r["H"], f"{1e3 * r['seconds']['bptt']:.2f}",
                f"{100 * fraction_of_gemm(r):.0f}%"]
        for peer in peers:
            if peer in r["ratio"]:
                line += [f"{1e3 * r['seconds'][peer]:.2f}", f"{r['ratio'][peer]:.2f}",
                         f"{100 * fraction_of_gemm(r, peer):.0f}%" if "best_seconds" in r else "-"]
            else:
                line += ["-", "-", "-"]
        line += [
            f"{r['bptt_gflops']:.1f}",
            f"{r['tape_bytes_per_step']:.0f}", f"{r['tape_bytes_per_step'] / r['state_bytes_per_step']:.1f}",
            f"{max(r['gradient_error'].values()):.1e}",
        ]
        lines.append([str(x) for x in line])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(s.rjust(w) for s, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(out)


def summary(rows: list[dict], peers: list[str]) -> str:
    lines = []
    for cell in CELLS:
        for dtype in ("float32", "float64"):
            chosen = [r for r in rows if r["cell"] == cell and r["dtype"] == dtype]
            for peer in peers:
                ratios = [r["ratio"][peer] for r in chosen if peer in r["ratio"]]
                cpu = [r["cpu_ratio"][peer] for r in chosen if peer in r.get("cpu_ratio", {})]
                if ratios:
                    lines.append(
                        f"{cell:4s} {dtype}: bptt/{peer:5s} median {statistics.median(ratios):.2f}, "
                        f"worst {max(ratios):.2f} over {len(ratios)} rows"
                        + (f" (from CPU time: median {statistics.median(cpu):.2f}, worst {max(cpu):.2f})"
                           if cpu else "")
                    )
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small row per cell (a smoke test)")
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated subset of rnn,lstm,gru")
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated float32,float64")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated 1-based indices into the grid " + str(GRID))
    parser.add_argument("--peers", default="torch,jax,naive",
                        help="comma-separated peers to time, if installed (naive: scripts/naive_numpy.py)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per row (at least 3)")
    parser.add_argument("--row-budget", type=float, default=20.0,
                        help="seconds per row the repetitions aim at; fewer reps when a row is slow")
    parser.add_argument("--train-reps", type=int, default=5, help="runs of each training loop")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="leave out the training-loop row")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for numpy's BLAS, PyTorch and XLA alike (default 1: on a shared "
                             "2-core machine, multi-threaded small products stall when a core is taken)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds to wait before each timed call (default 0.2 with more than one thread, "
                             "else 0): lets the previous runner's spinning worker threads go to sleep")
    parser.add_argument("--show", type=Path, default=None,
                        help="print the tables of the last record in this results file, run nothing")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON-lines file results are appended to")
    args = parser.parse_args(argv)
    args.cells = [c for c in args.cells.split(",") if c]
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.peers = [p for p in args.peers.split(",") if p]
    bad = ([c for c in args.cells if c not in CELLS] + [d for d in args.dtypes if d not in GRADIENT_TOLERANCE]
           + [p for p in args.peers if p not in PEER_ORDER])
    if bad:
        parser.error(f"unknown cell, dtype or peer {bad}; expected cells from {CELLS}, dtypes float32, "
                     f"float64, peers from {PEER_ORDER}")
    if args.settle is None:
        args.settle = 0.2 if args.threads > 1 else 0.0
    if args.quick:
        args.sizes, args.reps = QUICK, 3
    elif args.sizes:
        try:
            args.sizes = [GRID[int(i) - 1] for i in args.sizes.split(",")]
        except (ValueError, IndexError):
            parser.error(f"--sizes takes indices 1..{len(GRID)}, got {args.sizes!r}")
    else:
        args.sizes = GRID
    return args


@contextlib.contextmanager
def thread_limits(threads: int):
    """Cap the pools again at run time (numpy may have been imported first, as in the tests);
    restore them on exit."""
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limiter = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(threads)
    if torch:
        torch.set_num_threads(threads)
    try:
        with limiter:
            yield
    finally:
        if torch:
            torch.set_num_threads(torch_threads)


def show(path: Path) -> None:
    """Print the tables of the last record in a results file, as the run that wrote it did."""
    record = json.loads(path.read_text().splitlines()[-1])
    peers = sorted({peer for row in record["rows"] for peer in row["ratio"]}, key=PEER_ORDER.index)
    print(f"{record['command']}  ({record['date']}, load {record['machine']['load_average']} before, "
          f"{record['machine'].get('load_average_after')} after, {record.get('threads')} thread(s))")
    print(format_table(record["rows"], peers))
    print(summary(record["rows"], peers))
    if record.get("train_rows"):
        print(format_train(record["train_rows"]))


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.show:
        return show(args.show)
    peers = available_peers(args.peers)
    with thread_limits(args.threads):
        return run(args, peers, argv)


def run(args, peers: dict, argv) -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "blas": blas_description(), "versions": versions(),
            "threads": args.threads, "settle_seconds": args.settle}
    print(f"{info['date']}  {info['machine']['cpu']}, {info['machine']['cores']} cores, "
          f"load {info['machine']['load_average']}")
    print(f"OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: {info['machine']['openblas_env']}")
    print(f"threads per framework (numpy BLAS, PyTorch, XLA): {args.threads}; "
          f"{args.settle} s pause before each timed call")
    for lib in info["blas"]:
        print(f"{'BLAS' if lib.get('library') in ('openblas', 'mkl', 'blis') else 'thread pool'}: {lib}")
    print("versions:", info["versions"])
    for dtype in args.dtypes:
        run = gemm_runner(dtype)
        run()
        seconds = statistics.median(time_once(run) for _ in range(5))
        info[f"gemm_gflops_{dtype}"] = gemm_flops() / seconds / 1e9
        print(f"numpy {GEMM_SIZE}^3 matrix product, {dtype}: {info[f'gemm_gflops_{dtype}']:.1f} GFLOP/s")

    rows = []
    for dtype in args.dtypes:
        for cell_name in args.cells:
            for size in args.sizes:
                row = bench_row(cell_name, size, dtype, peers, args.reps, args.row_budget, args.settle)
                rows.append(row)
                print(format_table([row], list(peers)).splitlines()[-1], flush=True)
    train_rows = []
    if args.train:
        settings = TRAIN_QUICK if args.quick else TRAIN_FULL
        for dtype in args.dtypes:
            train_rows.append(bench_train(dtype, settings, 1 if args.quick else args.train_reps, args.settle))
    table = format_table(rows, list(peers))
    print()
    print(table)
    print(summary(rows, list(peers)))
    if train_rows:
        print()
        print(format_train(train_rows))
    info["machine"]["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    record = {**info, "command": " ".join(["scripts/bench.py", *(argv if argv is not None else sys.argv[1:])]),
              "rows": rows, "train_rows": train_rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended to {args.out}")
    return record


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
    try:
        main()
    except GradientMismatch as exc:
        sys.exit(f"error: {exc}")
