"""Throughput of a sweep: the same grid as a sequential loop of `bptt train` processes (what
scripts/results.py did), as `bptt sweep --workers 1` and as `bptt sweep --workers 2`.

    nice .venv/bin/python scripts/sweep_throughput.py experiments/sweeps/long_dependencies.toml --out out/throughput

Each way trains every grid point into its own folder under --out; the wall time of each is measured
around the whole thing, and runs per minute is grid points / wall minutes. BLAS runs
single-threaded in every way (the loop sets OPENBLAS/OMP/MKL_NUM_THREADS=1, as results.py did; the
sweep's workers do so themselves). Writes throughput.json and prints a Markdown table. A benchmark,
not a test: run it with nothing else busy. To tell how busy the machine was anyway, each way also
records the CPU seconds its own processes used and the CPU seconds the whole machine was busy
(/proc/stat, on Linux): the difference is other processes' load, taken from the way's cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bptt.training.config import TrainConfig
from bptt.sweep.engines import BLAS_THREADS
from bptt.sweep.spec import load_spec

DEFAULTS = dataclasses.asdict(TrainConfig())


def train_command(config: TrainConfig, out: Path) -> list[str]:
    """The `bptt train` command of one grid point: every setting that is not the default."""
    args = [sys.executable, "-m", "bptt", "train"]
    for key, value in dataclasses.asdict(config).items():
        if key != "out" and value != DEFAULTS[key]:
            option = "--" + key.replace("_", "-")
            args += [option] if value is True else [option, str(value)]  # a boolean setting is a flag
    return args + ["--out", str(out), "--quiet"]


def sequential(spec, out: Path) -> None:
    env = dict(os.environ, **{name: "1" for name in BLAS_THREADS})  # as the sweep's workers set them
    for point in spec.points:
        # a run that fails (exit code 1) counts like a failed sweep row
        subprocess.run(train_command(point.config, out / point.name), env=env, stdout=subprocess.DEVNULL, check=False)


def sweep(spec_path: str, out: Path, workers: int) -> None:
    subprocess.run([sys.executable, "-m", "bptt", "sweep", spec_path, "--out", str(out), "--workers", str(workers),
                    "--quiet"], stdout=subprocess.DEVNULL, check=False)


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have been busy since boot (user + nice + system + irq + softirq + steal)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds used by this script's finished children (and their children, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--out", default="out/throughput")
    parser.add_argument("--ways", default="workers-2,workers-1,sequential",
                        help="comma-separated, in the order to run them")
    args = parser.parse_args()
    spec, out = load_spec(args.spec), Path(args.out)
    timings = {}
    for way in args.ways.split(","):
        folder = out / way
        if folder.exists():
            sys.exit(f"{folder} exists: every way must train from nothing; remove it or give another --out")
        started, busy, own = time.perf_counter(), machine_busy_seconds(), own_cpu_seconds()
        if way == "sequential":
            sequential(spec, folder)
        else:
            sweep(args.spec, folder, int(way.split("-")[1]))
        wall = time.perf_counter() - started
        own = own_cpu_seconds() - own
        busy = None if busy is None else machine_busy_seconds() - busy
        timings[way] = {"runs": len(spec.points), "wall_seconds": round(wall, 1),
                        "runs_per_minute": round(len(spec.points) / (wall / 60), 2),
                        "own_cpu_seconds": round(own, 1),
                        "other_cpu_seconds": None if busy is None else round(busy - own, 1)}
        print(way, timings[way], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps({"spec": args.spec, "cores": os.cpu_count(), **timings}, indent=2))
    print("\n| way | runs | wall | runs per minute | CPU s (this way) | CPU s (other processes) |\n|---|---|---|---|---|---|")
    for way, t in timings.items():
        print(f"| {way} | {t['runs']} | {t['wall_seconds'] / 60:.1f} min | {t['runs_per_minute']:.2f} | "
              f"{t['own_cpu_seconds']:.0f} | {t['other_cpu_seconds']} |")


if __name__ == "__main__":
    main()
