"""Time bptt's forward + full backward against PyTorch, JAX and bptt's own stepwise path, in one process.

    python scripts/bench.py                 # the full grid, both dtypes, every cell
    python scripts/bench.py --quick         # one small row per cell (the CI smoke test)
    python scripts/bench.py --cells lstm --dtypes float32 --sizes 1,2
    python scripts/bench.py --quick --against main~3   # the working tree's bptt against main~3's
    python scripts/bench.py --show benchmarks/results.jsonl

Every row runs its runners interleaved (after one warm-up run each, which also checks that their
gradients agree with bptt's) and reports medians, the ratio bptt / peer, each runner's
matrix-product rate as a fraction of numpy's own large-product rate measured in the same
repetitions, and the bytes the tape holds per timestep against the states alone. Results are
appended as one JSON line to benchmarks/results.jsonl.

This file is the command line; the work is in its siblings:
    bench_peers.py     the runners: bptt, stepwise, ref (a revision), torch, jax, numpy's GEMM
    bench_revision.py  bptt at a git revision, imported under another package name
    bench_stack.py     the stacked rows: a 2-layer bidirectional Stack against torch's, with lengths too
    bench_harness.py   problems, flop counts, gradient checks, one row
    bench_timing.py    timing one call, and many runners interleaved
    bench_train.py     the training-loop row
    bench_report.py    the header, tables, summary lines and --show
    bench_machine.py   CPU, load, BLAS, versions and thread caps

Letters: T time, B batch, D input size, H hidden size.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:  # the siblings, also when the tests load this file by path
    sys.path.insert(0, str(SCRIPTS))

from bench_machine import pin, thread_environment  # noqa: E402  (loads no numpy)


def parse_cores(text: str) -> list[int] | None:
    """'1' or '0,1' -> [1] or [0, 1]; 'auto' -> None (the last --threads cores allowed)."""
    return None if text == "auto" else [int(core) for core in text.split(",") if core]


# Thread pools are sized when numpy, torch and jax load, and new threads inherit the affinity of
# the thread that starts them, so --threads and the pinning act before any of them loads.
_pre = argparse.ArgumentParser(add_help=False)
_pre.add_argument("--threads", type=int, default=1)
_pre.add_argument("--cores", default="auto")
_pre.add_argument("--no-pin", action="store_true")
PINNED: list[int] | None = None  # the cores this process runs on, when run as a script
if __name__ == "__main__":
    _early = _pre.parse_known_args()[0]
    os.environ.update(thread_environment(max(1, _early.threads)))
    if not _early.no_pin:
        PINNED = pin(max(1, _early.threads), parse_cores(_early.cores))

import bench_harness  # noqa: E402
import bench_machine  # noqa: E402
import bench_peers  # noqa: E402
import bench_report  # noqa: E402
import bench_revision  # noqa: E402
import bench_stack  # noqa: E402
import bench_timing  # noqa: E402
import bench_train  # noqa: E402
from bptt.cells.registry import CELL_NAMES  # noqa: E402

GRID = [(100, 32, 16, 64), (100, 64, 64, 128), (100, 64, 128, 256), (200, 128, 256, 512), (1000, 16, 8, 32),
        (200, 16, 32, 128)]
QUICK = [(20, 8, 8, 16)]
CELLS = ("rnn", "lstm", "gru")  # the default; --cells takes any of the registry's CELL_NAMES
RESULTS = SCRIPTS.parent / "benchmarks" / "results.jsonl"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small row per cell (a smoke test)")
    parser.add_argument("--cells", default=",".join(CELLS),
                        help=f"comma-separated cells from {','.join(CELL_NAMES)} (default {','.join(CELLS)})")
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated float32,float64")
    parser.add_argument("--sizes", default=None,
                        help="comma-separated 1-based indices into the grid " + str(GRID))
    parser.add_argument("--peers", default=",".join(bench_peers.PEERS),
                        help="comma-separated peers to time, if installed (stepwise: bptt.forward_stepwise "
                             f"+ backward_stepwise, on rows up to {bench_harness.STEPWISE_MAX_FLOPS:.0e} flops)")
    parser.add_argument("--against", metavar="REV", default=None,
                        help="also time bptt as it was at git revision REV (a peer named ref), "
                             "interleaved with the working tree's")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per row (at least 3)")
    parser.add_argument("--row-budget", type=float, default=20.0,
                        help="seconds per row the repetitions aim at; fewer reps when a row is slow")
    parser.add_argument("--train-reps", type=int, default=5, help="runs of each training loop")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="leave out the training-loop row")
    parser.add_argument("--no-stacks", dest="stacks", action="store_false",
                        help="leave out the stacked rows (2-layer bidirectional LSTM and GRU, with and without "
                             "lengths, on the first two sizes, against torch with the same arguments)")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for numpy's BLAS, PyTorch and XLA alike (default 1: on a shared "
                             "2-core machine, multi-threaded small products stall when a core is taken)")
    parser.add_argument("--cores", default="auto",
                        help="comma-separated CPUs to pin the process to, one per thread (default auto: the "
                             "last --threads CPUs it may run on); every framework runs on these cores only")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin: the frameworks' threads go wherever the OS puts them (XLA then "
                             "uses more cores than --threads)")
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
    bad = ([c for c in args.cells if c not in CELL_NAMES]
           + [d for d in args.dtypes if d not in bench_harness.GRADIENT_TOLERANCE]
           + [p for p in args.peers if p not in bench_peers.PEERS])
    if bad:
        parser.error(f"unknown cell, dtype or peer {bad}; expected cells from {CELL_NAMES}, dtypes float32, "
                     f"float64, peers from {bench_peers.PEERS}")
    try:
        args.cores = parse_cores(args.cores)
    except ValueError:
        parser.error(f"--cores takes comma-separated CPU numbers or auto, got {args.cores!r}")
    if args.cores is not None and len(args.cores) != args.threads:
        parser.error(f"--cores names {len(args.cores)} CPUs for {args.threads} thread(s)")
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


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.show:
        return bench_report.show(args.show)
    with contextlib.ExitStack() as stack:
        revision = stack.enter_context(bench_revision.bptt_at(args.against)) if args.against else None
        peers = bench_peers.available_peers(args.peers)
        if revision:
            peers = {"ref": bench_peers.revision_peer(revision.package), **peers}
        stack.enter_context(bench_machine.thread_limits(args.threads))
        if PINNED is not None:  # again, for any thread the imports started from another thread
            bench_machine.pin(len(PINNED), PINNED)
        return run(args, peers, argv, revision)


def run(args, peers: dict, argv, revision=None) -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": bench_machine.machine(), "blas": bench_machine.blas_description(),
            "versions": bench_machine.versions(), "threads": args.threads, "pinned_cores": PINNED,
            "settle_seconds": args.settle,
            "stepwise_max_flops": bench_harness.STEPWISE_MAX_FLOPS}
    if revision:
        info["against"] = {"revision": revision.name, "commit": revision.commit}
    print(bench_report.header(info))
    for dtype in args.dtypes:
        gemm = bench_peers.gemm_runner(dtype)
        gemm()
        seconds = statistics.median(bench_timing.time_once(gemm) for _ in range(5))
        info[f"gemm_gflops_{dtype}"] = bench_peers.gemm_flops() / seconds / 1e9
        print(bench_report.gemm_line(dtype, info[f"gemm_gflops_{dtype}"]))

    columns = bench_report.ordered(peers)
    rows = []
    for dtype in args.dtypes:
        for cell_name in args.cells:
            for size in args.sizes:
                row = bench_harness.bench_row(cell_name, size, dtype, peers, args.reps, args.row_budget,
                                              args.settle)
                rows.append(row)
                print(bench_report.format_table([row], columns).splitlines()[-1], flush=True)
    stack_rows = []
    if args.stacks:
        for dtype in args.dtypes:
            for cell_name in [c for c in args.cells if c in bench_stack.STACK_CELLS]:
                for size in args.sizes[:2]:
                    for _, lengths in bench_stack.VARIANTS:
                        stack_rows.append(bench_stack.bench_stack_row(
                            cell_name, size, dtype, lengths, "torch" in peers, args.reps, args.row_budget, args.settle,
                            revision.package if revision else None))
                        print(bench_stack.format_stack_table(stack_rows[-1:], rows).splitlines()[-1], flush=True)
    train_rows = []
    if args.train:
        settings = bench_train.TRAIN_QUICK if args.quick else bench_train.TRAIN_FULL
        for dtype in args.dtypes:
            train_rows.append(bench_train.bench_train(dtype, settings, 1 if args.quick else args.train_reps,
                                                      args.settle))
    print()
    print(bench_report.format_table(rows, columns))
    print(bench_report.summary(rows, columns))
    if stack_rows:
        print()
        print(bench_stack.format_stack_table(stack_rows, rows))
    if train_rows:
        print()
        print(bench_report.format_train(train_rows))
    info["machine"]["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    record = {**info, "command": " ".join(["scripts/bench.py", *(argv if argv is not None else sys.argv[1:])]),
              "rows": rows, "stack_rows": stack_rows, "train_rows": train_rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended to {args.out}")
    return record


if __name__ == "__main__":
    try:
        main()
    except bench_revision.RevisionError as exc:
        sys.exit(f"error: --against: {exc}")
    except bench_harness.GradientMismatch as exc:
        sys.exit(f"error: {exc}")
