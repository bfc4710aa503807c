r"""
Vanishing and exploding gradients through time
==============================================

How fast the gradient :math:`\|\partial L/\partial h_t\|` shrinks or grows as it travels back through
time, in a tanh RNN scaled from vanishing to exploding and in an LSTM and a GRU, measured by the
reverse sweep and predicted from the forward pass alone by the top Lyapunov exponent.

What it shows
-------------

A tanh RNN (H = 64, D = 8, T = 150, 8 sequences of N(0, 1) inputs) with
:math:`W_{hh} = \lambda_1 Q`, Q a random orthogonal matrix, so that every singular value (and the
spectral radius) equals :math:`\lambda_1`, for :math:`\lambda_1` = 0.5, 0.9, 1.0, 1.1, 1.5 and 2.0;
then an LSTM and a GRU at PyTorch's default initialisation (uniform in :math:`\pm 1/\sqrt{H}`).
For each one, against the timestep t:

- left, :math:`\|\partial L/\partial h_t\|` from the reverse sweep (``Gradients.dh_norms``) for a
  loss on the last step only;
- right, the spectral norm of the Jacobian product :math:`\|\partial s_T/\partial s_t\|`
  (``diagnostics.jacobian_norms``, geometric mean over the sequences);
- dashed, a line with the slope of the top Lyapunov exponent (``diagnostics.lyapunov_spectrum``),
  computed from the forward pass alone: only its slope is a prediction, its height is fitted.

In the linear regime the gain per step is exactly :math:`\lambda_1`; the inputs push the units into
tanh's saturation, where tanh' < 1 lowers it.

The paper
---------

Pascanu, Mikolov and Bengio (2013), *On the difficulty of training recurrent neural networks*: with
:math:`|\sigma'| \le \gamma` (1 for tanh), :math:`\lambda_1 < 1/\gamma` is sufficient for gradients
to vanish and :math:`\lambda_1 > 1/\gamma` necessary for them to explode, and the rate per step is at
most :math:`\log \lambda_1` (``diagnostics.recurrent_bound``). The problem itself was first analysed
by Bengio, Simard and Frasconi (1994).

What to look for
----------------

Numbers from the full-size run. The dashed lines lie on the measured curves (slopes in nats per
step, printed by the command, predicted then measured): :math:`\lambda_1` = 0.5: -0.751, -0.746;
0.9: -0.211, -0.208; 1.0: -0.136, -0.132; 1.1: -0.081, -0.076; 1.5: +0.038, +0.042; 2.0: +0.128,
+0.135. The rate is always below Pascanu's bound :math:`\log \lambda_1`, because the inputs push the
units into tanh's saturation: at :math:`\lambda_1` = 1 and 1.1 gradients still vanish, and only from
about 1.4 on do they grow (``lyapunov_vs_lambda.png`` draws the exponent, the slope and the bound
against :math:`\lambda_1`).

.. figure:: /figures/vanishing_tanh_rnn.png
   :alt: Gradient norms against the timestep for a tanh RNN with six scalings of W_hh

   The full-size run (``docs/figures/vanishing_tanh_rnn.png``).

LSTM and GRU at their default initialisation both vanish at about -0.43 nats per step (LSTM -0.435
predicted, -0.430 measured; GRU -0.425, -0.425), faster than the tanh RNN at :math:`\lambda_1` = 1.
Gates do not preserve gradients by themselves: with the forget gate near sigmoid(0) = 0.5 the cell
state roughly halves every step.

.. figure:: /figures/vanishing_gated.png
   :alt: Gradient norms against the timestep for an LSTM and a GRU at default initialisation

   The full-size run (``docs/figures/vanishing_gated.png``).

Run it
------

::

    python experiments/vanishing_exploding.py --out DIR [--quick]

Writes ``tanh_rnn.png``, ``gated.png``, ``lyapunov_vs_lambda.png``, the numbers in ``results.json``
and every curve in ``norms.csv``. The full run took 10 s, ``--quick`` (H = 32, T = 60, 4 sequences)
2.6 s. Below: the script, then what it wrote and printed when it ran at ``--quick`` size as this page
was built.
"""

from __future__ import annotations

import os

# Thousands of small QR and SVD factorisations: on a busy 2-core machine OpenBLAS threads only
# contend (full run: 3 min 13 s threaded, 17 s single-threaded). Set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import bptt  # noqa: E402
from bptt import diagnostics, plots  # noqa: E402

from common import parse_args, write_csv, write_json  # noqa: E402

LAMBDAS = (0.5, 0.9, 1.0, 1.1, 1.5, 2.0)
INPUT_SIZE = 8
SKIP = 10  # steps nearest the loss left out of the slope fit (the product is still aligning there)


def fit_slope(values: np.ndarray) -> float:
    """Least-squares slope of log(values) against the distance T-1-t, in nats per step."""
    T = len(values)
    distance = (T - 1 - np.arange(T))[: T - SKIP]
    return float(np.polyfit(distance, np.log(values[: T - SKIP]), 1)[0])


