"""The runners the bench times, each on the same weights and data.

A runner factory takes a problem (bench_harness.make_problem) and the cell's registry name and
returns a no-argument function that runs forward + full backward once and returns the gradients of
L = sum_t <h_t, G_t> as a dict: the four parameters by name, "dxs" (T, B, D) and "dstate0" (a
tuple of (B, H) arrays, one per state part).

    bptt       the working tree's bptt.forward + bptt.backward: the fast sequence path
    stepwise   bptt.forward_stepwise + bptt.backward_stepwise: the cells' plain step pair, one
               step at a time, shared-weight gradients accumulated with +=
    ref        bptt as it was at a git revision (--against, bench_revision), same weights
    torch      torch.nn.RNN / LSTM / GRU and .backward(), CPU
    jax        lax.scan under jit(grad)

gemm_runner is the yardstick: one large numpy matrix product, the rate the machine's BLAS reaches.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

import bptt
from bench_timing import time_once

PEERS = ("torch", "jax", "stepwise")  # the ones --peers chooses from; ref comes from --against
GEMM_SIZE = 1024  # square matrix product that measures the machine's rate


def gradients_dict(cell, grads) -> dict:
    return {**grads.params, "dxs": grads.dxs, "dstate0": cell.unpack_state(grads.dstate0)}


def unroll_runner(package, cell, problem: dict):
    """`package.forward` + `package.backward` on `cell` (a cell or a Stack): the API every revision
    of bptt shares; `lengths` is passed only when the problem has them (newer revisions)."""
    xs, G = problem["xs"], problem["G"]
    state0 = cell.pack_state(problem["state0"])
    options = {} if problem.get("lengths") is None else {"lengths": problem["lengths"]}

    def run() -> dict:
        _, tape = package.forward(cell, xs, state0, **options)
        return gradients_dict(cell, package.backward(cell, tape, G))

    return run


def bptt_runner(problem: dict):
    return unroll_runner(bptt, problem["cell"], problem)


def stepwise_runner(problem: dict, cell_name: str):
    """bptt's reference path: the cell's step pair T times forward, then T times backward."""
    cell, xs, G = problem["cell"], problem["xs"], problem["G"]
    state0 = cell.pack_state(problem["state0"])

    def run() -> dict:
        _, caches, _ = bptt.forward_stepwise(cell, xs, state0)
        return gradients_dict(cell, bptt.backward_stepwise(cell, caches, G))

    return run


# constructors every revision of bptt has (the registry is newer than some of them)
REVISION_CELLS = {
    "rnn": lambda pkg, D, H, **kw: pkg.RNN(D, H, "tanh", **kw),
    "rnn-relu": lambda pkg, D, H, **kw: pkg.RNN(D, H, "relu", **kw),
    "lstm": lambda pkg, D, H, **kw: pkg.LSTM(D, H, **kw),
    "gru": lambda pkg, D, H, **kw: pkg.GRU(D, H, **kw),
}


def revision_peer(package):
    """The runner factory for `package`, bptt as loaded from another revision (bench_revision)."""

    def make(problem: dict, cell_name: str):
        cell = problem["cell"]
        old = REVISION_CELLS[cell_name](package, cell.input_size, cell.hidden_size, dtype=cell.dtype)
        old.params = {name: value.copy() for name, value in cell.params.items()}
        return unroll_runner(package, old, problem)

    return make


@contextlib.contextmanager
def onednn(enabled: bool):
    """PyTorch's oneDNN switch. Flipping it also resets oneDNN's TF32 flag, on which torch 2.13
    warns that TF32 on oneDNN needs an Intel GPU: meaningless on CPU, so that one message is ignored."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN", category=UserWarning)
        with torch.backends.mkldnn.flags(enabled=enabled):
            yield


TORCH_MODULES = {"rnn": ("RNN", {"nonlinearity": "tanh"}), "rnn-relu": ("RNN", {"nonlinearity": "relu"}),
                 "lstm": ("LSTM", {}), "gru": ("GRU", {})}


def torch_runner(problem: dict, cell_name: str):
    """PyTorch in the faster of its two CPU recurrent paths: oneDNN (its default here) or native ATen.

    On a busy 2-core machine the oneDNN path can be 10x slower at small sizes, so both are tried in
    the warm-up and the faster is timed: bptt is compared with PyTorch at its best, not its default.
    """
    import torch

    cell = problem["cell"]
    dtype = torch.float32 if cell.dtype == np.float32 else torch.float64
    kind, options = TORCH_MODULES[cell_name]
    module = getattr(torch.nn, kind)(cell.input_size, cell.hidden_size, dtype=dtype, **options)
    with torch.no_grad():
        for name, value in cell.params.items():
            getattr(module, name + "_l0").copy_(torch.from_numpy(value))
    xs = torch.from_numpy(problem["xs"]).requires_grad_()
    state0 = [torch.from_numpy(s)[None].requires_grad_() for s in problem["state0"]]
    G = torch.from_numpy(problem["G"])

    def make_run(enabled: bool):
        def run() -> dict:
            for tensor in (xs, *state0, *module.parameters()):
                tensor.grad = None
            with onednn(enabled):
                hs, _ = module(xs, state0[0] if len(state0) == 1 else tuple(state0))
                hs.backward(G)  # d/dtheta of sum_t <h_t, G_t>
            grads = {name: getattr(module, name + "_l0").grad.numpy() for name in cell.params}
            return {**grads, "dxs": xs.grad.numpy(), "dstate0": tuple(s.grad[0].numpy() for s in state0)}

        return run

    return faster_torch_path(make_run, problem)


