"""`run_sweep`: every grid point of a spec trained on a pool of workers, into one folder::

    DIR/spec.toml          the spec, as last run
    DIR/runs/<name>/       one ordinary run folder per grid point (`bptt evaluate`, `bptt plot`, read_run)
    DIR/results.csv        one row per grid point (`bptt.sweep.results`)
    DIR/summary.md         the results over seeds, with DIR/figures/*.png

The machine running the sweep is the only one that writes DIR. Workers train in temporary folders
of their own (`sweep_worker.run_chunk`) and send each run's files back at a checkpoint every
`sync_seconds` and at its end; the sweep writes them into the run's folder (atomically, logs before
the checkpoint, summary.json last) while holding the folder's lock, and sends the next stretch from
there. So DIR always holds, for every run, a state it can continue from:

- summary.json present: done. It is never touched again.
- checkpoint.npz without summary.json: interrupted (or failed at a non-finite loss); the next
  sweep resumes it from that checkpoint, exactly.
- neither: it starts.

A run whose settings are invalid, or that raises, fails alone with its error; a chunk whose worker
died runs again (from the last checkpoint that came back) up to `MAX_LOST` times. Ctrl-C or SIGTERM
(caught between two writes, never inside one) asks the workers to hand their runs back, writes what
came back and raises `SweepInterrupted`; a second one leaves at once.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ..training.folder_lock import FolderLock
from ..training.run_folder import (
    CHECKPOINT, CONFIG, DH_NORMS, LOCK, METRICS, SUMMARY, RunFolderError, atomic_write, json_safe, lock_run_folder,
    read_json, release_run_folder, remove_temporaries, write_config,
)
from .engines import DaskEngine, LocalPool, WorkerLost, local_cores
from .results import FIGURES, RESULTS, SUMMARY_MD, read_previous_workers, write_if_changed, write_results
from .spec import GridPoint, SweepSpec
from .worker import Chunk, chunk_config

RUNS = "runs"
SPEC_COPY = "spec.toml"
MAX_LOST = 3  # a chunk whose worker dies this often fails: it may be what kills them
WRITE_ORDER = (METRICS, DH_NORMS, CHECKPOINT, SUMMARY)  # the summary last: it marks a run done


class SweepLockedError(ValueError):
    """Another process is running a sweep into the same folder."""


class SweepMismatchError(ValueError):
    """The folder holds runs under a grid point's name with other settings (the spec changed)."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the sweep; every run is saved where it can be continued from.

    Attributes
    ----------
    result : SweepResult
        The rows as they stand (unfinished runs are "pending").
    """

    def __init__(self, result: "SweepResult"):
        super().__init__()
        self.result = result


@dataclass
class RunState:
    """One grid point during a sweep.

    Attributes
    ----------
    point : GridPoint
    folder : Path
        DIR/runs/<name>.
    status : str
        "done", "failed", "pending" or "running".
    summary : dict or None
        summary.json of a done run.
    error : str or None
        Why it failed.
    workers : list of str
        The workers that ran its chunks in this sweep (or in the one that finished it), in order.
    lost : int
        Chunks lost with their worker.
    files : dict or None
        The run's files as last written (None: read them from the folder when needed).
    """

    point: GridPoint
    folder: Path
    status: str = "pending"
    summary: dict | None = None
    error: str | None = None
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
    runs : list of RunState
        One per grid point, in the spec's order.
    ran : int
        Runs this call worked on (the others were done already, or invalid).
    """

    out: Path
    runs: list
    ran: int = 0

    def count(self, status: str) -> int:
        """How many runs have `status` ("done", "failed", "pending")."""
        return sum(r.status == status for r in self.runs)


class SweepProgress:
    """What a sweep reports as it goes; the methods do nothing here, `bptt sweep` draws them.

    Methods are called from the sweep's own thread.
    """

    def planned(self, result: SweepResult, to_run: int) -> None:
        """Before any run starts: `to_run` runs to work on, the others finished already."""

    def finished(self, run: RunState) -> None:
        """A run is done or failed."""

    def lost(self, run: RunState, message: str) -> None:
        """A chunk's worker was lost; the chunk runs again."""

    def update(self, counts: dict) -> None:
        """Counts of "done", "failed", "running" and "pending" runs, now (called often)."""


