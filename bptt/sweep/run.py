"""`run_sweep`: every grid point of a spec trained on a pool of workers, into one folder::

    DIR/spec.toml          the spec, as last run
    DIR/runs/<name>/       one ordinary run folder per grid point (`bptt evaluate`, `bptt plot`, read_run)
    DIR/record.jsonl       a line per run as it finishes: status, error, workers (`bptt.sweep.record`)
    DIR/results.csv        one row per grid point, written when the sweep ends (`bptt.sweep.results`)
    DIR/summary.md         the results over seeds, with DIR/figures/*.png
    DIR/.workers/          local workers' temporary run folders while the sweep runs

The machine running the sweep is the only one that writes DIR. Workers train in temporary folders
of their own (`worker.run_chunk`) and send each run's files back at a checkpoint every
`sync_seconds` and at its end; the sweep writes them into the run's folder (atomically, logs before
the checkpoint, summary.json last) while holding the folder's lock, and sends the next stretch from
there. So DIR always holds, for every run, a state it can continue from:

- summary.json present: done. It is never touched again.
- checkpoint.npz without summary.json: interrupted, or failed (a non-finite loss, an error raised
  mid-run); the next sweep resumes it from that checkpoint, exactly.
- neither: it starts (again, if it failed before its first checkpoint).

Before anything is made, every grid point's settings are checked (`spec.parse_spec`), the files
the runs read are read once (`read_inputs`) and the scheduler, if any, is reached: a refusal leaves
no folder behind. Grid points are taken from the spec one at a time as workers free up, so a grid of
a million points starts its first run at once; recording a finished run is one line appended to
DIR/record.jsonl, whatever the grid's size.

A run that raises fails alone with its error; a chunk whose worker died runs again (from the last
checkpoint that came back) up to `MAX_LOST` times. Ctrl-C or SIGTERM (caught between two writes,
never inside one) asks the workers to hand their runs back, writes what came back and raises
`SweepInterrupted`; a second one leaves at once. A scheduler that stops answering, a cluster without
workers for the connect timeout, or a file of DIR that cannot be written ends the sweep the same way
with `SweepAborted`, naming the cause.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..core.untrusted import UntrustedFileError, open_regular
from ..runs.atomic import RunWriteError, atomic_write, remove_temporaries
from ..runs.files import CHECKPOINT, CONFIG, DH_NORMS, LOCK, METRICS, SUMMARY, json_safe, read_json
from ..runs.folder import RunFolderError, lock_run_folder, release_run_folder
from ..runs.lock import FolderLock
from ..training.run_config import write_config
from .engines import DaskEngine, LocalPool, SchedulerLost, TLSFiles, WorkerLost, local_cores
from .record import MAX_ERROR, RECORD, Record, RunOutcome, read_record, rewrite_record
from .results import FIGURES, RESULTS, SUMMARY_MD, make_folder, result_numbers, write_if_changed, write_results
from .spec import GridPoint, SweepSpec
from .worker import INPUT_FILES, MAX_INPUT_BYTES, Chunk, InputFile, chunk_config

RUNS = "runs"
SPEC_COPY = "spec.toml"
WORKERS = ".workers"  # local workers' temporary run folders, removed by the next sweep if one was killed
MAX_LOST = 3  # a chunk whose worker dies this often fails: it may be what kills them
WRITE_ORDER = (METRICS, DH_NORMS, CHECKPOINT, SUMMARY)  # the summary last: it marks a run done
HAND_BACK_SECONDS = 30.0  # how long a stopping sweep waits for running chunks to come back


class SweepLockedError(ValueError):
    """Another process is running a sweep into the same folder."""


class SweepMismatchError(ValueError):
    """The folder holds runs under a grid point's name with other settings (the spec changed), or a
    run's config.json or summary.json that cannot be read."""


