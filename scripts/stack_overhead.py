"""What a stack costs beyond its cells: a 2-layer bidirectional bptt.Stack, forward + backward,
against its four (layer, direction) cells run alone on inputs of the same shapes, and the same for
torch.nn.LSTM / GRU against four one-layer modules; interleaved in one process, one thread.

    .venv/bin/python scripts/stack_overhead.py lstm float64 100 32 16 64     # cell dtype T B D H

Prints the medians in ms and, for each library, stack / (four alone): 1.00 means the stack costs
exactly its layers, and what is above is the stacking itself (reversing the reverse direction's
inputs, joining the directions' outputs, summing their input gradients, checks). A benchmark, not a
test: run it with nothing else busy. torch is optional; without it only bptt is timed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

import bptt
from bench_machine import thread_limits


def bptt_runs(cell: str, dtype: np.dtype, T: int, B: int, D: int, H: int) -> dict[str, Callable[[], None]]:
    rng = np.random.default_rng(0)
    xs, x_upper = rng.standard_normal((T, B, D)).astype(dtype), rng.standard_normal((T, B, 2 * H)).astype(dtype)
    net = bptt.Stack(cell, D, H, 2, bidirectional=True, seed=0, dtype=dtype)
    cells = [bptt.make_cell(cell, size, H, seed=0, dtype=dtype) for size in (D, D, 2 * H, 2 * H)]
    inputs = (xs, xs, x_upper, x_upper)
    d_stack, d_cell = np.ones((T, B, 2 * H), dtype), np.ones((T, B, H), dtype)

    def stack() -> None:
        _, tape = bptt.forward(net, xs)
        bptt.backward(net, tape, d_stack)

    def alone() -> None:
        for one, x in zip(cells, inputs):
            _, tape = bptt.forward(one, x)
            bptt.backward(one, tape, d_cell)

    return {"bptt stack": stack, "bptt cells alone": alone}


def torch_runs(cell: str, dtype: np.dtype, T: int, B: int, D: int, H: int) -> dict[str, Callable[[], None]]:
    import torch

    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    module = getattr(torch.nn, cell.upper())
    rng = np.random.default_rng(0)
    xs = torch.from_numpy(rng.standard_normal((T, B, D)).astype(dtype)).requires_grad_()
    x_upper = torch.from_numpy(rng.standard_normal((T, B, 2 * H)).astype(dtype)).requires_grad_()
    net = module(D, H, num_layers=2, bidirectional=True, dtype=tdtype)
    layers = [module(size, H, dtype=tdtype) for size in (D, D, 2 * H, 2 * H)]
    inputs = (xs, xs, x_upper, x_upper)

    def stack() -> None:
        out, _ = net(xs)
        out.backward(torch.ones_like(out))

    def alone() -> None:
        for one, x in zip(layers, inputs):
            out, _ = one(x)
            out.backward(torch.ones_like(out))

    return {"torch stack": stack, "torch layers alone": alone}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", choices=["rnn", "rnn-relu", "lstm", "gru"])
    parser.add_argument("dtype", choices=["float32", "float64"])
    parser.add_argument("sizes", nargs=4, type=int, metavar="T B D H")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    dtype, (T, B, D, H) = np.dtype(args.dtype), args.sizes
    with thread_limits(1):
        runs = bptt_runs(args.cell, dtype, T, B, D, H)
        try:
            if args.cell != "rnn-relu":  # torch.nn.RNN is tanh unless told otherwise
                runs |= torch_runs(args.cell, dtype, T, B, D, H)
        except ImportError:
            pass
        for run in runs.values():  # warm-up: first allocations, torch's primitives
            run(), run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    ms = {name: 1e3 * statistics.median(ts) for name, ts in times.items()}
    print(f"{args.cell} {args.dtype} T={T} B={B} D={D} H={H}, medians of {args.rounds} rounds:")
    for name, value in ms.items():
        print(f"  {name:20s} {value:9.2f} ms")
    for lib, alone in (("bptt", "bptt cells alone"), ("torch", "torch layers alone")):
        if alone in ms:
            print(f"  {lib}: stack / alone = {ms[f'{lib} stack'] / ms[alone]:.2f}")


if __name__ == "__main__":
    main()
