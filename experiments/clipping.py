r"""
The cliff, and what gradient clipping does
==========================================

Pascanu et al.'s single recurrent unit, whose loss surface has a thin wall where the gradient is
huge: gradient descent jumps off it, and the same descent with its gradient clipped follows it down.

What it shows
-------------

The unit :math:`x_t = w\,\sigma(x_{t-1}) + b` from :math:`x_0 = 0.5`, with the loss
:math:`(x_{50} - 0.7)^2`. For w > 4 the map has two stable fixed points, and :math:`x_{50}` switches
from one to the other across a thin wall in (w, b): there the gradient is huge. Two gradient descents
start at (w, b) = (6.75, -4) with learning rate 0.01 for 200 iterations: plain, and with the gradient
rescaled to norm at most 10 (global-norm clipping, ``bptt.training.clipping.clip_grad_norm``), so
that no step is longer than 0.01 x 10 = 0.1. The gradient is a short backpropagation through the
50 steps written out in the script (``loss_and_gradient``; the tests check it against central
differences), the weight's gradient accumulated over the steps that share it.

The paper
---------

Pascanu, Mikolov and Bengio (2013), *On the difficulty of training recurrent neural networks*: the
single-unit model, the wall in its loss surface, and clipping the norm of the gradient as the remedy.

What to look for
----------------

Numbers from the full-size run (the descents are the same at both sizes: ``--quick`` only draws the
surface on a coarser grid). Without clipping, the descent reaches the wall at iteration 74, meets a
gradient of norm 46 938 and jumps 469 units away, ending after 200 iterations at loss 20.7; with
the gradient rescaled to norm at most 10, the largest step is 0.1, the descent follows the wall down
the valley and ends at loss 0.00058. ``loss_along_paths.png`` shows both losses per iteration.

.. figure:: /figures/clipping_cliff.png
   :alt: Loss surface of the single-unit model with the two descents drawn on it

   The full-size run (``docs/figures/clipping_cliff.png``).

Run it
------

::

    python experiments/clipping.py --out DIR [--quick]

Writes ``loss_surface.png``, ``loss_along_paths.png``, ``cliff.json`` (the paths, the jumps, the
final losses) and ``surface.csv``. The full run took 3 s (a 400 x 400 grid), ``--quick`` (150 x 150)
1.5 s. Below: the script, then what it wrote and printed when it ran at ``--quick`` size as this page
was built.
"""

from __future__ import annotations

import os

import numpy as np

from bptt import plots
from bptt.training.clipping import clip_grad_norm, global_norm

from common import parse_args, write_csv, write_json

T = 50  # the loss sits on step 50
X0, TARGET = 0.5, 0.7
START = (6.75, -4.0)  # (w, b) where descent runs into the wall
LEARNING_RATE = 0.01
ITERATIONS = 200
THRESHOLD = 10.0  # maximum gradient norm: a clipped step is at most LEARNING_RATE * THRESHOLD long
W_RANGE, B_RANGE = (2.0, 12.0), (-9.0, 2.0)


def sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def loss_and_gradient(w, b):
    """Loss and (dL/dw, dL/db) by backpropagation through the T steps, for arrays of (w, b) at once."""
    w, b = np.broadcast_arrays(np.asarray(w, float), np.asarray(b, float))
    xs = [np.full(w.shape, X0)]
    for _ in range(T):
        xs.append(w * sigmoid(xs[-1]) + b)
    loss = (xs[-1] - TARGET) ** 2
    dx = 2 * (xs[-1] - TARGET)  # dL/dx_T
    dw, db = np.zeros(w.shape), np.zeros(w.shape)
    for t in range(T, 0, -1):
        s = sigmoid(xs[t - 1])
        dw += dx * s  # the weight is shared across steps: its gradient adds up
        db += dx
        dx = dx * w * s * (1 - s)  # back through x_t = w sigmoid(x_{t-1}) + b: sigmoid' = s (1 - s)
    return loss, dw, db


def descend(threshold: float | None) -> dict:
    point = np.array(START, float)
    path, losses, norms = [point.copy()], [], []
    for _ in range(ITERATIONS):
        loss, dw, db = loss_and_gradient(*point)
        grads = {"w": np.array(float(dw)), "b": np.array(float(db))}
        norm = global_norm(grads) if threshold is None else clip_grad_norm(grads, threshold).norm  # before
        losses.append(float(loss))
        norms.append(norm)
        point = point - LEARNING_RATE * np.array([grads["w"], grads["b"]])
        path.append(point.copy())
    losses.append(float(loss_and_gradient(*point)[0]))
    path = np.array(path)
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    return {
        "threshold": threshold,
        "path": path.tolist(),
        "losses": losses,
        "gradient_norms": norms,
        "largest_step": float(steps.max()),
        "largest_step_at": int(steps.argmax()),
        "largest_gradient_norm": float(max(norms)),
        "final_loss": losses[-1],
    }


def main() -> None:
    args = parse_args(__doc__)
    n = 150 if args.quick else 400
    w = np.linspace(*W_RANGE, n)
    b = np.linspace(*B_RANGE, n)
    surface, _, _ = loss_and_gradient(w[None, :], b[:, None])  # (Nb, Nw)
    plain, clipped = descend(None), descend(THRESHOLD)

    write_json(os.path.join(args.out, "cliff.json"), {
        "setup": {"T": T, "x0": X0, "target": TARGET, "start": START, "learning_rate": LEARNING_RATE,
                  "iterations": ITERATIONS, "clip_threshold": THRESHOLD},
        "without_clipping": plain, "with_clipping": clipped,
    })
    write_csv(os.path.join(args.out, "surface.csv"), ["w", "b", "loss"],
              [(f"{w[j]:.6g}", f"{b[i]:.6g}", f"{surface[i, j]:.6g}") for i in range(n) for j in range(n)])

    landing = plain["path"][plain["largest_step_at"] + 1]
    jump = (f"jumps {plain['largest_step']:.0f} at iteration {plain['largest_step_at']}, "
            f"to ({landing[0]:.0f}, {landing[1]:.0f})")
    paths = {
        f"no clipping ({jump})": np.array(plain["path"]),
        f"clipping at norm {THRESHOLD:g} (steps <= {LEARNING_RATE * THRESHOLD:g})": np.array(clipped["path"]),
    }
    fig = plots.loss_surface_figure(
        w, b, surface, paths,
        f"Loss $(x_{{{T}}} - {TARGET})^2$ of $x_t = w\\,\\sigma(x_{{t-1}}) + b$; gradient descent, lr {LEARNING_RATE:g}",
    )
    plots.save_figure(fig, os.path.join(args.out, "loss_surface.png"))
    fig = plots.loss_along_paths_figure(
        {"no clipping": plain["losses"], f"clipping at norm {THRESHOLD:g}": clipped["losses"]},
        f"Loss along the two descents from (w, b) = {START}",
    )
    plots.save_figure(fig, os.path.join(args.out, "loss_along_paths.png"))
    for name, run in (("without clipping", plain), ("with clipping", clipped)):
        print(f"{name:17s} largest gradient norm {run['largest_gradient_norm']:9.1f}  largest step "
              f"{run['largest_step']:8.3f}  final loss {run['final_loss']:.4g}")



# %%
# The documentation's gallery runs this script at ``--quick`` size as it builds: what follows is what
# that run wrote and printed.

if __name__ == "__main__":
    main()