class SweepInputError(ValueError):
    """A file the runs read (`worker.INPUT_FILES`, e.g. the chars text) that cannot be read."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep; every run is saved where it can be continued from.

    Attributes
    ----------
    result : SweepResult
        The runs as they stand (unfinished ones are pending).
    """

    def __init__(self, result: "SweepResult"):
        super().__init__()
        self.result = result


class SweepAborted(Exception):
    """The sweep ended before its runs did: the scheduler stopped answering, the cluster had no
    worker for the connect timeout, or a file of DIR could not be written. Every run is saved where
    it can be continued from (its last checkpoint written).

    Parameters
    ----------
    message : str
        What happened, e.g. "cannot write DIR/runs/x/checkpoint.npz: No space left on device".
    result : SweepResult
        The runs as they stand.
    """

    def __init__(self, message: str, result: "SweepResult"):
        super().__init__(message)
        self.result = result


@dataclass
class RunState:
    """A run that a worker is working on.

    Attributes
    ----------
    point : GridPoint
    folder : Path
        DIR/runs/<name>.
    workers : list of str
        The workers that ran its chunks in this sweep, in order.
    lost : int
        Chunks lost with their worker.
    files : dict or None
        The run's files as last written (None: read them from the folder when needed).
    lock : FolderLock or None
        The run folder's lock, held from the first chunk to the run's end.
    """

    point: GridPoint
    folder: Path
    workers: list = field(default_factory=list)
    lost: int = 0
    files: dict | None = None
    lock: FolderLock | None = None

    @property
    def name(self) -> str:
        return self.point.name


@dataclass
class SweepResult:
    """What a sweep left in its folder.

    Attributes
    ----------
    out : Path
        DIR.
    spec : SweepSpec
    outcomes : dict of str to RunOutcome
        The finished runs (done or failed) by name; every other grid point is pending.
    ran : int
        Runs this call had to work on (the others were done already).
    """

    out: Path
    spec: SweepSpec
    outcomes: dict = field(default_factory=dict)
    ran: int = 0

    @property
    def total(self) -> int:
        """How many runs the sweep has."""
        return len(self.spec.points)

    def count(self, status: str) -> int:
        """How many runs have `status` ("done", "failed" or "pending")."""
        if status == "pending":
            return self.total - len(self.outcomes)
        return sum(o.status == status for o in self.outcomes.values())

    def failures(self) -> list:
        """The failed runs' outcomes, in the spec's order."""
        return sorted((o for o in self.outcomes.values() if o.status == "failed"), key=lambda o: o.index)


class SweepProgress:
    """What a sweep reports as it goes; the methods do nothing here, `bptt sweep` draws them.

    Methods are called from the sweep's own thread.
    """

    def note(self, message: str) -> None:
        """Something the user should know before the runs start, e.g. that --workers was capped."""

    def planned(self, result: SweepResult, to_run: int) -> None:
        """Before any run starts: `to_run` runs to work on, the others finished already."""

    def finished(self, run: RunOutcome) -> None:
        """A run is done or failed."""

    def lost(self, name: str, message: str) -> None:
        """A chunk's worker was lost; the chunk runs again."""

    def update(self, counts: dict) -> None:
        """Counts of "done", "failed", "running" and "pending" runs, now (called often)."""


def _normal(config_dict: dict) -> Any:
    return json.loads(json.dumps(json_safe(config_dict), default=os.fspath))


def _changes(saved: dict, wanted: dict) -> list:
    ignored = ("out",)  # the folder follows DIR wherever it moves
    return [f"{key}: {saved[key]!r} there, {wanted[key]!r} in the spec" for key in wanted
            if key in saved and key not in ignored and saved[key] != wanted[key]]


def _read_json(path: Path) -> Any:
    """A run's config.json or summary.json, read as every run-folder reader reads it (`bptt.runs.files`)."""
    try:
        return read_json(path)
    except UntrustedFileError:
        raise
    except ValueError as exc:  # it cannot be read
        raise SweepMismatchError(str(exc)) from exc


