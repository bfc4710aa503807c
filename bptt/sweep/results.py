"""A sweep's results: results.csv (one row per grid point), summary.md (the runs grouped over
seeds) and its figures, written when the sweep ends or is interrupted.

results.csv columns: every swept key, then `run` (the folder, relative to DIR), `status` (done,
failed, or pending for a run not finished yet), `error`, `eval_loss`, `baseline_loss`, then
`eval_<metric>`/`baseline_<metric>` for every other metric a run's summary.json reports (accuracy or
success for the built-in tasks), `reached_target` where a run has a target_loss, `steps`,
`wall_seconds` (training time, summed over the chunks that came back) and `worker` (the workers that
ran it, separated by ";"). Numbers are written with all their digits; a missing one is empty. A text
cell that a spreadsheet would read as a formula (starting with = + - @, a tab or a carriage
return) is written with a leading apostrophe, as OWASP advises against CSV injection; numbers are
written as numbers.

summary.md groups the runs that differ only in their seed: per group, the mean over seeds with the
lowest and highest in brackets. For each swept setting with numeric values (the seed aside), a
figure draws every metric against it, one line per group of the other swept settings (e.g. one per
cell), with the spread over seeds; a sweep with a target_loss adds the fraction of seeds that
reached it. `curves.png` shows the held-out loss during training of every run.

Every file is written only if its contents changed, so a sweep that had nothing to do rewrites
nothing. Writing them passes over the grid points once; summary.md and the figures keep the numbers
of the finished runs only.
"""

from __future__ import annotations

import csv
import io
import math
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from ..runs.atomic import atomic_write
from .record import RunOutcome
from .spec import LABEL, REPLICATE, SweepSpec

RESULTS = "results.csv"
SUMMARY_MD = "summary.md"
FIGURES = "figures"
_MAX_CURVE_PANELS = 36
_MAX_CURVES = 400  # runs drawn in curves.png: each is a run folder read
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_KEPT = ("reached_target", "steps", "wall_seconds")  # of a summary, besides eval_* and baseline_*


def result_numbers(summary: object) -> dict:
    """The numbers of a run's summary.json that the results show: eval_* and baseline_* values,
    reached_target, steps and wall_seconds, each a number (or a bool for reached_target); other
    keys, and values of other types, are left out (summary.json may come from someone else).

    Parameters
    ----------
    summary : object
        The parsed summary.json.

    Returns
    -------
    dict

    Examples
    --------
    >>> result_numbers({"eval_loss": 0.5, "eval_accuracy": "high", "steps": 40, "task": "adding",
    ...                 "reached_target": True})
    {'eval_loss': 0.5, 'steps': 40, 'reached_target': True}
    """
    if not isinstance(summary, dict):
        return {}
    kept: dict[str, Any] = {}
    for key, value in summary.items():
        if not isinstance(key, str) or not (key.startswith(("eval_", "baseline_")) or key in _KEPT):
            continue
        if key == "reached_target" and (value is None or isinstance(value, bool)):
            kept[key] = value
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            kept[key] = value
    return kept


def metrics(outcomes: Mapping[str, RunOutcome]) -> list:
    """The metrics besides the loss that the done runs report (eval_<name> in their summaries), in
    the order first met: ["accuracy"], ["success"], a custom task's own, or []."""
    found: dict[str, None] = {}
    for outcome in outcomes.values():
        for key in outcome.summary:
            if key.startswith("eval_") and key != "eval_loss":
                found[key[len("eval_"):]] = None
    return list(found)


def _columns(spec: SweepSpec, outcomes: Mapping[str, RunOutcome]) -> list:
    columns = list(spec.swept) + ["run", "status", "error", "eval_loss", "baseline_loss"]
    for key in metrics(outcomes):
        columns += [f"eval_{key}", f"baseline_{key}"]
    if any(value is not None for value in spec.values("target_loss")):
        columns.append("reached_target")
    return columns + ["steps", "wall_seconds", "worker"]


