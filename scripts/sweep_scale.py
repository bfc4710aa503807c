"""How a sweep's start and its bookkeeping grow with the grid: grids of 10^3 to 10^6 points.

    .venv/bin/python scripts/sweep_scale.py --out out/scale [--sizes 1000,10000,100000,1000000]

For each size N it writes a spec of N tiny runs (cell x lr x hidden x seq_len x seed) and measures:

- check: seconds `load_spec` takes to parse the spec and check every grid point's settings, in this
  process;
- first run: seconds from starting `bptt sweep SPEC --workers 1` to the first run's folder (locked
  as it goes to a worker), and the sweep process's peak resident memory (VmHWM) by then; it is then
  stopped with SIGINT, and the seconds it takes to write results.csv and summary.md for N rows and
  exit are noted;
- record: microseconds to record one finished run (`Record.add`, a line appended to record.jsonl),
  the mean of 2000, against the grid size;
- results.csv: seconds to write results.csv once for the grid (what the sweep did after every
  finished run before record.jsonl, and now does once, at the end).

Writes scale.json and prints a Markdown table. A measurement, not a test: run it with nothing else
busy (Linux: reads /proc/PID/status).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bptt.sweep.record import Record, RunOutcome
from bptt.sweep.results import results_csv
from bptt.sweep.spec import load_spec

BASE = """[base]
task = "adding"
steps = 20
batch_size = 4
eval_size = 8
eval_every = 10
checkpoint_every = 10
record_every = 0
[grid]
"""
GRIDS = {  # N -> the grid's lists (their product is N)
    1000: {"cell": ["rnn", "gru"], "hidden": [4, 8, 16, 32, 64], "seed": list(range(100))},
    10_000: {"cell": ["rnn", "gru"], "hidden": [4, 8, 16, 32, 64], "seed": list(range(1000))},
    100_000: {"cell": ["rnn", "lstm", "gru", "rnn-relu"], "lr": [0.001, 0.002, 0.005, 0.01, 0.02],
              "hidden": [4, 8, 16, 32, 64], "seed": list(range(1000))},
    1_000_000: {"cell": ["rnn", "lstm", "gru", "rnn-relu"], "lr": [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2,
                                                                    0.5, 1.0],
                "hidden": [4, 8, 16, 32, 64], "seq_len": [10, 20, 30, 40, 50], "seed": list(range(1000))},
}


def spec_text(size: int) -> str:
    return BASE + "".join(f"{key} = {json.dumps(values)}\n" for key, values in GRIDS[size].items())


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_run(spec: Path, out: Path) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "bptt", "sweep", str(spec), "--out", str(out), "--workers", "1",
                                "--quiet"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not list(out.glob("runs/*/.lock")):  # the first run's folder, locked as it is handed to a worker
            if process.poll() is not None:
                raise SystemExit(f"the sweep ended: {process.stderr.read().decode()}")
            time.sleep(0.01)
        first = time.perf_counter() - started
        peak = peak_mb(process.pid)
        os.kill(process.pid, signal.SIGINT)
        stopping = time.perf_counter()
        process.wait(timeout=600)
        return {"first_run_seconds": round(first, 2), "peak_mb_at_first_run": round(peak, 1),
                "interrupt_seconds": round(time.perf_counter() - stopping, 2)}
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)


def record_cost(spec, out: Path, count: int = 2000) -> float:
    record = Record(out)
    points = [spec.points[i * (len(spec.points) // count)] for i in range(count)]
    started = time.perf_counter()
    for point in points:
        record.add(RunOutcome(point.index, point.name, "done", workers=["local-1"]))
    record.close()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/scale")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    args = parser.parse_args()
    out = Path(args.out)
    if out.exists():
        sys.exit(f"{out} exists: remove it or give another --out")
    rows = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        folder = out / str(size)
        folder.mkdir(parents=True)
        (folder / "spec.toml").write_text(spec_text(size))
        started = time.perf_counter()
        spec = load_spec(folder / "spec.toml")
        check = time.perf_counter() - started
        assert len(spec.points) == size, len(spec.points)
        row = {"check_seconds": round(check, 2), **first_run(folder / "spec.toml", folder / "sweep")}
        (folder / "record").mkdir()
        row["record_us"] = round(record_cost(spec, folder / "record"), 1)
        started = time.perf_counter()
        results_csv(spec, {})
        row["results_csv_seconds"] = round(time.perf_counter() - started, 2)
        rows[size] = row
        print(size, row, flush=True)
    (out / "scale.json").write_text(json.dumps({"cores": os.cpu_count(), **rows}, indent=2))
    print("\n| runs | check (s) | first run after (s) | peak memory then (MB) | Ctrl-C to exit (s) | record a run (us) "
          "| results.csv once (s) |\n|---|---|---|---|---|---|---|")
    for size, r in rows.items():
        print(f"| {size:,} | {r['check_seconds']} | {r['first_run_seconds']} | {r['peak_mb_at_first_run']} | "
              f"{r['interrupt_seconds']} | {r['record_us']} | {r['results_csv_seconds']} |")


if __name__ == "__main__":
    main()
