r"""
Your own cell: a minimal gated unit against GRU and LSTM
========================================================

A cell the package does not ship, written in this file as a step pair and nothing more, measured
the way the built-in cells are: its gradient flow through time and its success on the adding task,
trained by ``bptt sweep`` next to GRU and LSTM. The guide page :doc:`../guide/own_cell` explains
each part of the cell.

What it shows
-------------

The minimal gated unit (MGU) is a GRU with one gate instead of two: the forget gate f also resets
the candidate, so it has two gate blocks (``gate_names = ("f", "n")``) where the GRU has three:

.. math::

    f = \sigma(a_x^f + a_h^f), \quad n = \tanh(a_x^n + f \odot a_h^n), \quad
    h = (1 - f) \odot h_{t-1} + f \odot n,

with :math:`a_x = x W_{ih}^T + b_{ih}` and :math:`a_h = h_{t-1} W_{hh}^T + b_{hh}`, the two
projections every built-in cell has (the gate is applied after the recurrent product, as PyTorch's
GRU applies its reset gate). ``MGU`` below writes ``step_forward`` / ``step_backward`` only; with
that, ``bptt.forward`` / ``backward``, the diagnostics, training and sweeps run it one step at a time.

1. Gradient flow at default initialisation (PyTorch's uniform weights): the norm of
   :math:`\partial L/\partial h_t` for a loss on the last step, the norm of the Jacobian product
   :math:`\partial s_T/\partial s_t` (``diagnostics.jacobian_norms``), and the top Lyapunov exponent
   (``diagnostics.lyapunov_spectrum``, dashed: its slope), for MGU, GRU and LSTM on the same inputs,
   as in :doc:`vanishing_exploding`.
2. The adding task (Hochreiter and Schmidhuber 1997, as in :doc:`cells_adding`): a sweep over the
   three cells, sequence lengths and seeds, H = 32, Adam 0.01, clipping at 1, stopping at a held-out
   MSE of 0.01. The sweep runs as ``python -m bptt sweep SPEC --out DIR/sweep`` with this folder on
   ``PYTHONPATH``, the cell named ``own_cell:MGU`` in the spec's grid: its workers import it from here.

The paper
---------

Zhou, Wu, Zhang and Zhou (2016), *Minimal gated unit for recurrent neural networks*: one gate
does the work of the GRU's two with a third fewer parameters, at similar accuracy on their tasks.

What to look for
----------------

Numbers from the full-size run. Gradient flow (H = 64, T = 150, 8 sequences), top Lyapunov exponent
and the measured slope of the Jacobian product, nats per step: MGU -0.433 and -0.433, GRU -0.425 and
-0.425, LSTM -0.435 and -0.430. At default initialisation the three vanish at the same rate: one gate
near sigmoid(0) = 1/2 keeps about half of h per step, as the GRU's update gate and the LSTM's forget
gate do.

.. figure:: /figures/own_cell_gradient_flow.png
   :alt: Gradient norms against the timestep for MGU, GRU and LSTM at default initialisation

   The full-size run (``docs/figures/own_cell_gradient_flow.png``).

The adding task (H = 32, up to 2000 updates, 5 seeds per length): every seed of every cell reaches a
held-out MSE of 0.01, after these mean numbers of updates.

===== ====== ====== =======
cell  T = 25 T = 50 T = 100
===== ====== ====== =======
MGU   260    330    420
GRU   200    240    340
LSTM  590    850    1500
===== ====== ====== =======

The MGU, with two thirds of the GRU's parameters, needs about a quarter more updates than the GRU
and well under half of the LSTM's at T = 100. One setting and 5 seeds: the order is clear at this
size, not a general ranking of the cells.

.. figure:: /figures/own_cell_adding.png
   :alt: Updates until held-out MSE 0.01 and final held-out MSE against T for MGU, GRU and LSTM

   The full-size run (``docs/figures/own_cell_adding.png``).

Run it
------

::

    python experiments/own_cell.py --out DIR [--quick]

Writes ``gradient_flow.png``, ``adding_sweep.png``, ``results.json`` (slopes and the sweep's results
per cell and T), the sweep's spec ``own_cell.toml`` and the sweep's own folder ``DIR/sweep`` (its
run folders, ``results.csv``, ``summary.md``, figures). ``--quick`` (gradient flow at H = 32,
T = 60; the sweep at T = 10 and 20, one seed, 60 updates of H = 8) took 4.4 s, the full run 4 min
20 s on two shared cores (the MGU runs its step pair one step at a time, 1.25 to 2.2 times a fast
path's cost per step, ``scripts/step_checks.py``). Below: the script, then what it wrote and printed when it ran at
``--quick`` size as this page was built; 60 updates only show the first steps away from the initial
loss.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from typing import NamedTuple

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import plots  # noqa: E402

import common  # noqa: E402
from common import parse_args, write_json  # noqa: E402
from vanishing_exploding import measure  # noqa: E402


# %%
# The cell
# --------
# A NamedTuple for the cache, the names of the gate blocks, and the step pair. Each line of the
# backward applies one local derivative of the forward above it.

class MGUCache(NamedTuple):
    x: np.ndarray  # (N, D) the input
    h_prev: np.ndarray  # (N, H) the state before the step
    f: np.ndarray  # (N, H) the forget gate
    hn: np.ndarray  # (N, H) the candidate's recurrent part, a_h[n] = h_prev W_hn^T + b_hn
    n: np.ndarray  # (N, H) the candidate
    h: np.ndarray  # (N, H) the state after the step


class MGU(bptt.Cell):
    """Minimal gated unit: h = (1 - f) h_prev + f n, n = tanh(a_x[n] + f a_h[n]), f = sigmoid(a_x[f] + a_h[f])."""

    Cache = MGUCache
    gate_names = ("f", "n")  # two blocks: weight_ih (2H, D), weight_hh (2H, H)
    gate_slope_bounds = (0.25, 1.0)  # sigmoid' <= 1/4, tanh' <= 1

    def step_forward(self, x, state):
        x, (h_prev,) = self.check_step(x, state)
        p, H = self.params, self.hidden_size
        a_x = x @ p["weight_ih"].T + p["bias_ih"]  # (N, 2H): input projection
        a_h = h_prev @ p["weight_hh"].T + p["bias_hh"]  # (N, 2H): recurrent projection
        f = 0.5 * np.tanh(0.5 * (a_x[:, :H] + a_h[:, :H])) + 0.5  # sigmoid, without overflow
        hn = a_h[:, H:]
        n = np.tanh(a_x[:, H:] + f * hn)
        h = (1 - f) * h_prev + f * n
        return h, MGUCache(x, h_prev, f, hn, n, h)

    def step_backward(self, dstate, cache):
        (dh,) = self.check_step_gradient(dstate, cache)
        x, h_prev, f, hn, n, _ = cache
        p = self.params
        dh_prev = dh * (1 - f)  # h = (1 - f) h_prev + f n
        df = dh * (n - h_prev)
        dan = dh * f * (1 - n * n)  # through tanh: tanh' = 1 - n^2
        df = df + dan * hn  # n's argument a_x[n] + f hn
        dhn = dan * f
        daf = df * f * (1 - f)  # through sigmoid: sigmoid' = f (1 - f)
        da_x = np.concatenate([daf, dan], axis=1)  # dL/da_x, dL/da_h (N, 2H)
        da_h = np.concatenate([daf, dhn], axis=1)
        grads = {"weight_ih": da_x.T @ x, "weight_hh": da_h.T @ h_prev,  # summed over the batch
                 "bias_ih": da_x.sum(axis=0), "bias_hh": da_h.sum(axis=0)}
        dh_prev = dh_prev + da_h @ p["weight_hh"]  # a_h = h_prev W_hh^T + b_hh
        return da_x @ p["weight_ih"], dh_prev, grads


# %%
# Measuring it
# ------------

CELLS = {"MGU": "own_cell:MGU", "GRU": "gru", "LSTM": "lstm"}  # label: the name the sweep's spec gives
INPUT_SIZE = 8
TARGET = 0.01
BASELINE = 1.0 / 6.0
HERE = os.path.dirname(os.path.abspath(common.__file__))  # this folder (the gallery runs scripts without __file__)


def gradient_flow(args, H: int, T: int, N: int) -> list[dict]:
    """dL/dh norms, Jacobian products and Lyapunov exponents of each cell on the same inputs."""
    xs = np.random.default_rng(args.seed).standard_normal((T, N, INPUT_SIZE))
    flows = []
    for label in CELLS:
        cell = MGU(INPUT_SIZE, H, seed=args.seed) if label == "MGU" else bptt.make_cell(
            CELLS[label], INPUT_SIZE, H, seed=args.seed)
        flows.append({"label": label, "parameters": cell.num_params, **measure(cell, xs, args.seed)})
    return flows


SPEC = """# the adding task: MGU (from experiments/own_cell.py, on PYTHONPATH) against GRU and LSTM
[base]
task = "adding"
hidden = {hidden}
steps = {steps}
eval_every = {eval_every}
eval_size = 500
target_loss = {target}
record_every = 0

