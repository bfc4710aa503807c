"""The training-loop row: steps per second of `bptt train`'s loop and the same loop in PyTorch, on
the adding task with an LSTM, Adam and global-norm clipping, interleaved in one process."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_peers import onednn

TRAIN_QUICK = dict(seq_len=20, hidden=16, batch_size=8, steps=6)
TRAIN_FULL = dict(seq_len=100, hidden=64, batch_size=32, steps=40)  # adding, LSTM: the row


def bptt_train_runner(dtype: str, settings: dict, workdir: Path):
    """`bptt train`'s loop (bptt.training.trainer.train) on adding with LSTM, Adam and global-norm clipping.

    Steps per second come from the loop's own per-step `elapsed` stamps, so setup, the first step,
    the final evaluation and checkpoint are left out.
    """
    from bptt.training.trainer import TrainConfig, train

    runs = iter(range(10**6))

    def run(steps: int) -> float:
        out = workdir / f"bptt-{dtype}-{next(runs)}"
        train(TrainConfig(
            task="adding", cell="lstm", hidden=settings["hidden"], seq_len=settings["seq_len"],
            batch_size=settings["batch_size"], steps=steps, optimizer="adam", lr=1e-2, clip="norm",
            clip_threshold=1.0, dtype=dtype, eval_every=10**9, eval_size=settings["batch_size"],
            checkpoint_every=10**9, record_every=0, out=str(out),
        ))
        elapsed = [json.loads(line)["elapsed"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        return (len(elapsed) - 1) / (elapsed[-1] - elapsed[0])

    return run


def torch_train_runner(dtype: str, settings: dict):
    """The same loop in PyTorch: same task and data source, LSTM + linear readout on the last step,
    MSE, torch.optim.Adam(lr=1e-2), clip_grad_norm_(1.0), the loss read back every step."""
    import torch

    from bptt.training.tasks import make_task

    torch_dtype = torch.float32 if dtype == "float32" else torch.float64
    H, B = settings["hidden"], settings["batch_size"]
    task = make_task("adding", settings["seq_len"])
    lstm = torch.nn.LSTM(task.input_size, H, dtype=torch_dtype)
    readout = torch.nn.Linear(H, task.output_size, dtype=torch_dtype)
    params = [*lstm.parameters(), *readout.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    rng = np.random.default_rng(0)

    def make_run(enabled: bool):
        def run(steps: int) -> float:
            stamps = []
            with onednn(enabled):
                for _ in range(steps):
                    batch = task.sample(rng, B)
                    mask = torch.from_numpy(batch.mask)
                    hs, _ = lstm(torch.from_numpy(batch.xs.astype(dtype)))
                    pred = readout(hs[mask])
                    loss = torch.mean((pred - torch.from_numpy(batch.targets.astype(dtype))[mask]) ** 2)
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    loss.item()  # the loss read back, as bptt's loop logs it
                    stamps.append(time.perf_counter())
            return (len(stamps) - 1) / (stamps[-1] - stamps[0])

        return run

    candidates = {enabled: make_run(enabled) for enabled in (True, False)}
    best = max(candidates, key=lambda k: candidates[k](5))
    return candidates[best], best


def bench_train(dtype: str, settings: dict, reps: int, settle: float = 0.0) -> dict:
    """Steps per second of both loops, interleaved, medians over `reps` runs of settings["steps"]."""
    with tempfile.TemporaryDirectory() as workdir:
        runners = {"bptt": bptt_train_runner(dtype, settings, Path(workdir))}
        notes = {}
        try:
            runners["torch"], notes["torch_onednn"] = torch_train_runner(dtype, settings)
        except ImportError:
            pass
        for run in runners.values():
            run(3)  # warm-up
        rates = {name: [] for name in runners}
        for _ in range(reps):
            for name, run in runners.items():
                time.sleep(settle)
                rates[name].append(run(settings["steps"]))
    median = {name: statistics.median(r) for name, r in rates.items()}
    return {"task": "adding", "cell": "lstm", "dtype": dtype, **settings, "reps": reps,
            "steps_per_second": median, "notes": notes,
            "ratio": {"torch": median["bptt"] / median["torch"]} if "torch" in median else {}}