def plan(spec: SweepSpec, out: str | os.PathLike) -> SweepResult:
    """The runs DIR holds done already (summary.json); every other grid point is pending.

    Only the run folders that exist are read, each as untrusted input (bounded, no links).

    Parameters
    ----------
    spec : SweepSpec
    out : str or os.PathLike
        DIR.

    Returns
    -------
    SweepResult

    Raises
    ------
    SweepMismatchError
        If a run folder of a grid point's name holds a run with other settings, naming each setting,
        or a config.json or summary.json that cannot be read, naming the file.
    RunWriteError
        If DIR/runs is not a folder.
    """
    out = Path(out)
    result = SweepResult(out, spec)
    try:
        existing = {entry.name: entry.is_dir(follow_symlinks=False) for entry in os.scandir(out / RUNS)}
    except FileNotFoundError:
        return result
    except NotADirectoryError as exc:
        raise RunWriteError(exc.errno, "it is a file, not a folder", str(out / RUNS)) from exc
    except OSError as exc:
        raise RunWriteError(exc.errno, exc.strerror or str(exc), str(out / RUNS)) from exc
    if not existing:
        return result
    record = read_record(out)
    mismatched = []
    for point in spec.points:
        if point.name not in existing:
            continue
        folder = out / RUNS / point.name
        if not existing[point.name]:
            mismatched.append(f"{folder}: not a folder (a link or a file)")
            continue
        if not os.path.lexists(folder / CONFIG):
            continue  # a folder without a run yet (a sweep stopped before its first file)
        try:
            saved = _read_json(folder / CONFIG)
            summary = _read_json(folder / SUMMARY) if os.path.lexists(folder / SUMMARY) else None
        except ValueError as exc:
            mismatched.append(str(exc))
            continue
        changes = _changes(saved, _normal(chunk_config(point.config))) if isinstance(saved, dict) else []
        if changes or not isinstance(saved, dict):
            mismatched.append(f"{folder}: " + ("; ".join(changes) or "config.json is not a JSON object"))
        elif summary is not None:
            if not isinstance(summary, dict):
                mismatched.append(f"{folder / SUMMARY}: not a JSON object")
                continue
            workers = record.get(point.name, {}).get("workers", [])
            result.outcomes[point.name] = RunOutcome(point.index, point.name, "done",
                                                     summary=result_numbers(summary), workers=workers)
    if mismatched:
        raise SweepMismatchError(
            f"{out} holds runs with other settings than the spec gives them, or files that cannot be read "
            "(was the spec changed?):\n  " + "\n  ".join(mismatched[:20])
            + (f"\n  and {len(mismatched) - 20} more" if len(mismatched) > 20 else "")
            + "\nsweep into another --out folder, or delete these run folders to run them again")
    return result


def read_inputs(spec: SweepSpec, keep_data: bool = False) -> dict:
    """Read every file the runs read (`worker.INPUT_FILES`), each once.

    Parameters
    ----------
    spec : SweepSpec
    keep_data : bool
        Keep the bytes (for workers that may not see the files: Dask); otherwise only their hash.

    Returns
    -------
    dict
        field -> {path: InputFile}.

    Raises
    ------
    SweepInputError
        Naming the file, the setting that names it and what is wrong (missing, not a regular file,
        larger than `MAX_INPUT_BYTES` when it is to be sent).
    """
    found: dict[str, dict[str, InputFile]] = {}
    for name, what in INPUT_FILES.items():
        found[name] = {}
        for value in spec.values(name):
            if value is None:
                continue
            path = os.fspath(value)
            digest, size, chunks = hashlib.sha256(), 0, []
            try:
                with open_regular(path, follow_links=True) as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                        size += len(block)
                        if keep_data and size > MAX_INPUT_BYTES:
                            raise UntrustedFileError(path, f"is larger than {MAX_INPUT_BYTES:,} bytes, the most a "
                                                           "sweep sends to its workers")
                        if keep_data:
                            chunks.append(block)
            except UntrustedFileError as exc:
                raise SweepInputError(f"{name} = {path!r} ({what}): {exc.problem}") from exc
            except OSError as exc:
                raise SweepInputError(f"{name} = {path!r} ({what}): cannot read it: {exc.strerror or exc}") from exc
            found[name][path] = InputFile(path, digest.hexdigest(), size, b"".join(chunks) if keep_data else None)
    return found


