"""`bptt sweep SPEC`: a grid of training runs on every local core, or on a Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from ..core.untrusted import UntrustedFileError
from ..sweep.run import SweepProgress
from . import Refused, cli

if TYPE_CHECKING:
    from ..sweep.record import RunOutcome
    from ..sweep.run import SweepResult

_LISTED_FAILURES = 20  # failed runs named at the end; results.csv has them all


def _loss(value: float | None) -> str:
    return "n/a" if value is None else format(value, ".4g")


def run_line(run: RunOutcome) -> str:
    """One line for a finished run: its status, name and result."""
    if run.status == "failed":
        return f"failed  {run.name}: {run.error}"
    s = run.summary or {}
    text = f"done    {run.name}: eval loss {_loss(s.get('eval_loss'))} (baseline {_loss(s.get('baseline_loss'))})"
    for key, value in s.items():
        if key.startswith("eval_") and key != "eval_loss" and value is not None:
            text += f", {key[len('eval_'):]} {value:.1%}"
    if s.get("reached_target"):
        text += ", reached target"
    text += f", {s.get('steps')} steps, {s.get('wall_seconds') or 0:.1f} s"
    return text + (f" on {';'.join(run.workers)}" if run.workers else "")


class _Progress(SweepProgress):
    """The progress bar on stderr (done / failed / running, ETA) and a line per finished run."""

    def __init__(self, quiet: bool, stream: TextIO | None = None):
        self.quiet = quiet
        self.bar: Any = None
        self.counts: dict = {}
        self.stderr = stream or sys.stderr

    def note(self, message: str) -> None:
        click.echo(message, file=self.stderr)

    def planned(self, result: SweepResult, to_run: int) -> None:
        finished = result.total - to_run
        if not self.quiet:
            click.echo(f"{result.total} runs in {result.out}: {to_run} to run"
                       + (f", {finished} finished before" if finished else ""), file=self.stderr)
        if to_run and not self.quiet and self.stderr.isatty():  # no bar in a pipe or a log
            self.bar = click.progressbar(length=to_run, label="sweep", file=self.stderr, show_eta=True,
                                         show_pos=True, item_show_func=self._text)
            self.bar.__enter__()

    def _text(self, _item: object = None) -> str | None:
        c = self.counts
        return f"done {c['done']}, failed {c['failed']}, running {c['running']}" if c else None

    def _clear(self) -> None:
        if self.bar is not None and self.stderr.isatty():
            self.stderr.write("\r\033[K")

    def finished(self, run: RunOutcome) -> None:
        if self.quiet and run.status != "failed":  # a failure is shown even then, as it happens
            return
        self._clear()
        click.echo(run_line(run), file=self.stderr)
        if self.bar is not None:
            self.bar.update(1)

    def lost(self, name: str, message: str) -> None:
        if not self.quiet:
            self._clear()
            click.echo(f"lost    {name}: {message}; it runs again from its last checkpoint", file=self.stderr)

    def update(self, counts: dict) -> None:
        if counts != self.counts:
            self.counts = counts
            if self.bar is not None:
                self.bar.current_item = None
                self.bar.render_progress()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _standing(result: SweepResult) -> str:
    return (f"done {result.count('done')}, failed {result.count('failed')}, to go {result.count('pending')} "
            f"of {result.total}")


def _list_failures(result: SweepResult) -> None:
    failures = result.failures()
    if not failures:
        return
    click.echo(f"failed runs ({len(failures)}):", err=True)
    for outcome in failures[:_LISTED_FAILURES]:
        click.echo(f"  {outcome.name}: {outcome.error}", err=True)
    if len(failures) > _LISTED_FAILURES:
        click.echo(f"  and {len(failures) - _LISTED_FAILURES} more: see {result.out / 'results.csv'}", err=True)
    click.echo("The next sweep into this folder runs them again (from their last checkpoint, if they have one).",
               err=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


HELP = """Train every run of a sweep SPEC (a TOML file) into one folder: on every local core by
default, or on a Dask cluster with --scheduler.

