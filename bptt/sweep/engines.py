"""Where a sweep's chunks run: a pool of local processes, or a Dask cluster.

Both engines take `run_chunk` tasks and hand back futures (`.done()`); `outcome(future)` gives the
`ChunkResult` or raises `WorkerLost` when the process running it died, and the sweep runs that
chunk again. The sweep's loop (`bptt.sweep.run`) is the same for both.

- `LocalPool(workers)`: a `concurrent.futures.ProcessPoolExecutor` of spawned processes; no Dask
  needed. Each worker runs BLAS single-threaded (OPENBLAS/OMP/MKL_NUM_THREADS=1) unless one of
  those variables is set already, so N workers on N cores do not oversubscribe. A worker that dies
  breaks the whole pool: every chunk it held is reported lost and a new pool takes over.
- `DaskEngine(address)`: a `distributed.Client` on a running scheduler (`bptt[dask]`). The
  scheduler runs each chunk where it likes and reruns it elsewhere when a worker dies; after
  `distributed.scheduler.allowed-failures` such deaths the chunk fails with KilledWorker. Workers
  started by a nanny (`dask worker`'s default) run BLAS single-threaded already.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from typing import Any
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .worker import Chunk, ChunkResult, init_local_worker, run_chunk

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class WorkerLost(Exception):
    """The worker running a chunk died or left before it returned.

    Parameters
    ----------
    message : str
    final : bool
        True when the engine has already run the chunk again as often as it allows (Dask's
        KilledWorker); otherwise the sweep may submit it again.
    """

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final


class SchedulerError(ValueError):
    """A Dask scheduler that cannot be used: Dask is missing, or the address is not reachable."""


def local_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class LocalPool:
    """`workers` local processes, each training one chunk at a time.

    Parameters
    ----------
    workers : int
        Processes (at least 1).
    """

    name = "local"

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))
        self._context = multiprocessing.get_context("spawn")  # no inherited threads, a fresh BLAS
        self._stop = self._context.Event()
        self._counter = self._context.Value("i", 0)
        self._saved_env: dict[str, str | None] = {}
        if not any(name in os.environ for name in BLAS_THREADS):
            # spawned children read these at start; the parent's BLAS is loaded already, unaffected
            self._saved_env = {name: os.environ.get(name) for name in BLAS_THREADS}
            os.environ.update({name: "1" for name in BLAS_THREADS})
        self._executor: ProcessPoolExecutor | None = None
        self._owners: dict[Future, ProcessPoolExecutor | None] = {}  # future -> the pool it was submitted to

    @property
    def capacity(self) -> int:
        """How many chunks can run at once."""
        return self.workers

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=self._context,
                                                 initializer=init_local_worker, initargs=(self._stop, self._counter))
        return self._executor

    def submit(self, chunk: Chunk) -> Future:
        """Start `chunk` on a free worker (or queue it); returns its future."""
        try:
            future = self._pool().submit(run_chunk, chunk)
        except BrokenProcessPool:
            self._replace_pool()
            future = self._pool().submit(run_chunk, chunk)
        self._owners[future] = self._executor
        return future

    def _replace_pool(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    def outcome(self, future: Future) -> ChunkResult:
        """The result of a finished future.

        Raises
        ------
        WorkerLost
            If a worker of the pool died while it ran (the pool is replaced before the next chunk).
        """
        owner = self._owners.pop(future, None)
        try:
            return future.result()
        except BrokenProcessPool as exc:
            if owner is self._executor:  # not when a new pool has taken over already
                self._replace_pool()
            raise WorkerLost(f"a local worker process died ({exc})") from exc
        except CancelledError as exc:  # queued in a pool that broke
            raise WorkerLost("its pool was replaced before it started") from exc

    def stop(self, futures: list) -> None:
        """Ask every running chunk to hand its run back now, and cancel the queued `futures`."""
        self._stop.set()
        for future in futures:
            future.cancel()

    def close(self) -> None:
        """Stop the workers (after `stop`, running chunks return within a training step) and restore
        the environment."""
        self._stop.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = {}


class DaskEngine:
    """Chunks as tasks on a Dask cluster.

    Parameters
    ----------
    address : str
        The scheduler, e.g. "tcp://scheduler-host:8786".
    timeout : float
        Seconds to wait for it to answer.

    Raises
    ------
    SchedulerError
        If Dask distributed is not installed, or the scheduler does not answer in time.
    """

    name = "dask"

    def __init__(self, address: str, timeout: float = 10.0):
        try:
            import distributed
        except ImportError as exc:
            raise SchedulerError("--scheduler needs Dask distributed: pip install 'bptt[dask]'") from exc
        self.address = address
        try:
            from distributed.comm import parse_address, parse_host_port

            parse_host_port(parse_address(address)[1])
        except (ValueError, TypeError) as exc:
            raise SchedulerError(f"--scheduler {address!r} is not a scheduler address: expected tcp://HOST:PORT "
                                 f"({exc})") from exc
        try:
            self.client = distributed.Client(address, timeout=timeout, set_as_default=False)
        except Exception as exc:  # OSError (refused, timed out), ValueError or TypeError (a malformed address)
            raise SchedulerError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s: {exc}") from exc
        self._distributed = distributed

    @property
    def capacity(self) -> int:
        """The cluster's worker threads now (at least 1: chunks wait for workers to join)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # the scheduler is going away: the next outcome says so
            return 1

    def submit(self, chunk: Chunk) -> Any:
        """Submit `chunk` as a task; returns its future."""
        key = f"bptt-sweep-{chunk.name}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(run_chunk, chunk, key=key, pure=False)

    def outcome(self, future: Any) -> ChunkResult:
        """The result of a finished future.

        Raises
        ------
        WorkerLost
            If the task was lost: final after KilledWorker (the scheduler ran it again as often as
            it allows), not final when cancelled or when the connection dropped.
        """
        try:
            return future.result()
        except self._distributed.KilledWorker as exc:
            raise WorkerLost(f"KilledWorker: {exc}", final=True) from exc
        except Exception as exc:
            raise WorkerLost(f"{type(exc).__name__}: {exc}") from exc
        finally:
            future.release()

    def stop(self, futures: list) -> None:
        """Cancel `futures` (a running task finishes on its worker, unheard)."""
        try:
            self.client.cancel(list(futures))
        except Exception:  # already disconnected
            pass

    def close(self) -> None:
        """Disconnect; the cluster goes on."""
        try:
            self.client.close(timeout=5)
        except Exception:
            pass

