"""The training loop: a cell and a linear readout on a toy task, trained with TBPTT(k1, k2),
gradient clipping and an optimizer, writing a run folder (`bptt.runs`) that other
commands read.

A step is one parameter update. With k1 < T one batch of sequences gives several updates, one per
window of its `WindowWalk`; windows without any loss (e.g. the adding task before its last step)
only carry the state forward. Resuming restores the checkpoint, drops log lines written after it
and replays, so an interrupted and resumed run ends with the same weights and logs (elapsed times
aside) as one that never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, cast

import numpy as np
from numpy.typing import DTypeLike, NDArray

from ..cells.cell import Cell
from ..cells.registry import make_cell
from ..cells.stack import Stack
from ..core.import_path import folder_label
from ..core.readout import Linear
from ..core.truncation import TBPTT, NonFiniteError, WindowWalk, model_params, window_gradients
from ..core.types import Array, IntArray, ModelTape, Seed, State
from ..core.unroll import Tape, forward, forward_window
from .clipping import clip_gradients
from .config import SettingError, TrainConfig
from ..runs.checkpoint import Checkpoint, CheckpointLayout, checkpoint_info, read_checkpoint, write_checkpoint
from ..runs.files import CHECKPOINT, LOCK, LOGS, RUN_FILES, SUMMARY, json_safe, write_summary
from ..runs.folder import DEFAULT_PARENT, claim_run_folder, lock_run_folder, new_run_dir, release_run_folder
from ..runs.lock import FolderLock
from ..runs.logs import Logs, iter_records, truncate_logs
from .init import initialise
from .optim import Schedule, make_optimizer
from .run_config import (
    RunChangedError, fingerprint_changes, load_config, run_fingerprint, start_run_folder, write_config,
)
from .task_contract import Batch, check_batch
from .tasks import is_builtin_task, make_task


def make_model(config: TrainConfig, input_size: int, seed: Seed, dtype: DTypeLike) -> Cell | Stack:
    """The recurrent model the settings ask for: one cell, or a bptt.Stack for several layers or
    both directions (its weights drawn from the same seed; dropout needs a Stack)."""
    if config.layers > 1 or config.bidirectional:
        return Stack(config.cell, input_size, config.hidden, config.layers, bidirectional=config.bidirectional,
                     proj_size=config.proj_size, dropout=config.dropout, seed=np.random.default_rng(seed), dtype=dtype)
    return make_cell(config.cell, input_size, config.hidden, proj_size=config.proj_size, seed=seed, dtype=dtype)


@contextlib.contextmanager
def evaluating(model: Cell | Stack) -> Iterator[None]:
    """Dropout off while the held-out set is evaluated, back on after (a Stack's train/eval)."""
    if not isinstance(model, Stack):
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train()


class TrainingStopped(RuntimeError):
    """Training stopped on a non-finite loss or gradient; the last good weights are checkpointed."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal (`train`'s stop_signals: Ctrl-C's SIGINT, a scheduler's SIGTERM).

    A KeyboardInterrupt, so that code which catches Ctrl-C catches this too.

    Parameters
    ----------
    signum : int
        The signal.
    run_dir : pathlib.Path or None
        The run folder, None if the signal came before it was made.
    step : int or None
        The step checkpointed as the run stopped, between two updates; None if a second signal
        stopped it at once, and the last checkpoint written before is the one to continue from.
    """

    def __init__(self, signum: int, run_dir: Path | None = None, step: int | None = None) -> None:
        self.signum, self.run_dir, self.step = signum, run_dir, step
        super().__init__(signum, run_dir, step)

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        if self.step is None:
            saved = f"; {self.run_dir} is saved up to its last checkpoint" if self.run_dir else ""
            return f"stopped by {name}{saved}"
        return f"stopped by {name} at step {self.step}, checkpointed in {self.run_dir}"


@contextlib.contextmanager
def stopping_on(signals: Iterable[int]) -> Iterator[list[int]]:
    """While inside, the first of `signals` to arrive is only recorded (in the list yielded), for the
    training loop to stop between two updates; a second one raises `TrainingInterrupted` at once.
    The handlers before are put back on leaving. Outside the main thread, where Python runs no
    handler, nothing is changed.

    Parameters
    ----------
    signals : iterable of int
        E.g. (signal.SIGINT, signal.SIGTERM).

    Yields
    ------
    list of int
        The signals received so far.

    Examples
    --------
    >>> import os, signal
    >>> with stopping_on([signal.SIGTERM]) as received:
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ...     received == [signal.SIGTERM]
    True
    >>> signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    True
    """
    received: list[int] = []
    signals = tuple(signals)
    if not signals or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: object) -> None:
        if received:  # asked twice: leave now
            raise TrainingInterrupted(signum)
        received.append(signum)

    previous = {signum: signal.signal(signum, handler) for signum in signals}
    try:
        yield received
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


