"""A sweep's results: results.csv (one row per grid point), summary.md (the runs grouped over
seeds) and its figures.

results.csv columns: every swept key, then `run` (the folder, relative to DIR), `status` (done,
failed, or pending for a run an interrupted sweep has not finished), `error`, `eval_loss`,
`baseline_loss`, `eval_accuracy`/`baseline_accuracy` and `eval_success`/`baseline_success` where
the task has them, `reached_target` where a run has a target_loss, `steps`, `wall_seconds` (training
time, summed over the chunks that came back) and `worker` (the workers that ran it, separated by
";"). Numbers are written with all their digits; a missing one is empty.

summary.md groups the runs that differ only in their seed: per group, the mean over seeds with the
lowest and highest in brackets. For each swept setting with numeric values (the seed aside), a
figure draws every metric against it, one line per group of the other swept settings (e.g. one per
cell), with the spread over seeds; a sweep with a target_loss adds the fraction of seeds that
reached it. `curves.png` shows the held-out loss during training of every run.

Every file is written only if its contents changed, so a sweep that had nothing to do rewrites
nothing.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..training.run_folder import atomic_write
from .spec import LABEL, REPLICATE, SweepSpec
from ..training.tasks import TASK_METRICS

if TYPE_CHECKING:
    from .run import RunState, SweepResult

RESULTS = "results.csv"
SUMMARY_MD = "summary.md"
FIGURES = "figures"
_MAX_CURVE_PANELS = 36


def _columns(spec: SweepSpec, runs: list[RunState]) -> list:
    columns = list(spec.swept) + ["run", "status", "error", "eval_loss", "baseline_loss"]
    for key in TASK_METRICS:
        if any(r.summary and f"eval_{key}" in r.summary for r in runs):
            columns += [f"eval_{key}", f"baseline_{key}"]
    if any(r.point.config.target_loss is not None for r in runs):
        columns.append("reached_target")
    return columns + ["steps", "wall_seconds", "worker"]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def rows(spec: SweepSpec, result: SweepResult) -> tuple[list, list]:
    """The rows of results.csv.

    Parameters
    ----------
    spec : SweepSpec
    result : SweepResult

    Returns
    -------
    tuple of (list of str, list of dict)
        The columns, and one dict per grid point in the spec's order (None where a value is missing).
    """
    columns = _columns(spec, result.runs)
    table = []
    for run in result.runs:
        row = {key: run.point.swept.get(key) for key in spec.swept}
        row.update(run=f"runs/{run.name}", status=run.status, error=run.error or "")
        summary = run.summary if run.status == "done" else {}
        for key in columns:
            if key in summary:
                row[key] = summary[key]
        row["worker"] = ";".join(run.workers)
        table.append({key: row.get(key) for key in columns})
    return columns, table


def results_csv(spec: SweepSpec, result: SweepResult) -> str:
    """results.csv's text: `rows` with floats written in full (repr) and missing values empty.

    Parameters
    ----------
    spec : SweepSpec
    result : SweepResult

    Returns
    -------
    str
    """
    columns, table = rows(spec, result)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in table:
        writer.writerow([_cell(row[key]) for key in columns])
    return buffer.getvalue()


def read_previous_workers(out: str | os.PathLike) -> dict:
    """The workers of each run, from the results.csv an earlier sweep left in `out`.

    Workers are recorded nowhere else, so a finished run keeps its `worker` cell across sweeps.

    Parameters
    ----------
    out : str or os.PathLike
        DIR.

    Returns
    -------
    dict
        Run name -> list of worker names; {} without a readable results.csv.
    """
    path = Path(out) / RESULTS
    try:
        with open(path, newline="") as f:
            return {row["run"].split("/", 1)[-1]: [w for w in row.get("worker", "").split(";") if w]
                    for row in csv.DictReader(f) if row.get("run")}
    except (OSError, KeyError, csv.Error):
        return {}


# ---------------------------------------------------------------- grouping over seeds
def group_keys(spec: SweepSpec) -> list:
    """The keys that name a group of runs differing only in their seed: the swept keys but the seed,
    with a [[runs]] label standing for its table's settings."""
    if LABEL in spec.swept:
        return [LABEL] + [k for k in spec.grid if k != REPLICATE]
    return [k for k in spec.swept if k != REPLICATE]


def _groups(spec: SweepSpec, result: SweepResult) -> "OrderedDict":
    """(values of the group keys) -> runs, in the spec's order."""
    keys = group_keys(spec)
    groups: OrderedDict[tuple, list[RunState]] = OrderedDict()
    for run in result.runs:
        groups.setdefault(tuple(run.point.swept.get(k) for k in keys), []).append(run)
    return groups