def spreadsheet_safe(value: object) -> str:
    """A value as a results.csv cell: empty for None or a non-finite float, a float in full (repr),
    text that a spreadsheet would take for a formula behind an apostrophe.

    Examples
    --------
    >>> [spreadsheet_safe(v) for v in (None, -0.5, 3, float("nan"), "=1+2", "-x", "@SUM(A1)", "gru")]
    ['', '-0.5', '3', '', "'=1+2", "'-x", "'@SUM(A1)", 'gru']
    """
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (int, bool)):
        return str(value)
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _row(spec: SweepSpec, point: Any, outcome: RunOutcome | None, columns: list) -> dict:
    row = {key: point.swept.get(key) for key in spec.swept}
    status = outcome.status if outcome is not None else "pending"
    row.update(run=f"runs/{point.name}", status=status, error=(outcome.error if outcome else None) or "")
    if outcome is not None and status == "done":
        row.update({key: value for key, value in outcome.summary.items() if key in columns})
    row["worker"] = ";".join(outcome.workers) if outcome is not None else ""
    return {key: row.get(key) for key in columns}


def rows(spec: SweepSpec, outcomes: Mapping[str, RunOutcome]) -> tuple[list, Iterator[dict]]:
    """The rows of results.csv, made as they are read.

    Parameters
    ----------
    spec : SweepSpec
    outcomes : mapping of str to RunOutcome
        The finished runs by name; a grid point without one is pending.

    Returns
    -------
    tuple of (list of str, iterator of dict)
        The columns, and one dict per grid point in the spec's order (None where a value is missing).
    """
    columns = _columns(spec, outcomes)
    return columns, (_row(spec, point, outcomes.get(point.name), columns) for point in spec.points)


def results_csv(spec: SweepSpec, outcomes: Mapping[str, RunOutcome]) -> str:
    """results.csv's text (`rows`, each cell `spreadsheet_safe`).

    Parameters
    ----------
    spec : SweepSpec
    outcomes : mapping of str to RunOutcome

    Returns
    -------
    str

    Examples
    --------
    >>> from bptt.sweep.spec import parse_spec
    >>> spec = parse_spec('[[runs]]\\nlabel = "=cmd()"\\nlr = 0.1\\n[[runs]]\\nlabel = "b"\\nlr = 0.2\\n')
    >>> done = {"b": RunOutcome(1, "b", "done", summary={"eval_loss": -0.25}, workers=["local-1"])}
    >>> print(results_csv(spec, done))
    label,lr,run,status,error,eval_loss,baseline_loss,steps,wall_seconds,worker
    '=cmd(),0.1,runs/%3Dcmd%28%29,pending,,,,,,
    b,0.2,runs/b,done,,-0.25,,,,local-1
    <BLANKLINE>
    """
    buffer = io.StringIO()
    _write_csv(spec, outcomes, buffer, [])
    return buffer.getvalue()


@dataclass
class _Finished:
    """What summary.md and the figures need of a finished run."""

    swept: dict
    name: str
    seed: int
    target_loss: float | None
    outcome: RunOutcome

    @property
    def summary(self) -> dict:
        return self.outcome.summary if self.outcome.status == "done" else {}


def _write_csv(spec: SweepSpec, outcomes: Mapping[str, RunOutcome], f: TextIO, finished: list) -> "OrderedDict":
    """Write results.csv's text to `f` in one pass over the grid points, collecting the finished runs
    into `finished`; returns the number of runs per group (`group_keys`)."""
    columns = _columns(spec, outcomes)
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(columns)
    keys = group_keys(spec)
    totals: OrderedDict[tuple, int] = OrderedDict()
    pending = ["pending"] + [""] * (len(columns) - len(spec.swept) - 2)  # status, then nothing to show
    for point in spec.points:
        outcome = outcomes.get(point.name)
        if outcome is None:
            writer.writerow([spreadsheet_safe(point.swept.get(k)) for k in spec.swept] + [f"runs/{point.name}"]
                            + pending)
        else:
            row = _row(spec, point, outcome, columns)
            writer.writerow([spreadsheet_safe(row[key]) for key in columns])
        group = tuple(point.swept.get(k) for k in keys)
        totals[group] = totals.get(group, 0) + 1
        if outcome is not None:
            finished.append(_Finished(point.swept, point.name, point.config.seed, point.config.target_loss, outcome))
    return totals