def _normal(config_dict: dict) -> Any:
    return json.loads(json.dumps(json_safe(config_dict), default=os.fspath))


def _changes(saved: dict, wanted: dict) -> list:
    ignored = ("out",)  # the folder follows DIR wherever it moves
    return [f"{key}: {saved[key]!r} there, {wanted[key]!r} in the spec" for key in wanted
            if key in saved and key not in ignored and saved[key] != wanted[key]]


def plan(spec: SweepSpec, out: str | os.PathLike) -> SweepResult:
    """Each grid point's state from DIR as it is: done, failed (invalid settings) or pending.

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
    """
    out = Path(out)
    runs, mismatched = [], []
    workers = read_previous_workers(out)
    for point in spec.points:
        state = RunState(point, out / RUNS / point.name)
        if point.error:
            state.status, state.error = "failed", f"SettingError: {point.error}"
        elif (state.folder / CONFIG).is_file():
            try:
                saved = read_json(state.folder / CONFIG)
                summary = read_json(state.folder / SUMMARY) if (state.folder / SUMMARY).is_file() else None
            except ValueError as exc:
                mismatched.append(str(exc))
                continue
            changes = _changes(saved, _normal(chunk_config(point.config))) if isinstance(saved, dict) else []
            if changes or not isinstance(saved, dict):
                mismatched.append(f"{state.folder}: " + ("; ".join(changes) or "config.json is not a JSON object"))
            elif summary is not None:
                state.status, state.summary = "done", summary
                state.workers = workers.get(point.name, [])
        runs.append(state)
    if mismatched:
        raise SweepMismatchError(
            f"{out} holds runs with other settings than the spec gives them (was the spec changed?):\n  "
            + "\n  ".join(mismatched)
            + "\nsweep into another --out folder, or delete these run folders to run them again")
    return SweepResult(out, runs)


def _read_files(folder: Path) -> dict:
    return {name: (folder / name).read_bytes() for name in (METRICS, DH_NORMS, CHECKPOINT)
            if (folder / name).is_file()}


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


def run_sweep(spec: SweepSpec, out: str | os.PathLike, *, workers: int | None = None, scheduler: str | None = None,
              connect_timeout: float = 10.0, sync_seconds: float = 20.0,
              progress: SweepProgress | None = None) -> SweepResult:
    """Run every grid point of `spec` not done yet into `out`, and write the results.

    Parameters
    ----------
    spec : SweepSpec
        From `bptt.sweep.spec.load_spec`.
    out : str or os.PathLike
        DIR: created if missing; a sweep run before into it is continued.
    workers : int, optional
        Local worker processes (default: one per core, at most one per run to do). Not with `scheduler`.
    scheduler : str, optional
        A Dask scheduler's address: every chunk runs as a task on that cluster.
    connect_timeout : float
        Seconds to wait for the scheduler.
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
    SweepLockedError, SweepMismatchError
        (ValueErrors) Before anything is written.
    SchedulerError
        (a ValueError) If the scheduler cannot be reached; nothing has run.
    SweepInterrupted
        On Ctrl-C, once what the workers handed back is written.
    """
    if workers is not None and scheduler is not None:
        raise ValueError("workers sets the number of local processes; a Dask cluster has its own")
    progress = progress or SweepProgress()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweep_lock = FolderLock(out / LOCK)
    if not sweep_lock.try_acquire():
        pid = sweep_lock.holder()
        raise SweepLockedError(f"{out} is being swept by {'another process' if pid is None else f'process {pid}'}; "
                               "one sweep per folder at a time")
    try:
        remove_temporaries(out, (SPEC_COPY, RESULTS, SUMMARY_MD))  # left by a sweep killed mid-write
        if (out / FIGURES).is_dir():
            remove_temporaries(out / FIGURES, None)
        result = plan(spec, out)
        write_if_changed(out / SPEC_COPY, spec.text.encode())
        todo = [r for r in result.runs if r.status == "pending"]
        result.ran = len(todo)
        engine: LocalPool | DaskEngine | None = None
        if todo:
            if scheduler is not None:
                engine = DaskEngine(scheduler, connect_timeout)
            else:
                engine = LocalPool(min(workers or local_cores(), len(todo)))
        progress.planned(result, len(todo))
        if engine is not None:
            try:
                _drive(engine, result, todo, spec, sync_seconds, progress)
            finally:
                engine.close()
                for run in result.runs:
                    _release(run)
        write_results(spec, result)
        return result
    finally:
        sweep_lock.release()


