"""UORO against RTRL: how noisy is one unbiased rank-one estimate, and does the mean converge?

    python scripts/uoro_variance.py [--cell rnn] [--hidden 8] [--samples 400]

For each T, the exact gradient g (RTRL) of L = sum_t <w_t, h_t> on one sequence (N = 1, D = 4) and
--samples UORO estimates with different seeds. Prints the relative variance E|g^ - g|^2 / |g|^2, the
mean cosine between g^ and g, the relative error of the sample mean (should shrink like
sqrt(variance / samples)), and one estimate's time against RTRL's (best of 3).
"""

import argparse
import time

import numpy as np

import bptt
from bptt.modes.common import flatten_params



def best_time(run, repeats=3):
    best = np.inf
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - begin)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=bptt.CELL_NAMES, default="rnn")
    parser.add_argument("--hidden", type=int, default=8)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    cell = bptt.make_cell(args.cell, 4, args.hidden, seed=0)
    print(f"{args.cell}: H={args.hidden}, P={cell.num_params}, N=1, D=4, {args.samples} UORO samples per row")
    print(f"{'T':>5}{'rel. variance':>15}{'mean cosine':>13}{'mean rel. err':>15}{'sqrt(var/M)':>13}"
          f"{'UORO ms':>10}{'RTRL ms':>10}")
    for T in (5, 20, 50, 100):
        rng = np.random.default_rng(T)
        xs, dhs = rng.standard_normal((T, 1, 4)), rng.standard_normal((T, 1, args.hidden))
        exact = flatten_params(bptt.rtrl(cell, xs, dhs).params)
        samples = np.stack([flatten_params(bptt.uoro(cell, xs, dhs, seed=s).params) for s in range(args.samples)])
        norm2 = exact @ exact
        variance = np.mean(np.sum((samples - exact) ** 2, axis=1)) / norm2
        cosine = np.mean(samples @ exact / (np.linalg.norm(samples, axis=1) * np.sqrt(norm2)))
        mean_error = np.linalg.norm(samples.mean(axis=0) - exact) / np.sqrt(norm2)
        t_uoro = best_time(lambda: bptt.uoro(cell, xs, dhs, seed=0))
        t_rtrl = best_time(lambda: bptt.rtrl(cell, xs, dhs, keep_hs=False))
        print(f"{T:>5}{variance:>15.3g}{cosine:>13.3f}{mean_error:>15.3g}{np.sqrt(variance / args.samples):>13.3g}"
              f"{t_uoro * 1e3:>10.2f}{t_rtrl * 1e3:>10.2f}")


if __name__ == "__main__":
    main()
