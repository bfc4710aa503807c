"""What each change bought: bptt at several git revisions, timed in one process, interleaved.

    python scripts/bench_history.py 6c17d03 ddfb128 cc33c3f HEAD
    python scripts/bench_history.py main~3 main --cells gru --dtypes float64 --sizes 1,5 --rounds 21

Each revision's bptt is unpacked and imported under its own name (bench_revision), every one runs
forward + full backward on the same weights and data, and each round calls them in a new random
order (bench_timing). The process is pinned to one core and every framework held to one thread, as
`bench.py --threads 1` does. The table gives each revision's median wall time and, beside it, its
ratio to the revision before it in the list: below 1, that change made the row faster. Gradients are
checked against the first revision's before timing (a change must not change the results).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from bench_machine import pin, thread_environment  # noqa: E402  (loads no numpy)

if __name__ == "__main__":
    os.environ.update(thread_environment(1))
    PINNED = pin(1)

import bench_harness  # noqa: E402
import bench_peers  # noqa: E402
import bench_revision  # noqa: E402
import bench_timing  # noqa: E402
from bench import GRID  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions, oldest first")
    parser.add_argument("--cells", default="rnn,lstm,gru")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--sizes", default="1,5,6", help=f"comma-separated 1-based indices into {GRID}")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    if len(args.revisions) < 2:
        parser.error("give at least two revisions to compare")
    sizes = [GRID[int(i) - 1] for i in args.sizes.split(",")]
    with contextlib.ExitStack() as stack:
        try:
            loaded = [stack.enter_context(bench_revision.bptt_at(rev)) for rev in args.revisions]
        except bench_revision.RevisionError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 2
        names = [f"{r.name} ({r.commit[:7]})" if r.name != r.commit[:len(r.name)] else r.commit[:7] for r in loaded]
        print(f"load {os.getloadavg()}, pinned to CPU {PINNED if __name__ == '__main__' else None}, "
              f"{args.rounds} rounds; medians in ms, and each revision's ratio to the one before it")
        print("| cell | dtype | T | B | D | H | " + " | ".join(names[:1] + [f"{n} | ratio" for n in names[1:]]) + " |")
        print("|---|---|---:|---:|---:|---:|" + "---:|" * (2 * len(names) - 1))
        for dtype in args.dtypes.split(","):
            for cell_name in args.cells.split(","):
                for size in sizes:
                    problem = bench_harness.make_problem(cell_name, *size, dtype)
                    runners = {name: bench_peers.revision_peer(r.package)(problem, cell_name)
                               for name, r in zip(names, loaded)}
                    reference = runners[names[0]]()
                    try:
                        for name in names[1:]:
                            bench_harness.check_gradients(name, reference, runners[name](), dtype)
                    except bench_harness.GradientMismatch as exc:
                        print(f"Error: {cell_name} {dtype} {size}: {exc}", file=sys.stderr)
                        return 1
                    times = bench_timing.interleave(runners, args.rounds)
                    median = [statistics.median(wall for wall, _ in times[name]) * 1e3 for name in names]
                    cells = [f"{median[0]:.2f}"] + [f"{m:.2f} | {m / before:.2f}" for before, m in zip(median, median[1:])]
                    print(f"| {cell_name} | {dtype} | {' | '.join(map(str, size))} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    random.seed()
    sys.exit(main())
