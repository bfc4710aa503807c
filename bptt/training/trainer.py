"""The training loop: a cell and a linear readout on a toy task, trained with TBPTT(k1, k2),
gradient clipping and an optimizer, writing a run folder that other commands read.

Run folder:
    config.json      every setting (a TrainConfig)
    metrics.jsonl    one JSON object per update: step, loss, grad_norm (before clipping), clipped,
                     lr, elapsed (seconds); eval_* keys on evaluation steps; skipped on skipped steps
    dh_norms.jsonl   every `record_every` updates: {"step", "dh_norms": norm of dL/dh_t per step of
                     that update's window}
    summary.json     the final held-out metrics next to the task's baseline
    checkpoint.npz   weights, optimizer state, data RNG state, position in the batch, step

A step is one parameter update. With k1 < T one batch of sequences gives several updates; windows
without any loss (e.g. the adding task before its last step) only carry the state forward.
Resuming restores the checkpoint, drops log lines written after it and replays, so an interrupted
and resumed run ends with the same weights and logs (elapsed times aside) as one that never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..cells.registry import make_cell
from .clipping import clip_gradients
from .config import TrainConfig
from .init import initialise
from .optim import Schedule, make_optimizer
from ..core.readout import Linear
from .tasks import Batch, make_task
from ..core.truncation import TBPTT, NonFiniteError, WindowWalk, model_params, window_gradients
from ..core.unroll import forward


class TrainingStopped(RuntimeError):
    """Training stopped on a non-finite loss or gradient; the last good weights are checkpointed."""


# ---------------------------------------------------------------------- run-folder I/O
def _atomic_write(path: Path, write: Callable) -> None:
    """Write through a temporary file in the same folder, then rename: never a truncated file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    _atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def read_jsonl(path: Path) -> list[dict]:
    """The complete JSON lines of a log (a partial last line, from a kill mid-write, is dropped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _truncate_log(path: Path, last_step: int) -> None:
    """Keep only the records of steps <= last_step (those a resumed run will not replay)."""
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= last_step]
    _atomic_write(path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept).encode()))


def load_config(run_dir) -> TrainConfig:
    path = Path(run_dir) / "config.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path} has unknown settings {sorted(unknown)}")
    return TrainConfig(**raw).validate()


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(value) else None


# ---------------------------------------------------------------------- the run
class _Run:
    """Everything a run holds between updates; `save` / `restore` round-trip it exactly."""

    def __init__(self, config: TrainConfig, run_dir: Path):
        self.config, self.dir = config, run_dir
        self.dtype = np.dtype(config.dtype)
        self.task = make_task(config.task, config.seq_len, config.text)
        # a fourth child leaves the first three (and so every run without an init) unchanged
        cell_seed, readout_seed, data_seed, init_seed = np.random.SeedSequence(config.seed).spawn(4)
        self.cell = make_cell(config.cell, self.task.input_size, config.hidden, seed=cell_seed, dtype=self.dtype)
        # deterministic, and `restore` then overwrites every parameter: a resumed run keeps its weights
        initialise(self.cell, config.init, np.random.default_rng(init_seed))
        self.readout = Linear(config.hidden, self.task.output_size, seed=readout_seed, dtype=self.dtype)
        self.params = model_params(self.cell, self.readout)
        schedule = Schedule(config.schedule, config.lr, config.steps, 0.0, config.lr_step_size, config.lr_gamma)
        self.optimizer = make_optimizer(config.optimizer, schedule, momentum=config.momentum)
        self.rng = np.random.default_rng(data_seed)
        self.step = 0
        self.batch: Batch | None = None
        self.batch_rng_state = None  # the data RNG's state before the current batch was drawn
        self.walk: WindowWalk | None = None  # the current batch's windows: the next one and its start state
        self.elapsed = 0.0
        self.skipped = 0
        self.clipped = 0
        self.last_eval: dict = {}

    # --- model and data
    def cast(self, batch: Batch) -> Batch:
        targets = batch.targets.astype(self.dtype) if batch.targets.dtype.kind == "f" else batch.targets
        return batch._replace(xs=batch.xs.astype(self.dtype), targets=targets)

    def next_batch(self, window: int = 0, carry=None) -> None:
        """Draw a batch and start its walk (at `window`, from `carry`, when restoring a checkpoint)."""
        self.batch_rng_state = self.rng.bit_generator.state
        self.batch = self.cast(self.task.sample(self.rng, self.config.batch_size))
        plan = TBPTT(*self.config.truncation(self.batch.xs.shape[0]))
        self.walk = WindowWalk(plan, self.batch.mask, carry, window)

    def advance(self, tape) -> None:
        """Carry the state to the next window's start, or drop the finished batch."""
        self.walk.advance(tape)
        if self.walk.done:
            self.batch = self.walk = None

    def evaluate(self, batch: Batch) -> dict:
        """Held-out loss (mean over every masked entry) and task metrics, full forward, no truncation."""
        with np.errstate(over="ignore", invalid="ignore"):
            hs, _ = forward(self.cell, batch.xs)
            if not np.isfinite(hs).all():
                return {"loss": float("nan")}
            outputs, _ = self.readout.forward(hs)
            loss, _ = self.task.loss_fn(outputs[batch.mask], batch.targets[batch.mask])
        return {"loss": float(loss), **self.task.metrics(outputs, batch)}

    # --- checkpoint
    def save(self, path: Path | None = None) -> None:
        arrays = {f"param/{k}": v for k, v in self.params.items()}
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.state_arrays().items()})
        arrays["step"] = np.array(self.step)
        arrays["window"] = np.array(self.walk.index if self.walk is not None else -1)
        arrays["elapsed"] = np.array(self.elapsed)
        arrays["skipped"] = np.array(self.skipped)
        arrays["clipped"] = np.array(self.clipped)
        arrays["rng_state"] = np.array(json.dumps(
            self.batch_rng_state if self.walk is not None else self.rng.bit_generator.state
        ))
        if self.walk is not None and self.walk.state is not None:
            for i, part in enumerate(self.cell.unpack_state(self.walk.state)):
                arrays[f"carry/{i}"] = part
        arrays["last_eval"] = np.array(json.dumps(self.last_eval))
        if hasattr(self.task, "vocab"):
            arrays["vocab"] = np.array(self.task.vocab)
        _atomic_write(path or self.dir / "checkpoint.npz", lambda f: np.savez(f, **arrays))

    def restore(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # a missing, truncated or foreign file
            raise ValueError(f"cannot read checkpoint {path}: {exc}") from exc
        try:
            for name, value in self.params.items():
                saved = arrays[f"param/{name}"]
                if saved.shape != value.shape:
                    raise ValueError(f"parameter {name} has shape {saved.shape}, config expects {value.shape}")
                value[...] = saved
            self.optimizer.load_state_arrays(
                {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
            )
            self.step, window = int(arrays["step"]), int(arrays["window"])
            self.elapsed, self.skipped = float(arrays["elapsed"]), int(arrays["skipped"])
            self.clipped = int(arrays["clipped"])
            self.last_eval = json.loads(str(arrays["last_eval"]))
            self.rng.bit_generator.state = json.loads(str(arrays["rng_state"]))
            carry_keys = sorted(k for k in arrays if k.startswith("carry/"))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"checkpoint {path} does not match its config.json: {exc}") from exc
        if window >= 0:  # mid-batch: draw the same batch again, continue at the saved window
            carry = self.cell.pack_state(tuple(arrays[k] for k in carry_keys)) if carry_keys else None
            self.next_batch(window, carry)


def default_run_dir(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.task}-{config.cell}-{stamp}"


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | os.PathLike | None = None,
    callback: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train as `config` says (or continue the run folder `resume`); return the summary dict.

    With `resume`, the run's saved config.json is used; of `config` only `steps` is read (to extend
    or shorten the run).

    callback(step, record) is called after every update with that step's metrics record (the line
    written to metrics.jsonl). An exception raised there stops the run; the last checkpoint stays,
    and `train(resume=run_dir)` continues from it.
    Raises ValueError on bad settings and TrainingStopped on a non-finite loss or gradient (with
    on_nonfinite="stop"), after checkpointing the last good weights.
    """
    if resume is not None:
        run_dir = Path(resume)
        saved = load_config(run_dir)
        if config is not None and config.steps != saved.steps:
            saved = dataclasses.replace(saved, steps=config.steps).validate()  # extend (or shorten) the run
            write_json(run_dir / "config.json", dataclasses.asdict(saved))
        config = saved
        run = _Run(config, run_dir)
        run.restore(run_dir / "checkpoint.npz")
        for log in ("metrics.jsonl", "dh_norms.jsonl"):
            _truncate_log(run_dir / log, run.step)
    else:
        config = (config or TrainConfig()).validate()
        run_dir = Path(config.out) if config.out else default_run_dir(config)
        config = dataclasses.replace(config, out=str(run_dir))
        run_dir.mkdir(parents=True, exist_ok=True)
        run = _Run(config, run_dir)
        write_json(run_dir / "config.json", dataclasses.asdict(config))
        for log in ("metrics.jsonl", "dh_norms.jsonl"):
            (run_dir / log).write_text("")
        run.save()
    return _loop(run, callback)


def _loop(run: _Run, callback) -> dict:
    config, cell = run.config, run.cell
    eval_batch = run.cast(run.task.eval_batch(config.eval_size, config.eval_seed))
    started, base_elapsed = time.perf_counter(), run.elapsed
    reached_target = bool(
        config.target_loss is not None and run.last_eval and run.last_eval["loss"] <= config.target_loss
    )
    with open(run.dir / "metrics.jsonl", "a") as metrics_log, open(run.dir / "dh_norms.jsonl", "a") as dh_log:
        while run.step < config.steps and not reached_target:
            if run.walk is None:
                run.next_batch()
            mask = run.walk.loss_mask()
            if not mask.any():  # nothing to learn from here: carry the state, no update
                start, _, end = run.walk.window
                _, tape = forward(cell, run.batch.xs[start:end], run.walk.state)
                run.advance(tape)
                continue
            record = _update(run, mask, dh_log, base_elapsed, started)
            run.elapsed = base_elapsed + time.perf_counter() - started
            record["elapsed"] = run.elapsed
            if run.step % config.eval_every == 0 or run.step == config.steps:
                run.last_eval = run.evaluate(eval_batch)
                record.update({f"eval_{k}": _finite_or_none(v) for k, v in run.last_eval.items()})
                if config.target_loss is not None and run.last_eval["loss"] <= config.target_loss:
                    reached_target = True
            metrics_log.write(json.dumps(record) + "\n")
            metrics_log.flush()
            if run.step % config.checkpoint_every == 0 or run.step == config.steps or reached_target:
                run.save()
            if callback is not None:
                callback(run.step, record)
    if not run.last_eval:
        run.last_eval = run.evaluate(eval_batch)
    run.elapsed = base_elapsed + time.perf_counter() - started
    summary = _summary(run, reached_target)
    write_json(run.dir / "summary.json", summary)
    return summary


def _update(run: _Run, mask, dh_log, base_elapsed: float, started: float) -> dict:
    """One parameter update from the current window; returns its metrics record (no elapsed yet)."""
    config, batch, (start, _, end) = run.config, run.batch, run.walk.window
    record = {"step": run.step + 1}
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            result = window_gradients(
                run.cell, run.readout, run.task.loss_fn, batch.xs[start:end], run.walk.state,
                batch.targets[start:end], mask,
            )
        bad = [name for name, g in result.params.items() if not np.isfinite(g).all()]
        if bad:
            raise NonFiniteError(f"gradient of {bad[0]}", f"the gradient of {bad[0]} is not finite")
    except NonFiniteError as exc:
        if config.on_nonfinite == "stop":
            run.elapsed = base_elapsed + time.perf_counter() - started
            run.save()
            raise TrainingStopped(
                f"step {run.step + 1}: non-finite {exc.what} ({exc}); the weights of step {run.step} "
                f"are saved in {run.dir / 'checkpoint.npz'}. Lower --lr or clip the gradients."
            ) from exc
        run.skipped += 1
        run.step += 1
        run.batch = run.walk = None  # the rest of this batch's windows would start from a bad state
        record.update(loss=None, grad_norm=None, clipped=False, lr=None, skipped=True)
    else:
        clipping = clip_gradients(result.params, config.clip, config.clip_threshold)
        run.clipped += int(clipping.clipped)
        lr = run.optimizer.step(run.params, result.params)
        run.step += 1
        run.advance(result.tape)
        record.update(loss=result.loss, grad_norm=clipping.norm, clipped=clipping.clipped, lr=lr)
        if config.record_every and run.step % config.record_every == 0:
            dh_log.write(json.dumps({"step": run.step, "dh_norms": result.dh_norms.tolist()}) + "\n")
            dh_log.flush()
    return record


def _summary(run: _Run, reached_target: bool) -> dict:
    config, baseline = run.config, run.task.baseline
    summary = {
        "task": config.task,
        "cell": config.cell,
        "hidden": config.hidden,
        "seq_len": config.seq_len,
        "steps": run.step,
        "eval_loss": _finite_or_none(run.last_eval["loss"]),
        "baseline_loss": baseline["loss"],
    }
    for key in ("accuracy", "success"):
        if key in run.last_eval:
            summary[f"eval_{key}"] = run.last_eval[key]
            summary[f"baseline_{key}"] = baseline.get(key)
    summary.update(
        clipped_steps=run.clipped,
        skipped_steps=run.skipped,
        reached_target=reached_target if config.target_loss is not None else None,
        wall_seconds=round(run.elapsed, 3),
    )
    return summary


def load_run(run_dir) -> _Run:
    """A run folder's config, task and model with the checkpoint's weights loaded."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {str(run_dir)!r} does not exist")
    run = _Run(load_config(run_dir), run_dir)
    run.restore(run_dir / "checkpoint.npz")
    return run


def evaluate(run_dir) -> dict:
    """The held-out metrics of a saved run (its checkpoint), next to the task's baseline."""
    run = load_run(run_dir)
    config = run.config
    metrics = run.evaluate(run.cast(run.task.eval_batch(config.eval_size, config.eval_seed)))
    baseline = run.task.baseline
    out = {"task": config.task, "cell": config.cell, "step": run.step,
           "eval_loss": _finite_or_none(metrics["loss"]), "baseline_loss": baseline["loss"]}
    for key in ("accuracy", "success"):
        if key in metrics:
            out[f"eval_{key}"] = metrics[key]
            out[f"baseline_{key}"] = baseline.get(key)
    return out