def _read_files(folder: Path) -> dict:
    files = {}
    for name in (METRICS, DH_NORMS, CHECKPOINT):
        try:
            with open_regular(folder / name) as f:
                files[name] = f.read()
        except FileNotFoundError:
            continue
    return files


def _save(state: RunState, files: dict) -> None:
    """Write a chunk's files into the run folder: config.json first, summary.json last."""
    if not files:
        return
    if not (state.folder / CONFIG).is_file():
        write_config(state.folder, dataclasses.replace(state.point.config, out=str(state.folder)))
    for name in WRITE_ORDER:
        if name in files:
            atomic_write(state.folder / name, functools.partial(_write_bytes, files[name]))


def _write_bytes(data: bytes, f: BinaryIO) -> None:
    f.write(data)


def _release(run: RunState) -> None:
    """Give up a run folder's lock; a folder that never received a file goes away again."""
    if run.lock is not None:
        release_run_folder(run.lock, remove_if_empty=True)
        run.lock = None


def _remove_tree(path: Path) -> None:
    """Remove a folder the sweep owns (its workers' temporaries), or the link in its place."""
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(OSError):
            path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _make_folder(out: Path) -> Path | None:
    """Create DIR and its missing parents; the topmost folder created (None if DIR existed).

    Raises
    ------
    RunWriteError
        Naming the folder that cannot be made (a file in the way, no permission, a read-only disk).
    """
    missing = []
    for folder in [out, *out.parents]:
        if os.path.lexists(folder):
            break
        missing.append(folder)
    make_folder(out)
    return missing[-1] if missing else None


def _unmake_folder(out: Path, created: Path | None, lock: FolderLock, lock_made: bool) -> None:
    """Take away what a refused start made: DIR's lock file (removed while still held, so that no
    other process takes a lock on a file about to go), then every folder made, if empty."""
    if lock_made and lock.held:
        with contextlib.suppress(OSError):
            lock.path.unlink()
    lock.release()
    if created is None:
        return
    for folder in [out, *out.parents]:
        with contextlib.suppress(OSError):
            folder.rmdir()
        if folder == created:
            break


def _local_workers(workers: int | None, todo: int, progress: SweepProgress) -> int:
    cores = local_cores()
    count = min(workers or cores, cores, todo)
    if workers is not None and count < workers:
        limit = (f"one per run to do ({todo})" if todo <= cores else f"one per core this process may use ({cores})")
        progress.note(f"note: --workers {workers} capped at {count}: {limit}")
    return max(1, count)


