"""Figures of gradients through time and of training runs. The only module of bptt that imports
matplotlib. Every function returns a `matplotlib.figure.Figure` built without pyplot (so no window,
no global backend state: it renders with Agg); `save_figure` writes it as PNG.

Letters: T time, R recorded steps.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatterSciNotation
from numpy.typing import ArrayLike, NDArray

from .runs.atomic import atomic_write, writing

if TYPE_CHECKING:
    from .runs.reader import Run

# A figure is 700 pixels wide: a long run is drawn from fewer points than it logged, chosen so that
# nothing visible changes (see `envelope`), and the drawing costs the same at any length.
MAX_CURVE_POINTS = 4000  # points of one curve: the lowest and highest value of each of 2000 stretches
MAX_HEATMAP_ROWS = 2000  # rows of the dh_norms heatmap: evenly spaced records beyond that

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def color(i: int) -> str:
    return COLORS[i % len(COLORS)]


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> str:
    """Write `fig` as a PNG (creating the folder) and return the path.

    The file is written whole through a temporary file and a rename (`bptt.runs.atomic.atomic_write`),
    so a link at `path`, say in a run folder from someone else, is replaced, never written through.

    Raises
    ------
    RunWriteError
        (an OSError) Naming the path, if it cannot be written.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        with writing(folder):
            os.makedirs(folder, exist_ok=True)
    atomic_write(Path(path), lambda f: fig.savefig(f, dpi=110, format="png"))
    return path


