r"""
Truncation bias: TBPTT against full BPTT
========================================

How far the truncated-BPTT gradient TBPTT(k, k) is from the full-BPTT gradient at fixed weights, as
a function of k, and what an LSTM trained with each k learns on the adding task.

What it shows
-------------

Bias: for a batch of 64 adding sequences of T = 40 (the loss on the last step only), the cell's
parameter gradient from ``bptt.tbptt_gradient`` with k1 = k2 = k against the full-BPTT one
(k = T), compared with ``diagnostics.gradient_agreement``: the cosine and the relative error
:math:`\|g_k - g\| / \|g\|` (the readout's gradient does not depend on k and is left out). The
models: a tanh RNN with :math:`W_{hh} = Q` orthogonal (:math:`\lambda_1 = 1`), an LSTM and a GRU at
default initialisation, and the LSTM trained below with full BPTT. Beside each curve, the top
Lyapunov exponent of the same model.

Training: an LSTM (H = 32, Adam 0.01, global-norm clip 1, 1500 updates) trained with ``bptt.train``
for k = 5, 10, 20 and 40 (full BPTT), one update per batch, from the last window, the only one with
a loss.

The paper
---------

Williams and Peng (1990), *An efficient gradient-based algorithm for on-line training of recurrent
network trajectories*: TBPTT(k1, k2), the truncation ``bptt.TBPTT`` implements. The adding task is
Le et al.'s (2015) form of Hochreiter and Schmidhuber's (1997).

What to look for
----------------

Numbers from the full-size run. With the loss at the end, TBPTT(k, k) keeps exactly the gradient
paths of the last k steps, so its error falls at the rate the gradient itself vanishes: the fitted
decay of the relative error per step of k is close to the top Lyapunov exponent of the same model
(tanh RNN with orthogonal :math:`W_{hh}`: -0.143 against -0.115; LSTM at default initialisation:
-0.423 against -0.436; GRU: -0.481 against -0.472). At initialisation LSTM and GRU gradients vanish
so fast that k = 8 already gives a cosine of 1.000. The LSTM trained on the task is the opposite:
its exponent is -0.003, and truncation now matters (cosine 0.56 at k = 1, 0.91 at k = 8; relative
error still 0.24 at k = 32). Truncation is cheap exactly where long-range gradients are absent.

.. figure:: /figures/truncation_bias.png
   :alt: Cosine and relative error of the TBPTT gradient against k for four models

   The full-size run (``docs/figures/truncation_bias.png``).

All four trainings leave the 1/6 baseline at about the same step, and end at held-out MSE 0.0023
(k = 5), 0.0085 (10), 0.0073 (20) and 0.0003 (full BPTT), one seed each. With k < T/2 no gradient
ever reaches the first marked value, and the task is learnt anyway: the weights are shared across
time, so what the last window teaches (store a marked value in c, keep the forget gate open) also
acts at the first marker. What truncation costs here is the final precision, not whether the
dependency is found.

.. figure:: /figures/truncation_training.png
   :alt: Held-out MSE against the training step for an LSTM trained with four truncation lengths

   The full-size run (``docs/figures/truncation_training.png``).

Run it
------

::

    python experiments/truncation.py --out DIR [--quick]

Writes ``bias.png``, ``bias.csv``, ``training.png``, ``training.csv``, ``results.json`` and the run
folders in ``DIR/runs``. The full run took 98 s, ``--quick`` (T = 20, H = 8, 40 updates, k = 5 and
20) 1.9 s. Below: the script, then what it wrote and printed when it ran at ``--quick`` size as this
page was built; 40 updates are too few for the training curves to leave the baseline.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import diagnostics, plots  # noqa: E402
from bptt.runs import read_run  # noqa: E402
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
    args = parse_args(__doc__)
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



# %%
# The documentation's gallery runs this script at ``--quick`` size as it builds: what follows is what
# that run wrote and printed.

if __name__ == "__main__":
    main()