# ---------------------------------------------------------------- grouping over seeds
def group_keys(spec: SweepSpec) -> list:
    """The keys that name a group of runs differing only in their seed: the swept keys but the seed,
    with a [[runs]] label standing for its table's settings."""
    if LABEL in spec.swept:
        return [LABEL] + [k for k in spec.grid if k != REPLICATE]
    return [k for k in spec.swept if k != REPLICATE]


def _groups(spec: SweepSpec, finished: list, totals: "OrderedDict") -> "OrderedDict":
    """(values of the group keys) -> finished runs, for every group in the spec's order."""
    keys = group_keys(spec)
    groups: OrderedDict[tuple, list[_Finished]] = OrderedDict((values, []) for values in totals)
    for run in finished:
        groups[tuple(run.swept.get(k) for k in keys)].append(run)
    return groups


def _values(runs: list, key: str) -> np.ndarray:
    return np.array([np.nan if r.summary.get(key) is None else float(r.summary[key]) for r in runs
                     if r.outcome.status == "done"], float)


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


def _markdown(text: object) -> str:
    """A value as a Markdown table cell: its pipes and line ends escaped."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def summary_markdown(spec: SweepSpec, outcomes: Mapping[str, RunOutcome], figures: list,
                     collected: tuple | None = None) -> str:
    """summary.md's text.

    Parameters
    ----------
    spec : SweepSpec
    outcomes : mapping of str to RunOutcome
        The finished runs by name.
    figures : list of str
        The PNG files to show, relative to DIR.
    collected : tuple, optional
        (the finished runs by group, the number of runs per group), if `write_results` collected
        them already.

    Returns
    -------
    str
        A heading, the counts, one table row per group of runs differing only in their seed (mean
        [lowest, highest] over seeds), the figures and the failed runs with their errors.
    """
    if collected is None:
        finished: list[_Finished] = []
        totals = _write_csv(spec, outcomes, io.StringIO(), finished)
        collected = (_groups(spec, finished, totals), totals)
    groups, totals = collected
    keys = group_keys(spec)
    done = sum(o.status == "done" for o in outcomes.values())
    failed = sum(o.status == "failed" for o in outcomes.values())
    pending = len(spec.points) - done - failed
    lines = [f"# Sweep {Path(spec.path).name}", "",
             f"{len(spec.points)} runs: {done} done, {failed} failed" + (f", {pending} not finished" if pending else "")
             + ". One row per run in `results.csv`; run folders in `runs/`.", ""]
    if REPLICATE in spec.swept:
        lines += ["Per group of runs that differ only in their seed: the mean over seeds, with the lowest and the "
                  "highest in brackets.", ""]
    names = metrics(outcomes)
    target = any(value is not None for value in spec.values("target_loss"))
    header = keys + ["done"] + ["held-out loss", "baseline loss"]
    for m in names:
        header += [m, f"baseline {m}"]
    if target:
        header.append("reached target_loss")
    header += ["steps", "wall s"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for values, runs in groups.items():
        finished_ok = [r for r in runs if r.outcome.status == "done"]
        cells = [_markdown(v) for v in values] + [f"{len(finished_ok)}/{totals[values]}"]
        cells += [_spread(_values(runs, "eval_loss"), ".4g"), _same(_values(runs, "baseline_loss"), ".4g")]
        for m in names:
            cells += [_spread(_values(runs, f"eval_{m}"), ".1%"), _same(_values(runs, f"baseline_{m}"), ".1%")]
        if target:
            reached = sum(bool(r.summary.get("reached_target")) for r in finished_ok)
            aimed = finished_ok and finished_ok[0].target_loss is not None
            cells.append(f"{reached}/{len(finished_ok)}" if aimed else "n/a")
        cells += [_spread(_values(runs, "steps"), ".0f"), _spread(_values(runs, "wall_seconds"), ".3g")]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for path in figures:
        lines += [f"![{Path(path).stem}]({path})", ""]
    failures = sorted((o for o in outcomes.values() if o.status == "failed"), key=lambda o: o.index)
    if failures:
        lines += ["## Failed runs", ""] + [f"- `{o.name}`: {_markdown(o.error)}" for o in failures] + [""]
    return "\n".join(lines)


# ---------------------------------------------------------------- figures
def _numeric(values: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _label(keys: list, values: tuple) -> str:
    return ", ".join(f"{k} {v}" if k != LABEL else str(v) for k, v in zip(keys, values)) or "runs"


def figure_data(spec: SweepSpec, groups: "OrderedDict") -> dict:
    """What each figure of a sweep draws.

    Parameters
    ----------
    spec : SweepSpec
    groups : OrderedDict
        The finished runs by group (as `write_results` collects them).

    Returns
    -------
    dict
        File name -> (kind, arguments): ("metrics", the keyword arguments of
        `bptt.plots.sweep_metrics_figure`) for each numeric grid setting but the seed, and
        ("curves", the groups of runs) for curves.png.
    """
    figures = {}
    swept = group_keys(spec)
    runs = [run for members in groups.values() for run in members]
    done = [run for run in runs if run.outcome.status == "done"]
    target = {value for value in spec.values("target_loss")} - {None}
    names = metrics({run.name: run.outcome for run in done})
    for x_key in [k for k in swept if k in spec.grid]:  # a [[runs]] table's values belong to their table
        xs = sorted(spec.grid[x_key], key=lambda v: (v is None, v if v is not None else 0))
        xs = [x for x in xs if x is not None]
        if len(xs) < 2 or not _numeric(xs) or not done:
            continue
        others = [k for k in swept if k != x_key]
        lines: OrderedDict[tuple, list[_Finished]] = OrderedDict()
        for run in done:
            lines.setdefault(tuple(run.swept.get(k) for k in others), []).append(run)

        def grid(members: list, key: str, x_key: str = x_key, xs: list = xs) -> np.ndarray:
            per_x: dict[Any, list] = {x: [] for x in xs}
            for r in members:
                if r.swept.get(x_key) in per_x:
                    per_x[r.swept[x_key]].append(r)
            width = max([len(p) for p in per_x.values()] + [1])
            values = np.full((len(xs), width), np.nan)
            for i, x in enumerate(xs):
                for j, r in enumerate(per_x[x]):
                    value = r.summary.get(key) if key != "reached_target" else float(bool(r.summary.get(key)))
                    values[i, j] = np.nan if value is None else float(value)
            return values

        panels: list[dict[str, Any]] = [{"ylabel": "held-out loss", "metric": "eval_loss"}]
        panels += [{"ylabel": f"held-out {m}", "metric": f"eval_{m}"} for m in names]
        if target:
            panels.append({"ylabel": "fraction of seeds reaching target_loss "
                                     + "/".join(f"{t:g}" for t in sorted(target)),
                           "metric": "reached_target", "fraction": True})
        for panel in panels:
            panel["lines"] = OrderedDict((_label(others, values), grid(members, panel["metric"]))
                                         for values, members in lines.items())
            if not panel.get("fraction"):
                base = grid(done, panel["metric"].replace("eval_", "baseline_"))
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
    drawn = OrderedDict((values, [r for r in members if r.outcome.status == "done"])
                        for values, members in groups.items())
    if (1 < len(drawn) <= _MAX_CURVE_PANELS or (len(drawn) == 1 and len(spec.points) > 1)) and len(done) <= _MAX_CURVES:
        figures["curves.png"] = ("curves", drawn)
    return figures


def _curve_panels(spec: SweepSpec, out: Path, groups: "OrderedDict") -> list:
    from ..runs.reader import read_run

    keys = group_keys(spec)
    panels = []
    for values, runs in groups.items():
        curves: OrderedDict[str, tuple] = OrderedDict()
        baseline = None
        for run in runs:
            try:
                read = read_run(out / "runs" / run.name)
            except (ValueError, OSError):
                continue
            loss = read.column("eval_loss")
            if loss is None:
                continue
            keep = np.isfinite(loss)
            curves[f"seed {run.seed}"] = (read.steps[keep], loss[keep])
            found = read.summary.get("baseline_loss") if isinstance(read.summary, dict) else None
            baseline = found if isinstance(found, (int, float)) and not isinstance(found, bool) else baseline
        panels.append((_label(keys, values), curves, baseline))
    return panels


def write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` to `path` (atomically, making its folder) unless it holds exactly that already.

    Returns
    -------
    bool
        Whether the file was written.

    Raises
    ------
    RunWriteError
        Naming `path` (or its folder) when it cannot be written.
    """
    from ..core.untrusted import UntrustedFileError, open_regular

    try:
        with open_regular(path) as f:
            if f.read(len(data) + 1) == data:
                return False
    except (OSError, UntrustedFileError):
        pass
    make_folder(path.parent)
    atomic_write(path, lambda f: f.write(data))
    return True