class TrainingRun:
    """Everything a run holds between updates: model, optimizer, data, position and counters.

    `checkpoint()` and `restore()` round-trip it exactly through a `Checkpoint`.

    Parameters
    ----------
    config : TrainConfig
        Validated settings.
    run_dir : pathlib.Path, optional
        The run folder (written by `save`); None until it exists.

    Raises
    ------
    ValueError
        If the task cannot be built (e.g. a sequence too short for it, an unreadable text file).

    Attributes
    ----------
    cell, readout
        The model; `params` their live arrays keyed like `model_params`.
    task, optimizer, rng
        The task, the optimizer and the training data's RNG.
    batch : Batch or None
        The current batch, None between batches; `walk` its WindowWalk.
    step, elapsed, skipped, clipped, last_eval
        Updates done, seconds of training, skipped and clipped updates, the latest held-out metrics.
    fingerprint : dict
        The settings and data a resume must find unchanged (`run_fingerprint`), saved in checkpoints.
    """

    def __init__(self, config: TrainConfig, run_dir: Path | None = None) -> None:
        self.config, self.dir = config, None if run_dir is None else Path(run_dir)
        self.dtype = np.dtype(config.dtype)
        self.task = make_task(config.task, config.seq_len, config.text, config.min_seq_len, data=config.data,
                              eval_fraction=config.eval_fraction, split_seed=config.eval_seed)
        self.check_batches = not is_builtin_task(config.task)  # a task of one's own: every batch against the contract
        self.fingerprint = run_fingerprint(config, self.task.data_fingerprint)
        # a fourth child leaves the first three (and so every run without an init) unchanged
        cell_seed, readout_seed, data_seed, init_seed = np.random.SeedSequence(config.seed).spawn(4)
        self.cell = make_model(config, self.task.input_size, cell_seed, self.dtype)
        # deterministic, and `restore` then overwrites every parameter: a resumed run keeps its weights
        initialise(self.cell, config.init, np.random.default_rng(init_seed))
        width = config.hidden if config.proj_size == 0 else config.proj_size
        self.readout = Linear(width * (2 if config.bidirectional else 1), self.task.output_size,
                              seed=readout_seed, dtype=self.dtype)
        self.params = model_params(self.cell, self.readout)
        schedule = Schedule(config.schedule, config.lr, config.steps, 0.0, config.lr_step_size, config.lr_gamma)
        self.optimizer = make_optimizer(config.optimizer, schedule, momentum=config.momentum)
        self.rng = np.random.default_rng(data_seed)
        self.step = 0
        self.batch: Batch | None = None
        self.batch_rng_state: Mapping[str, Any] | None = None  # the data RNG's state before the current batch was drawn
        self.walk: WindowWalk | None = None
        self.elapsed = 0.0
        self.skipped = 0
        self.clipped = 0
        self.last_eval: dict[str, float] = {}

    # --- model and data
    def cast(self, batch: Batch) -> Batch:
        """The batch with xs (T, N, D) and float targets in the run's dtype (class targets stay int)."""
        targets = batch.targets.astype(self.dtype) if batch.targets.dtype.kind == "f" else batch.targets
        return batch._replace(xs=batch.xs.astype(self.dtype), targets=targets)

    def next_batch(self, window: int = 0, carry: State | None = None) -> None:
        """Draw the next batch from the data RNG and start walking its windows.

        Parameters
        ----------
        window : int
            The window to start at (a checkpoint's, when resuming mid-batch).
        carry : ndarray (N, H), tuple of them, or None
            The state at that window's start (None: zeros).
        """
        self.batch_rng_state = self.rng.bit_generator.state
        batch = self.task.sample(self.rng, self.config.batch_size)
        if self.check_batches:
            check_batch(self.task, batch, self.config.task, batch_size=self.config.batch_size)
        self.batch = self.cast(batch)
        plan = TBPTT(*self.config.truncation(self.batch.xs.shape[0]))
        self.walk = WindowWalk(plan, self.batch.mask, carry, window)

    def window_lengths(self) -> IntArray | None:
        """How many of the current window's steps each sequence runs (None: all of them)."""
        batch, walk = cast(Batch, self.batch), cast(WindowWalk, self.walk)  # called mid-batch: next_batch set both
        if batch.lengths is None:
            return None
        start, _, end = walk.window
        return np.clip(batch.lengths - start, 0, end - start)

    def advance(self, tape: Tape | ModelTape) -> None:
        """After the current window's forward pass (`tape`), move to the next window or batch."""
        walk = cast(WindowWalk, self.walk)  # called mid-batch: next_batch set it
        walk.advance(tape)
        if walk.done:
            self.batch = self.walk = None

    def evaluate(self, batch: Batch) -> dict[str, float]:
        """Loss and task metrics of the current weights on `batch`: one full forward, no truncation.

        Parameters
        ----------
        batch : Batch
            Usually the held-out set, cast to the run's dtype.

        Returns
        -------
        dict
            "loss" (the mean over every masked entry; NaN if the hidden states are not finite) and
            the task's metrics, e.g. "accuracy".
        """
        with np.errstate(over="ignore", invalid="ignore"), evaluating(self.cell):
            hs, _ = forward(self.cell, batch.xs, lengths=batch.lengths)
            if not np.isfinite(hs).all():
                return {"loss": float("nan")}
            outputs, _ = self.readout.forward(hs)
            loss, _ = self.task.loss_fn(outputs[batch.mask], batch.targets[batch.mask])
        return {"loss": float(loss), **self.task.metrics(outputs, batch)}

    # --- checkpoint
    def checkpoint(self) -> Checkpoint:
        """The state to save; mid-batch, the batch is drawn again from the RNG state before it."""
        mid_batch = self.walk is not None
        carry = self.walk.state if self.walk is not None else None
        return Checkpoint(
            params=self.params,
            optimizer=self.optimizer.state_arrays(),
            step=self.step,
            window=self.walk.index if self.walk is not None else -1,
            elapsed=self.elapsed,
            skipped=self.skipped,
            clipped=self.clipped,
            # next_batch records the data RNG's state before the batch whenever it starts a walk
            rng_state=cast(Mapping[str, Any], self.batch_rng_state) if mid_batch else self.rng.bit_generator.state,
            carry=() if carry is None else self.cell.unpack_state(carry),
            last_eval=self.last_eval,
            vocab=getattr(self.task, "vocab", None),
            fingerprint=self.fingerprint,
            model_rng_state=self.cell.rng.bit_generator.state if isinstance(self.cell, Stack) else None,
        )

    def checkpoint_layout(self) -> CheckpointLayout:
        """The shapes and dtype a checkpoint of this run holds: its parameters, the optimizer's slots
        for each, and the state carried into a window (batch_size rows), for `read_checkpoint`."""
        carry = self.cell.unpack_state(self.cell.initial_state(self.config.batch_size))
        return CheckpointLayout({name: value.shape for name, value in self.params.items()}, self.dtype,
                                slots=self.optimizer.slots, carry=tuple(part.shape for part in carry))

    def save(self) -> None:
        """Write checkpoint.npz."""
        write_checkpoint(cast(Path, self.dir), self.checkpoint())  # a run saves only once its folder exists

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from `checkpoint`: weights, optimizer, data RNG, position in the batch, counters.

        Raises
        ------
        ValueError
            If the checkpoint does not fit this run's config (naming the checkpoint).
        """
        checkpoint.load_params(self.params)
        try:
            self.optimizer.load_state_arrays(checkpoint.optimizer)
            self.rng.bit_generator.state = checkpoint.rng_state
            if isinstance(self.cell, Stack) and checkpoint.model_rng_state is not None:
                self.cell.rng.bit_generator.state = checkpoint.model_rng_state  # the dropout masks to come
            if checkpoint.window >= 0:  # mid-batch: draw the same batch again, continue at the saved window
                carry = None
                if checkpoint.carry:
                    parts = self.cell.check_state(self.cell.pack_state(checkpoint.carry), self.config.batch_size,
                                                  name="carry")
                    carry = self.cell.pack_state(parts)
                self.next_batch(checkpoint.window, carry)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"checkpoint {checkpoint.path} does not match its config.json: {exc}") from exc
        self.step, self.elapsed = checkpoint.step, checkpoint.elapsed
        self.skipped, self.clipped = checkpoint.skipped, checkpoint.clipped
        self.last_eval = checkpoint.last_eval


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | os.PathLike[str] | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    on_start: Callable[[Path], None] | None = None,
    stop_signals: Iterable[int] = (),
) -> dict[str, Any]:
    """Train as `config` says, or continue the run folder `resume`; write the run folder.

    A new run gets its own folder: `config.out`, which must not hold a run already (unless
    `overwrite`), or else a new uniquely named folder under runs/ (`new_run_dir`). The folder is
    locked (`lock_run_folder`) from before its first file until the summary is written, so a second
    writer is refused. Settings and task are checked before any folder is made.

    Parameters
    ----------
    config : TrainConfig, optional
        The settings of a new run (None: the defaults). With `resume`, only its `steps` is read, to
        extend or shorten the run (not below the steps done); the rest comes from config.json.
    resume : str or os.PathLike, optional
        A run folder to continue from its checkpoint. Refused if config.json or the chars text
        changed since the checkpoint (checkpoints from before this check resume unchecked).
    callback : callable, optional
        callback(step, record) after every update, with that step's metrics record (the line written
        to metrics.jsonl). An exception raised there stops the run; the last checkpoint stays, and
        `train(resume=run_dir)` continues from it.
    overwrite : bool
        For a new run in a folder that holds one: delete that run's files first instead of refusing.
    on_start : callable, optional
        on_start(run_dir) once the folder is locked and ready, before the first update: how a caller
        learns the name of a default folder before the run ends.
    stop_signals : iterable of int
        Signals that stop the run cleanly (`bptt train` passes SIGINT and SIGTERM): at the first,
        the update under way finishes, a checkpoint of that step is written and `TrainingInterrupted`
        raised; a second stops at once. Only in the main thread; empty (the default): a signal acts
        as it would without `train`.

    Returns
    -------
    dict
        The summary, as written to summary.json.

    Raises
    ------
    ValueError
        On bad settings (a `SettingError`, also for `steps` below the steps a resumed run has done), a
        task that cannot be built, or a run folder that cannot be resumed (missing, unreadable config,
        checkpoint or log); nothing in the folder is changed then.
    RunExistsError
        (a ValueError) If `config.out` holds a run and `overwrite` is false; nothing is changed.
    RunLockedError
        (a ValueError) If another process is writing the folder, with its process id.
    RunChangedError
        (a ValueError) If a resumed run's config.json or text no longer matches its checkpoint.
    RunWriteError
        (an OSError) If a file or folder cannot be written, e.g. a full disk. The run stays resumable
        from its last checkpoint, and no temporary file is left; a new run that fails before its
        first checkpoint leaves no run behind.
    TrainingStopped
        On a non-finite loss, gradient or updated weight with on_nonfinite="stop", after
        checkpointing the last good weights.
    TrainingInterrupted
        (a KeyboardInterrupt) On one of `stop_signals`, after checkpointing the step reached.

    Examples
    --------
    >>> import tempfile, pathlib, bptt
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "adding-run"
    >>> config = bptt.TrainConfig(task="adding", steps=20, seq_len=10, hidden=8, out=str(folder))
    >>> summary = bptt.train(config)
    >>> written = {p.name for p in folder.iterdir()}
    >>> summary["steps"], {"config.json", "checkpoint.npz", "metrics.jsonl", "summary.json"} <= written
    (20, True)
    >>> summary = bptt.train(bptt.TrainConfig(steps=30), resume=folder)    # ten more steps
    >>> summary["steps"]
    30
    """
    if resume is not None and overwrite:
        raise ValueError("overwrite=True starts a new run; it cannot be combined with resume")
    with stopping_on(stop_signals) as received:
        run, lock = _resume(resume, config) if resume is not None else _start(config, overwrite)
        with lock:
            if on_start is not None:
                on_start(cast(Path, run.dir))  # _start and _resume give the run its folder
            return _loop(run, callback, received)


def _resume(run_dir: str | os.PathLike[str], config: TrainConfig | None) -> tuple[TrainingRun, FolderLock]:
    """The run in `run_dir` restored from its checkpoint, its logs truncated, its folder locked.

    A folder holding config.json and no checkpoint, with nothing logged yet, is a new run stopped
    before its first checkpoint: it starts again from step 0."""
    folder = Path(run_dir)
    lock = lock_run_folder(folder)
    try:
        saved = load_config(folder)
        steps = saved.steps if config is None else config.steps
        steps_changed = steps != saved.steps
        if steps_changed:
            saved = dataclasses.replace(saved, steps=steps).validate()  # extend (or shorten) the run
        started = os.path.lexists(folder / CHECKPOINT) or not _never_started(folder)
        info = checkpoint_info(folder) if started else None  # its step and fingerprint, no arrays yet
        if info is not None and steps < info.step:
            raise SettingError("steps", steps, f"at least {info.step} (the updates {folder} has already done)")
        run = TrainingRun(saved, folder)  # the model config.json implies: what the checkpoint must fit
        if info is not None:
            if info.fingerprint is not None:
                changes = fingerprint_changes(info.fingerprint, run.fingerprint)
                if changes:
                    raise RunChangedError(folder, changes)
            run.restore(read_checkpoint(folder, run.checkpoint_layout()))
        truncate_logs(folder, run.step)  # the first write: everything above only reads
        if steps_changed:
            write_config(folder, saved)
        if not os.path.lexists(folder / CHECKPOINT):
            run.save()  # resumable from here on, as a new run is from its first checkpoint
    except BaseException:
        lock.release()
        raise
    return run, lock


def _never_started(folder: Path) -> bool:
    """Whether a folder without a checkpoint is a new run stopped before its first one: config.json,
    no summary, and no record in either log (start_run_folder writes them empty)."""
    return not os.path.lexists(folder / SUMMARY) and not any(True for name in LOGS for _ in iter_records(folder / name))


def _start(config: TrainConfig | None, overwrite: bool) -> tuple[TrainingRun, FolderLock]:
    """A new run with its folder made (or claimed), locked, holding config.json, logs and a checkpoint."""
    config = (config or TrainConfig()).validate()
    run = TrainingRun(config)  # builds the task: a run that cannot start makes no folder
    made_here = not config.out
    folder = Path(config.out) if config.out else new_run_dir(DEFAULT_PARENT, f"{folder_label(config.task)}-{folder_label(config.cell)}")
    lock = None
    try:
        lock = lock_run_folder(folder, create=True)
        claim_run_folder(folder, overwrite=overwrite)
        run.dir, run.config = folder, dataclasses.replace(config, out=str(folder))
        try:
            start_run_folder(folder, run.config)
            run.save()
        except BaseException:  # a run without a checkpoint can be neither resumed nor reused: remove it
            for name in RUN_FILES:
                with contextlib.suppress(OSError):
                    (folder / name).unlink(missing_ok=True)
            raise
    except BaseException:
        if lock is not None:  # a folder made here, a name no one else knows: take it away again
            release_run_folder(lock, remove_if_empty=made_here)
        elif made_here:
            with contextlib.suppress(OSError):
                (folder / LOCK).unlink(missing_ok=True)
                folder.rmdir()
        raise
    return run, lock


def _loop(run: TrainingRun, callback: Callable[[int, dict[str, Any]], None] | None, stop: list[int]) -> dict[str, Any]:
    config, cell, folder = run.config, run.cell, cast(Path, run.dir)  # _start and _resume give the run its folder
    eval_batch = run.cast(run.task.eval_batch(config.eval_size, config.eval_seed))
    started, base_elapsed = time.perf_counter(), run.elapsed
    reached_target = bool(
        config.target_loss is not None and run.last_eval and run.last_eval["loss"] <= config.target_loss
    )
    with Logs(folder) as logs:
        while run.step < config.steps and not reached_target and not stop:
            if run.walk is None:
                run.next_batch()
            batch, walk = cast(Batch, run.batch), cast(WindowWalk, run.walk)  # next_batch set both
            mask = walk.loss_mask()
            if not mask.any():  # nothing to learn from here: carry the state, no update
                start, _, end = walk.window
                _, tape = forward_window(cell, batch.xs[start:end], walk.state, lengths=run.window_lengths())
                run.advance(tape)
                continue
            record = _update(run, mask, logs, base_elapsed, started)
            run.elapsed = base_elapsed + time.perf_counter() - started
            record["elapsed"] = run.elapsed
            if run.step % config.eval_every == 0 or run.step == config.steps:
                run.last_eval = run.evaluate(eval_batch)
                record.update({f"eval_{k}": v for k, v in run.last_eval.items()})
                if config.target_loss is not None and run.last_eval["loss"] <= config.target_loss:
                    reached_target = True
            record = logs.write_metrics(record)
            if run.step % config.checkpoint_every == 0 or run.step == config.steps or reached_target:
                run.save()
            if callback is not None:
                callback(run.step, record)
    if stop:  # a signal: keep the step reached (mid-batch too) and stop before the summary
        run.elapsed = base_elapsed + time.perf_counter() - started
        run.save()
        raise TrainingInterrupted(stop[0], folder, run.step)
    if not run.last_eval:
        run.last_eval = run.evaluate(eval_batch)
    run.elapsed = base_elapsed + time.perf_counter() - started
    return write_summary(folder, _summary(run, reached_target))


def _update(run: TrainingRun, mask: NDArray[np.bool_], logs: Logs, base_elapsed: float, started: float
            ) -> dict[str, Any]:
    """One parameter update from the current window; returns its metrics record (no elapsed yet)."""
    batch, walk = cast(Batch, run.batch), cast(WindowWalk, run.walk)  # an update runs mid-batch, as _loop ensures
    config, (start, _, end) = run.config, walk.window
    record: dict[str, Any] = {"step": run.step + 1}
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            result = window_gradients(
                run.cell, run.readout, run.task.loss_fn, batch.xs[start:end], walk.state,
                batch.targets[start:end], mask, lengths=run.window_lengths(),
            )
        bad = [name for name, g in result.params.items() if not np.isfinite(g).all()]
        if bad:
            raise NonFiniteError(f"gradient of {bad[0]}", f"the gradient of {bad[0]} is not finite")
        clipping = clip_gradients(result.params, config.clip, config.clip_threshold)
        lr = _apply_update(run, result.params)
    except NonFiniteError as exc:
        if config.on_nonfinite == "stop":
            run.elapsed = base_elapsed + time.perf_counter() - started
            run.save()
            raise TrainingStopped(  # run.dir is the folder run.save() has just written to
                f"step {run.step + 1}: non-finite {exc.what} ({exc}); the weights of step {run.step} "
                f"are saved in {cast(Path, run.dir) / 'checkpoint.npz'}. Lower --lr or clip the gradients."
            ) from exc
        run.skipped += 1
        run.step += 1
        run.batch = run.walk = None  # the rest of this batch's windows would start from a bad state
        record.update(loss=None, grad_norm=None, clipped=False, lr=None, skipped=True)
    else:
        run.clipped += int(clipping.clipped)
        run.step += 1
        run.advance(result.tape)
        record.update(loss=result.loss, grad_norm=clipping.norm, clipped=clipping.clipped, lr=lr)
        if config.record_every and run.step % config.record_every == 0:
            logs.write_dh_norms(run.step, result.dh_norms)
    return record


def _apply_update(run: TrainingRun, grads: Mapping[str, Array]) -> float:
    """The optimizer's step on the live weights, undone (weights and optimizer state) if it leaves a
    weight non-finite: a finite gradient times a huge learning rate can overflow. Returns the lr."""
    weights = {name: value.copy() for name, value in run.params.items()}
    state = run.optimizer.state_arrays()
    with np.errstate(over="ignore", invalid="ignore"):
        lr = run.optimizer.step(run.params, grads)
    bad = [name for name, value in run.params.items() if not np.isfinite(value).all()]
    if bad:
        for name, value in run.params.items():
            value[...] = weights[name]
        run.optimizer.load_state_arrays(state)
        raise NonFiniteError("weights", f"the update at lr {lr:.3g} would make {bad[0]} non-finite; it was undone")
    return lr


def held_out(metrics: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The held-out results next to the baseline's.

    Parameters
    ----------
    metrics : dict
        `TrainingRun.evaluate`'s: ``loss`` and whatever the task measures (`Task.metrics`), e.g.
        ``accuracy`` or ``success``, or the names of a task of one's own.
    baseline : dict
        The task's baseline, with the same keys (a metric it lacks is None).

    Returns
    -------
    dict
        ``eval_loss`` and ``baseline_loss``, then ``eval_<name>`` and ``baseline_<name>`` for each
        other metric, in the task's order.
    """
    out = {"eval_loss": metrics["loss"], "baseline_loss": baseline["loss"]}
    for key in metrics:
        if key != "loss":
            out[f"eval_{key}"], out[f"baseline_{key}"] = metrics[key], baseline.get(key)
    return out


