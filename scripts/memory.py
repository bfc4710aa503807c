"""Checkpointed BPTT against the full tape: bytes held between the passes, peak memory, time.

    python scripts/memory.py [--seq-len 1000] [--hidden 64] [--batch 8] [--cell lstm]

Peak memory is tracemalloc's peak over forward + backward, counting only what those calls allocate
(the inputs and dL/dh_t exist before). It includes the outputs every method must produce: hs
(T, N, H) and dL/dx (T, N, D). Time: --repeats rounds without tracemalloc, each method once per
round so all see the same machine load, with BLAS on one thread (set before numpy loads): on a
shared machine threaded BLAS makes small products erratic.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

import bptt  # noqa: E402



def full_tape(cell, xs, dhs):
    _, tape = bptt.forward(cell, xs)
    held = tape.nbytes
    bptt.backward(cell, tape, dhs)
    return held


def checkpointed(every):
    def run(cell, xs, dhs):
        _, tape = bptt.forward_checkpointed(cell, xs, every=every)
        held = tape.nbytes
        bptt.backward_checkpointed(cell, tape, dhs)
        return held
    return run


def peak_memory(run, cell, xs, dhs):
    tracemalloc.start()
    held = run(cell, xs, dhs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return held, peak


def _timed(run, cell, xs, dhs):
    begin = time.perf_counter()
    run(cell, xs, dhs)
    return time.perf_counter() - begin


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=bptt.CELL_NAMES, default="lstm")
    parser.add_argument("--seq-len", type=int, default=1000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    T, N, D, H = args.seq_len, args.batch, args.input_size, args.hidden
    cell = bptt.make_cell(args.cell, D, H, seed=0)
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((T, N, D))
    dhs = rng.standard_normal((T, N, H))
    k0 = bptt.modes.checkpointing.default_every(T)
    runs = [("full tape", full_tape)] + [
        (f"checkpoints, k={k}" + (" (default)" if k == k0 else ""), checkpointed(k))
        for k in sorted({max(1, k0 // 3), k0, 3 * k0})
    ]

    print(f"{args.cell}: T={T} N={N} D={D} H={H}, float64, BLAS threads "
          f"{os.environ['OPENBLAS_NUM_THREADS']}; outputs hs + dL/dx = "
          f"{(T * N * (H + D) * 8) / 2**20:.2f} MiB of every peak")
    memory = [peak_memory(run, cell, xs, dhs) for _, run in runs]
    # timed in rounds, every method once per round, so they all see the same machine load
    times = np.array([[_timed(run, cell, xs, dhs) for _, run in runs] for _ in range(args.repeats)])
    print(f"{'method':<28}{'held between passes':>20}{'peak (fwd+bwd)':>16}{'best time':>11}"
          f"{'time / full (median of rounds)':>32}")
    for i, (label, _) in enumerate(runs):
        held, peak = memory[i]
        ratio = np.median(times[:, i] / times[:, 0])
        saved = "" if i == 0 else f"  (held -{100 * (1 - held / memory[0][0]):.0f}%, peak -{100 * (1 - peak / memory[0][1]):.0f}%)"
        print(f"{label:<28}{held / 2**20:>14.2f} MiB{peak / 2**20:>12.2f} MiB{times[:, i].min() * 1e3:>8.0f} ms"
              f"{ratio:>32.2f}{saved}")
    _, tape = bptt.forward(cell, xs)
    forward_time = min(_timed(lambda c, x, d: bptt.forward(c, x), cell, xs, dhs) for _ in range(args.repeats))
    backward_time = min(_timed(lambda c, x, d: bptt.backward(c, tape, d), cell, xs, dhs) for _ in range(args.repeats))
    print(f"full tape: forward {forward_time * 1e3:.0f} ms, backward {backward_time * 1e3:.0f} ms; checkpointing "
          f"adds one forward: x{1 + forward_time / (forward_time + backward_time):.2f} expected")

if __name__ == "__main__":
    main()
