"""Reproduce the README's results table: every task with RNN (tanh), LSTM and GRU.

    nice python scripts/results.py                # all rows, runs under runs/results/
    python scripts/results.py --only adding       # rows of one task

Each row is one `bptt train` command run in a subprocess (the exact command is in the table);
the table is printed as Markdown and written to runs/results/results.md. BLAS runs single-threaded
(OPENBLAS_NUM_THREADS=1 etc.): on these small matrices threads only add overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CELLS = ("rnn", "lstm", "gru")

# task -> the options shared by its three cells
SETTINGS = {
    "adding": "--seq-len 100 --hidden 64 --steps 2000 --batch-size 32 --lr 0.01 --clip-threshold 1 "
              "--eval-every 50 --target-loss 0.01",
    "copy": "--seq-len 10 --hidden 64 --steps 1500 --lr 0.01 --eval-every 100 --eval-size 200",
    "temporal-order": "--seq-len 30 --hidden 32 --steps 1500 --lr 0.01 --eval-every 100",
    "reber": "--seq-len 30 --hidden 16 --steps 500 --lr 0.01 --eval-every 100",
    "parity": "--seq-len 30 --hidden 16 --steps 500 --lr 0.01 --eval-every 100",
    "chars": "--text scripts/data/unroll_source.txt --seq-len 50 --hidden 64 --steps 600 --lr 0.005 --eval-every 100",
}


def command(task: str, cell: str, out: Path) -> list[str]:
    return ["bptt", "train", "--task", task, "--cell", cell, *shlex.split(SETTINGS[task]),
            "--out", str(out)]


def metric_text(summary: dict) -> tuple[str, str]:
    """(baseline, result) cells: the loss, plus accuracy or success where the task has one."""
    def fmt(loss, extra_key):
        text = f"{loss:.4g}" if loss is not None else "n/a"
        for key in ("success", "accuracy"):
            value = summary.get(f"{extra_key}_{key}")
            if value is not None:
                return f"{text} ({key} {value:.1%})"
        return text
    return fmt(summary["baseline_loss"], "baseline"), fmt(summary["eval_loss"], "eval")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SETTINGS), action="append", help="run only this task")
    parser.add_argument("--out", default=str(ROOT / "runs" / "results"), help="folder for the runs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = ["| task | cell | baseline (loss) | result (held-out loss) | steps | wall time | command |",
            "|---|---|---|---|---|---|---|"]
    for task in args.only or SETTINGS:
        for cell in CELLS:
            run_dir = out / f"{task}-{cell}"
            cmd = command(task, cell, run_dir)
            # --overwrite: a rerun replaces the table's runs in --out
            subprocess.run([sys.executable, "-m", "bptt", *cmd[1:], "--overwrite", "--quiet"], cwd=ROOT, env=env,
                           check=True, stdout=subprocess.DEVNULL)
            summary = json.loads((run_dir / "summary.json").read_text())
            baseline, result = metric_text(summary)
            shown = " ".join(cmd[:-2])  # the --out folder is the script's choice
            rows.append(f"| {task} | {cell} | {baseline} | {result} | {summary['steps']} | "
                        f"{summary['wall_seconds']:.0f} s | `{shown}` |")
            print(rows[-1], flush=True)
    table = "\n".join(rows) + "\n"
    (out / "results.md").write_text(table)
    print()
    print(table)


if __name__ == "__main__":
    main()
