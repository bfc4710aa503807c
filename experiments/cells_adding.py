r"""
Which cells learn long dependencies: the adding task
====================================================

A tanh RNN, a relu RNN with identity initialisation, an LSTM and a GRU trained on the adding task at
three sequence lengths, against the baseline of predicting the mean.

What it shows
-------------

The adding task: two input channels, values drawn from U(0, 1) and two markers, one in each half of
the sequence; the target, at the last step, is the sum of the two marked values. Predicting the mean
sum 1 gives the baseline MSE Var(U1 + U2) = 1/6. Each cell is trained at T = 10, 30 and 60 with
H = 32, batch 32, Adam 0.01, global-norm clipping at 1 and 1500 updates of full BPTT, each run a
``bptt.train`` run folder in ``DIR/runs``, with the held-out MSE on 500 sequences every 50 updates.
The relu RNN starts from Le et al.'s identity initialisation (:math:`W_{hh} = I`, zero biases:
``TrainConfig(init="identity")``, ``bptt train --init identity``).

The paper
---------

Le, Jaitly and Hinton (2015), *A simple way to initialize recurrent networks of rectified linear
units*: the identity-initialised relu RNN (IRNN) against the LSTM and the tanh RNN on this task,
which comes from Hochreiter and Schmidhuber (1997). The GRU is Cho et al.'s (2014).

What to look for
----------------

Numbers from the full-size run: the final held-out MSE (baseline 0.1667).

======================= ====== ====== ======
cell                    T = 10 T = 30 T = 60
======================= ====== ====== ======
tanh RNN                0.0076 0.1748 0.1683
relu RNN, identity init 0.0002 0.0023 0.1577
LSTM                    0.0001 0.0006 0.0003
GRU                     0.0001 0.0005 0.0001
======================= ====== ====== ======

The tanh RNN is stuck at the baseline from T = 30 on, the identity-initialised relu RNN from T = 60
(at T = 30 it leaves the baseline after about 500 updates, more slowly than LSTM and GRU); LSTM and
GRU solve all three lengths. At T = 60 the LSTM leaves the baseline between updates 450 and 500
(held-out MSE 0.156, then 0.020), the GRU between 200 and 250 (0.130, then 0.010). One seed per cell
and length: the order is clear, the exact step at which a run leaves the plateau is not a measured
property of the cell.

.. figure:: /figures/cells_adding.png
   :alt: Held-out MSE against the training step for four cells at T = 10, 30 and 60

   The full-size run (``docs/figures/cells_adding.png``).

Run it
------

::

    python experiments/cells_adding.py --out DIR [--quick]

Writes ``learning_curves.png`` (one panel per T), ``curves.csv`` (the held-out MSE at every
evaluation), ``results.json`` (the final held-out MSE per cell and T) and one run folder per cell and
T in ``DIR/runs``. The full run took 91 s and 115 s in two runs, ``--quick`` (T = 10 only, H = 8,
40 updates, evaluated every 10) 1.6 s. Below: the script, then what it wrote and printed when it ran
at ``--quick`` size as this page was built; 40 updates only show the first steps away from the
initial loss.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import plots  # noqa: E402
from bptt.runs import read_run  # noqa: E402

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
    args = parse_args(__doc__)
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



# %%
# The documentation's gallery runs this script at ``--quick`` size as it builds: what follows is what
# that run wrote and printed.

if __name__ == "__main__":
    main()
