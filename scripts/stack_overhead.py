"""What a stack costs beyond its cells: the bench's 2-layer bidirectional stack (bench_stack.py),
forward + backward, against its own four (layer, direction) cells run one after another on inputs of
the same shapes, and the same for torch.nn.LSTM / GRU against four one-layer modules with those
cells' weights; timed as the bench times (bench_timing.interleave: a new random order each round),
one thread.

    .venv/bin/python scripts/stack_overhead.py lstm float64 100 32 16 64     # cell dtype T B D H

Prints the medians in ms and, for each library, stack / (cells alone): 1.00 means the stack costs
exactly its layers, and what is above is the stacking itself (reversing the reverse direction's
inputs, joining the directions' outputs, summing their input gradients, checks, memory). A
benchmark, not a test: run it with nothing else busy. torch is optional; without it only bptt is
timed.
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import bench_peers
import bench_stack
import bench_timing
from bench_machine import thread_limits


def layer_problems(problem: dict) -> list[dict]:
    """One one-layer problem per (layer, direction) of the stack problem: the cell, its slice of the
    initial state, inputs of its layer's width (random for the upper layer) and loss weights G."""
    net, xs, state0 = problem["net"], problem["xs"], problem["state0"]
    T, B, _ = xs.shape
    rng = np.random.default_rng(1)
    problems = []
    for layer, row in enumerate(net.cells):
        for d, cell in enumerate(row):
            x = xs if layer == 0 else rng.standard_normal((T, B, cell.input_size)).astype(net.dtype)
            problems.append({"cell": cell, "xs": x, "state0": tuple(p[layer * net.directions + d] for p in state0),
                             "G": rng.standard_normal((T, B, cell.output_size)).astype(net.dtype)})
    return problems


def one_after_another(runners: list):
    def run() -> None:
        for runner in runners:
            runner()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", choices=list(bench_peers.TORCH_MODULES))
    parser.add_argument("dtype", choices=["float32", "float64"])
    parser.add_argument("sizes", nargs=4, type=int, metavar="T B D H")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    T, B, D, H = args.sizes
    with thread_limits(1):
        problem = bench_stack.make_problem(args.cell, T, B, D, H, args.dtype, lengths=False)
        layers = layer_problems(problem)
        runs = {"bptt stack": bench_stack.bptt_runner(problem),
                "bptt cells alone": one_after_another([bench_peers.bptt_runner(p) for p in layers])}
        try:
            runs["torch stack"] = bench_stack.torch_runner(problem)
            runs["torch layers alone"] = one_after_another(
                [bench_peers.torch_runner(p, args.cell) for p in layers])
        except ImportError:
            pass
        times = bench_timing.interleave(runs, args.rounds)
    ms = {name: 1e3 * statistics.median(wall for wall, _ in ts) for name, ts in times.items()}
    print(f"{args.cell} {args.dtype} T={T} B={B} D={D} H={H}, medians of {args.rounds} rounds:")
    for name, value in ms.items():
        print(f"  {name:20s} {value:9.2f} ms")
    for lib, alone in (("bptt", "bptt cells alone"), ("torch", "torch layers alone")):
        if alone in ms:
            print(f"  {lib}: stack / alone = {ms[f'{lib} stack'] / ms[alone]:.2f}")


if __name__ == "__main__":
    main()