def _drive(engine: LocalPool | DaskEngine, result: SweepResult, todo: list, spec: SweepSpec, sync_seconds: float,
           progress: SweepProgress) -> None:
    queue = collections.deque(todo)
    running: dict[Any, RunState] = {}  # future -> RunState
    texts: dict[str, bytes | None] = {}

    def counts() -> dict:
        c = collections.Counter(r.status for r in result.runs)
        return {"done": c["done"], "failed": c["failed"], "running": len(running), "pending": len(queue)}

    def chunk_for(run: RunState) -> Chunk:
        config = run.point.config
        text = None if config.text is None else os.fspath(config.text)
        if text is not None and text not in texts:
            try:
                texts[text] = Path(text).read_bytes()
            except OSError:
                texts[text] = None  # the worker's trainer reports the missing file
        if run.files is None:
            run.files = _read_files(run.folder) if (run.folder / CHECKPOINT).is_file() else {}
        return Chunk(run.name, chunk_config(config), run.files, None if text is None else texts[text], sync_seconds,
                     str(run.folder))

    def finish(run: RunState, status: str, error: str | None = None) -> None:
        run.status, run.error, run.files = status, error, None
        if status == "done":
            run.summary = json.loads((run.folder / SUMMARY).read_text())
        _release(run)
        progress.finished(run)
        write_results(spec, result, figures=False)

    def receive(future: Any) -> None:
        run = running.pop(future)
        try:
            chunk = engine.outcome(future)
        except WorkerLost as exc:
            run.lost += 1
            if exc.final or run.lost >= MAX_LOST:
                finish(run, "failed", f"WorkerLost: the worker running it was lost {run.lost} time(s): {exc}")
            else:
                run.status = "pending"
                queue.appendleft(run)  # from the last checkpoint that came back
                progress.lost(run, str(exc))
            return
        if chunk.worker and chunk.worker not in run.workers:
            run.workers.append(chunk.worker)
        _save(run, chunk.files)
        if chunk.status == "paused":
            run.files, run.status = chunk.files, "pending"
            queue.appendleft(run)  # finish the runs begun before starting new ones
        else:
            finish(run, chunk.status, chunk.error)

    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if stopping:
            raise KeyboardInterrupt  # asked twice: leave now
        stopping.append(signum)  # the loop stops between writes, never inside one

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            while (queue or running) and not stopping:
                while queue and len(running) < engine.capacity:
                    run = queue.popleft()
                    if run.lock is None:
                        try:
                            run.lock = lock_run_folder(run.folder, create=True)
                        except RunFolderError as exc:
                            finish(run, "failed", f"{type(exc).__name__}: {exc}")
                            continue
                    run.status = "running"
                    running[engine.submit(chunk_for(run))] = run
                progress.update(counts())
                done = [f for f in running if f.done()]
                if not done:
                    time.sleep(0.1)
                for future in done:
                    receive(future)
            progress.update(counts())
        except KeyboardInterrupt:  # where no handler could be set (not the main thread)
            stopping.append(signal.SIGINT)
        if not stopping:
            return
        engine.stop(list(running))
        deadline = time.monotonic() + 30
        while running and time.monotonic() < deadline:  # what the workers hand back is written
            for future in [f for f in running if f.done()]:
                if future.cancelled():
                    running.pop(future).status = "pending"
                else:
                    receive(future)
            time.sleep(0.05)
        for run in result.runs:
            if run.status == "running":
                run.status = "pending"
        write_results(spec, result, figures=False)
        raise SweepInterrupted(result)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
