"""What numpy can do at the least: a floor for bptt's fast path, timed beside it and JAX in one process.

    python scripts/floor.py                                   # the issue's four rows, every cell, both dtypes
    python scripts/floor.py --cells gru --dtypes float64 --sizes 1 --rounds 21

Each cell's floor is one plain function computing forward + full backward with the fewest numpy
calls this algorithm needs: the fast path's layout and calls per step, every view built before the
loop, no classes, no unroller, no checks, no dh_norms, nothing kept for a caller. It is a
throwaway prototype, not a second implementation: it exists to be timed. Beside it, `products`
runs the matrix products alone (the per-step ones and those over all T), the part no arrangement
of element-wise calls removes.

The process is pinned to one core and every framework held to one thread, as `bench.py --threads 1`
does; the runners are timed interleaved, a new random order each round, and the table gives
medians (wall time, then CPU time). Where `floor/jax` is above 1, numpy cannot reach JAX on that
row with this algorithm, and `bptt/floor` says how far the fast path is from numpy's floor.

Letters: T time, B (N) batch, D input size, H hidden size.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from bench_machine import pin, thread_environment  # noqa: E402  (loads no numpy)

if __name__ == "__main__":
    os.environ.update(thread_environment(1))
    PINNED = pin(1)

import numpy as np  # noqa: E402

import bench_harness  # noqa: E402
import bench_peers  # noqa: E402
import bench_timing  # noqa: E402

ROWS = [(100, 32, 16, 64), (200, 16, 32, 128), (1000, 16, 8, 32), (100, 64, 128, 256)]
add, subtract, multiply, divide, exp, tanh, dot, copyto = (
    np.add, np.subtract, np.multiply, np.divide, np.exp, np.tanh, np.dot, np.copyto)


def rnn_floor(problem: dict):
    cell, xs, G = problem["cell"], problem["xs"], problem["G"]
    T, N, D = xs.shape
    H, dtype, p = cell.hidden_size, cell.dtype, cell.params
    w_ih, w_hh = p["weight_ih"], p["weight_hh"]
    w_hh_t, bias = np.ascontiguousarray(w_hh.T), p["bias_ih"] + p["bias_hh"]
    hs, da, tmp = np.empty((T + 1, N, H), dtype), np.empty((T, N, H), dtype), np.empty((N, H), dtype)
    dh = np.empty((T + 1, N, H), dtype)
    forward = list(zip(hs[:-1], hs[1:]))
    backward = list(zip(da, G, dh[1:], dh[:-1]))[::-1]
    ones = np.ones(T * N, dtype)

    def run() -> dict:
        hs[0] = problem["state0"][0]
        np.matmul(xs.reshape(T * N, D), w_ih.T, out=hs[1:].reshape(T * N, H))
        add(hs[1:], bias, hs[1:])
        for h_prev, h in forward:
            add(h, dot(h_prev, w_hh_t, tmp), h)
            tanh(h, h)
        multiply(hs[1:], hs[1:], da)
        subtract(1, da, da)
        dh[T] = 0
        for d, g, dh_t, dh_prev in backward:
            add(dh_t, g, dh_t)
            multiply(d, dh_t, d)
            dot(d, w_hh, dh_prev)
        flat = da.reshape(T * N, H)
        db = ones @ flat
        return {"weight_ih": flat.T @ xs.reshape(T * N, D), "weight_hh": flat.T @ hs[:-1].reshape(T * N, H),
                "bias_ih": db, "bias_hh": db, "dxs": (flat @ w_ih).reshape(T, N, D), "dstate0": (dh[0],)}

    return run


def gru_floor(problem: dict):
    """The GRU gate-major: gates (3H, N) per step, b_hn through a row of ones, hn kept by a moving
    window, one product per step back with dL/dh * z through an identity block below H = 64, the
    chain rule one (H, N) block per call."""
    cell, xs, G = problem["cell"], problem["xs"], problem["G"]
    T, N, D = xs.shape
    H, dtype, p = cell.hidden_size, cell.dtype, cell.params
    factors = np.repeat(np.array([-1, -1, 1], dtype), H)
    w_ih = p["weight_ih"] * factors[:, None]
    bias = p["bias_ih"].copy()
    bias[: 2 * H] += p["bias_hh"][: 2 * H]
    bias = (bias * factors)[:, None]
    order = np.r_[2 * H : 3 * H, 0 : 2 * H]
    w_hh = np.zeros((3 * H, H + 1), dtype)
    w_hh[:, :H] = p["weight_hh"][order] * np.repeat(np.array([1, -1, -1], dtype), H)[:, None]
    w_hh[:H, H] = p["bias_hh"][2 * H :]
    identity = H < 64
    back = np.concatenate([p["weight_hh"][H : 2 * H], p["weight_hh"][:H], p["weight_hh"][2 * H :]]
                          + ([np.eye(H, dtype=dtype)] if identity else []))
    x_order, h_order = np.r_[2 * H : 3 * H, H : 2 * H, 0:H], np.r_[H : 2 * H, 0:H, 2 * H : 3 * H]
    w_ih_x = p["weight_ih"][x_order]
    gates, window = np.empty((T, 3 * H, N), dtype), np.empty(((T + 2) * H, N), dtype)
    hn = window[: T * H].reshape(T, H, N)
    windows = np.lib.stride_tricks.as_strided(window, (T, 3 * H, N), (H * N * window.itemsize, N * window.itemsize,
                                                                        window.itemsize))
    diff, states = np.empty((T, H, N), dtype), np.empty((T + 1, H + 1, N), dtype)
    states[:, H] = 1
    tmp = np.empty((H, N), dtype)
    hs = np.empty((T + 1, N, H), dtype)
    rows = 5 * H if identity else 4 * H
    da, natural = np.empty((T, rows, N), dtype), np.empty((T, N, 4 * H), dtype)
    dh, dh_t, dh_z = np.empty((T + 1, N, H), dtype), np.empty((H, N), dtype), np.empty((N, H), dtype)
    forward = list(zip(states[:-1], windows, gates[:, : 2 * H], windows[:, H:], gates[:, :H], hn,
                       gates[:, 2 * H :], gates[:, H : 2 * H], states[:-1, :H], diff, states[1:, :H]))
    backward = list(zip(G, dh[1:], dh[:-1], *(da[:, k * H : (k + 1) * H] for k in range(4)),
                        da[:, H:].transpose(0, 2, 1), gates[:, :H], gates[:, H : 2 * H],
                        da[:, 4 * H :] if identity else [None] * T))[::-1]
    ones = np.ones(T * N, dtype)

    def run() -> dict:
        np.matmul(w_ih, xs.transpose(0, 2, 1), out=gates)
        add(gates, bias, gates)
        states[0, :H] = problem["state0"][0].T
        for h_prev_ones, win, rz, a_h_rz, r, hn_t, n, z, h_prev, d, h in forward:
            dot(w_hh, h_prev_ones, win)
            add(rz, a_h_rz, rz)
            exp(rz, rz)
            add(rz, 1, rz)
            divide(1, rz, rz)
            multiply(r, hn_t, tmp)
            add(n, tmp, n)
            tanh(n, n)
            subtract(h_prev, n, d)
            multiply(d, z, tmp)
            add(tmp, n, h)
        copyto(hs[1:], states[1:, :H].transpose(0, 2, 1))
        hs[0] = problem["state0"][0]
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        dan, daz, dar, dahn = (da[:, k * H : (k + 1) * H] for k in range(4))
        subtract(1, z, dahn)
        multiply(n, n, dan)
        subtract(1, dan, dan)
        multiply(dan, dahn, dan)
        multiply(z, dahn, daz)
        multiply(daz, diff, daz)
        subtract(1, r, dar)
        multiply(dar, r, dar)
        multiply(dar, hn, dar)
        dh[T] = 0
        for g, dh_next, out, dan_t, daz_t, dar_t, dahn_t, da_h, r_t, z_t, dhz_t in backward:
            add(dh_next, g, dh_next)
            copyto(dh_t, dh_next.T)
            multiply(dan_t, dh_t, dan_t)
            multiply(daz_t, dh_t, daz_t)
            multiply(dar_t, dan_t, dar_t)
            multiply(dan_t, r_t, dahn_t)
            if identity:
                multiply(dh_t, z_t, dhz_t)
                dot(da_h, back, out)
            else:
                dot(da_h, back, out)
                add(out, multiply(dh_next, z_t.T, dh_z), out)
        copyto(natural, da[:, : 4 * H].transpose(0, 2, 1))
        flat = natural.reshape(T * N, 4 * H)
        gx, gh = flat[:, : 3 * H], flat[:, H:]
        x_back, h_back = np.argsort(x_order), np.argsort(h_order)
        return {"weight_ih": (gx.T @ xs.reshape(T * N, D))[x_back],
                "weight_hh": (gh.T @ hs[:-1].reshape(T * N, H))[h_back],
                "bias_ih": (ones @ gx)[x_back], "bias_hh": (ones @ gh)[h_back],
                "dxs": (gx @ w_ih_x).reshape(T, N, D), "dstate0": (dh[0],)}

    return run


def lstm_floor(problem: dict):
    """The LSTM gate-major: gates (4H, N) per step, i, f, o and g from one exp, c and tanh(c) (H, N)."""
    cell, xs, G = problem["cell"], problem["xs"], problem["G"]
    T, N, D = xs.shape
    H, dtype, p = cell.hidden_size, cell.dtype, cell.params
    factors = np.repeat(np.array([-1, -1, -2, -1], dtype), H)
    w_ih, w_hh = p["weight_ih"] * factors[:, None], p["weight_hh"] * factors[:, None]
    bias = ((p["bias_ih"] + p["bias_hh"]) * factors)[:, None]
    scale = np.ones((4 * H, N), dtype)
    scale[2 * H : 3 * H] = 2
    gates, states = np.empty((T, 4 * H, N), dtype), np.empty((T + 1, H, N), dtype)
    cs, tanh_c = np.empty((T + 1, H, N), dtype), np.empty((T, H, N), dtype)
    a_h, tmp, hs = np.empty((4 * H, N), dtype), np.empty((H, N), dtype), np.empty((T + 1, N, H), dtype)
    da, dc_total, natural = np.empty((T, 4 * H, N), dtype), np.empty((T, H, N), dtype), np.empty((T, N, 4 * H), dtype)
    dh, dh_t, dc = np.empty((T + 1, N, H), dtype), np.empty((H, N), dtype), np.empty((H, N), dtype)
    forward = list(zip(states[:-1], gates, *(gates[:, k * H : (k + 1) * H] for k in range(4)), cs[:-1], cs[1:],
                       tanh_c, states[1:]))
    backward = list(zip(G, dh[1:], dh[:-1], dc_total, *(da[:, k * H : (k + 1) * H] for k in range(4)),
                        da.transpose(0, 2, 1), gates[:, H : 2 * H]))[::-1]
    ones = np.ones(T * N, dtype)

    def run() -> dict:
        np.matmul(w_ih, xs.transpose(0, 2, 1), out=gates)
        add(gates, bias, gates)
        states[0] = problem["state0"][0].T
        cs[0] = problem["state0"][1].T
        for h_prev, a, i, f, g, o, c_prev, c, tc, h in forward:
            dot(w_hh, h_prev, a_h)
            add(a, a_h, a)
            exp(a, a)
            add(a, 1, a)
            divide(scale, a, a)
            subtract(g, 1, g)
            multiply(f, c_prev, c)
            multiply(i, g, tmp)
            add(c, tmp, c)
            tanh(c, tc)
            multiply(o, tc, h)
        copyto(hs[1:], states[1:].transpose(0, 2, 1))
        hs[0] = problem["state0"][0]
        i, g, o = gates[:, :H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
        dai, daf, dag, dao = (da[:, k * H : (k + 1) * H] for k in range(4))
        multiply(gates, gates, da)
        subtract(gates, da, da)
        multiply(g, g, dag)
        subtract(1, dag, dag)
        multiply(dai, g, dai)
        multiply(daf, cs[:-1], daf)
        multiply(dag, i, dag)
        multiply(dao, tanh_c, dao)
        multiply(tanh_c, tanh_c, dc_total)
        subtract(1, dc_total, dc_total)
        multiply(dc_total, o, dc_total)
        dh[T] = 0
        dc[...] = 0
        for g_t, dh_next, out, dct, da_i, da_f, da_g, da_o, da_t, f in backward:
            add(dh_next, g_t, dh_next)
            copyto(dh_t, dh_next.T)
            multiply(dct, dh_t, dct)
            add(dct, dc, dct)
            multiply(da_i, dct, da_i)
            multiply(da_f, dct, da_f)
            multiply(da_g, dct, da_g)
            multiply(da_o, dh_t, da_o)
            dot(da_t, p["weight_hh"], out)
            multiply(dct, f, dc)
        copyto(natural, da.transpose(0, 2, 1))
        flat = natural.reshape(T * N, 4 * H)
        db = ones @ flat
        return {"weight_ih": flat.T @ xs.reshape(T * N, D), "weight_hh": flat.T @ hs[:-1].reshape(T * N, H),
                "bias_ih": db, "bias_hh": db, "dxs": (flat @ p["weight_ih"]).reshape(T, N, D),
                "dstate0": (dh[0], dc.T)}

    return run


FLOORS = {"rnn": rnn_floor, "lstm": lstm_floor, "gru": gru_floor}


def products_runner(problem: dict):
    """The matrix products alone: per step one forward and one backward product of bptt's shapes,
    then the input projection and the weight and input gradients over all T."""
    cell, xs = problem["cell"], problem["xs"]
    T, N, D = xs.shape
    H, GH, dtype = cell.hidden_size, cell.gates * cell.hidden_size, cell.dtype
    w_hh, h, a = np.ones((GH, H), dtype), np.ones((H, N), dtype), np.ones((GH, N), dtype)
    out_f, out_b = np.empty((GH, N), dtype), np.empty((N, H), dtype)
    w_ih, x2, flat = np.ones((GH, D), dtype), xs.reshape(T * N, D), np.ones((T * N, GH), dtype)
    projected, h2 = np.empty((T, GH, N), dtype), np.ones((T * N, H), dtype)

    def run() -> None:
        np.matmul(w_ih, xs.transpose(0, 2, 1), out=projected)
        for _ in range(T):
            dot(w_hh, h, out_f)
            dot(a.T, w_hh, out_b)
        flat.T @ x2, flat.T @ h2, flat @ w_ih

    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=",".join(FLOORS))
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--sizes", default=None, help="comma-separated 1-based indices into " + str(ROWS))
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    sizes = ROWS if args.sizes is None else [ROWS[int(i) - 1] for i in args.sizes.split(",")]
    peers = bench_peers.available_peers(["jax"])
    print(f"load {os.getloadavg()}, pinned to CPU {PINNED if __name__ == '__main__' else None}, {args.rounds} rounds")
    print("| cell | dtype | T | B | D | H | bptt ms | floor ms | products ms | jax ms | bptt/floor | floor/jax "
          "| bptt/jax | (CPU time) bptt/floor | floor/jax | bptt/jax |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dtype in args.dtypes.split(","):
        for cell_name in args.cells.split(","):
            for size in sizes:
                problem = bench_harness.make_problem(cell_name, *size, dtype)
                runners = {"bptt": bench_peers.bptt_runner(problem), "floor": FLOORS[cell_name](problem),
                           "products": products_runner(problem)}
                if "jax" in peers:
                    runners["jax"] = peers["jax"](problem, cell_name)
                reference = runners["bptt"]()
                for name in ("floor", "jax"):
                    if name in runners:
                        bench_harness.check_gradients(name, reference, runners[name](), dtype)
                times = bench_timing.interleave(runners, args.rounds)
                wall = {k: statistics.median(w for w, _ in v) * 1e3 for k, v in times.items()}
                cpu = {k: statistics.median(c for _, c in v) * 1e3 for k, v in times.items()}
                jax_wall, jax_cpu = wall.get("jax", float("nan")), cpu.get("jax", float("nan"))
                print(f"| {cell_name} | {dtype} | {' | '.join(map(str, size))} | {wall['bptt']:.2f} "
                      f"| {wall['floor']:.2f} | {wall['products']:.2f} | {jax_wall:.2f} "
                      f"| {wall['bptt'] / wall['floor']:.2f} | {wall['floor'] / jax_wall:.2f} "
                      f"| {wall['bptt'] / jax_wall:.2f} | {cpu['bptt'] / cpu['floor']:.2f} "
                      f"| {cpu['floor'] / jax_cpu:.2f} | {cpu['bptt'] / jax_cpu:.2f} |", flush=True)


if __name__ == "__main__":
    random.seed()
    main()
