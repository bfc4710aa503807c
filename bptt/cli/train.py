"""`bptt train`, `bptt evaluate`, `bptt sample`: the training loop from the shell."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, cast

import click

from ..cells.registry import CELL_NAMING
from ..core.untrusted import UntrustedFileError
from ..runs.atomic import RunWriteError
from ..runs.files import CHECKPOINT
from ..runs.folder import RunExistsError, RunFolderError, RunLockedError
from ..training.clipping import CLIPS
from ..training.config import DTYPES, ON_NONFINITE, SettingError, TrainConfig
from ..training.init import INITS
from ..training.optim import OPTIMIZERS, SCHEDULES
from ..training.run_config import load_config
from ..training.sampling import sample
from ..training.task_contract import metric_names
from ..training.tasks import TASKS
from ..training.trainer import TrainingInterrupted, TrainingStopped, evaluate, train
from . import Refused, cli, progress_stream

DEFAULTS = TrainConfig()
POSITIVE = click.IntRange(min=1)


def _number(value: float | None, spec: str, missing: str) -> str:
    return missing if value is None else format(value, spec)


def _baseline_line(summary: dict[str, Any]) -> str:
    """The held-out results next to the baseline; a non-finite result (None in the summary) says so."""
    parts = [f"eval loss {_number(summary['eval_loss'], '.4g', 'not finite')} "
             f"(baseline {_number(summary['baseline_loss'], '.4g', 'n/a')})"]
    for key in metric_names(summary):
        parts.append(f"{key} {_number(summary[f'eval_{key}'], '.3f', 'not finite')} "
                     f"(baseline {_number(summary.get(f'baseline_{key}'), '.3f', 'n/a')})")
    return ", ".join(parts)


def _steps_line(summary: dict[str, Any]) -> str:
    line = f"{summary['task']} / {summary['cell']}: {summary['steps']} steps in {summary['wall_seconds']:.1f} s"
    if summary.get("skipped_steps"):
        line += f", {summary['skipped_steps']} of them skipped (non-finite)"
    return line


@cli.command(name="train")
@click.option("--task", metavar="NAME", default=DEFAULTS.task, show_default=True,
              help=f"Task to train on: {', '.join(TASKS)} (with --data FILE it is data), a name registered in "
                   "the entry-point group bptt.tasks, or MODULE:CLASS naming a bptt.Task subclass on the Python path.")
@click.option("--cell", metavar="NAME", default=DEFAULTS.cell, show_default=True, help=f"Recurrent cell: {CELL_NAMING}.")
@click.option("--hidden", type=int, default=DEFAULTS.hidden, show_default=True, help="Hidden size H.")
@click.option("--init", type=click.Choice(INITS), default=DEFAULTS.init, show_default=True,
              help="Recurrent weights W_hh: default (PyTorch's uniform), identity with zero biases "
                   "(Le et al.'s IRNN, for rnn-relu) or orthogonal (per gate block, from --seed).")
@click.option("--layers", type=int, default=DEFAULTS.layers, show_default=True,
              help="Stacked layers L (more than one, or --bidirectional: a bptt.Stack).")
@click.option("--bidirectional", is_flag=True, default=DEFAULTS.bidirectional,
              help="Both directions in every layer (full BPTT only: not with --k1).")
@click.option("--dropout", type=float, default=DEFAULTS.dropout, show_default=True,
              help="Dropout between stacked layers, a probability in [0, 1).")
@click.option("--proj-size", type=int, default=DEFAULTS.proj_size, show_default=True,
              help="LSTM projections: h of this size (0: none).")
@click.option("--seq-len", type=int, default=DEFAULTS.seq_len, show_default=True,
              help="Sequence length T (copy: blank length; reber: longest string).")
@click.option("--min-seq-len", type=int, default=None,
              help="adding: each sequence's length drawn in [this, --seq-len], markers inside it  [default: all --seq-len]")
@click.option("--steps", type=int, default=DEFAULTS.steps, show_default=True, help="Parameter updates.")
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True, help="Sequences per batch.")
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="(Peak) learning rate, > 0.")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULTS.optimizer, show_default=True, help="Update rule.")
@click.option("--momentum", type=float, default=DEFAULTS.momentum, show_default=True,
              help="Momentum in [0, 1) for --optimizer momentum / nesterov.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default=DEFAULTS.schedule, show_default=True,
              help="Learning-rate schedule (cosine decays to 0 at --steps).")
@click.option("--lr-step-size", type=int, default=DEFAULTS.lr_step_size, show_default=True,
              help="Step schedule: decay every this many updates.")
@click.option("--lr-gamma", type=float, default=DEFAULTS.lr_gamma, show_default=True,
              help="Step schedule: decay factor in (0, 1].")
@click.option("--clip", type=click.Choice(CLIPS), default=DEFAULTS.clip, show_default=True,
              help="Gradient clipping: global norm, element-wise value, or none.")
@click.option("--clip-threshold", type=float, default=DEFAULTS.clip_threshold, show_default=True,
              help="Max global norm (or the largest absolute element with --clip value); must be > 0.")
@click.option("--k1", type=int, default=None, help="TBPTT: steps between updates  [default: the whole sequence]")
@click.option("--k2", type=int, default=None, help="TBPTT: steps backpropagated per update, >= k1  [default: k1]")
@click.option("--dtype", type=click.Choice(DTYPES), default=DEFAULTS.dtype, show_default=True,
              help="Floating-point type of weights and activations.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed of the weights and training data.")
@click.option("--eval-every", type=int, default=DEFAULTS.eval_every, show_default=True,
              help="Evaluate on the held-out set every this many updates.")
@click.option("--eval-size", type=int, default=DEFAULTS.eval_size, show_default=True, help="Held-out sequences.")
@click.option("--eval-seed", type=int, default=DEFAULTS.eval_seed, show_default=True,
              help="Seed of the held-out set (--data: which sequences are held out).")
@click.option("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every, show_default=True,
              help="Write checkpoint.npz every this many updates.")
@click.option("--record-every", type=int, default=DEFAULTS.record_every, show_default=True,
              help="Log per-timestep gradient norms (dh_norms.jsonl) every this many updates; 0: never.")
@click.option("--on-nonfinite", type=click.Choice(ON_NONFINITE), default=DEFAULTS.on_nonfinite, show_default=True,
              help="On a NaN/inf loss or gradient: stop (checkpointing the last good weights) or skip the step.")
@click.option("--target-loss", type=float, default=None, help="Stop early once the held-out loss is at or below this.")
@click.option("--text", type=click.Path(dir_okay=False), default=None, help="Text file for --task chars.")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="Your own sequences: an .npz file of inputs (S, T, D) and targets (see the guide's "
                   "'Your own data'); selects the data task.")
@click.option("--eval-fraction", type=float, default=DEFAULTS.eval_fraction, show_default=True,
              help="--data: the share of its sequences held out for evaluation, drawn from --eval-seed.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run folder: new, empty, or holding no run (see --overwrite)  "
                   "[default: a new runs/<task>-<cell>-<time>-<suffix>]")
@click.option("--resume", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this folder with its saved settings (--steps may extend it).")
@click.option("--overwrite", is_flag=True,
              help="With --out: delete the run already in that folder (its config, logs, summary and checkpoint) "
                   "and start a new one there.")
@click.option("--quiet", is_flag=True, help="No progress bar (there is none anyway when stderr is not a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object (summary.json plus run_dir).")
def train_command(resume: str | None, overwrite: bool, quiet: bool, as_json: bool, **options: Any) -> None:
    """Train a recurrent cell on a sequence task (toy, text, your own arrays or class); write a run folder.

    The run folder holds config.json, metrics.jsonl (loss, gradient norm and clip events per
    update), dh_norms.jsonl (||dL/dh_t|| per timestep, every --record-every updates),
    checkpoint.npz and, at the end, summary.json. A run folder has one writer; an existing run is
    continued with --resume or replaced only with --overwrite.

    Prints the steps done, the held-out result next to the task's baseline and the run folder on
    stdout (one JSON object with --json); progress and warnings go to stderr. Exit status 0 on
    success, 1 when training stops on a non-finite value or a file cannot be written (the run
    stays resumable), 2 for a bad option or a refused run folder. Ctrl-C (SIGINT) or SIGTERM (what
    schedulers and `timeout` send) stops after the update under way, with a checkpoint of that step:
    exit status 130 or 143; a second one stops at once. A run is resumable from the moment its
    folder exists.

    \b
    Examples:
      bptt train                                        # gru on the adding task
      bptt train --task parity --cell lstm --steps 300 --out runs/parity
      bptt train --data sequences.npz --steps 2000      # your own arrays, 10% held out
      bptt train --task mytasks:Echo                    # a bptt.Task subclass in mytasks.py
      bptt train --resume runs/parity --steps 600       # continue to 600 updates
      bptt train --layers 2 --bidirectional --json | jq .eval_loss
    """
    ctx = click.get_current_context()
    if options["data"] is not None and ctx.get_parameter_source("task") != click.core.ParameterSource.COMMANDLINE:
        options["task"] = "data"  # --data alone selects the data task; --task X --data F is refused unless X is data
    config: TrainConfig | None  # None: resume with the run's own steps
    config = TrainConfig(**options)
    if resume is not None:
        given = [name for name in options if name != "steps"
                 and ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise click.UsageError(f"--resume continues with the run's saved config.json; it cannot change {flags} "
                                   "(only --steps)")
        if overwrite:
            raise click.UsageError("--overwrite starts a new run in --out DIR; it cannot be combined with --resume")
    elif overwrite and config.out is None:
        raise click.UsageError("--overwrite needs --out DIR (a default run folder is always a new one)")
    try:
        config.validate()
    except ValueError as exc:
        raise _usage_error(exc) from exc
    if resume is not None:
        steps_given = ctx.get_parameter_source("steps") == click.core.ParameterSource.COMMANDLINE
        config = config if steps_given else None
    started: list[Path]  # the run folder, once train has it
    shown, started = [0], []
    terminate = signal.signal(signal.SIGTERM, _terminated)  # until train takes over: stop like Ctrl-C
    try:
        # config is None only with --resume: the run's config.json says how many steps
        total = config.steps if config is not None else load_config(cast(str, resume)).steps
        with click.progressbar(length=total, label="training", show_pos=True, file=progress_stream(quiet),
                               item_show_func=_loss_text) as bar:
            def progress(step: int, record: dict[str, Any]) -> None:
                bar.update(step - shown[0], record)
                shown[0] = step

            summary = train(config, resume=resume, callback=progress, overwrite=overwrite, on_start=started.append,
                            stop_signals=(signal.SIGINT, signal.SIGTERM))
    except TrainingInterrupted as exc:
        run_dir = exc.run_dir or (started[0] if started else None)
        if exc.step is not None:
            where = f"; step {exc.step} is saved"
        else:
            where = "; the run is saved up to its last checkpoint" if run_dir else ""
        hint = f", continue with:  bptt train --resume {run_dir}" if run_dir else ""
        click.echo(f"\ninterrupted by {signal.Signals(exc.signum).name}{where}{hint}", err=True)
        ctx.exit(128 + exc.signum)
    except RunExistsError as exc:
        raise Refused(f"{exc.path} already holds a run ({', '.join(exc.files)}). Continue it with  "
                      f"bptt train --resume {exc.path}, choose another --out folder, or add --overwrite to "
                      "delete that run and start a new one there.") from exc
    except RunLockedError as exc:
        holder = "another process" if exc.pid is None else f"process {exc.pid}"
        raise Refused(f"{exc.path} is in use: {holder} is training in it (one writer per run folder). "
                      "Wait for it to end, or use another folder.") from exc
    except (RunFolderError, UntrustedFileError) as exc:  # resume refused: config.json or text changed; a crafted file
        raise Refused(str(exc)) from exc
    except ValueError as exc:  # bad settings, --steps below the steps done, missing text file, unreadable checkpoint
        if resume is not None and not isinstance(exc, SettingError):
            raise Refused(str(exc)) from exc  # the folder's files, not an option, are wrong
        raise _usage_error(exc) from exc
    except RunWriteError as exc:
        message = str(exc)
        if started and (started[0] / CHECKPOINT).exists():
            message += (f"\nthe run is saved up to its last checkpoint; once the folder is writable again, "
                        f"continue it with:  bptt train --resume {started[0]}")
        raise click.ClickException(message) from exc
    except TrainingStopped as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:  # before train took the signals over
        hint = f"; continue from the last checkpoint with:  bptt train --resume {started[0]}" if started else ""
        click.echo(f"\ninterrupted{hint}", err=True)
        ctx.exit(130)
    finally:
        signal.signal(signal.SIGTERM, terminate)
    if as_json:
        click.echo(json.dumps({**summary, "run_dir": str(started[0])}))
    else:
        click.echo(_steps_line(summary))
        click.echo(_baseline_line(summary))
        click.echo(f"run folder: {started[0]}")
    if summary.get("skipped_steps"):
        click.echo(f"warning: {summary['skipped_steps']} of {summary['steps']} steps were skipped (non-finite loss, "
                   "gradient or updated weights)" + ("; the final held-out loss is not finite"
                                                     if summary["eval_loss"] is None else ""), err=True)


def _terminated(signum: int, frame: object) -> None:
    raise TrainingInterrupted(signum)


def _usage_error(exc: ValueError) -> click.UsageError:
    """A bad setting as a usage error on its option (exit code 2); other errors as they are."""
    ctx = click.get_current_context()
    if not isinstance(exc, SettingError):  # only a SettingError names a setting
        return click.UsageError(str(exc))
    param = next((p for p in ctx.command.params if p.name == exc.setting), None)
    if param is None:
        return click.UsageError(str(exc))
    return click.BadParameter(exc.problem, ctx=ctx, param=param)


def _loss_text(record: dict[str, Any] | None) -> str | None:
    if not record or record.get("loss") is None:
        return None
    text = f"loss {record['loss']:.4f}"
    if record.get("eval_loss") is not None:
        text += f", eval {record['eval_loss']:.4f}"
    return text


@cli.command(name="evaluate")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as one JSON object.")
def evaluate_command(run_dir: str, as_json: bool) -> None:
    """Report the held-out metrics of a saved run, next to the task's baseline.

    Reads RUN_DIR's checkpoint and evaluates it on the task's held-out batch. Prints one
    "key: value" line per metric (task, cell, step, eval_loss, baseline_loss and accuracy or
    success where the task has them), or one JSON object with --json; a non-finite loss is null.
    Exit status 2 when RUN_DIR holds no readable run.

    \b
    Examples:
      bptt evaluate runs/parity
      bptt evaluate runs/parity --json | jq .eval_accuracy
    """
    try:
        result = evaluate(run_dir)
    except ValueError as exc:  # no run there, or files that are not what bptt train writes
        raise Refused(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result))
        return
    for key, value in result.items():
        click.echo(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")


@cli.command(name="sample")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--length", type=POSITIVE, default=200, show_default=True, help="Characters to generate.")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Softmax temperature: below 1 is more conservative.")
@click.option("--prime", default="", help="Text to read before generating (printed too).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler.")
def sample_command(run_dir: str, length: int, temperature: float, prime: str, seed: int) -> None:
    """Generate text from a run trained on the chars task.

    Feeds --prime through the trained cell, then draws --length characters one at a time from the
    softmax at --temperature, each fed back as the next input. Prints the prime and the generated
    text on stdout. Exit status 2 when RUN_DIR holds no chars run.

    \b
    Examples:
      bptt train --task chars --text book.txt --out runs/book
      bptt sample runs/book --prime "The " --length 400 --temperature 0.8
    """
    try:
        text = sample(run_dir, length, temperature=temperature, prime=prime, seed=seed)
    except ValueError as exc:  # not a chars run, or files that are not what bptt train writes
        raise Refused(str(exc)) from exc
    click.echo(text)