def faster_torch_path(make_run, problem: dict):
    """make_run(onednn_enabled) -> runner: the faster of the two, tried in the warm-up; recorded in
    problem["notes"]["torch_onednn"]."""
    candidates = {enabled: make_run(enabled) for enabled in (True, False)}
    first = {k: time_once(run) for k, run in candidates.items()}  # first calls build oneDNN primitives
    tries = 1 if max(first.values()) > 1.0 else 2  # slow rows: one timed call each is enough
    best = min(candidates, key=lambda k: min(time_once(candidates[k]) for _ in range(tries)))
    problem.setdefault("notes", {})["torch_onednn"] = best
    return candidates[best]


def jax_step(cell_name: str, jnp):
    """The recurrent part of one step in PyTorch's equations; a_x (B, G*H) is projected beforehand."""
    sigmoid = lambda a: 0.5 * jnp.tanh(0.5 * a) + 0.5  # noqa: E731

    def elman(activation):
        def rnn(p, state, a_x):
            (h,) = state
            h = activation(a_x + h @ p["weight_hh"].T + p["bias_hh"])
            return (h,), h

        return rnn

    def lstm(p, state, a_x):
        h, c = state
        a = a_x + h @ p["weight_hh"].T + p["bias_hh"]
        i, f, g, o = jnp.split(a, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
        h = sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    def gru(p, state, a_x):
        (h,) = state
        a_h = h @ p["weight_hh"].T + p["bias_hh"]
        xr, xz, xn = jnp.split(a_x, 3, axis=-1)
        hr, hz, hn = jnp.split(a_h, 3, axis=-1)
        r, z = sigmoid(xr + hr), sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1 - z) * n + z * h
        return (h,), h

    relu = lambda a: jnp.where(a > 0, a, 0)  # noqa: E731  (derivative 0 at 0, as bptt's)
    return {"rnn": elman(jnp.tanh), "rnn-relu": elman(relu), "lstm": lstm, "gru": gru}[cell_name]


def jax_runner(problem: dict, cell_name: str):
    import jax
    import jax.numpy as jnp

    step = jax_step(cell_name, jnp)

    def loss(params, xs, state0, G):
        a_x = xs @ params["weight_ih"].T + params["bias_ih"]  # all T input projections at once
        _, hs = jax.lax.scan(lambda s, a: step(params, s, a), state0, a_x)
        return jnp.sum(hs * G)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    params = {k: jnp.asarray(v) for k, v in problem["cell"].params.items()}
    xs, G = jnp.asarray(problem["xs"]), jnp.asarray(problem["G"])
    state0 = tuple(jnp.asarray(s) for s in problem["state0"])

    def run() -> dict:
        dparams, dxs, dstate0 = jax.block_until_ready(grad(params, xs, state0, G))
        return {**{k: np.asarray(v) for k, v in dparams.items()}, "dxs": np.asarray(dxs),
                "dstate0": tuple(np.asarray(s) for s in dstate0)}

    return run


def available_peers(wanted: list[str]) -> dict:
    """{name: runner factory} for the wanted peers that are installed; says which are not."""
    peers = {}
    if "torch" in wanted:
        try:
            import torch  # noqa: F401
            peers["torch"] = torch_runner
        except ImportError:
            print("torch not installed: no PyTorch column")
    if "jax" in wanted:
        try:
            import jax

            jax.config.update("jax_enable_x64", True)  # float64 rows; float32 arrays stay float32
            peers["jax"] = jax_runner
        except ImportError:
            print("jax not installed: no JAX column (pip install jax)")
    if "stepwise" in wanted:
        peers["stepwise"] = stepwise_runner
    return peers


def gemm_runner(dtype: str, seed: int = 0):
    """One GEMM_SIZE^3 numpy matrix product: the rate the machine's BLAS reaches when it can."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype)
    b = rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype(dtype)
    out = np.empty_like(a)

    def run():
        np.matmul(a, b, out=out)

    return run


def gemm_flops(n: int = GEMM_SIZE) -> float:
    return 2.0 * n**3