def measure(cell, xs, seed: int) -> dict:
    """Norms through time and their predicted and measured rates, for one cell on xs (T, N, D)."""
    T, N, _ = xs.shape
    hs, tape = bptt.forward(cell, xs)
    readout = bptt.Linear(cell.hidden_size, 1, seed=seed)
    target = np.random.default_rng(seed).standard_normal((N, 1))
    pred, readout_cache = readout.forward(hs[-1])
    loss, dpred = bptt.mse(pred, target)
    dhs = np.zeros_like(hs)
    dhs[-1], _ = readout.backward(dpred, readout_cache)  # the loss sits on the last step only
    dl_dh = bptt.backward(cell, tape, dhs).dh_norms
    norms = diagnostics.jacobian_norms(cell, tape, part="state")
    jacobian = np.exp(np.log(norms.spectral).mean(axis=1))  # geometric mean over the sequences
    frobenius = np.exp(np.log(norms.frobenius).mean(axis=1))
    exponents = diagnostics.lyapunov_spectrum(cell, tape, warmup=SKIP)
    return {
        "lyapunov_top": float(exponents[:, 0].mean()),
        "lyapunov_spectrum_mean": exponents.mean(axis=0).tolist(),
        "slope_jacobian": fit_slope(jacobian),
        "slope_dl_dh": fit_slope(dl_dh),
        "dl_dh": dl_dh,
        "jacobian_spectral": jacobian,
        "jacobian_frobenius": frobenius,
    }


def main() -> None:
    args = parse_args(__doc__)
    H, T, N = (32, 60, 4) if args.quick else (64, 150, 8)
    rng = np.random.default_rng(args.seed)
    xs = rng.standard_normal((T, N, INPUT_SIZE))
    Q, _ = np.linalg.qr(rng.standard_normal((H, H)))
    t = np.arange(T)

    results, series, csv_rows = [], {"tanh": [], "gated": []}, []
    configs = [(f"tanh RNN, lambda_1 = {lam:g}", "tanh", lam) for lam in LAMBDAS]
    configs += [("LSTM (default init)", "gated", None), ("GRU (default init)", "gated", None)]
    for label, group, lam in configs:
        if group == "tanh":
            cell = bptt.RNN(INPUT_SIZE, H, "tanh", seed=args.seed)
            cell.params["weight_hh"] = lam * Q
        else:
            cell = (bptt.LSTM if label.startswith("LSTM") else bptt.GRU)(INPUT_SIZE, H, seed=args.seed)
        m = measure(cell, xs, args.seed)
        bounds = diagnostics.recurrent_bounds(cell)
        results.append({
            "label": label,
            "cell": type(cell).__name__,
            "lambda_1": [b.lambda_1 for b in bounds],
            "spectral_radius": [b.spectral_radius for b in bounds],
            "pascanu_bound": [b.bound for b in bounds],
            "blocks": [b.name for b in bounds],
            **{k: v for k, v in m.items() if not isinstance(v, np.ndarray)},
        })
        short = f"$\\lambda_1$ = {lam:g}" if lam is not None else label.split(" ")[0]
        series[group].append({"label": short, "t": t, "dl_dh": m["dl_dh"], "jacobian": m["jacobian_spectral"],
                              "lyapunov": m["lyapunov_top"]})
        csv_rows += [(label, int(i), m["dl_dh"][i], m["jacobian_spectral"][i], m["jacobian_frobenius"][i])
                     for i in range(T)]

    setup = {"hidden_size": H, "T": T, "batch": N, "input_size": INPUT_SIZE, "seed": args.seed,
             "inputs": "standard normal", "slope_fit_skips_last_steps": SKIP}
    write_json(os.path.join(args.out, "results.json"), {"setup": setup, "runs": results})
    write_csv(os.path.join(args.out, "norms.csv"),
              ["config", "t", "dl_dh_norm", "jacobian_spectral", "jacobian_frobenius"], csv_rows)

    size = f"H = {H}, T = {T}, {N} sequences of N(0,1) inputs"
    fig = plots.gradient_norms_figure(series["tanh"], f"tanh RNN, $W_{{hh}} = \\lambda_1 Q$ ({size})")
    plots.save_figure(fig, os.path.join(args.out, "tanh_rnn.png"))
    fig = plots.gradient_norms_figure(series["gated"], f"LSTM and GRU at default initialisation ({size})",
                                      jacobian_label=r"$\|\partial s_T/\partial s_t\|_2$, s = h (GRU), (h, c) (LSTM)")
    plots.save_figure(fig, os.path.join(args.out, "gated.png"))
    tanh_runs = results[: len(LAMBDAS)]
    fig = plots.lyapunov_vs_lambda_figure(LAMBDAS, [r["lyapunov_top"] for r in tanh_runs],
                                          [r["slope_jacobian"] for r in tanh_runs],
                                          f"tanh RNN: growth rate of gradients per step\n({size})")
    plots.save_figure(fig, os.path.join(args.out, "lyapunov_vs_lambda.png"))
    for r in results:
        print(f"{r['label']:28s} top Lyapunov {r['lyapunov_top']:+.4f}  measured slope "
              f"{r['slope_jacobian']:+.4f} (Jacobian) {r['slope_dl_dh']:+.4f} (dL/dh)  nats/step")



# %%
# The documentation's gallery runs this script at ``--quick`` size as it builds: what follows is what
# that run wrote and printed.

if __name__ == "__main__":
    main()
