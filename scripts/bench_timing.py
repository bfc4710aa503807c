"""How the bench times a runner (a no-argument function): one call, and many runners interleaved."""

from __future__ import annotations

import random
import time


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


def repetitions(runners: dict, wanted: int, budget: float) -> int:
    """As many rounds as fit in `budget` seconds, at least 3 and at most `wanted`; one call of each
    runner measures a round."""
    per_rep = sum(time_once(run) for run in runners.values())
    return max(3, min(wanted, int(budget / per_rep)))


def interleave(runners: dict, reps: int, settle: float = 0.0, samples: dict | None = None,
               evicting: tuple = ()) -> dict:
    """{name: [(wall, cpu) seconds, ...]}: `reps` rounds calling every runner, `samples[name]` times
    in a row for runners too short to time once (default 1).

    Each round takes a new random order. A runner slows the next one (its arrays evict the other's
    from the caches), so a fixed rotation, where each runner always follows the same one, is biased:
    on a 0.3 ms row the copy of bptt that followed the GEMM was 1.3-1.5x slower than an identical
    copy. The runner after one named in `evicting`, and the first, get an untimed call before
    their timed one. settle: seconds to wait before each timed call, so the previous runner's idle
    worker threads (OpenBLAS and OpenMP spin for a while after their work) take no core.
    """
    samples = samples or {}
    times = {name: [] for name in runners}
    names = list(runners)
    cold = True  # whatever ran before is unknown
    for _ in range(reps):
        for name in random.sample(names, len(names)):
            if cold:
                runners[name]()
            for _ in range(samples.get(name, 1)):
                time.sleep(settle)
                times[name].append(time_wall_cpu(runners[name]))
            cold = name in evicting
    return times