def _values(runs: list[RunState], key: str) -> np.ndarray:
    return np.array([np.nan if r.summary is None or r.summary.get(key) is None else float(r.summary[key])
                     for r in runs if r.status == "done"], float)


def _spread(values: np.ndarray, fmt: str) -> str:
    values = values[np.isfinite(values)]
    if not values.size:
        return "n/a"
    if values.size == 1:
        return format(values[0], fmt)
    return f"{format(values.mean(), fmt)} [{format(values.min(), fmt)}, {format(values.max(), fmt)}]"


def _same(values: np.ndarray, fmt: str) -> str:
    values = values[np.isfinite(values)]
    if not values.size:
        return "n/a"
    return format(values[0], fmt) if np.all(values == values[0]) else _spread(values, fmt)


def summary_markdown(spec: SweepSpec, result: SweepResult, figures: list) -> str:
    """summary.md's text.

    Parameters
    ----------
    spec : SweepSpec
    result : SweepResult
    figures : list of str
        The PNG files to show, relative to DIR.

    Returns
    -------
    str
        A heading, the counts, one table row per group of runs differing only in their seed (mean
        [lowest, highest] over seeds), the figures and the failed runs with their errors.
    """
    keys = group_keys(spec)
    groups = _groups(spec, result)
    done, failed, pending = (result.count(s) for s in ("done", "failed", "pending"))
    seeds = REPLICATE in spec.swept
    lines = [f"# Sweep {Path(spec.path).name}", "",
             f"{len(result.runs)} runs: {done} done, {failed} failed" + (f", {pending} not finished" if pending else "")
             + ". One row per run in `results.csv`; run folders in `runs/`.", ""]
    if seeds:
        lines += ["Per group of runs that differ only in their seed: the mean over seeds, with the lowest and the "
                  "highest in brackets.", ""]
    metrics = [m for m in TASK_METRICS if any(r.summary and f"eval_{m}" in r.summary for r in result.runs)]
    target = any(r.point.config.target_loss is not None for r in result.runs)
    header = keys + ["done"] + ["held-out loss", "baseline loss"]
    for m in metrics:
        header += [m, f"baseline {m}"]
    if target:
        header.append("reached target_loss")
    header += ["steps", "wall s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for values, runs in groups.items():
        finished = [r for r in runs if r.status == "done"]
        cells = [str(v) for v in values] + [f"{len(finished)}/{len(runs)}"]
        cells += [_spread(_values(runs, "eval_loss"), ".4g"), _same(_values(runs, "baseline_loss"), ".4g")]
        for m in metrics:
            cells += [_spread(_values(runs, f"eval_{m}"), ".1%"), _same(_values(runs, f"baseline_{m}"), ".1%")]
        if target:
            reached = sum(bool(r.summary.get("reached_target")) for r in finished)
            aimed = finished and runs[0].point.config.target_loss is not None
            cells.append(f"{reached}/{len(finished)}" if aimed else "n/a")
        cells += [_spread(_values(runs, "steps"), ".0f"), _spread(_values(runs, "wall_seconds"), ".3g")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for path in figures:
        lines += [f"![{Path(path).stem}]({path})", ""]
    failures = [r for r in result.runs if r.status == "failed"]
    if failures:
        lines += ["## Failed runs", ""] + [f"- `{r.name}`: {r.error}" for r in failures] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- figures
def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _label(keys: list, values: tuple) -> str:
    return ", ".join(f"{k} {v}" if k != LABEL else str(v) for k, v in zip(keys, values)) or "runs"


def figure_data(spec: SweepSpec, result: SweepResult) -> dict:
    """What each figure of a sweep draws.

    Parameters
    ----------
    spec : SweepSpec
    result : SweepResult

    Returns
    -------
    dict
        File name -> (kind, arguments): ("metrics", the keyword arguments of
        `bptt.plots.sweep_metrics_figure`) for each numeric grid setting but the seed, and
        ("curves", the groups of runs) for curves.png.
    """
    figures = {}
    swept = group_keys(spec)
    target = {r.point.config.target_loss for r in result.runs} - {None}
    for x_key in [k for k in swept if k in spec.grid]:  # a [[runs]] table's values belong to their table
        xs = sorted(set(r.point.swept[x_key] for r in result.runs if r.point.swept.get(x_key) is not None))
        if len(xs) < 2 or not _numeric(xs):
            continue
        others = [k for k in swept if k != x_key]
        lines: OrderedDict[tuple, list[RunState]] = OrderedDict()
        for run in result.runs:
            lines.setdefault(tuple(run.point.swept.get(k) for k in others), []).append(run)

        def grid(runs: list[RunState], key: str, x_key: str = x_key, xs: list = xs) -> np.ndarray:
            per_x = [[r for r in runs if r.point.swept.get(x_key) == x and r.status == "done"] for x in xs]
            width = max([len(p) for p in per_x] + [1])
            values = np.full((len(xs), width), np.nan)
            for i, group in enumerate(per_x):
                for j, r in enumerate(group):
                    summary = r.summary or {}
                    value = summary.get(key) if key != "reached_target" else float(bool(summary.get(key)))
                    values[i, j] = np.nan if value is None else float(value)
            return values

        panels: list[dict[str, Any]] = [{"ylabel": "held-out loss", "metric": "eval_loss"}]
        panels += [{"ylabel": f"held-out {m}", "metric": f"eval_{m}"} for m in TASK_METRICS
                   if any(r.summary and f"eval_{m}" in r.summary for r in result.runs)]
        if target:
            panels.append({"ylabel": "fraction of seeds reaching target_loss "
                                     + "/".join(f"{t:g}" for t in sorted(target)),
                           "metric": "reached_target", "fraction": True})
        for panel in panels:
            panel["lines"] = OrderedDict((_label(others, values), grid(runs, panel["metric"]))
                                         for values, runs in lines.items())
            if not panel.get("fraction"):
                base = grid(result.runs, panel["metric"].replace("eval_", "baseline_"))
                row = [np.unique(b[np.isfinite(b)]) for b in base]
                if all(len(b) == 1 for b in row):
                    panel["baseline"] = np.array([b[0] for b in row])
                finite = np.concatenate([v[np.isfinite(v)] for v in panel["lines"].values()] + [np.array([])])
                panel["logy"] = bool(panel["metric"] == "eval_loss" and finite.size and finite.min() > 0
                                     and finite.max() / finite.min() > 30)
        title = f"{Path(spec.path).name}: against {x_key}" + ("\nmean over seeds; band and dots: every seed"
                                                             if REPLICATE in spec.swept else "")
        figures[f"{x_key}.png"] = ("metrics", dict(x=np.array(xs, float), panels=panels, xlabel=x_key, title=title,
                                                   logx=bool(min(xs) > 0 and max(xs) / min(xs) >= 8)))
    groups = _groups(spec, result)
    if 1 < len(groups) <= _MAX_CURVE_PANELS or (len(groups) == 1 and len(result.runs) > 1):
        figures["curves.png"] = ("curves", groups)
    return figures


def _curve_panels(spec: SweepSpec, groups: OrderedDict) -> list:
    from ..training.run_folder import read_run

    keys = group_keys(spec)
    panels = []
    for values, runs in groups.items():
        curves: OrderedDict[str, tuple] = OrderedDict()
        baseline = None
        for run in runs:
            if run.status != "done":
                continue
            try:
                read = read_run(run.folder)
            except ValueError:
                continue
            loss = read.column("eval_loss")
            if loss is None:
                continue
            keep = np.isfinite(loss)
            label = f"seed {run.point.config.seed}"
            curves[label] = (read.steps[keep], loss[keep])
            baseline = read.summary.get("baseline_loss", baseline)
        panels.append((_label(keys, values), curves, baseline))
    return panels


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (atomically, making its folder) unless it holds exactly that already.

    Returns
    -------
    bool
        Whether the file was written.
    """
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(data))
    return True


def write_results(spec: SweepSpec, result: SweepResult, figures: bool = True) -> None:
    """Write results.csv and, with `figures`, summary.md and the figures, each only if it changed.

    Parameters
    ----------
    spec : SweepSpec
    result : SweepResult
        Its `out` is DIR.
    figures : bool
        Also summary.md and DIR/figures (False while the sweep runs: results.csv alone is cheap).
    """
    out = Path(result.out)
    write_if_changed(out / RESULTS, results_csv(spec, result).encode())
    if not figures:
        return
    written = []
    data = figure_data(spec, result)
    if data:
        from .. import plots

        for name, (kind, args) in data.items():
            if kind == "metrics":
                fig = plots.sweep_metrics_figure(**args)
            else:
                panels = _curve_panels(spec, args)
                if not any(curves for _, curves, _ in panels):
                    continue
                fig = plots.sweep_curves_figure(panels, f"{Path(spec.path).name}: held-out loss during training")
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=110)
            write_if_changed(out / FIGURES / name, buffer.getvalue())
            written.append(f"{FIGURES}/{name}")
    write_if_changed(out / SUMMARY_MD, summary_markdown(spec, result, written).encode())
