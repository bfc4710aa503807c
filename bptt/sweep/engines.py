"""Where a sweep's chunks run: a pool of local processes, or a Dask cluster.

Both engines take `run_chunk` tasks and hand back futures (`.done()`); `outcome(future)` gives the
`ChunkResult` or raises `WorkerLost` when the process running it died, and the sweep runs that
chunk again. `poll()` says how many chunks may run now, and raises `SchedulerLost` when the sweep
cannot go on. The sweep's loop (`bptt.sweep.run`) is the same for both.

- `LocalPool(workers, scratch)`: a `concurrent.futures.ProcessPoolExecutor` of spawned processes,
  which start with this process's `sys.path` (a cell module importable here is importable there);
  no Dask needed. Each worker runs BLAS single-threaded (OPENBLAS/OMP/MKL_NUM_THREADS=1) unless one
  of those variables is set already, so N workers on N cores do not oversubscribe, and trains in
  DIR/.workers. A worker that dies breaks the whole pool: every chunk it held is reported lost and a
  new pool takes over.
- `DaskEngine(address, timeout, tls)`: a `distributed.Client` on a running scheduler (`bptt[dask]`).
  The scheduler runs each chunk where it likes and reruns it elsewhere when a worker dies; after
  `distributed.scheduler.allowed-failures` such deaths the chunk fails with KilledWorker. The sweep
  ends (`SchedulerLost`) when the scheduler stops answering, or the cluster has no worker, for
  `timeout` seconds. Workers started by a nanny (`dask worker`'s default) run BLAS single-threaded
  already. The files a run reads are sent to the cluster once each (`Client.scatter`).

Dask moves tasks and results with pickle, so whoever can reach a scheduler can run code on its
workers and on the machine of every client: `tls://` with certificates (`TLSFiles`) keeps others
out, and `address_warning` says when an address is neither TLS nor on this machine.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import multiprocessing
import os
import time
import uuid
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ..core.untrusted import UntrustedFileError, open_regular
from .worker import Chunk, ChunkResult, init_local_worker, run_chunk

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SCHEMES = ("tcp", "tls")
POLL_SECONDS = 1.0  # how often the Dask engine asks the scheduler for its workers


class WorkerLost(Exception):
    """The worker running a chunk died or left before it returned.

    Parameters
    ----------
    message : str
    final : bool
        True when the engine has already run the chunk again as often as it allows (Dask's
        KilledWorker); otherwise the sweep may submit it again.
    connection : bool
        True when it was the connection to the scheduler that dropped, not a worker: no worker's
        fault, so the sweep does not count it against the run.
    """

    def __init__(self, message: str, final: bool = False, connection: bool = False):
        super().__init__(message)
        self.final, self.connection = final, connection


class SchedulerError(ValueError):
    """A Dask scheduler that cannot be used: Dask is missing, the address is malformed, TLS settings
    are missing or unreadable, or the scheduler does not answer."""


class SchedulerLost(Exception):
    """The sweep cannot go on: the scheduler stopped answering, or the cluster had no worker, for
    the whole of the connect timeout."""


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
    scratch : str or None
        Where the workers make their temporary run folders (the sweep's DIR/.workers); None: the
        system's temporary folder.
    """

    name = "local"

    def __init__(self, workers: int, scratch: str | None = None):
        self.workers = max(1, int(workers))
        self.scratch = scratch
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

    def poll(self) -> int:
        """How many chunks can run at once: one per worker."""
        return self.workers

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=self._context,
                                                 initializer=init_local_worker, initargs=(self._stop, self._counter))
        return self._executor

    def submit(self, chunk: Chunk) -> Future:
        """Start `chunk` on a free worker (or queue it); returns its future."""
        chunk = dataclasses.replace(chunk, scratch=self.scratch)
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


@dataclass(frozen=True)
class TLSFiles:
    """The certificate files a client needs for a `tls://` scheduler (Dask's TLS is mutual: the
    scheduler checks the client's certificate against the cluster's CA, and the client the
    scheduler's).

    Attributes
    ----------
    ca_file : str or None
        The cluster's CA certificate (PEM); Dask's config `distributed.comm.tls.ca-file` when None.
    cert : str or None
        This client's certificate (PEM), signed by that CA; `distributed.comm.tls.client.cert`.
    key : str or None
        Its private key (PEM), unless `cert` holds it too; `distributed.comm.tls.client.key`.
    """

    ca_file: str | None = None
    cert: str | None = None
    key: str | None = None