def run_sweep(spec: SweepSpec, out: str | os.PathLike, *, workers: int | None = None, scheduler: str | None = None,
              tls: TLSFiles | None = None, connect_timeout: float = 10.0, sync_seconds: float = 20.0,
              progress: SweepProgress | None = None) -> SweepResult:
    """Run every grid point of `spec` not done yet into `out`, and write the results.

    Parameters
    ----------
    spec : SweepSpec
        From `bptt.sweep.spec.load_spec` (every grid point's settings checked).
    out : str or os.PathLike
        DIR: created if missing; a sweep run before into it is continued.
    workers : int, optional
        Local worker processes (default: one per core); at most one per core and one per run to do.
        Not with `scheduler`.
    scheduler : str, optional
        A Dask scheduler's address (tcp:// or tls://): every chunk runs as a task on that cluster.
    tls : TLSFiles, optional
        The certificates for a tls:// scheduler (default: Dask's config).
    connect_timeout : float
        Seconds to wait for the scheduler; and, later, for a scheduler that stopped answering or a
        cluster without workers, before the sweep ends.
    sync_seconds : float
        A worker sends a run's files back at its first checkpoint after this many seconds of
        training: what a lost worker can cost at most (beyond one checkpoint interval).
    progress : SweepProgress, optional
        Told of every finished run and of the counts as they change.

    Returns
    -------
    SweepResult
        Every run done or failed.

    Raises
    ------
    SweepInputError, SchedulerError, SweepLockedError, SweepMismatchError
        (ValueErrors) Before any run starts; DIR is left as it was (not made, if it was missing).
    RunWriteError
        (an OSError) If DIR cannot be made or written before any run starts; as above.
    SweepInterrupted
        On Ctrl-C or SIGTERM, once what the workers handed back is written.
    SweepAborted
        When the scheduler stops answering, the cluster has no worker for `connect_timeout`
        seconds, or a file of DIR cannot be written once the runs have started.
    """
    if workers is not None and scheduler is not None:
        raise ValueError("workers sets the number of local processes; a Dask cluster has its own")
    progress = progress or SweepProgress()
    out = Path(out)
    inputs = read_inputs(spec, keep_data=scheduler is not None)
    engine: LocalPool | DaskEngine | None = None
    if scheduler is not None:
        engine = DaskEngine(scheduler, connect_timeout, tls)  # before DIR: a refusal leaves nothing behind
    try:
        created = _make_folder(out)
        sweep_lock = FolderLock(out / LOCK)
        lock_made = not os.path.lexists(sweep_lock.path)
        try:
            try:
                taken = sweep_lock.try_acquire()
            except OSError as exc:
                raise RunWriteError(exc.errno, exc.strerror or str(exc), str(out / LOCK)) from exc
            if not taken:
                pid = sweep_lock.holder()
                raise SweepLockedError(f"{out} is being swept by "
                                       f"{'another process' if pid is None else f'process {pid}'}; "
                                       "one sweep per folder at a time")
            remove_temporaries(out, (SPEC_COPY, RESULTS, SUMMARY_MD, RECORD))  # left by a sweep killed mid-write
            if (out / FIGURES).is_dir() and not (out / FIGURES).is_symlink():
                remove_temporaries(out / FIGURES, None)
            _remove_tree(out / WORKERS)  # a killed local worker's run
            result = plan(spec, out)
        except BaseException:
            _unmake_folder(out, created, sweep_lock, lock_made)
            raise
        try:
            result.ran = result.count("pending")
            write_if_changed(out / SPEC_COPY, spec.text.encode("utf-8", "surrogatepass"))
            if not result.ran:
                progress.planned(result, 0)
                write_results(spec, result.outcomes, out)
                rewrite_record(out, _in_order(result))
                return result
            if engine is None:
                engine = LocalPool(_local_workers(workers, result.ran, progress), scratch=str(out / WORKERS))
            progress.planned(result, result.ran)
            record = Record(out)
            try:
                _drive(engine, result, inputs, sync_seconds, progress, record)
            finally:
                record.close()
                engine.close()
                _remove_tree(out / WORKERS)
            write_results(spec, result.outcomes, out)
            rewrite_record(out, _in_order(result))
            return result
        finally:
            sweep_lock.release()
    finally:
        if engine is not None:
            engine.close()


def _in_order(result: SweepResult) -> list:
    return sorted(result.outcomes.values(), key=lambda o: o.index)


