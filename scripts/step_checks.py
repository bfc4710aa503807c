"""What a cell without a fast path costs in the unroller: the GRU's own step pair, run one step at a
time as a custom cell's is, forward + backward over T steps through `bptt.forward` / `bptt.backward`
(StepwiseSequence, checks included), against the bare reference loop over the same pair
(`bptt.forward_stepwise` / `backward_stepwise`, no checks), against the GRU with its fast path (the
same maths), and against one `check_step_output` +
`check_step_gradients`, the checks the unroller runs once per sequence.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/step_checks.py 100 8 16 32       # T N D H

Prints the median time of a step through the unroller, through the bare loop (their ratio is what
the unroller adds to a step pair) and on the fast path, of one step's checks, and the checks' share of a step: what
checking at every step would add, which is why the unroller checks the first step of a sequence only.
A benchmark, not a test: run it with nothing else busy.
"""

from __future__ import annotations

import argparse
import statistics
import timeit

import numpy as np

import bptt
from bptt.core.sequence import StepwiseSequence


class PlainGRU(bptt.GRU):
    """The GRU without its fast path: its plain step pair, one step at a time."""

    Sequence = StepwiseSequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("T", "N", "D", "H"):
        parser.add_argument(name, type=int)
    args = parser.parse_args()
    cell = PlainGRU(args.D, args.H, seed=0)
    rng = np.random.default_rng(0)
    xs, dhs = rng.standard_normal((args.T, args.N, args.D)), rng.standard_normal((args.T, args.N, args.H))

    def sequence() -> None:
        hs, tape = bptt.forward(cell, xs)
        bptt.backward(cell, tape, dhs)

    fast_cell = bptt.GRU(args.D, args.H, seed=0)

    def fast() -> None:
        hs, tape = bptt.forward(fast_cell, xs)
        bptt.backward(fast_cell, tape, dhs)

    def bare_loop() -> None:
        hs, caches, _ = bptt.forward_stepwise(cell, xs)
        bptt.backward_stepwise(cell, caches, dhs)

    state, cache = cell.step_forward(xs[0], cell.initial_state(args.N))
    gradients = cell.step_backward(dhs[0], cache)

    def checks() -> None:
        cell.check_step_output((state, cache), args.N)
        cell.check_step_gradients(gradients, args.N)

    per_step = statistics.median(timeit.repeat(sequence, number=5, repeat=7)) / 5 / args.T
    bare = statistics.median(timeit.repeat(bare_loop, number=5, repeat=7)) / 5 / args.T
    fast_step = statistics.median(timeit.repeat(fast, number=5, repeat=7)) / 5 / args.T
    per_check = statistics.median(timeit.repeat(checks, number=1000, repeat=7)) / 1000
    print(f"T={args.T} N={args.N} D={args.D} H={args.H}: a step (forward + backward) {per_step * 1e6:.1f} us "
          f"through bptt.forward/backward, {bare * 1e6:.1f} us in the bare loop (ratio {per_step / bare:.3f}), "
          f"{fast_step * 1e6:.1f} us on the GRU's fast path (step pair / fast path {per_step / fast_step:.2f}); "
          f"one step's checks {per_check * 1e6:.1f} us ({100 * per_check / per_step:.1f}% of a step), checked "
          f"once per sequence: {100 * per_check / (per_step * args.T):.2f}% of the sequence")


if __name__ == "__main__":
    main()
