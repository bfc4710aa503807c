"""The bench's stacked rows: a bptt.Stack (2 layers, both directions, with and without lengths)
against torch.nn.LSTM / GRU built with the same arguments (packed input for the lengths row), timed
interleaved like the one-layer rows, so a stacked row's bptt/torch ratio can be read beside the
one-layer row of the same size from the same run.

Letters: T time, B batch, D input size, H hidden size, L layers.
"""

from __future__ import annotations

import statistics

import numpy as np

import bench_peers
import bench_timing
import bptt
from bench_harness import check_gradients
from bptt.core.sequence import StepwiseSequence

STACK_CELLS = ("lstm", "gru")
VARIANTS = (("2 layers, bidirectional", False), ("2 layers, bidirectional, lengths", True))


def make_problem(cell_name: str, T: int, B: int, D: int, H: int, dtype: str, lengths: bool, seed: int = 0) -> dict:
    """A 2-layer bidirectional Stack, inputs (T, B, D), a non-zero stacked state, loss weights G
    (T, B, 2H) and, for the lengths row, lengths in [T/4, T] (the first sequence T long)."""
    rng = np.random.default_rng(seed)
    net = bptt.Stack(cell_name, D, H, 2, bidirectional=True, seed=seed, dtype=dtype)
    parts = tuple(0.5 * rng.standard_normal(p.shape).astype(dtype) for p in net.unpack_state(net.initial_state(B)))
    sizes = None
    if lengths:
        sizes = rng.integers(max(1, T // 4), T + 1, B)
        sizes[0] = T
    return {"net": net, "xs": rng.standard_normal((T, B, D)).astype(dtype), "state0": parts,
            "G": rng.standard_normal((T, B, 2 * H)).astype(dtype), "lengths": sizes}


def bptt_runner(problem: dict, net=None, package=bptt):
    """package.forward + package.backward on the problem's stack (or on `net`)."""
    return bench_peers.unroll_runner(package, net or problem["net"], problem)


def revision_runner(problem: dict, package):
    """The same stack in bptt as it was at another revision (--against); None if it has no Stack."""
    if not hasattr(package, "Stack"):
        return None
    net = problem["net"]
    old = package.Stack(net.cell_name, net.input_size, net.hidden_size, 2, bidirectional=True, dtype=net.dtype)
    old.load_params({k: v.copy() for k, v in net.params.items()})
    return bptt_runner(problem, old, package)


def stepwise_runner(problem: dict):
    """The same stack with every cell on its plain step pair: a path independent of the fast one."""
    net = problem["net"]
    plain = bptt.Stack(net.cell_name, net.input_size, net.hidden_size, 2, bidirectional=True, dtype=net.dtype)
    plain.params = {k: v.copy() for k, v in net.params.items()}
    for row in plain.cells:
        for cell in row:
            cell.Sequence = StepwiseSequence
    return bptt_runner(problem, plain)


def torch_runner(problem: dict):
    """torch.nn.RNN / LSTM / GRU(num_layers=2, bidirectional=True), packed input with lengths, in the
    faster of its oneDNN and ATen paths (tried in the warm-up)."""
    import torch

    net = problem["net"]
    dtype = torch.float32 if net.dtype == np.float32 else torch.float64
    kind, options = bench_peers.TORCH_MODULES[net.cell_name]
    module = getattr(torch.nn, kind)(net.input_size, net.hidden_size, num_layers=2, bidirectional=True,
                                     dtype=dtype, **options)
    module.load_state_dict(net.state_dict(tensors=True))
    xs = torch.from_numpy(problem["xs"]).requires_grad_()
    state0 = [torch.from_numpy(p).requires_grad_() for p in problem["state0"]]
    G, lengths = torch.from_numpy(problem["G"]), problem["lengths"]
    T = xs.shape[0]

    def make_run(enabled: bool):
        def run() -> dict:
            for tensor in (xs, *state0, *module.parameters()):
                tensor.grad = None
            with bench_peers.onednn(enabled):
                inputs = xs if lengths is None else torch.nn.utils.rnn.pack_padded_sequence(
                    xs, torch.from_numpy(lengths), enforce_sorted=False)
                out, _ = module(inputs, state0[0] if len(state0) == 1 else tuple(state0))
                if lengths is not None:
                    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)
                out.backward(G)
            grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
            return {**grads, "dxs": xs.grad.numpy(), "dstate0": tuple(s.grad.numpy() for s in state0)}

        return run

    return bench_peers.faster_torch_path(make_run, problem)


def bench_stack_row(cell_name: str, size: tuple, dtype: str, lengths: bool, with_torch: bool, reps: int,
                    row_budget: float, settle: float = 0.0, revision=None) -> dict:
    """Cross-check, then time bptt, torch and (with `revision`, a package) bptt at that revision
    interleaved on one stacked problem; medians in seconds."""
    T, B, D, H = size
    problem = make_problem(cell_name, T, B, D, H, dtype, lengths)
    runners = {"bptt": bptt_runner(problem)}
    if with_torch:
        runners["torch"] = torch_runner(problem)
    if revision is not None and (ref := revision_runner(problem, revision)) is not None:
        runners["ref"] = ref
    reference = runners["bptt"]()
    checks = {"stepwise": check_gradients("stepwise", reference, stepwise_runner(problem)(), dtype)}
    for name in ("torch", "ref"):
        if name in runners:
            checks[name] = check_gradients(name, reference, runners[name](), dtype)
    reps = bench_timing.repetitions(runners, reps, row_budget)
    times = bench_timing.interleave(runners, reps, settle)
    median = {name: statistics.median(wall for wall, _ in ts) for name, ts in times.items()}
    return {
        "cell": cell_name, "T": T, "B": B, "D": D, "H": H, "dtype": dtype, "reps": reps,
        "variant": VARIANTS[1][0] if lengths else VARIANTS[0][0],
        "layers": 2, "directions": 2,
        "lengths": None if problem["lengths"] is None else problem["lengths"].tolist(),
        "seconds": median, "ratio": {name: median["bptt"] / median[name] for name in median if name != "bptt"},
        "gradient_error": checks, "notes": problem.get("notes", {}),
    }


def one_layer_ratio(rows: list[dict], stack_row: dict) -> float | None:
    """bptt/torch of the one-layer row of the same cell, dtype and size in the same run."""
    for r in rows:
        if all(r[k] == stack_row[k] for k in ("cell", "dtype", "T", "B", "D", "H")) and "torch" in r["ratio"]:
            return r["ratio"]["torch"]
    return None


def format_stack_table(stack_rows: list[dict], rows: list[dict]) -> str:
    with_ref = any("ref" in r["seconds"] for r in stack_rows)
    ref_head, ref_rule = (" ref ms | bptt/ref |", "---:|---:|") if with_ref else ("", "")
    lines = [f"| cell | dtype | T | B | D | H | stack | bptt ms |{ref_head} torch ms | bptt/torch "
             "| one layer: bptt/torch | max grad err |",
             f"|---|---|---:|---:|---:|---:|---|---:|{ref_rule}---:|---:|---:|---:|"]

    def ms(r: dict, name: str) -> str:
        return "-" if name not in r["seconds"] else f"{1e3 * r['seconds'][name]:.2f}"

    def ratio(r: dict, name: str) -> str:
        return "-" if name not in r["ratio"] else f"{r['ratio'][name]:.2f}"

    for r in stack_rows:
        single = one_layer_ratio(rows, r)
        ref = f" {ms(r, 'ref')} | {ratio(r, 'ref')} |" if with_ref else ""
        lines.append(
            f"| {r['cell']} | {r['dtype']} | {r['T']} | {r['B']} | {r['D']} | {r['H']} | {r['variant']} "
            f"| {ms(r, 'bptt')} |{ref} {ms(r, 'torch')} | {ratio(r, 'torch')} "
            f"| {'-' if single is None else f'{single:.2f}'} | {max(r['gradient_error'].values()):.1e} |")
    return "\n".join(lines)