def envelope(values: ArrayLike, max_points: int = MAX_CURVE_POINTS) -> NDArray[np.intp]:
    """Indices of at most `max_points` entries of `values` that draw the same curve: the lowest and
    the highest value of each of max_points // 2 equal stretches, in order (all of them when
    there are no more than `max_points`). NaN entries are kept only where a stretch is all NaN.

    Examples
    --------
    >>> envelope([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0], max_points=4).tolist()
    [1, 2, 5, 6]
    """
    values = np.asarray(values, float)
    n = len(values)
    if n <= max_points:
        return np.arange(n)
    stretches = max(1, max_points // 2)
    size = -(-n // stretches)  # ceil
    padded = np.full(stretches * size, np.nan)
    padded[:n] = values
    rows = padded.reshape(stretches, size)
    missing = np.isnan(rows)
    low = np.where(missing, np.inf, rows).argmin(axis=1)
    high = np.where(missing, -np.inf, rows).argmax(axis=1)
    start = np.arange(stretches) * size
    picked = np.unique(np.concatenate([start + low, start + high]))
    return picked[picked < n]


class _ReadableLogFormatter(LogFormatterSciNotation):
    """Log-axis labels a reader reads at a glance: plain numbers from 0.001 to 9999 (0.17, 0.2, 30),
    powers of ten outside them (10^-5), where matplotlib writes 1.7×10⁻¹ for an axis within a decade."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        label = super().__call__(x, pos)
        return f"{x:.4g}" if label and 1e-3 <= abs(x) < 1e4 else label


def log_scale(ax: Axes, which: str = "y", base: float = 10) -> None:
    """Put the x or y axis of `ax` on a log scale with readable labels on every tick drawn."""
    if which == "x":
        ax.set_xscale("log", base=base)
    else:
        ax.set_yscale("log", base=base)
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(_ReadableLogFormatter(base, labelOnlyBase=False))
    axis.set_minor_formatter(_ReadableLogFormatter(base, labelOnlyBase=False))


def _figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 4.4,
            **kw: Any) -> tuple[Figure, NDArray[np.object_]]:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


# ----------------------------------------------------------------- gradients through time
def gradient_norms_figure(series: list[dict], title: str, jacobian_label: str = r"$\|\partial h_{T}/\partial h_t\|_2$") -> Figure:
    """Two panels against the timestep t: ||dL/dh_t|| (loss on the last step) and the Jacobian
    product norm, both on a log axis. Each curve is drawn solid, and the line with the slope its top
    Lyapunov exponent predicts is drawn dashed beside it (its height is the least-squares fit with
    that slope held fixed: only the slope is a prediction).

    series: dicts with "label", "t" (T,), "dl_dh" (T,), "jacobian" (T,), "lyapunov" (nats per step).
    """
    fig, axes = _figure(ncols=2, width=6.0, height=4.6)
    panels = [("dl_dh", r"$\|\partial L/\partial h_t\|$ (loss on the last step)"), ("jacobian", jacobian_label)]
    for ax, (key, ylabel) in zip(axes[0], panels):
        for i, s in enumerate(series):
            t = np.asarray(s["t"])
            values = np.asarray(s[key], float)
            ax.semilogy(t, values, color=color(i), lw=3.0, alpha=0.75, label=s["label"])
            distance = t[-1] - t
            offset = np.mean(np.log(values) - s["lyapunov"] * distance)
            ax.semilogy(t, np.exp(offset + s["lyapunov"] * distance), color="black", lw=1.0, ls="--", zorder=3)
        ax.set_xlabel("timestep t")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    axes[0, 1].plot([], [], color="black", lw=1.0, ls="--", label=r"slope of top Lyapunov exp. $\lambda_{max}$")
    axes[0, 1].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return fig


def lyapunov_vs_lambda_figure(lambda_1: ArrayLike, lyapunov: ArrayLike, slopes: ArrayLike, title: str) -> Figure:
    """Top Lyapunov exponent and measured decay slope against lambda_1, with Pascanu's bound log(lambda_1)."""
    fig, axes = _figure()
    ax = axes[0, 0]
    lambda_1 = np.asarray(lambda_1, float)
    grid = np.linspace(lambda_1.min(), lambda_1.max(), 200)
    ax.plot(grid, np.log(grid), color="gray", ls=":", label=r"upper bound $\log\lambda_1$ (tanh' $\leq 1$)")
    ax.plot(lambda_1, lyapunov, "o-", color=color(0), label=r"top Lyapunov exponent $\lambda_{max}$")
    ax.plot(lambda_1, slopes, "x", ms=9, mew=2, color=color(3), label=r"measured slope of $\log\|\partial h_T/\partial h_t\|$")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(r"largest singular value $\lambda_1$ of $W_{hh}$")
    ax.set_ylabel("growth rate per step (nats / step)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------- Pascanu's cliff
def loss_surface_figure(w: ArrayLike, b: ArrayLike, loss: ArrayLike, trajectories: dict[str, ArrayLike],
                        title: str) -> Figure:
    """Filled contours of log10 loss over the (w, b) grid, with one path per entry of `trajectories`
    (label -> (K, 2) array of (w, b) points), starts marked with a circle and ends with a cross.

    w (Nw,), b (Nb,), loss (Nb, Nw).
    """
    w, b = np.asarray(w), np.asarray(b)
    fig, axes = _figure(width=7.0, height=5.6)
    ax = axes[0, 0]
    log_loss = np.log10(np.maximum(loss, 1e-12))
    filled = ax.contourf(w, b, log_loss, levels=30, cmap="viridis")
    fig.colorbar(filled, ax=ax, label=r"$\log_{10}$ loss")
    for i, (label, path) in enumerate(trajectories.items()):
        path = np.asarray(path)
        c = ["white", "#ff4040", "#ffb000", "#40c0ff"][i % 4]
        ax.plot(path[:, 0], path[:, 1], "-", color=c, lw=1.6, marker=".", ms=5, label=label)
        ax.plot(*path[0], "o", color=c, ms=9, mec="black")
        ax.plot(*path[-1], "X", color=c, ms=11, mec="black")
    ax.set_xlim(w[0], w[-1])
    ax.set_ylim(b[0], b[-1])
    ax.set_xlabel("recurrent weight w")
    ax.set_ylabel("bias b")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left", framealpha=0.8)
    return fig


def loss_along_paths_figure(paths: dict, title: str) -> Figure:
    """Loss against gradient-descent iteration for each path (label -> (K,) losses), log axis."""
    fig, axes = _figure(height=3.8)
    ax = axes[0, 0]
    for i, (label, losses) in enumerate(paths.items()):
        ax.semilogy(np.arange(len(losses)), np.maximum(losses, 1e-12), "-", color=color(i), label=label)
    log_scale(ax)
    ax.set_xlabel("gradient-descent iteration")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------- training runs
def learning_curves_figure(curves: Mapping[str, tuple[ArrayLike, ArrayLike]], title: str, ylabel: str = "loss",
                           baseline: float | None = None,
                           baseline_label: str = "baseline", logy: bool = True, points: dict | None = None,
                           xlabel: str = "training step") -> Figure:
    """One line per entry of `curves` (label -> (steps (R,), values (R,))), an optional baseline.

    points: label -> matplotlib marker for curves drawn as unjoined points (e.g. evaluations every
    100 steps: a line between them would cut across the curve they are compared with).
    """
    fig, axes = _figure()
    ax = axes[0, 0]
    points = points or {}
    for i, (label, (steps, values)) in enumerate(curves.items()):
        if label in points:
            ax.plot(steps, values, color=color(i), ls="none", label=label, marker=points[label], ms=5, zorder=3)
        else:
            ax.plot(steps, values, color=color(i), lw=1.5, label=label)
    if baseline is not None:
        ax.axhline(baseline, color="black", ls="--", lw=1.0, label=baseline_label)
    if logy:
        log_scale(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def grad_norm_figure(steps: ArrayLike, norms: ArrayLike, clipped: ArrayLike, threshold: float | None, title: str,
                     clip_label: str = "clipped") -> Figure:
    """Gradient norm before clipping against step (log axis), the clip threshold and clip events.

    steps, norms (R,), clipped (R,) booleans, threshold: the max norm, or None (no line drawn).
    """
    fig, axes = _figure()
    ax = axes[0, 0]
    steps = np.asarray(steps)
    norms = np.asarray(norms, float)
    clipped = np.asarray(clipped, bool)
    count, total = int(clipped.sum()), len(steps)  # of every step; what is drawn is thinned (`envelope`)
    line = envelope(norms)
    ax.semilogy(steps[line], norms[line], color=color(0), lw=1.0, label="global gradient norm before clipping")
    log_scale(ax)
    if threshold is not None:
        ax.axhline(threshold, color="black", ls="--", lw=1.0, label=f"clip threshold {threshold:g}")
    if clipped.any():
        marked = np.flatnonzero(clipped)[envelope(norms[clipped])]
        ax.plot(steps[marked], norms[marked], "v", color=color(3), ms=5,
                label=f"{clip_label} ({count} of {total} steps)")
    ax.set_xlabel("training step")
    ax.set_ylabel(r"$\|\nabla_\theta L\|_2$")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def dh_norms_heatmap_figure(steps: ArrayLike, dh_norms: ArrayLike, title: str, xlabel: str = "timestep t") -> Figure:
    """||dL/dh_t|| over (training step, timestep t) as a log-coloured heatmap. dh_norms (R, T);
    NaN cells (no value) are left blank."""
    fig, axes = _figure(width=7.0, height=4.8)
    ax = axes[0, 0]
    values = np.asarray(dh_norms, float)
    positive = values[np.isfinite(values) & (values > 0)]
    low, high = (positive.min(), positive.max()) if positive.size else (1e-12, 1.0)
    steps = np.asarray(steps)
    T = values.shape[1]
    image = ax.imshow(
        np.where(np.isfinite(values) & (values > 0), values, np.nan), aspect="auto", origin="lower", interpolation="nearest",
        norm=LogNorm(vmin=low, vmax=max(high, low * 10)), cmap="magma",
        extent=(-0.5, T - 0.5, 0, len(steps)),
    )
    ticks = np.linspace(0, len(steps) - 1, min(6, len(steps))).astype(int)
    ax.set_yticks(ticks + 0.5)
    ax.set_yticklabels([str(steps[i]) for i in ticks])
    fig.colorbar(image, ax=ax, label=r"$\|\partial L/\partial h_t\|$")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("training step")
    ax.set_title(title)
    return fig


def layer_time_figure(dh_norms: ArrayLike, title: str, panel_titles: list[str] | None = None,
                      scale: tuple[float, float] | None = None) -> Figure:
    """||dL/dh_t|| over (layer, timestep t) as log-coloured maps, one panel per direction: where a
    gradient dies, along time or down the stack. dh_norms (L, directions, T) (a Stack's
    Gradients.dh_norms); panel_titles: one per direction (default "forward", "reverse"); scale:
    divide every value by this (e.g. the top layer's last value) so the colour reads as a ratio."""
    values = np.asarray(dh_norms, float)
    if scale:
        values = values / scale
    L, directions, T = values.shape
    titles = panel_titles or ["forward direction", "reverse direction"][:directions]
    fig, axes = _figure(ncols=directions, width=6.4, height=1.2 + 0.55 * L + 1.6)
    positive = values[np.isfinite(values) & (values > 0)]
    low, high = (positive.min(), positive.max()) if positive.size else (1e-12, 1.0)
    for d, ax in enumerate(axes[0]):
        image = ax.imshow(np.where(values[:, d] > 0, values[:, d], np.nan), aspect="auto", origin="lower",
                          interpolation="nearest", norm=LogNorm(vmin=low, vmax=max(high, low * 10)), cmap="magma",
                          extent=(-0.5, T - 0.5, -0.5, L - 0.5))
        ax.set_yticks(range(L), [f"layer {layer}" for layer in range(L)])
        ax.set_xlabel("timestep t")
        ax.set_title(titles[d])
    label = r"$\|\partial L/\partial h_t\|$" + (" / its value at the top, last step" if scale else "")
    fig.colorbar(image, ax=list(axes[0]), label=label)
    fig.suptitle(title)
    return fig


def stack_gradients_figure(runs: list[dict], title: str) -> Figure:
    """Per cell, a layer x time map of ||dL/dh_t|| (top row) and, below it, the same norms against
    t, one curve per layer, with the slope of the top layer's top Lyapunov exponent dashed.

    runs: dicts with "label", "dh_norms" (L, T) normalised so the top layer's last value is 1,
    "lyapunov_top" (the top layer's, nats per step).
    """
    fig, axes = _figure(ncols=len(runs), nrows=2, width=5.0, height=3.6)
    every = np.concatenate([np.ravel(r["dh_norms"]) for r in runs])
    every = every[np.isfinite(every) & (every > 0)]
    norm = LogNorm(vmin=every.min(), vmax=every.max())
    for column, r in enumerate(runs):
        values = np.asarray(r["dh_norms"], float)
        L, T = values.shape
        top, bottom = axes[0, column], axes[1, column]
        image = top.imshow(values, aspect="auto", origin="lower", interpolation="nearest", norm=norm, cmap="magma",
                           extent=(-0.5, T - 0.5, -0.5, L - 0.5))
        top.set_yticks(range(L), [f"layer {layer}" for layer in range(L)])
        top.set_xlabel("timestep t")
        top.set_title(r["label"])
        t = np.arange(T)
        for layer in range(L):
            bottom.semilogy(t, values[layer], color=color(layer), lw=2.0, label=f"layer {layer}")
        distance = T - 1 - t
        bottom.semilogy(t, np.exp(r["lyapunov_top"] * distance), color="black", lw=1.0, ls="--",
                        label=r"slope of the top layer's $\lambda_{max}$")
        bottom.set_ylim(max(values[values > 0].min(), 1e-30) / 3, values.max() * 3)
        bottom.set_xlabel("timestep t")
        bottom.grid(True, which="major", alpha=0.3)
    axes[1, 0].set_ylabel(r"$\|\partial L/\partial h_t\|$ / top layer at $t = T-1$")
    axes[1, 0].legend(fontsize=8, loc="lower right")
    fig.colorbar(image, ax=list(axes[0]), label=r"$\|\partial L/\partial h_t\|$, ratio")
    fig.suptitle(title)
    return fig


def truncation_bias_figure(bias: dict, T: int, title: str) -> Figure:
    """Cosine similarity and relative error of the TBPTT(k, k) gradient to full BPTT, against k.

    bias: model label -> {"ks": [...], "cosine": [...], "relative_error": [...]}.
    """
    fig, axes = _figure(ncols=2, width=5.4, height=4.4)
    left, right = axes[0]
    for i, (label, b) in enumerate(bias.items()):
        left.plot(b["ks"], b["cosine"], "o-", color=color(i), label=label)
        errors = np.asarray(b["relative_error"], float)
        shown = errors > 0  # k = T is exact: log axis
        right.plot(np.asarray(b["ks"])[shown], errors[shown], "o-", color=color(i), label=label)
    left.axhline(1.0, color="black", ls="--", lw=0.8)
    ks = sorted({k for b in bias.values() for k in b["ks"]})
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("truncation length k (steps)")
        ax.grid(True, alpha=0.3)
    left.set_ylabel("cosine similarity to the full-BPTT gradient")
    left.set_title("direction")
    log_scale(right)
    right.set_ylabel(r"relative error $\|g_k - g\| / \|g\|$")
    right.set_title("relative error (0 at k = T, not drawn)")
    left.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{title} (T = {T})")
    return fig


def run_title(run: Run) -> str:
    """What a run's figures are of: task, cell, layers, direction, H and T, then the folder's name.

    Examples
    --------
    >>> from bptt.runs.reader import Run
    >>> config = {"task": "parity", "cell": "lstm", "layers": 2, "bidirectional": True, "hidden": 32, "seq_len": 30}
    >>> run_title(Run("runs/p", config=config))
    'parity, lstm, 2 layers, bidirectional, H = 32, T = 30 (p)'
    """
    folder = os.path.basename(os.path.normpath(run.path))
    c, parts = run.config, []
    for key in ("task", "cell"):
        if isinstance(c.get(key), str):
            parts.append(c[key])
    layers = c.get("layers")
    if isinstance(layers, int) and layers > 1:
        parts.append(f"{layers} layers")
    if c.get("bidirectional") is True:
        parts.append("bidirectional")
    for key, letter in (("hidden", "H"), ("proj_size", "P")):
        if isinstance(c.get(key), int) and c[key] > 0:
            parts.append(f"{letter} = {c[key]}")
    T = run.summary.get("seq_len", c.get("seq_len"))  # a data file's T is in the summary, not the settings
    if isinstance(T, int):
        parts.append(f"T = {T}")
    return f"{', '.join(parts)} ({folder})" if parts else folder


def run_figures(run: Run) -> dict[str, Figure]:
    """The figures of one training run (a `bptt.runs.Run`): {"loss.png",
    "grad_norm.png", "dh_norms.png"} and, for a stacked run, "dh_layers.png" (the layer x time map of
    the last recorded update), each included when the run logged what it needs."""
    name = run_title(run)
    steps = run.steps
    figures = {}
    loss = run.column("loss")
    if loss is not None:
        curves = {"training loss (one batch)": (steps, loss)}
        held_out = run.column("eval_loss")
        if held_out is not None and np.isfinite(held_out).any():
            keep = np.isfinite(held_out)
            curves["held-out loss"] = (steps[keep], held_out[keep])
        finite = np.concatenate([v[np.isfinite(v)] for _, v in curves.values()])
        drawn = {label: envelope(y) for label, (_, y) in curves.items()}
        curves = {label: (x[drawn[label]], y[drawn[label]]) for label, (x, y) in curves.items()}
        baseline = run.summary.get("baseline_loss")
        baseline = baseline if isinstance(baseline, (int, float)) and np.isfinite(baseline) else None
        figures["loss.png"] = learning_curves_figure(
            curves, f"Loss\n{name}", baseline=baseline, baseline_label="task baseline",
            logy=bool(finite.size and np.all(finite > 0)), points={"held-out loss": "o"},
        )
    norms = run.column("grad_norm")
    if norms is not None:
        clip_column = run.column("clipped")
        clipped = np.zeros(len(steps), bool) if clip_column is None else np.nan_to_num(clip_column) > 0
        mode, threshold = run.clipping
        figures["grad_norm.png"] = grad_norm_figure(
            steps, norms, clipped, threshold if mode == "norm" else None,
            f"Gradient norm before clipping\n{name}",
            clip_label="clipped" if mode != "value" else f"clipped element-wise at {threshold:g}",
        )
    if run.dh_norms is not None and run.dh_steps is not None:
        full = run.config.get("k1") is None
        rows = np.unique(np.linspace(0, len(run.dh_steps) - 1, min(len(run.dh_steps), MAX_HEATMAP_ROWS)).astype(int))
        figures["dh_norms.png"] = dh_norms_heatmap_figure(
            run.dh_steps[rows], run.dh_norms[rows], "$\\|\\partial L/\\partial h_t\\|$ during training"
            + (" (top layer, forward direction)" if run.dh_layers is not None else "") + f"\n{name}",
            xlabel="timestep t" if full else "timestep within the update's window",
        )
    if run.dh_layers is not None and run.dh_steps is not None:
        last = run.dh_layers[-1]
        keep = ~np.all(np.isnan(last), axis=(0, 1))  # a short last window is padded at the start
        figures["dh_layers.png"] = layer_time_figure(
            last[..., keep], f"$\\|\\partial L/\\partial h_t\\|$ per layer at update {run.dh_steps[-1]}\n{name}")
    return figures


def learning_curves_grid_figure(panels: list[tuple[str, Mapping[str, tuple[ArrayLike, ArrayLike]]]], title: str,
                                ylabel: str, baseline: float | None = None,
                                baseline_label: str = "baseline", logy: bool = True) -> Figure:
    """Side-by-side learning curves sharing the y axis: panels is [(panel title, {label: (steps,
    values)})], the same labels (and colours) in every panel."""
    fig, axes = _figure(ncols=len(panels), width=4.6, height=4.2, sharey=True)
    for ax, (panel_title, curves) in zip(axes[0], panels):
        for i, (label, (steps, values)) in enumerate(curves.items()):
            ax.plot(steps, values, color=color(i), lw=1.5, label=label)
        if baseline is not None:
            ax.axhline(baseline, color="black", ls="--", lw=1.0, label=baseline_label)
        if logy:
            log_scale(ax)
        ax.set_title(panel_title)
        ax.set_xlabel("training step")
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    # one legend for all panels, below them: inside a panel it would hide some curve
    handles, labels = axes[0, -1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 2 * len(panels)), fontsize=9)  # wraps on narrow figures
    fig.suptitle(title)
    return fig


# ----------------------------------------------------------------- sweeps
def sweep_metrics_figure(x: ArrayLike, panels: list, xlabel: str, title: str, logx: bool = False) -> Figure:
    """Metrics of a sweep against one swept setting, one panel per metric and one line per group of
    runs (e.g. per cell): the mean over seeds with markers, a band from the lowest to the highest
    seed, each seed a faint dot.

    x: (K,) the setting's values. panels: dicts with "ylabel" and "lines" ({label: (K, S) values,
    NaN where a seed is missing}), optionally "baseline" ((K,) values, drawn dashed), "logy" and
    "fraction" (values are 0 or 1 per seed; the line is the fraction of seeds at 1, with k/n marked).
    """
    import warnings

    x = np.asarray(x, float)
    fig, axes = _figure(ncols=len(panels), width=5.2, height=4.2)
    for ax, panel in zip(axes[0], panels):
        for i, (label, values) in enumerate(panel["lines"].items()):
            values = np.asarray(values, float)
            counted = np.isfinite(values).sum(axis=1)
            with np.errstate(invalid="ignore"):
                mean = np.where(counted > 0, np.nansum(values, axis=1) / np.maximum(counted, 1), np.nan)
            ax.plot(x, mean, "o-", color=color(i), lw=1.8, ms=5, label=label)
            if panel.get("fraction"):
                # k/n centred on its point, one row per line: above a low point, below a high one, so
                # that lines meeting at one point keep their counts apart and inside the axes
                for xi, m, n in zip(x, mean, counted):
                    if n:
                        below = m > 0.5
                        ax.annotate(f"{round(m * n)}/{n}", (xi, m), textcoords="offset points", ha="center",
                                    va="top" if below else "bottom",
                                    xytext=(0, -(7 + 9 * i) if below else 7 + 9 * i), fontsize=7, color=color(i))
                continue
            if values.shape[1] > 1:
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a length with no finished seed
                    low, high = np.nanmin(values, axis=1), np.nanmax(values, axis=1)
                ax.fill_between(x, low, high, color=color(i), alpha=0.15, lw=0)
                for j in range(values.shape[1]):
                    ax.plot(x, values[:, j], ".", color=color(i), alpha=0.45, ms=4)
        if panel.get("baseline") is not None:
            ax.plot(x, panel["baseline"], color="black", ls="--", lw=1.0, label="task baseline")
        if panel.get("fraction"):
            ax.set_ylim(-0.05, 1.1)
            ax.margins(x=0.08)  # room for the counts of the first and last points
        if panel.get("logy"):
            log_scale(ax)
        if logx:
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [f"{v:g}" for v in x])
            ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(panel["ylabel"])
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def sweep_curves_figure(panels: list, title: str, ylabel: str = "held-out loss", logy: bool = True) -> Figure:
    """Held-out loss against training step for every run of a sweep, one panel per group of runs
    (the seeds of one setting), in a grid of up to four columns.

    panels: [(panel title, {label: (steps (R,), values (R,))}, baseline loss or None)].
    """
    ncols = min(4, len(panels))
    nrows = -(-len(panels) // ncols)
    fig, axes = _figure(ncols=ncols, nrows=nrows, width=3.8, height=2.9)
    for ax, (panel_title, curves, baseline) in zip(axes.flat, panels):
        for i, (label, (steps, values)) in enumerate(curves.items()):
            ax.plot(steps, values, color=color(i), lw=1.2, label=label)
        if baseline is not None:
            ax.axhline(baseline, color="black", ls="--", lw=1.0, label="task baseline")
        if logy:
            log_scale(ax)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(True, alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    handles, labels = max((ax.get_legend_handles_labels() for ax in axes.flat[:len(panels)]), key=lambda h: len(h[1]))
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=8)
    fig.suptitle(title)
    return fig