def _summary(run: TrainingRun, reached_target: bool) -> dict[str, Any]:
    config, baseline = run.config, run.task.baseline
    summary = {
        "task": config.task,
        "cell": config.cell,
        "hidden": config.hidden,
        "seq_len": run.task.seq_len,  # the data task's is its file's T
        "steps": run.step,
        **held_out(run.last_eval, baseline),
    }
    summary.update(
        clipped_steps=run.clipped,
        skipped_steps=run.skipped,
        reached_target=reached_target if config.target_loss is not None else None,
        wall_seconds=round(run.elapsed, 3),
    )
    return summary


def load_run(run_dir: str | os.PathLike[str]) -> TrainingRun:
    """A run folder's config, task and model, with the checkpoint's weights and state loaded.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    TrainingRun

    Raises
    ------
    ValueError
        If the folder, its config.json or its checkpoint is missing or unreadable, or they disagree.
    """
    config = load_config(run_dir)
    run = TrainingRun(config, Path(run_dir))
    run.restore(read_checkpoint(run_dir, run.checkpoint_layout()))
    return run


def evaluate(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The held-out metrics of a saved run (its checkpoint), next to the task's baseline.

    Parameters
    ----------
    run_dir : str or os.PathLike

    Returns
    -------
    dict
        task, cell, step, eval_loss, baseline_loss, and ``eval_``/``baseline_`` accuracy or success where the
        task has them; a non-finite loss is None.

    Raises
    ------
    ValueError
        As `load_run`.

    Examples
    --------
    >>> import tempfile, pathlib, bptt
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "parity-run"
    >>> _ = bptt.train(bptt.TrainConfig(task="parity", steps=10, seq_len=8, hidden=8, out=str(folder)))
    >>> metrics = bptt.evaluate(folder)
    >>> metrics["step"], sorted(k for k in metrics if k.endswith("accuracy"))
    (10, ['baseline_accuracy', 'eval_accuracy'])
    """
    run = load_run(run_dir)
    config = run.config
    metrics = run.evaluate(run.cast(run.task.eval_batch(config.eval_size, config.eval_seed)))
    return json_safe({"task": config.task, "cell": config.cell, "step": run.step, **held_out(metrics, run.task.baseline)})
