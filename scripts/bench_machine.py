"""What a bench run ran on: the CPU and its load, numpy's BLAS, the versions, the thread caps and
the cores the process is pinned to.

Imports no numpy at load time: bench.py takes thread_environment and pin from here before numpy,
torch or jax size their thread pools.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def thread_environment(threads: int) -> dict:
    """Variables that cap numpy's BLAS, PyTorch's OpenMP and XLA's thread pools at `threads`."""
    return {
        "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                     f"intra_op_parallelism_threads={threads}",
    }


def pin(threads: int, cores: list[int] | None = None) -> list[int] | None:
    """Pin the process to `threads` cores (`cores`, or the last `threads` it may run on): every
    thread it has now, and so every thread started later, which inherits its creator's affinity.

    Thread-count settings alone are not enough to compare frameworks on the same number of cores:
    XLA runs threads besides the one its flags cap (a float64 RNN's gradient at T 200, B 128, H 512
    took it 1.09 s of CPU time in 0.58 s of wall time, 1.05 s pinned to one core). Pinned, every
    framework gets the same cores, however many threads it starts. Returns the cores, or None where
    the OS cannot pin (not Linux).
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = sorted(cores) if cores else allowed[-threads:]
    try:
        tasks = [int(task) for task in os.listdir("/proc/self/task")]
    except OSError:
        tasks = [0]
    for task in tasks:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(task, chosen)
    return chosen


@contextlib.contextmanager
def thread_limits(threads: int):
    """Cap the pools again at run time (numpy may have been imported first, as in the tests);
    restore them on exit."""
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limiter = contextlib.nullcontext()
    else:
        limiter = threadpool_limits(threads)
    if torch:
        torch.set_num_threads(threads)
    try:
        with limiter:
            yield
    finally:
        if torch:
            torch.set_num_threads(torch_threads)


def blas_description() -> list[dict]:
    """numpy's BLAS: library, version, kernel (architecture) and threads, from threadpoolctl."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts") if np.lib.NumpyVersion(np.__version__) >= "1.26.0" else {}
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return [{"library": blas.get("name", "unknown"), "version": blas.get("version", "unknown"),
                 "kernel": "unknown (pip install threadpoolctl to see it)"}]
    return [
        {"library": info.get("internal_api"), "version": info.get("version"),
         "kernel": info.get("architecture"), "threads": info.get("num_threads"),
         "path": info.get("filepath")}
        for info in threadpool_info()
    ]


def git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def versions() -> dict:
    """Python, numpy, bptt and the loaded peers; bptt's commit, and whether bptt/ differs from it."""
    import numpy as np

    import bptt

    found = {"python": platform.python_version(), "numpy": np.__version__, "bptt": bptt.__version__}
    for name in ("torch", "jax", "jaxlib"):
        if name in sys.modules:
            found[name] = getattr(sys.modules[name], "__version__", "?")
    commit = git("rev-parse", "--short", "HEAD")
    if commit is not None:
        found["bptt_commit"] = commit
        # the timed code is the working tree's: say when it is not the commit's
        found["bptt_uncommitted_changes"] = bool(git("status", "--porcelain", "--", "bptt"))
    return found


def machine() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "host": platform.node(), "cpu": model, "cores": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "openblas_env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }
