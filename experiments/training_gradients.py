r"""
Gradient norms during training, and ``bptt plot``
=================================================

How the per-timestep gradient norms :math:`\|\partial L/\partial h_t\|` change while an LSTM learns
the adding task: the moment it finds the task is the moment the gradient reaches the first marker.

What it shows
-------------

An LSTM (T = 40, H = 32, 1500 updates) trained on the adding task with ``bptt.train`` and
``TrainConfig(record_every=10)``, which writes :math:`\|\partial L/\partial h_t\|` for every t to the
run's ``dh_norms.jsonl``, drawn as a heatmap over (training step, timestep). With the loss on the
last step only, :math:`\partial L/\partial h_t` at early t is what carries the first marked value's
influence back; its reach, :math:`\log_{10}` of
:math:`\|\partial L/\partial h_0\| / \|\partial L/\partial h_{T-1}\|`, is printed for the first and
last records. The run folder also gets the figures ``bptt plot`` draws for any run: ``loss.png``,
``grad_norm.png`` and ``dh_norms.png``.

The paper
---------

No figure of a paper: it watches, during training, the gradient whose vanishing Bengio, Simard and
Frasconi (1994) and Pascanu, Mikolov and Bengio (2013) analyse at fixed weights.

What to look for
----------------

Numbers from the full-size run. For the first 250 updates the gradient reaching t = 0 is
:math:`10^{-7}` of the one at the last step (:math:`\log_{10}` ratio -5.8 at update 10, -7.1 at
update 100); between updates 250 and 300 the network finds the task (held-out MSE 0.153 at update
250, 0.051 at 300, 0.009 at 350) and the ratio jumps to -0.55: the gradient now reaches the first
marker. It settles near -1.1 (the final held-out MSE is 0.0003).

.. figure:: /figures/training_gradients.png
   :alt: Heatmap of the gradient norm over training step and timestep for an LSTM on the adding task

   The full-size run (``docs/figures/training_gradients.png``).

Run it
------

::

    python experiments/training_gradients.py --out DIR [--quick]
    bptt plot DIR/lstm-adding      # the same figures as the run folder's, for any run

Writes ``heatmap.png`` and ``results.json`` (the reach per record), and ``loss.png``,
``grad_norm.png`` and ``dh_norms.png`` into the run folder ``DIR/lstm-adding``. The full run took
31 s, ``--quick`` (T = 20, H = 8, 40 updates recorded every 5) 2.2 s. Below: the script, then what it
wrote and printed when it ran at ``--quick`` size as this page was built; in 40 updates the network
does not find the task, and the gradient reaching t = 0 stays orders of magnitude below the one at
the last step.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import plots  # noqa: E402
from bptt.runs import read_run  # noqa: E402

from common import parse_args, write_json  # noqa: E402


def main() -> None:
    args = parse_args(__doc__)
    if args.quick:
        T, H, steps, record_every, eval_every = 20, 8, 40, 5, 20
    else:
        T, H, steps, record_every, eval_every = 40, 32, 1500, 10, 50
    run_dir = os.path.join(args.out, "lstm-adding")
    config = bptt.TrainConfig(task="adding", cell="lstm", hidden=H, seq_len=T, steps=steps,
                              record_every=record_every, eval_every=eval_every, checkpoint_every=steps,
                              seed=args.seed, out=run_dir)
    summary = bptt.train(config, overwrite=True)  # a rerun into the same --out replaces its runs
    run = read_run(run_dir)
    reach = np.log10(run.dh_norms[:, 0] / run.dh_norms[:, -1])
    write_json(os.path.join(args.out, "results.json"), {
        "setup": {"task": "adding", "cell": "lstm", "T": T, "hidden_size": H, "steps": steps,
                  "record_every": record_every, "seed": args.seed},
        "summary": summary,
        "recorded_steps": run.dh_steps.tolist(),
        "log10_reach": reach.tolist(),
    })
    fig = plots.dh_norms_heatmap_figure(
        run.dh_steps, run.dh_norms,
        f"LSTM on adding (T = {T}, H = {H}): $\\|\\partial L/\\partial h_t\\|$ during training",
    )
    plots.save_figure(fig, os.path.join(args.out, "heatmap.png"))
    for name, figure in plots.run_figures(run).items():
        plots.save_figure(figure, os.path.join(run_dir, name))
    print(f"final held-out MSE {summary['eval_loss']:.4f} (baseline {summary['baseline_loss']:.4f}); "
          f"log10 ||dL/dh_0|| / ||dL/dh_T-1||: {reach[0]:+.2f} at step {run.dh_steps[0]}, "
          f"{reach[-1]:+.2f} at step {run.dh_steps[-1]}")



# %%
# The documentation's gallery runs this script at ``--quick`` size as it builds: what follows is what
# that run wrote and printed.

if __name__ == "__main__":
    main()