def _drive(engine: LocalPool | DaskEngine, result: SweepResult, inputs: dict, sync_seconds: float,
           progress: SweepProgress, record: Record) -> None:
    spec = result.spec
    fresh: Iterator[GridPoint] = (p for p in spec.points if p.name not in result.outcomes)
    again: collections.deque[RunState] = collections.deque()  # runs to continue before new ones start
    running: dict[Any, RunState] = {}  # future -> RunState

    def counts() -> dict:
        done, failed = result.count("done"), result.count("failed")
        return {"done": done, "failed": failed, "running": len(running),
                "pending": result.total - done - failed - len(running)}

    def next_run() -> RunState | None:
        if again:
            return again.popleft()
        point = next(fresh, None)
        return None if point is None else RunState(point, result.out / RUNS / point.name)

    def chunk_for(run: RunState) -> Chunk:
        config = run.point.config
        given = {name: inputs[name][os.fspath(getattr(config, name))] for name in INPUT_FILES
                 if getattr(config, name) is not None}
        if run.files is None:
            run.files = _read_files(run.folder) if (run.folder / CHECKPOINT).is_file() else {}
        return Chunk(run.name, chunk_config(config), run.files, given, sync_seconds, str(run.folder))

    def finish(run: RunState, status: str, error: str | None = None, summary: object = None) -> None:
        outcome = RunOutcome(run.point.index, run.name, status, None if error is None else error[:MAX_ERROR],
                             result_numbers(summary) if status == "done" else {}, list(run.workers))
        result.outcomes[run.name] = outcome
        run.files = None
        _release(run)
        record.add(outcome)
        progress.finished(outcome)

    def receive(future: Any) -> None:
        run = running.pop(future)
        try:
            chunk = engine.outcome(future)
        except WorkerLost as exc:
            if exc.connection:  # the scheduler went away: poll() ends the sweep unless it comes back
                again.appendleft(run)
                return
            run.lost += 1
            if exc.final or run.lost >= MAX_LOST:
                finish(run, "failed", f"WorkerLost: the worker running it was lost {run.lost} time(s): {exc}")
            else:
                again.appendleft(run)  # from the last checkpoint that came back
                progress.lost(run.name, str(exc))
            return
        if chunk.worker and chunk.worker not in run.workers:
            run.workers.append(chunk.worker)
        try:
            _save(run, chunk.files)
        except RunWriteError:  # the run keeps its last checkpoint written; the sweep stops
            again.appendleft(run)
            raise
        if chunk.status == "paused":
            run.files = chunk.files
            again.appendleft(run)  # finish the runs begun before starting new ones
        else:
            finish(run, chunk.status, chunk.error, chunk.summary)

    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if stopping:
            raise KeyboardInterrupt  # asked twice: leave now
        stopping.append(signum)  # the loop stops between writes, never inside one

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    fault: Exception | None = None
    try:
        try:
            while not stopping:
                capacity = engine.poll()
                while len(running) < capacity:
                    run = next_run()
                    if run is None:
                        break
                    if run.lock is None:
                        try:
                            run.lock = lock_run_folder(run.folder, create=True)
                        except RunWriteError:
                            again.appendleft(run)
                            raise
                        except RunFolderError as exc:  # locked by another process: this run alone fails
                            finish(run, "failed", f"{type(exc).__name__}: {exc}")
                            continue
                    running[engine.submit(chunk_for(run))] = run
                progress.update(counts())
                if not running and not again and result.count("pending") == 0:
                    return
                done = [f for f in running if f.done()]
                if not done:
                    time.sleep(0.05)
                for future in done:
                    receive(future)
        except KeyboardInterrupt:  # where no handler could be set (not the main thread)
            stopping.append(signal.SIGINT)
        except (RunWriteError, SchedulerLost) as exc:
            fault = exc
        if fault is None or isinstance(fault, RunWriteError):
            engine.stop(list(running))
            deadline = time.monotonic() + HAND_BACK_SECONDS
            while running and time.monotonic() < deadline:  # what the workers hand back is written
                for future in [f for f in running if f.done()]:
                    if future.cancelled():
                        _release(running.pop(future))
                        continue
                    try:
                        receive(future)
                    except RunWriteError as exc:  # the disk is still full: the run keeps its last checkpoint
                        fault = fault or exc
                time.sleep(0.05)
        for run in list(running.values()) + list(again):
            _release(run)
        with contextlib.suppress(RunWriteError):
            write_results(spec, result.outcomes, result.out, figures=False)
        if fault is not None:
            raise SweepAborted(str(fault), result) from fault
        raise SweepInterrupted(result)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