def make_folder(folder: Path) -> None:
    """Create `folder` and its parents, as the one writer of a sweep folder does.

    Raises
    ------
    RunWriteError
        Naming the folder that cannot be made: "it is a file, not a folder", or the system's reason
        (no permission, a read-only file system).
    """
    from ..runs.atomic import RunWriteError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise RunWriteError(exc.errno, "it is a file, not a folder", str(folder)) from exc
    except OSError as exc:
        raise RunWriteError(exc.errno, exc.strerror or str(exc), str(exc.filename or folder)) from exc


def write_results(spec: SweepSpec, outcomes: Mapping[str, RunOutcome], out: str | Path, figures: bool = True) -> None:
    """Write results.csv and summary.md and, with `figures`, the figures; each only if it changed.

    Parameters
    ----------
    spec : SweepSpec
    outcomes : mapping of str to RunOutcome
        The finished runs by name; the other grid points are pending.
    out : str or Path
        DIR.
    figures : bool
        Also the figures (False on an interrupt: each figure reads every finished run).

    Raises
    ------
    RunWriteError
        Naming the file that could not be written.
    """
    out = Path(out)
    buffer = io.StringIO()
    finished: list[_Finished] = []
    totals = _write_csv(spec, outcomes, buffer, finished)
    write_if_changed(out / RESULTS, buffer.getvalue().encode("utf-8", "surrogatepass"))
    del buffer
    groups = _groups(spec, finished, totals)
    written = []
    data = figure_data(spec, groups) if figures else {}
    if data:
        from .. import plots

        for name, (kind, args) in data.items():
            if kind == "metrics":
                fig = plots.sweep_metrics_figure(**args)
            else:
                panels = _curve_panels(spec, out, args)
                if not any(curves for _, curves, _ in panels):
                    continue
                fig = plots.sweep_curves_figure(panels, f"{Path(spec.path).name}: held-out loss during training")
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=110)
            write_if_changed(out / FIGURES / name, png.getvalue())
            written.append(f"{FIGURES}/{name}")
    elif not figures and (out / FIGURES).is_dir():
        written = [f"{FIGURES}/{p.name}" for p in sorted((out / FIGURES).glob("*.png"))]
    text = summary_markdown(spec, outcomes, written, (groups, totals))
    write_if_changed(out / SUMMARY_MD, text.encode("utf-8", "surrogatepass"))
