"""How the per-timestep gradient norms ||dL/dh_t|| change while a network learns: an LSTM trained on
the adding task with `bptt.train`, recording dL/dh_t for every t every few updates, drawn as a
heatmap over (training step, timestep).

With the loss on the last step only, dL/dh_t at early t is what carries the first marked value's
influence back; the reach of the gradient, log10 of ||dL/dh_0|| / ||dL/dh_{T-1}||, is printed for
the first and last records.

    python experiments/training_gradients.py --out DIR [--quick]

Writes heatmap.png, and loss.png, grad_norm.png, dh_norms.png (what `bptt plot` draws) into the run
folder DIR/lstm-adding; results.json holds the reach per record.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import plots  # noqa: E402
from bptt.training.run_folder import read_run  # noqa: E402

from common import parse_args, write_json  # noqa: E402


def main() -> None:
    args = parse_args(__doc__.split("\n\n")[0])
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


if __name__ == "__main__":
    main()
