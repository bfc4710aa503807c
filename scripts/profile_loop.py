"""Run bptt's forward + full backward in a loop, for a sampling profiler to look at.

    perf record -F 2000 -o perf.data python scripts/profile_loop.py lstm 100 32 16 64 --reps 150
    perf report -i perf.data --sort dso,sym --stdio

Nothing is timed here: the profiler says where the time goes (BLAS, numpy's element-wise loops,
the interpreter, numpy's call overhead), scripts/bench.py says how long it takes.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as the bench's default

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt.cells.registry import CELL_NAMES, make_cell  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cell", choices=CELL_NAMES)
    parser.add_argument("sizes", type=int, nargs=4, metavar="SIZE",
                        help="T B D H: time steps, batch, input size, hidden size")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--reps", type=int, default=100, help="forward + backward passes to run")
    args = parser.parse_args(argv)
    T, B, D, H = args.sizes
    cell = make_cell(args.cell, D, H, seed=0, dtype=args.dtype)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((T, B, D)).astype(args.dtype)
    G = rng.standard_normal((T, B, H)).astype(args.dtype)
    for _ in range(args.reps):
        _, tape = bptt.forward(cell, xs)
        bptt.backward(cell, tape, G)


if __name__ == "__main__":
    main()
