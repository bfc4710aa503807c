r"""
Down the stack or along time: gradients in 4-layer stacks
=========================================================

Where a gradient dies in a stack of recurrent layers: along time, or down the layers.

What it shows
-------------

Four-layer stacks (``bptt.Stack``, H = 64, D = 8) of tanh RNN, LSTM and GRU cells at PyTorch's
default initialisation, fed 16 sequences of T = 100 N(0, 1) inputs, with a loss on the top layer's
output at the last step only (through a linear readout). The reverse sweep's ``Gradients.dh_norms``
gives :math:`\|\partial L/\partial h_t\|` for every layer and step, drawn as layer x time maps and as
curves, each divided by the top layer's value at the last step. Two rates are read off it:

- along time: the least-squares slope of :math:`\log \|\partial L/\partial h_t\|` against the
  distance T-1-t in the top layer, in nats per step, next to the top Lyapunov exponent of the top
  layer's own recurrence (``diagnostics.lyapunov_spectrum`` on that layer's cell and tape), which
  predicts it;
- down the stack: :math:`\log(\|\partial L/\partial h^l_t\| / \|\partial L/\partial h^{l+1}_t\|)`
  at the last step, where the gradient has crossed layers but no time yet, in nats per layer.

The paper
---------

No figure of a paper: the stacks are PyTorch's ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` with
``num_layers=4``, and the question is the one Pascanu, Mikolov and Bengio (2013) ask of time, asked
of depth as well.

What to look for
----------------

Numbers from the full-size run. Along time, in the top layer, the gradient falls at 0.418 nats per
step for the tanh RNN, 0.413 for the LSTM and 0.466 for the GRU, the rate the top layer's own
Lyapunov exponent predicts from the forward pass alone (0.416, 0.414, 0.468); every layer below falls
at about the same rate (0.40 to 0.43). Down the stack, at the last step, it loses 0.62 nats per layer
(tanh RNN), 1.88 (LSTM) and 1.27 (GRU): one layer costs the LSTM as much as four to five steps of
time. But it pays that once: a few steps back the lower layers carry as much gradient as the top one
(the GRU's lower layers more: their gradients fall more slowly along time, 0.41 against 0.47 nats per
step), because the gradient reaching layer 0 at step t sums the paths that went down at every later
step. At initialisation the depth of a stack matters far less than the length of the sequence.

.. figure:: /figures/stack_gradients.png
   :alt: Layer by time maps and curves of the gradient norm for 4-layer tanh RNN, LSTM and GRU stacks

   The full-size run (``docs/figures/stack_gradients.png``).

Run it
------

::

    python experiments/stack_gradients.py --out DIR [--quick]

Writes ``stack_gradients.png`` (the layer x time maps and the curves), ``results.json`` and
``norms.csv``. The full run took 92 s, ``--quick`` (H = 16, T = 30, 4 sequences) 1.7 s. Below: the
script, then what it wrote and printed when it ran at ``--quick`` size as this page was built.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # many small factorisations: threads only contend

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import diagnostics, plots  # noqa: E402

from common import parse_args, write_csv, write_json  # noqa: E402

CELLS = (("rnn", "tanh RNN"), ("lstm", "LSTM"), ("gru", "GRU"))
LAYERS, INPUT_SIZE = 4, 8
SKIP = 10  # steps nearest the loss left out of the slope fit


def fit_slope(values: np.ndarray) -> float:
    """Least-squares slope of log(values) against the distance T-1-t, in nats per step."""
    T = len(values)
    distance = (T - 1 - np.arange(T))[: T - SKIP]
    return float(np.polyfit(distance, np.log(values[: T - SKIP]), 1)[0])


def measure(cell: str, T: int, N: int, H: int, seed: int) -> dict:
    net = bptt.Stack(cell, INPUT_SIZE, H, LAYERS, seed=seed)
    xs = np.random.default_rng([seed, 1]).standard_normal((T, N, INPUT_SIZE))
    hs, tape = bptt.forward(net, xs)
    readout = bptt.Linear(H, 1, seed=seed)
    pred, cache = readout.forward(hs[-1])
    _, dpred = bptt.mse(pred, np.random.default_rng([seed, 2]).standard_normal((N, 1)))
    dhs = np.zeros_like(hs)
    dhs[-1], _ = readout.backward(dpred, cache)  # the loss sits on the top layer's last step
    norms = bptt.backward(net, tape, dhs).dh_norms[:, 0]  # (L, T)
    top_cell, top_tape = net.cells[-1][0], tape.layers[-1][0]
    lyapunov_top = float(diagnostics.lyapunov_spectrum(top_cell, top_tape, warmup=SKIP)[:, 0].mean())
    stacked = float(diagnostics.lyapunov_spectrum(net, tape, warmup=SKIP)[:, 0].mean())
    down = np.log(norms[:-1, -1] / norms[1:, -1])  # layer l against layer l + 1, at t = T-1
    return {
        "cell": cell,
        "time_slopes": [fit_slope(norms[layer]) for layer in range(LAYERS)],
        "lyapunov_top_layer": lyapunov_top,
        "lyapunov_stack": stacked,
        "down_per_layer": down.tolist(),
        "down_mean": float(down.mean()),
        "norms": norms,
    }


def main() -> None:
    args = parse_args(__doc__)
    T, N, H = (30, 4, 16) if args.quick else (100, 16, 64)
    results = [dict(measure(cell, T, N, H, args.seed), label=label) for cell, label in CELLS]
    for r in results:
        print(f"{r['label']:8s} along time (top layer): {r['time_slopes'][-1]:+.3f} nats/step "
              f"(its Lyapunov exponent {r['lyapunov_top_layer']:+.3f}; the whole stack's {r['lyapunov_stack']:+.3f}); "
              f"down the stack at t = T-1: {r['down_mean']:+.3f} nats/layer "
              f"({', '.join(f'{d:+.2f}' for d in r['down_per_layer'])})")
    figure = plots.stack_gradients_figure(
        [{"label": r["label"], "dh_norms": r["norms"] / r["norms"][-1, -1], "lyapunov_top": r["lyapunov_top_layer"]}
         for r in results],
        f"{LAYERS}-layer stacks at initialisation, H = {H}, T = {T}: "
        r"$\|\partial L/\partial h_t\|$ for a loss on the top layer's last step")
    plots.save_figure(figure, os.path.join(args.out, "stack_gradients.png"))
    write_csv(os.path.join(args.out, "norms.csv"), ["cell", "layer", "t", "dl_dh"],
              [(r["cell"], layer, t, r["norms"][layer, t]) for r in results for layer in range(LAYERS) for t in range(T)])
    write_json(os.path.join(args.out, "results.json"), {
        "setup": {"layers": LAYERS, "T": T, "N": N, "H": H, "D": INPUT_SIZE, "seed": args.seed, "skip": SKIP},
        "runs": [{k: v for k, v in r.items() if k != "norms"} for r in results],
    })



# %%
# The documentation's gallery runs this script at ``--quick`` size as it builds: what follows is what
# that run wrote and printed.

if __name__ == "__main__":
    main()