[grid]
cell = {cells}
seq_len = {lengths}
seed = {seeds}
"""


def adding_sweep(args, **size) -> list[dict]:
    """Write the spec, run `python -m bptt sweep` with this folder on PYTHONPATH, read results.csv."""
    spec = os.path.join(args.out, "own_cell.toml")
    with open(spec, "w") as f:
        f.write(SPEC.format(cells="[" + ", ".join(f'"{c}"' for c in CELLS.values()) + "]", target=TARGET,
                            **{k: v if not isinstance(v, list) else str(v) for k, v in size.items()}))
    path = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-m", "bptt", "sweep", spec, "--out", os.path.join(args.out, "sweep"),
                           "--workers", "2"], env=dict(os.environ, PYTHONPATH=path), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the sweep failed (exit {done.returncode}):\n{done.stderr}")
    with open(os.path.join(args.out, "sweep", "results.csv"), newline="") as f:
        return list(csv.DictReader(f))


def main() -> None:
    args = parse_args(__doc__)
    if args.quick:
        flow_size, sweep_size = (32, 60, 4), dict(hidden=8, steps=60, eval_every=20, lengths=[10, 20], seeds=[0])
    else:
        flow_size, sweep_size = (64, 150, 8), dict(hidden=32, steps=2000, eval_every=50, lengths=[25, 50, 100],
                                                     seeds=[0, 1, 2, 3, 4])
    H, T, N = flow_size
    flows = gradient_flow(args, H, T, N)
    t = np.arange(T)
    series = [{"label": f"{f['label']} ({f['parameters']} parameters)", "t": t, "dl_dh": f["dl_dh"],
               "jacobian": f["jacobian_spectral"], "lyapunov": f["lyapunov_top"]} for f in flows]
    fig = plots.gradient_norms_figure(series, f"MGU, GRU and LSTM at default initialisation (H = {H}, T = {T}, "
                                              f"{N} sequences of N(0,1) inputs)",
                                      jacobian_label=r"$\|\partial s_T/\partial s_t\|_2$, s = h, or (h, c) for LSTM")
    plots.save_figure(fig, os.path.join(args.out, "gradient_flow.png"))
    for f in flows:
        print(f"{f['label']:5s} top Lyapunov {f['lyapunov_top']:+.4f}  measured slope {f['slope_jacobian']:+.4f} "
              f"(Jacobian) {f['slope_dl_dh']:+.4f} (dL/dh)  nats/step")

    rows = adding_sweep(args, **sweep_size)
    lengths, seeds = sweep_size["lengths"], sweep_size["seeds"]

    def table(key: str) -> dict:  # {label: (len(lengths), len(seeds)) values, NaN where a run did not finish}
        values = {label: np.full((len(lengths), len(seeds)), np.nan) for label in CELLS}
        for row in rows:
            label = next(k for k, v in CELLS.items() if v == row["cell"])
            i, j = lengths.index(int(row["seq_len"])), seeds.index(int(row["seed"]))
            if row["status"] == "done":
                values[label][i, j] = float(row[key] == "True") if key == "reached_target" else float(row[key])
        return values

    reached, loss, steps = table("reached_target"), table("eval_loss"), table("steps")
    lowest = np.nanmin([np.nanmin(v) for v in loss.values()])
    spread = max(BASELINE, np.nanmax([np.nanmax(v) for v in loss.values()])) / lowest  # log axis past a decade
    fig = plots.sweep_metrics_figure(lengths, [
        {"ylabel": f"updates until held-out MSE <= {TARGET:g} (limit {sweep_size['steps']})", "lines": steps},
        {"ylabel": "final held-out MSE", "lines": loss, "logy": bool(spread > 10),
         "baseline": [BASELINE] * len(lengths)},
    ], "sequence length T", f"Adding task, H = {sweep_size['hidden']}, {len(seeds)} seed{'s' * (len(seeds) > 1)} "
                            "per point (bptt sweep)")
    plots.save_figure(fig, os.path.join(args.out, "adding_sweep.png"))
    for label in CELLS:
        for i, T_i in enumerate(lengths):
            print(f"{label:5s} T = {T_i:3d}  reached {TARGET:g}: {int(np.nansum(reached[label][i]))}/{len(seeds)}  "
                  f"held-out MSE {np.nanmean(loss[label][i]):.4f}  updates {np.nanmean(steps[label][i]):.0f}")
    write_json(os.path.join(args.out, "results.json"), {
        "setup": {"gradient_flow": {"hidden_size": H, "T": T, "batch": N, "input_size": INPUT_SIZE},
                  "adding_sweep": {**sweep_size, "target_loss": TARGET, "baseline": BASELINE}},
        "gradient_flow": [{k: f[k] for k in ("label", "parameters", "lyapunov_top", "slope_jacobian", "slope_dl_dh")}
                          for f in flows],
        "adding_sweep": [{"cell": label, "T": T_i, "reached": reached[label][i].tolist(),
                          "eval_loss": loss[label][i].tolist(), "steps": steps[label][i].tolist()}
                         for label in CELLS for i, T_i in enumerate(lengths)],
    })


# %%
# The documentation's gallery runs this script at ``--quick`` size as it builds: what follows is what
# that run wrote and printed.

if __name__ == "__main__":
    main()
