"""Which cells learn long dependencies: tanh RNN, relu RNN with identity initialisation (Le et al.
2015), LSTM and GRU on the adding task at several sequence lengths T, against the 1/6 baseline
(predicting the mean sum 1 gives MSE Var(U1 + U2) = 1/6).

Each cell is trained with `bptt.train` (full BPTT, global-norm clipping, Adam); the relu RNN starts
from `TrainConfig(init="identity")`: W_hh = I and zero biases.

    python experiments/cells_adding.py --out DIR [--quick]

Writes learning_curves.png (one panel per T), curves.csv (held-out MSE per evaluation), results.json
(final held-out MSE per cell and T) and one run folder per cell and T in DIR/runs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import plots  # noqa: E402
from bptt.training.run_folder import read_run  # noqa: E402

from common import parse_args, write_csv, write_json  # noqa: E402

CELLS = {  # label: (TrainConfig.cell, TrainConfig.init)
    "tanh RNN": ("rnn", "default"),
    "relu RNN, identity init": ("rnn-relu", "identity"),
    "LSTM": ("lstm", "default"),
    "GRU": ("gru", "default"),
}
BASELINE = 1.0 / 6.0


def fit(label, T, runs_dir, **settings) -> dict:
    """Train one cell at length T into runs_dir; its held-out curve and final MSE."""
    cell, init = CELLS[label]
    run_dir = os.path.join(runs_dir, f"{cell}-{init}-T{T}")
    config = bptt.TrainConfig(task="adding", cell=cell, init=init, seq_len=T, out=run_dir, **settings)
    summary = bptt.train(config, overwrite=True)  # a rerun into the same --out replaces its runs
    run = read_run(run_dir)
    held_out = run.column("eval_loss")
    keep = np.isfinite(held_out)
    return {"cell": label, "T": T, "run": os.path.relpath(run_dir, os.path.dirname(runs_dir)),
            "steps": run.steps[keep].tolist(), "held_out_mse": held_out[keep].tolist(),
            "final_mse": summary["eval_loss"], "seconds": summary["wall_seconds"]}


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.quick:
        lengths, H, steps, eval_every = (10,), 8, 40, 10
    else:
        lengths, H, steps, eval_every = (10, 30, 60), 32, 1500, 50
    settings = dict(hidden=H, steps=steps, batch_size=32, optimizer="adam", lr=1e-2, clip="norm",
                    clip_threshold=1.0, eval_every=eval_every, eval_size=500, checkpoint_every=steps,
                    record_every=0, seed=args.seed)
    runs_dir = os.path.join(args.out, "runs")
    runs = [fit(label, T, runs_dir, **settings) for T in lengths for label in CELLS]
    for r in runs:
        print(f"T = {r['T']:3d}  {r['cell']:24s} final held-out MSE {r['final_mse']:.4f} "
              f"(baseline {BASELINE:.4f})  {r['seconds']:.1f} s")
    write_json(os.path.join(args.out, "results.json"), {
        "setup": {**settings, "task": "adding", "baseline": BASELINE},
        "runs": [{k: r[k] for k in ("cell", "T", "final_mse", "seconds", "run")} for r in runs],
    })
    write_csv(os.path.join(args.out, "curves.csv"), ["cell", "T", "step", "held_out_mse"],
              [(r["cell"], r["T"], s, f"{v:.6g}") for r in runs for s, v in zip(r["steps"], r["held_out_mse"])])
    panels = [(f"T = {T}", {r["cell"]: (r["steps"], r["held_out_mse"]) for r in runs if r["T"] == T})
              for T in lengths]
    fig = plots.learning_curves_grid_figure(
        panels, f"Adding task: held-out MSE (H = {H}, Adam lr {settings['lr']:g}, clip {settings['clip_threshold']:g})",
        ylabel="held-out MSE", baseline=BASELINE, baseline_label="baseline 1/6 (predict the mean)",
    )
    plots.save_figure(fig, os.path.join(args.out, "learning_curves.png"))


if __name__ == "__main__":
    main()
