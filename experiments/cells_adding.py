"""Which cells learn long dependencies: tanh RNN, relu RNN with identity initialisation (Le et al.
2015), LSTM and GRU on the adding task at several sequence lengths T, against the 1/6 baseline
(predicting the mean sum 1 gives MSE Var(U1 + U2) = 1/6).

Each cell is trained with the trainer's update (full BPTT through `bptt.truncation.window_gradients`,
global-norm clipping, Adam), written out here only because the relu RNN needs its identity
initialisation (W_hh = I, zero biases), which TrainConfig has no setting for.

    python experiments/cells_adding.py --out DIR [--quick]

Writes learning_curves.png (one panel per T), curves.csv (held-out MSE per evaluation) and
results.json (final held-out MSE per cell and T).
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import plots  # noqa: E402
from bptt.clipping import clip_grad_norm  # noqa: E402
from bptt.optim import Schedule, make_optimizer  # noqa: E402
from bptt.tasks import make_task  # noqa: E402
from bptt.truncation import model_params, window_gradients  # noqa: E402

from common import parse_args, write_csv, write_json  # noqa: E402

CELLS = {
    "tanh RNN": lambda H, seed: bptt.RNN(2, H, "tanh", seed=seed),
    "relu RNN, identity init": lambda H, seed: identity_init(bptt.RNN(2, H, "relu", seed=seed)),
    "LSTM": lambda H, seed: bptt.LSTM(2, H, seed=seed),
    "GRU": lambda H, seed: bptt.GRU(2, H, seed=seed),
}
BASELINE = 1.0 / 6.0


def identity_init(cell):
    """Le et al. 2015: W_hh = I and zero biases, so a relu unit copies its state forward."""
    cell.params["weight_hh"][:] = np.eye(cell.hidden_size)
    cell.params["bias_ih"][:] = 0
    cell.params["bias_hh"][:] = 0
    return cell


def held_out_mse(cell, readout, batch) -> float:
    hs, _ = bptt.forward(cell, batch.xs)
    pred, _ = readout.forward(hs[-1])
    return float(np.mean((pred - batch.targets[-1]) ** 2))


def fit(name, T, H, steps, eval_every, lr, clip, seed) -> dict:
    task = make_task("adding", T)
    cell = CELLS[name](H, seed)
    readout = bptt.Linear(H, 1, seed=seed + 1)
    params = model_params(cell, readout)
    optimizer = make_optimizer("adam", Schedule("constant", lr))
    rng = np.random.default_rng(seed)
    eval_batch = task.eval_batch(500, 1234)
    curve_steps, curve = [0], [held_out_mse(cell, readout, eval_batch)]
    started = time.perf_counter()
    for step in range(1, steps + 1):
        batch = task.sample(rng, 32)
        with np.errstate(over="ignore", invalid="ignore"):
            result = window_gradients(cell, readout, task.loss_fn, batch.xs, None, batch.targets, batch.mask)
        clip_grad_norm(result.grads, clip)
        optimizer.step(params, result.grads)
        if step % eval_every == 0:
            curve_steps.append(step)
            curve.append(held_out_mse(cell, readout, eval_batch))
    return {"cell": name, "T": T, "steps": curve_steps, "held_out_mse": curve, "final_mse": curve[-1],
            "seconds": round(time.perf_counter() - started, 2)}


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.quick:
        lengths, H, steps, eval_every = (10,), 8, 40, 10
    else:
        lengths, H, steps, eval_every = (10, 30, 60), 32, 1500, 50
    lr, clip = 1e-2, 1.0
    runs = [fit(name, T, H, steps, eval_every, lr, clip, args.seed) for T in lengths for name in CELLS]
    for r in runs:
        print(f"T = {r['T']:3d}  {r['cell']:24s} final held-out MSE {r['final_mse']:.4f} "
              f"(baseline {BASELINE:.4f})  {r['seconds']:.1f} s")
    write_json(os.path.join(args.out, "results.json"), {
        "setup": {"hidden_size": H, "steps": steps, "batch": 32, "optimizer": "adam", "lr": lr,
                  "clip_norm": clip, "eval_sequences": 500, "seed": args.seed, "baseline": BASELINE},
        "runs": [{k: r[k] for k in ("cell", "T", "final_mse", "seconds")} for r in runs],
    })
    write_csv(os.path.join(args.out, "curves.csv"), ["cell", "T", "step", "held_out_mse"],
              [(r["cell"], r["T"], s, f"{v:.6g}") for r in runs for s, v in zip(r["steps"], r["held_out_mse"])])
    panels = [(f"T = {T}", {r["cell"]: (r["steps"], r["held_out_mse"]) for r in runs if r["T"] == T})
              for T in lengths]
    fig = plots.learning_curves_grid_figure(
        panels, f"Adding task: held-out MSE (H = {H}, Adam lr {lr:g}, clip {clip:g})",
        ylabel="held-out MSE", baseline=BASELINE, baseline_label="baseline 1/6 (predict the mean)",
    )
    plots.save_figure(fig, os.path.join(args.out, "learning_curves.png"))


if __name__ == "__main__":
    main()