\b
    # experiments/sweeps/long_dependencies.toml
    [base]                  # any TrainConfig field, by its name (the settings of bptt train)
    task = "adding"
    steps = 2000
    target_loss = 0.01
    [grid]                  # every combination is a run
    cell = ["rnn", "lstm", "gru"]
    seq_len = [25, 50, 100, 200]
    seed = [0, 1, 2, 3, 4]

\b
Rows with settings of their own are [[runs]] tables, each crossed with the grid:
    [[runs]]
    label = "parity"        # optional; names the group in folder names
    task = "parity"
    hidden = 16

Values have the setting's type ("none" gives None to k1, k2, target_loss); a cell may be
MODULE:CLASS, importable here and on every worker; a key goes in one place only; `out` is not a key
(each run goes to DIR/runs/<name>, e.g. cell=lstm,seq_len=100,seed=3). Every run's settings are
checked before anything starts: a spec with an invalid run (alone or only in combination, e.g.
k2 < k1) is refused, naming the run and the setting.

\b
DIR/runs/<name>/   an ordinary run folder per grid point (bptt evaluate, bptt plot)
DIR/record.jsonl   a line per run as it finishes: status, error, workers
DIR/results.csv    a row per run: swept keys, run, status, error, eval_loss, baseline_loss,
                   accuracy or success, reached_target, steps, wall_seconds, worker
DIR/summary.md     the runs grouped over seeds, with the PNG files in DIR/figures
(results.csv and summary.md are written when the sweep ends or is stopped)

Run the same command again to continue: finished runs are not touched, interrupted ones resume
from their checkpoints (ending bitwise as one uninterrupted run), missing ones start. A run that
fails (a non-finite loss, an error on its worker) is marked failed and the others go on; the next
sweep runs it again, from its last checkpoint if it has one.

\b
Exit codes: 0 all done; 1 some runs failed, or the sweep stopped (a lost scheduler,
no workers, a file it cannot write: the message says which); 2 bad input; 130 Ctrl-C.

