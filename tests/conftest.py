"""Shared fixtures: the cells under test, seeded data, the PyTorch reference, and the helpers of the
tests that start `bptt` processes."""

import os
import signal
import subprocess
import sys

import pytest

import bptt

# (name, constructor) for every cell the package ships, from its registry; tests parametrise over these.
CELLS = {name: (lambda D, H, name=name, **kw: bptt.make_cell(name, D, H, **kw)) for name in bptt.CELL_NAMES}


@pytest.fixture(params=sorted(CELLS))
def cell_name(request):
    return request.param


def random_state(cell, N, rng):
    """A non-zero initial state with the cell's structure."""
    parts = tuple(0.5 * rng.standard_normal((N, cell.hidden_size)) for _ in cell.state_fields)
    return cell.pack_state(parts)


@pytest.fixture(scope="session")
def torch():
    """The PyTorch module; skips without it, unless BPTT_REQUIRE_TORCH=1 makes that a failure."""
    try:
        import torch as torch_module
    except ImportError:
        if os.environ.get("BPTT_REQUIRE_TORCH") == "1":
            pytest.fail("BPTT_REQUIRE_TORCH=1 but torch is not installed (pip install torch==2.13.0)")
        pytest.skip("torch not installed; install torch==2.13.0 for the cross-checks")
    torch_module.set_default_dtype(torch_module.float64)
    return torch_module


@pytest.fixture(scope="session")
def distributed():
    """Dask distributed (the dask extra); skips without it, unless BPTT_REQUIRE_DASK=1 makes that a failure."""
    try:
        import distributed as distributed_module
    except ImportError:
        if os.environ.get("BPTT_REQUIRE_DASK") == "1":
            pytest.fail("BPTT_REQUIRE_DASK=1 but Dask distributed is not installed (pip install -e '.[dask]')")
        pytest.skip("Dask distributed not installed; install the dask extra for the cluster tests")
    return distributed_module


def assert_gradients_agree(cell, ours, theirs, tol):
    """Two `bptt.Gradients` for the same problem agree field by field to relative error `tol`."""
    from bptt.modes.finite_diff import relative_error

    for name in cell.params:
        assert relative_error(ours.params[name], theirs.params[name]) < tol, name
    assert relative_error(ours.dxs, theirs.dxs) < tol
    for a, b in zip(cell.unpack_state(ours.dstate0), cell.unpack_state(theirs.dstate0)):
        assert relative_error(a, b) < tol
    assert relative_error(ours.dh_norms, theirs.dh_norms) < tol


# A folder of cells the package does not know (tests/lab/labcells.py), named by import path; it is on
# the Python path only where a test puts it there: the `lab` fixture, or PYTHONPATH for a process.
LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab")


@pytest.fixture
def lab(monkeypatch):
    """Puts tests/lab on sys.path for this test; returns its path (for a process's PYTHONPATH)."""
    monkeypatch.syspath_prepend(LAB)
    return LAB


def bptt_command(*args):
    """The argv of `python -m bptt ARGS` in this interpreter."""
    return [sys.executable, "-m", "bptt", *map(str, args)]


def finish(process, timeout=60):
    """Wait for a started process, killing it (by its id) if it overruns; (returncode, stdout, stderr)."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return process.returncode, out, err


@pytest.fixture
def tmpfs(tmp_path):
    """mount(name, size, read_only=False): a small tmpfs under tmp_path; skips where mounting is not allowed."""
    mounted = []

    def mount(name, size="1m", read_only=False):
        point = tmp_path / name
        point.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        try:
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                  capture_output=True, text=True, timeout=30)
        except OSError as exc:
            pytest.skip(f"no mount command ({exc}); the fault tests inject the faults instead")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the fault tests inject them")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], capture_output=True, timeout=30)


def truncated_mse_objective(model, readout, xs, targets, k1, k2):
    """The TBPTT(k1, k2) objective of `bptt.mse` as a function of the weights, for finite differences:
    each window starts from the state the full forward pass reached there at the weights of this
    call, held constant while the weights are perturbed, and counts the loss of the steps it owns."""
    import numpy as np

    from bptt.core.truncation import TBPTT

    T, N = xs.shape[:2]
    _, tape = bptt.forward(model, xs)
    starts = {s: tape.state_at(s) for s in range(T)}

    def loss():
        total = 0.0
        for start, loss_from, end in TBPTT(k1, k2).windows(T):
            hs, _ = bptt.forward(model, xs[start:end], starts[start])
            pred, _ = readout.forward(hs[loss_from - start :])
            total += np.sum((pred - targets[loss_from:end]) ** 2) / (T * N)
        return total

    return loss


def numeric_jacobian(f, x, eps=1e-6):
    """Central differences of the vector function `f` at the vector `x`: column j is d f / d x[j]."""
    import numpy as np

    columns = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = eps
        columns.append((f(x + e) - f(x - e)) / (2 * eps))
    return np.stack(columns, axis=1)
