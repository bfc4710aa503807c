"""RTRL against BPTT: time and peak memory as the sequence grows, and as the hidden size grows.

    python scripts/rtrl_cost.py [--cell rnn] [--repeats 3]

Both compute the same exact gradient of L = sum_t <w_t, h_t> (one sequence, N = 1, D = 4). BPTT
keeps a tape that grows with T; RTRL keeps the sensitivity dh_t/dtheta, (P, N, H) whatever T, and
pays O(P H G H) per step: H^4 for a vanilla RNN. Peak memory is tracemalloc's peak over the call,
inputs and dL/dh_t excluded (RTRL run online, keeping no h_t); time is the best of --repeats, with BLAS on one thread (set before numpy loads).
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402

import numpy as np  # noqa: E402

import bptt  # noqa: E402

D, N = 4, 1


def run_bptt(cell, xs, dhs):
    _, tape = bptt.forward(cell, xs)
    return bptt.backward(cell, tape, dhs).params


def run_rtrl(cell, xs, dhs):
    return bptt.rtrl(cell, xs, dhs, keep_hs=False).params  # online: nothing kept per step


def measure(run, cell, xs, dhs, repeats):
    tracemalloc.start()
    run(cell, xs, dhs)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    best = np.inf
    for _ in range(repeats):
        begin = time.perf_counter()
        run(cell, xs, dhs)
        best = min(best, time.perf_counter() - begin)
    return best, peak


def row(cell_name, T, H, repeats):
    cell = bptt.make_cell(cell_name, D, H, seed=0)
    rng = np.random.default_rng(0)
    xs, dhs = rng.standard_normal((T, N, D)), rng.standard_normal((T, N, H))
    t_b, m_b = measure(run_bptt, cell, xs, dhs, repeats)
    t_r, m_r = measure(run_rtrl, cell, xs, dhs, repeats)
    # RTRL's one O(P H G H) operation alone: the sensitivity through W_hh, (P, N, H) x (H, G H)
    sensitivity, w_hh = rng.standard_normal((cell.num_params, N, H)), cell.params["weight_hh"]
    t_p, _ = measure(lambda *_: sensitivity @ w_hh.T, cell, xs, dhs, repeats)
    print(f"{T:>6}{H:>5}{cell.num_params:>7}{t_b * 1e3:>11.2f}{t_r * 1e3:>11.1f}{t_r / t_b:>9.0f}"
          f"{m_b / 2**10:>12.1f}{m_r / 2**10:>12.1f}{t_p * 1e3:>16.3f}")
    return t_r / T, t_p


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=bptt.CELL_NAMES, default="rnn")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    header = (f"{'T':>6}{'H':>5}{'P':>7}{'BPTT ms':>11}{'RTRL ms':>11}{'ratio':>9}"
              f"{'BPTT KiB':>12}{'RTRL KiB':>12}{'S W^T ms/step':>16}")

    print(f"{args.cell}, N={N}, D={D}, float64: as T grows (H = 16)")
    print(header)
    for T in (10, 30, 100, 300, 1000):
        row(args.cell, T, 16, args.repeats)

    print(f"\n{args.cell}: as H grows (T = 20)")
    print(header)
    sizes = (4, 8, 16, 32, 64, 128) if args.cell == "rnn" else (4, 8, 16, 32, 64)  # LSTM at 128: 1.7 GB
    per_step, product = zip(*[row(args.cell, 20, H, args.repeats) for H in sizes])
    fit = lambda y: np.polyfit(np.log(sizes[-3:]), np.log(y[-3:]), 1)[0]
    print(f"over H = {sizes[-3]}..{sizes[-1]}: RTRL time per step ~ H^{fit(per_step):.1f}, its S W^T product "
          f"alone ~ H^{fit(product):.1f} (theory H^4; the rest of a step is H^3 element-wise work)")


if __name__ == "__main__":
    main()
