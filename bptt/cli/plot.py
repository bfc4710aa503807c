"""`bptt plot RUN_DIR`: draw a training run's figures into its folder."""

import os

import click
import numpy as np

from . import Refused, cli


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, dir_okay=True))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="folder for the PNG files (default: RUN_DIR itself)")
def plot(run_dir: str, out_dir: str | None) -> None:
    """Draw RUN_DIR's loss curve, gradient norm before clipping (with the clip threshold and clip
    events) and the heatmap of ||dL/dh_t|| over (training step, timestep), as PNG files.

    Writes loss.png, grad_norm.png and dh_norms.png (and dh_layers.png, the layer x timestep map,
    for a stacked run) into --out, or RUN_DIR itself, and prints each path on stdout. Exit status 2
    when RUN_DIR holds no readable run.

    \b
    Examples:
      bptt plot runs/parity
      bptt plot runs/parity --out figures/
    """
    from .. import plots
    from ..runs.reader import read_run

    try:
        run = read_run(run_dir)
    except ValueError as exc:  # a missing folder or file, or one that is not what bptt train writes
        raise Refused(str(exc)) from None
    # numbers near the float limit overflow as a log axis pads its range: harmless, not a warning
    with np.errstate(over="ignore"):
        figures = plots.run_figures(run)
        if not figures:
            raise click.UsageError(f"{run_dir}: metrics.jsonl has neither 'loss' nor a gradient norm to draw")
        for name, figure in figures.items():
            try:
                click.echo(plots.save_figure(figure, os.path.join(out_dir or run_dir, name)))
            except OSError as exc:  # a RunWriteError: "cannot write PATH: REASON"
                raise click.ClickException(str(exc)) from None
    if run.dh_norms is None:
        click.echo("no dh_norms.jsonl in the run folder: no per-timestep heatmap", err=True)
