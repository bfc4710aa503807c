"""What `bptt plot` costs on a long run: peak memory and wall time on a synthetic run folder.

    python scripts/plot_memory.py [--megabytes 200] [--revision main] [--keep DIR]

Writes a run folder in a temporary folder: config.json, a metrics.jsonl of about --megabytes MB
(records as `bptt train` writes them: step, loss, grad_norm, clipped, lr, elapsed, and eval_loss,
eval_accuracy every 100 steps) and a dh_norms.jsonl (every 50 steps, 100 timesteps). Then runs
`python -m bptt plot` on it in a child process, once for the working tree and once for each
--revision (its bptt/ unpacked with `git archive` and put first on PYTHONPATH), and prints each
child's peak resident memory (its own, from os.wait4), wall time and CPU time.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def write_run(folder: Path, megabytes: float, seed: int = 0) -> int:
    """A run folder whose metrics.jsonl holds about `megabytes` MB; returns its number of records."""
    folder.mkdir(parents=True)
    config = {"task": "adding", "cell": "gru", "hidden": 32, "seq_len": 100, "clip": "norm",
              "clip_threshold": 1.0, "k1": None, "layers": 1, "bidirectional": False}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    rng = random.Random(seed)
    size, step, target = 0, 0, megabytes * 1e6
    with open(folder / "metrics.jsonl", "w") as metrics, open(folder / "dh_norms.jsonl", "w") as dh:
        while size < target:
            step += 1
            norm = rng.lognormvariate(0, 1)
            record = {"step": step, "loss": 0.2 + rng.random() / step ** 0.3, "grad_norm": norm, "clipped": norm > 1,
                      "lr": 0.01, "elapsed": step * 0.0123456}
            if step % 100 == 0:
                record.update(eval_loss=0.2 + 1 / step ** 0.3, eval_accuracy=min(1.0, step / 1e6))
            line = json.dumps(record) + "\n"
            metrics.write(line)
            size += len(line)
            if step % 50 == 0:
                dh.write(json.dumps({"step": step, "dh_norms": [rng.random() for _ in range(100)]}) + "\n")
    return step


def unpack(revision: str, into: Path) -> str:
    """bptt/ as it was at `revision`, unpacked under `into`; returns the commit."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", commit, "bptt"], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return commit


def measure(run_dir: Path, pythonpath: Path, out: Path) -> tuple[int, float, float, float, str]:
    """(exit code, peak RSS in MB, wall seconds, CPU seconds, bptt's location) of `python -m bptt plot
    RUN_DIR --out OUT`; CPU time is what a shared machine's load changes least."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath), MPLBACKEND="Agg")
    code = "import sys, bptt, runpy; print(bptt.__file__, file=sys.stderr); runpy.run_module('bptt', run_name='__main__')"
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", code, "plot", str(run_dir), "--out", str(out)], env=env,
                             cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # not the repo: -c puts cwd first
    assert child.stderr is not None
    err = child.stderr.read().decode()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen does not wait again
    location = err.splitlines()[0] if err else "?"
    if child.returncode != 0:
        print(err, file=sys.stderr)
    peak = usage.ru_maxrss / (1024 if sys.platform != "darwin" else 1024 * 1024)  # kB on Linux, bytes on macOS
    return child.returncode, peak, seconds, usage.ru_utime + usage.ru_stime, location


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=200, help="size of metrics.jsonl in MB")
    parser.add_argument("--revision", action="append", default=[], help="also measure bptt at this git revision")
    parser.add_argument("--keep", type=Path, default=None, help="write the run folder here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = (args.keep or Path(tmp)) / "run"
        started = time.perf_counter()
        steps = write_run(run_dir, args.megabytes)
        sizes = {p.name: p.stat().st_size / 1e6 for p in run_dir.iterdir()}
        print(f"run folder: {steps:,} steps, metrics.jsonl {sizes['metrics.jsonl']:.0f} MB, dh_norms.jsonl "
              f"{sizes['dh_norms.jsonl']:.1f} MB (written in {time.perf_counter() - started:.0f} s)")
        trees = [("working tree", REPO)]
        for revision in args.revision:
            into = Path(tmp) / f"rev-{len(trees)}"
            commit = unpack(revision, into)
            trees.append((f"{revision} ({commit[:7]})", into))
        print(f"{'bptt':<24} {'exit':>4} {'peak RSS (MB)':>14} {'wall (s)':>9} {'CPU (s)':>8}")
        for name, path in trees:
            code, peak, seconds, cpu, location = measure(run_dir, path, Path(tmp) / f"figures-{len(name)}")
            assert Path(location).resolve().is_relative_to(path.resolve()), f"{name} imported {location}"
            print(f"{name:<24} {code:>4} {peak:>14.0f} {seconds:>9.1f} {cpu:>8.1f}")


if __name__ == "__main__":
    main()