def check_address(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a scheduler address.

    Parameters
    ----------
    address : str
        E.g. "tcp://scheduler-host:8786", "tls://10.0.0.5:8786" or "host:8786" (tcp).

    Returns
    -------
    tuple of (str, str, int)

    Raises
    ------
    SchedulerError
        If it is not SCHEME://HOST:PORT with SCHEME tcp or tls.

    Examples
    --------
    >>> check_address("tls://10.0.0.5:8786")
    ('tls', '10.0.0.5', 8786)
    >>> check_address("scheduler-host")
    Traceback (most recent call last):
    ...
    bptt.sweep.engines.SchedulerError: --scheduler 'scheduler-host' is not a scheduler address: expected tcp://HOST:PORT or tls://HOST:PORT (no port)
    """
    scheme, _, rest = address.rpartition("://") if "://" in address else ("tcp", "", address)
    host, _, port = rest.rpartition(":")
    problem = None
    if scheme not in SCHEMES:
        problem = f"{scheme}:// is not one of {', '.join(s + '://' for s in SCHEMES)}"
    elif not host or not port:
        problem = "no port"
    elif not port.isdigit() or not 0 < int(port) < 65536:
        problem = f"port {port!r} is not a number from 1 to 65535"
    if problem:
        raise SchedulerError(f"--scheduler {address!r} is not a scheduler address: expected tcp://HOST:PORT or "
                             f"tls://HOST:PORT ({problem})")
    return scheme, host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    import socket

    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in found)


def address_warning(address: str) -> str | None:
    """A warning for a scheduler that is neither TLS nor on this machine, else None.

    Parameters
    ----------
    address : str

    Returns
    -------
    str or None

    Examples
    --------
    >>> address_warning("tcp://127.0.0.1:8786") is None, address_warning("tls://10.0.0.5:8786") is None
    (True, True)
    >>> print(address_warning("tcp://10.0.0.5:8786"))  # doctest: +ELLIPSIS
    warning: tcp://10.0.0.5:8786 is neither TLS nor on this machine. Dask sends work and results with pickle, ...
    """
    scheme, host, _ = check_address(address)
    if scheme == "tls" or _is_loopback(host):
        return None
    return (f"warning: {address} is neither TLS nor on this machine. Dask sends work and results with pickle, and "
            "a plain tcp:// scheduler has no authentication: whoever can reach it can run code on its workers and "
            "on this machine. Use tls:// with --tls-ca-file/--tls-cert/--tls-key, or keep the cluster on a "
            "private network.")


def _security(address: str, tls: TLSFiles | None) -> Any:
    """The `distributed.Security` for `address`: TLS settings from `tls`, else from Dask's config."""
    from distributed.security import Security

    scheme, _, _ = check_address(address)
    tls = tls or TLSFiles()
    given = {name: value for name, value in (("tls_ca_file", tls.ca_file), ("tls_client_cert", tls.cert),
                                             ("tls_client_key", tls.key)) if value is not None}
    if scheme != "tls":
        if given:
            raise SchedulerError(f"--tls-ca-file, --tls-cert and --tls-key are for a tls:// scheduler, not {address}")
        return Security()
    security = Security(require_encryption=True, **given)
    ca_file, cert, key = (getattr(security, name) for name in ("tls_ca_file", "tls_client_cert", "tls_client_key"))
    missing = [f"--{option} (or Dask's config {config})" for option, config, value in (
        ("tls-ca-file", "distributed.comm.tls.ca-file", ca_file),
        ("tls-cert", "distributed.comm.tls.client.cert", cert)) if not value]
    if missing:
        raise SchedulerError(f"--scheduler {address} needs TLS settings: the cluster's CA certificate and a client "
                             f"certificate signed by it; missing {' and '.join(missing)}. E.g. --tls-ca-file ca.pem "
                             "--tls-cert client.pem --tls-key client.key")
    for option, path in (("--tls-ca-file", ca_file), ("--tls-cert", cert), ("--tls-key", key)):
        if path is None or "\n" in path:  # Dask's config may hold a PEM text itself
            continue
        try:
            open_regular(path, follow_links=True).close()
        except (OSError, UntrustedFileError) as exc:
            reason = exc.problem if isinstance(exc, UntrustedFileError) else (exc.strerror or str(exc))
            raise SchedulerError(f"{option} {path}: cannot read it: {reason}") from exc
    try:
        security.get_connection_args("client")  # loads the files: a wrong key or PEM is named here
    except Exception as exc:  # ssl.SSLError, OSError, ValueError
        raise SchedulerError(f"the TLS files for {address} cannot be used: {exc}") from exc
    return security


class DaskEngine:
    """Chunks as tasks on a Dask cluster.

    Parameters
    ----------
    address : str
        The scheduler, e.g. "tcp://scheduler-host:8786" or "tls://scheduler-host:8786".
    timeout : float
        Seconds to wait for it to answer; also how long the sweep waits, later, for a scheduler that
        stopped answering or for a cluster without workers before it ends.
    tls : TLSFiles, optional
        The certificates for a tls:// address (default: Dask's config).

    Raises
    ------
    SchedulerError
        If Dask distributed is not installed, the address is malformed, TLS files are missing or
        unreadable, or the scheduler does not answer in time.
    """

    name = "dask"

    def __init__(self, address: str, timeout: float = 10.0, tls: TLSFiles | None = None):
        try:
            import distributed
        except ImportError as exc:
            raise SchedulerError("--scheduler needs Dask distributed: pip install 'bptt[dask]'") from exc
        self.address, self.timeout = address, timeout
        security = _security(address, tls)
        try:
            self.client = distributed.Client(address, timeout=timeout, set_as_default=False, security=security)
        except Exception as exc:  # OSError (refused, timed out), ValueError or TypeError (a malformed address)
            raise SchedulerError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s: {exc}") from exc
        self._distributed = distributed
        self._capacity, self._polled = 0, -float("inf")
        self._answered = self._had_workers = time.monotonic()
        self._scattered: dict[str, Any] = {}  # sha256 -> the future of an input file's bytes on the cluster
        self._log_levels: dict[str, int] = {}
        self._quiet()

    def poll(self) -> int:
        """The cluster's worker threads now, asked of the scheduler at most once a second.

        Raises
        ------
        SchedulerLost
            If the scheduler has not answered, or the cluster has had no worker, for `timeout`
            seconds.
        """
        now = time.monotonic()
        if now - self._polled < POLL_SECONDS:
            return self._capacity
        self._polled = now
        try:
            if self.client.status != "running":
                raise OSError("the connection dropped and was not made again")
            self._capacity = sum(self.client.nthreads(callback_timeout=max(1.0, min(self.timeout, 5.0))).values())
            self._answered = now
        except Exception as exc:  # OSError, TimeoutError, CommClosedError: the scheduler went away
            self._capacity = 0
            if now - self._answered >= self.timeout or self.client.status in ("closing", "closed"):
                raise SchedulerLost(f"the Dask scheduler at {self.address} has not answered for {self.timeout:g} s "
                                    f"(--connect-timeout): {exc}") from exc
            return 0
        if self._capacity:
            self._had_workers = now
        elif now - self._had_workers >= self.timeout:
            raise SchedulerLost(f"the Dask cluster at {self.address} has had no worker for {self.timeout:g} s "
                                "(--connect-timeout)")
        return self._capacity

    def _scatter(self, chunk: Chunk) -> tuple[Chunk, dict]:
        """The chunk without the bytes of its input files, and those bytes as cluster futures."""
        futures = {}
        for name, given in chunk.inputs.items():
            if given.data is None:
                continue
            if given.sha256 not in self._scattered:
                self._scattered[given.sha256] = self.client.scatter(given.data, hash=False)
            futures[name] = self._scattered[given.sha256]
        light = {name: dataclasses.replace(given, data=None) for name, given in chunk.inputs.items()}
        return dataclasses.replace(chunk, inputs=light), futures

    def submit(self, chunk: Chunk) -> Any:
        """Submit `chunk` as a task; returns its future."""
        light, data = self._scatter(chunk)
        key = f"bptt-sweep-{chunk.name}-{uuid.uuid4().hex[:8]}"
        return self.client.submit(run_chunk, light, data, key=key, pure=False)

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
            connection = self.client.status != "running"  # the scheduler went away, and took the task with it
            raise WorkerLost(f"{type(exc).__name__}: {exc}", connection=connection) from exc
        finally:
            future.release()

    def _quiet(self) -> None:
        """Silence Dask's log (and its event loop's) while connected: a connection that drops is
        logged as tracebacks, each failed reconnection too; the sweep says what happened instead (a
        lost worker, a lost scheduler, a failed run with its error)."""
        import logging

        names = [n for n in ["distributed", "tornado", *logging.root.manager.loggerDict]
                 if n.split(".")[0] in ("distributed", "tornado")]
        for name in names:
            logger = logging.getLogger(name)
            self._log_levels.setdefault(name, logger.level)
            logger.setLevel(logging.CRITICAL)

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
        if self._log_levels:
            import logging

            for name, level in self._log_levels.items():
                logging.getLogger(name).setLevel(level)
            self._log_levels = {}