With --scheduler every run is a task on that Dask cluster (pip install 'bptt[dask]'; the workers
need bptt, and the module of a MODULE:CLASS cell, importable). Workers train in temporary folders
and send each run's files back every --sync-seconds; no shared filesystem is assumed, and a run
whose worker dies runs again elsewhere from the last checkpoint that came back. Dask moves work with
pickle and a tcp:// scheduler has no authentication: use tls:// with --tls-ca-file, --tls-cert and
--tls-key, or a private network.
"""


@cli.command(name="sweep", help=HELP)
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Folder of the sweep; a sweep run into it before is continued  [default: runs/<SPEC's name>]")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes, each running one run at a time with single-threaded BLAS (unless "
                   "OPENBLAS/OMP/MKL_NUM_THREADS is set); at most one per core and one per run  "
                   "[default: one per core]")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="A Dask scheduler, e.g. tls://scheduler-host:8786 or tcp://127.0.0.1:8786: run every run as a "
                   "task on its cluster.")
@click.option("--tls-ca-file", type=click.Path(dir_okay=False), default=None, metavar="PEM",
              help="tls:// scheduler: the cluster's CA certificate  [default: Dask's config "
                   "distributed.comm.tls.ca-file]")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None, metavar="PEM",
              help="tls:// scheduler: this client's certificate, signed by that CA  [default: Dask's config "
                   "distributed.comm.tls.client.cert]")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, metavar="PEM",
              help="tls:// scheduler: the certificate's private key, unless --tls-cert holds it  [default: Dask's "
                   "config distributed.comm.tls.client.key]")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for the scheduler to answer; the sweep also ends when the scheduler stops "
                   "answering, or the cluster has no worker, for this long.")
@click.option("--sync-seconds", type=click.FloatRange(min=0), default=20.0, show_default=True,
              help="A worker sends a run's files back at its first checkpoint after this many seconds: the most "
                   "training a lost worker costs (plus one --checkpoint-every interval).")
@click.option("--quiet", is_flag=True, help="No progress bar and no line per finished run (failures are shown).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the outcome as one JSON object: runs, done, failed, out, results, summary.")
def sweep_command(spec: str, out: str | None, workers: int | None, scheduler: str | None, tls_ca_file: str | None,
                  tls_cert: str | None, tls_key: str | None, connect_timeout: float, sync_seconds: float, quiet: bool,
                  as_json: bool) -> None:
    from ..runs.atomic import RunWriteError
    from ..sweep.engines import SchedulerError, TLSFiles, address_warning
    from ..sweep.run import (
        SweepAborted, SweepInputError, SweepInterrupted, SweepLockedError, SweepMismatchError, run_sweep,
    )
    from ..sweep.spec import SpecError, load_spec

    ctx = click.get_current_context()
    if workers is not None and scheduler is not None:
        raise click.UsageError("--workers sets local processes; with --scheduler the cluster's workers run the sweep")
    tls = TLSFiles(tls_ca_file, tls_cert, tls_key)
    if scheduler is None and tls != TLSFiles():
        raise click.UsageError("--tls-ca-file, --tls-cert and --tls-key are for --scheduler tls://...")
    try:
        parsed = load_spec(spec)  # every run's settings checked: a large grid takes seconds
        warning = address_warning(scheduler) if scheduler is not None else None
    except (SpecError, SchedulerError) as exc:
        raise Refused(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("\ninterrupted before any run started", err=True)
        ctx.exit(130)
    if warning:
        click.echo(warning, err=True)
    out = out or os.path.join("runs", Path(spec).stem)
    progress = _Progress(quiet)
    terminate = signal.signal(signal.SIGTERM, _interrupt)  # a batch system's stop: save like Ctrl-C
    hint = "Run the same command again to go on."
    try:
        result = run_sweep(parsed, out, workers=workers, scheduler=scheduler, tls=tls, connect_timeout=connect_timeout,
                           sync_seconds=sync_seconds, progress=progress)
    except (SweepInputError, SweepLockedError, SweepMismatchError, SchedulerError, UntrustedFileError) as exc:
        progress.close()
        raise Refused(str(exc)) from exc
    except RunWriteError as exc:  # before any run started
        progress.close()
        raise click.ClickException(str(exc)) from exc
    except SweepAborted as exc:
        progress.close()
        _list_failures(exc.result)
        what = "once the folder is writable again" if isinstance(exc.__cause__, RunWriteError) else (
            "with a working --scheduler, or on this machine without it")
        click.echo(f"the sweep stopped ({_standing(exc.result)}); every run is saved where it can continue. "
                   f"Run the same command again {what} to go on.", err=True)
        raise click.ClickException(str(exc)) from exc
    except SweepInterrupted as exc:
        progress.close()
        _list_failures(exc.result)
        click.echo(f"\ninterrupted ({_standing(exc.result)}); every run is saved where it can continue. {hint}",
                   err=True)
        ctx.exit(130)
    except KeyboardInterrupt:  # before or after the runs: each is saved already
        progress.close()
        click.echo(f"\ninterrupted; every run is saved where it can continue. {hint}", err=True)
        ctx.exit(130)
    finally:
        signal.signal(signal.SIGTERM, terminate)
    progress.close()
    done, failed = result.count("done"), result.count("failed")
    _list_failures(result)
    if as_json:
        click.echo(json.dumps({"runs": result.total, "done": done, "failed": failed, "out": str(out),
                               "results": str(Path(out) / "results.csv"), "summary": str(Path(out) / "summary.md")}))
    else:
        click.echo(f"{result.total} runs: {done} done, {failed} failed; results in {Path(out) / 'results.csv'}, "
                   f"summary in {Path(out) / 'summary.md'}")
    if failed:
        ctx.exit(1)
