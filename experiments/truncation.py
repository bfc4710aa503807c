"""Truncated BPTT on the adding task: how far the TBPTT(k, k) gradient is from the full-BPTT
gradient at fixed weights, as a function of k, and what training with each k learns.

Bias: for a batch of adding sequences (loss on the last step only), the cosine similarity and the
relative error ||g_k - g|| / ||g|| between the cell's parameter gradients from
`bptt.core.truncation.tbptt_gradient` with k1 = k2 = k and with k = T (full BPTT; the readout's gradient
does not depend on k and is left out), for a tanh RNN with W_hh = Q orthogonal (lambda_1 = 1), LSTM and GRU at
default initialisation and, in the full run, the LSTM trained with full BPTT below. With the loss at
the last step only, TBPTT(k, k) keeps the gradient paths of the last k steps, so the relative error
falls like the gradient itself: at the rate of the top Lyapunov exponent, printed beside it.

Training: an LSTM trained with `bptt.train` for each k (one update per batch, from the last window,
the only one with a loss). With k < T/2 no gradient ever reaches the first marked value, yet the
weights are shared across time: what the last window teaches about storing a marked value also
applies at the first marker.

    python experiments/truncation.py --out DIR [--quick]

Writes bias.png, bias.csv, training.png, training.csv, results.json and the run folders in DIR/runs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import diagnostics, plots  # noqa: E402
from bptt.training.run_folder import read_run  # noqa: E402
from bptt.training.tasks import make_task  # noqa: E402
from bptt.training.trainer import load_run  # noqa: E402
from bptt.core.truncation import tbptt_gradient  # noqa: E402

from common import parse_args, write_csv, write_json  # noqa: E402

BASELINE = 1.0 / 6.0


def bias_curve(cell, readout, batch, ks) -> dict:
    """Cosine and relative error of TBPTT(k, k) against full BPTT for each k, plus the top exponent."""
    T = batch.xs.shape[0]

    def cell_gradient(k):  # the readout's gradient is the same for every k: compare the cell's only
        grads = tbptt_gradient(cell, readout, bptt.mse, batch.xs, batch.targets, batch.mask, k, k).params
        return {name: g for name, g in grads.items() if name.startswith("cell.")}

    full = cell_gradient(T)
    rows = [diagnostics.gradient_agreement(cell_gradient(k), full) for k in ks]
    _, tape = bptt.forward(cell, batch.xs)
    lyapunov = float(diagnostics.lyapunov_spectrum(cell, tape, warmup=min(10, T - 1))[:, 0].mean())
    errors = np.array([r.relative_error for r in rows])
    fit = [i for i, k in enumerate(ks) if k < T and errors[i] > 1e-13]
    slope = float(np.polyfit(np.array(ks)[fit], np.log(errors[fit]), 1)[0]) if len(fit) >= 2 else None
    return {"ks": list(ks), "cosine": [r.cosine for r in rows], "relative_error": errors.tolist(),
            "lyapunov_top": lyapunov, "error_decay_slope": slope}


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
    if args.quick:
        T, H, steps, eval_every, train_ks = 20, 8, 40, 10, (5, 20)
    else:
        T, H, steps, eval_every, train_ks = 40, 32, 1500, 50, (5, 10, 20, 40)
    ks = sorted({2 ** i for i in range(int(np.log2(T)) + 1)} | {T})
    task = make_task("adding", T)
    batch = task.sample(np.random.default_rng(args.seed), 64)
    runs_dir = os.path.join(args.out, "runs")

    # --- training with each k (the full-BPTT LSTM is also a model for the bias curves)
    training = {}
    for k in train_ks:
        run_dir = os.path.join(runs_dir, f"lstm-k{k}")
        config = bptt.TrainConfig(task="adding", cell="lstm", hidden=H, seq_len=T, steps=steps, k1=k, k2=k,
                                  eval_every=eval_every, checkpoint_every=steps, record_every=0,
                                  seed=args.seed, out=run_dir)
        summary = bptt.train(config, overwrite=True)  # a rerun into the same --out replaces its runs
        run = read_run(run_dir)
        held_out = run.column("eval_loss")
        keep = np.isfinite(held_out)
        training[k] = {"steps": run.steps[keep].tolist(), "held_out_mse": held_out[keep].tolist(),
                       "final_mse": summary["eval_loss"], "wall_seconds": summary["wall_seconds"]}
        print(f"TBPTT({k}, {k}) on T = {T}: final held-out MSE {summary['eval_loss']:.4f}")

    # --- bias against k at fixed weights
    models = {}
    Q, _ = np.linalg.qr(np.random.default_rng(args.seed + 1).standard_normal((H, H)))
    rnn = bptt.RNN(2, H, "tanh", seed=args.seed)
    rnn.params["weight_hh"] = Q
    models["tanh RNN, W_hh orthogonal"] = (rnn, bptt.Linear(H, 1, seed=args.seed))
    models["LSTM, default init"] = (bptt.LSTM(2, H, seed=args.seed), bptt.Linear(H, 1, seed=args.seed))
    models["GRU, default init"] = (bptt.GRU(2, H, seed=args.seed), bptt.Linear(H, 1, seed=args.seed))
    trained = load_run(os.path.join(runs_dir, f"lstm-k{T}"))
    models[f"LSTM trained {steps} steps (full BPTT)"] = (trained.cell, trained.readout)
    bias = {}
    for name, (cell, readout) in models.items():
        bias[name] = bias_curve(cell, readout, batch, ks)
        b = bias[name]
        slope = "n/a" if b["error_decay_slope"] is None else f"{b['error_decay_slope']:+.3f}"
        print(f"{name:34s} cosine at k=1: {b['cosine'][0]:+.3f}, relative error decays at {slope} "
              f"per step of k (top Lyapunov exponent {b['lyapunov_top']:+.3f})")

    write_json(os.path.join(args.out, "results.json"), {
        "setup": {"task": "adding", "T": T, "hidden_size": H, "bias_batch": 64, "training_steps": steps,
                  "seed": args.seed, "baseline": BASELINE},
        "bias": bias, "training": {str(k): v for k, v in training.items()},
    })
    write_csv(os.path.join(args.out, "bias.csv"), ["model", "k", "cosine", "relative_error"],
              [(name, k, f"{c:.10g}", f"{e:.6g}") for name, b in bias.items()
               for k, c, e in zip(b["ks"], b["cosine"], b["relative_error"])])
    write_csv(os.path.join(args.out, "training.csv"), ["k", "step", "held_out_mse"],
              [(k, s, f"{v:.6g}") for k, t in training.items() for s, v in zip(t["steps"], t["held_out_mse"])])

    fig = plots.truncation_bias_figure(bias, T, f"TBPTT(k, k) cell gradient against full BPTT on adding, H = {H}")
    plots.save_figure(fig, os.path.join(args.out, "bias.png"))
    curves = {(f"TBPTT({k}, {k})" if k < T else f"full BPTT (k = {T})"): (t["steps"], t["held_out_mse"])
              for k, t in training.items()}
    fig = plots.learning_curves_figure(
        curves, f"LSTM on adding, T = {T}, H = {H}: held-out MSE for each k", ylabel="held-out MSE",
        baseline=BASELINE, baseline_label="baseline 1/6 (predict the mean)",
    )
    plots.save_figure(fig, os.path.join(args.out, "training.png"))


if __name__ == "__main__":
    main()
