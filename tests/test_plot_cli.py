"""`bptt plot RUN_DIR` and the figures behind it, on a run folder in the documented format."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from bptt import plots
from bptt.cli import cli
from bptt.runs.reader import read_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(folder, steps=40, T=12, clip=1.0, every=5):
    """A run folder as bptt.train writes it (config.json, metrics.jsonl, dh_norms.jsonl, summary.json)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"task": "adding", "cell": "lstm", "clip": "none" if clip is None else "norm",
              "clip_threshold": 1.0 if clip is None else clip, "k1": None, "k2": None, "lr": 0.01, "seed": 0}
    (folder / "config.json").write_text(json.dumps(config))
    norms = np.exp(rng.normal(0, 1, steps))
    with open(folder / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            record = {"step": step, "loss": float(1 / step), "grad_norm": float(norms[step - 1]),
                      "clipped": clip is not None and bool(norms[step - 1] > clip), "lr": 0.01,
                      "elapsed": 0.1 * step}
            if step % 10 == 0:
                record["eval_loss"] = 1.5 / step
            f.write(json.dumps(record) + "\n")
    dh = np.exp(-0.3 * np.arange(T)[::-1])[None, :] * np.exp(rng.normal(0, 0.1, (steps // every, 1)))
    with open(folder / "dh_norms.jsonl", "w") as f:
        for i, row in enumerate(dh):
            f.write(json.dumps({"step": (i + 1) * every, "dh_norms": row.tolist()}) + "\n")
    (folder / "summary.json").write_text(json.dumps({"eval_loss": 1.5 / steps, "baseline_loss": 1 / 6}))
    return norms, dh


def test_plot_command_writes_three_pngs(tmp_path):
    write_run(tmp_path / "run")
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    for name in ("loss.png", "grad_norm.png", "dh_norms.png"):
        data = (tmp_path / "run" / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000
        assert name in result.output


def test_figures_show_the_run_numbers(tmp_path):
    norms, dh = write_run(tmp_path / "run", clip=1.0)
    run = read_run(tmp_path / "run")
    assert run.clipping == ("norm", 1.0)
    figures = plots.run_figures(run)
    ax = figures["grad_norm.png"].axes[0]
    line, threshold, events = ax.get_lines()[:3]
    np.testing.assert_allclose(line.get_ydata(), norms)
    assert list(threshold.get_ydata()) == [1.0, 1.0]
    np.testing.assert_allclose(events.get_ydata(), norms[norms > 1.0])  # one marker per clip event
    assert ax.get_yscale() == "log"
    image = figures["dh_norms.png"].axes[0].get_images()[0]
    np.testing.assert_allclose(image.get_array(), dh)  # rows: recorded steps, columns: timesteps
    loss_ax = figures["loss.png"].axes[0]
    assert loss_ax.get_yscale() == "log"
    train, held_out, baseline = loss_ax.get_lines()
    np.testing.assert_allclose(held_out.get_xdata(), np.arange(10, 41, 10))  # only evaluation steps
    assert list(baseline.get_ydata()) == [1 / 6, 1 / 6]


def test_ragged_windows_and_a_torn_last_line(tmp_path):
    """TBPTT windows of different lengths line up at their last step; a half-written line is dropped."""
    write_run(tmp_path / "run")
    with open(tmp_path / "run" / "dh_norms.jsonl", "a") as f:
        f.write(json.dumps({"step": 99, "dh_norms": [1.0, 2.0]}) + "\n")
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"step": 41, "loss": 0.')
    run = read_run(tmp_path / "run")
    assert run.steps[-1] == 40
    assert run.dh_norms.shape == (9, 12)
    assert np.isnan(run.dh_norms[-1, :10]).all() and list(run.dh_norms[-1, 10:]) == [1.0, 2.0]


def test_run_without_dh_norms_or_clipping_still_plots(tmp_path):
    write_run(tmp_path / "run", clip=None)
    (tmp_path / "run" / "dh_norms.jsonl").unlink()
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "run")])
    assert result.exit_code == 0
    assert not (tmp_path / "run" / "dh_norms.png").exists()
    assert read_run(tmp_path / "run").clipping == ("none", None)


@pytest.mark.parametrize("breakage, message", [
    ("missing", "does not exist"),
    ("no_metrics", "has no metrics.jsonl"),
    ("bad_json", "line 2: not valid JSON"),
    ("bad_dh", "line 9: expected {'step': int, 'dh_norms'"),
])
def test_bad_run_folders_are_usage_errors(tmp_path, breakage, message):
    folder = tmp_path / "run"
    if breakage != "missing":
        write_run(folder)
    if breakage == "no_metrics":
        (folder / "metrics.jsonl").unlink()
    elif breakage == "bad_json":
        with open(folder / "metrics.jsonl", "r+") as f:
            lines = f.readlines()
            lines[1] = "{not json\n"
            f.seek(0)
            f.writelines(lines)
    elif breakage == "bad_dh":
        with open(folder / "dh_norms.jsonl", "a") as f:
            f.write(json.dumps({"step": 99, "norms": [1.0, 2.0]}) + "\n")
    result = CliRunner().invoke(cli, ["plot", str(folder)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_plot_reads_a_real_training_run(tmp_path):
    """The formats agree with what bptt.train writes: a tiny run, then `bptt plot` on it."""
    import bptt

    run_dir = tmp_path / "run"
    bptt.train(bptt.TrainConfig(task="adding", cell="gru", hidden=4, seq_len=8, steps=6, batch_size=4,
                                eval_every=3, eval_size=8, record_every=2, checkpoint_every=6,
                                out=str(run_dir)))
    result = CliRunner().invoke(cli, ["plot", str(run_dir)])
    assert result.exit_code == 0, result.output
    run = read_run(run_dir)
    assert list(run.dh_steps) == [2, 4, 6] and run.dh_norms.shape == (3, 8)
    assert run.clipping == ("norm", 1.0)
    figures = plots.run_figures(run)
    np.testing.assert_allclose(figures["dh_norms.png"].axes[0].get_images()[0].get_array(), run.dh_norms)
    for name in ("loss.png", "grad_norm.png", "dh_norms.png"):
        assert (run_dir / name).read_bytes()[:8] == PNG_MAGIC


def test_a_stacked_runs_figures_name_its_shape_and_draw_evaluations_as_points(tmp_path):
    import bptt

    run_dir = tmp_path / "stacked"
    bptt.train(bptt.TrainConfig(task="parity", cell="lstm", layers=2, bidirectional=True, hidden=4, seq_len=6,
                                steps=6, batch_size=4, eval_every=3, eval_size=8, record_every=2, out=str(run_dir)))
    run = read_run(run_dir)
    figures = plots.run_figures(run)
    expected = "parity, lstm, 2 layers, bidirectional, H = 4, T = 6 (stacked)"
    for name, figure in figures.items():
        titles = [ax.get_title() for ax in figure.axes] + [figure._suptitle.get_text() if figure._suptitle else ""]
        assert any(expected in title for title in titles), name
    (held_out,) = [line for line in figures["loss.png"].axes[0].lines if line.get_label() == "held-out loss"]
    assert held_out.get_linestyle() == "None" and held_out.get_marker() == "o"
    assert list(held_out.get_xdata()) == [3, 6]


def test_a_log_axis_within_a_decade_is_labelled_with_plain_numbers():
    """0.15 to 0.22 on a log axis: '0.2', not matplotlib's 2×10⁻¹; beyond 1e-3..1e4, powers of ten."""
    narrow = plots.learning_curves_figure({"held-out": (np.arange(3), np.array([0.22, 0.18, 0.15]))}, "narrow")
    wide = plots.learning_curves_figure({"held-out": (np.arange(3), np.array([1e-7, 1e-5, 1e-2]))}, "wide")
    for figure in (narrow, wide):
        figure.canvas.draw()
    narrow_labels = [t.get_text() for t in narrow.axes[0].yaxis.get_ticklabels(which="both") if t.get_text()]
    wide_labels = [t.get_text() for t in wide.axes[0].yaxis.get_ticklabels(which="both") if t.get_text()]
    assert "0.2" in narrow_labels and not any("times" in label or "10^" in label for label in narrow_labels)
    assert "0.01" in wide_labels and any("10^{-6}" in label for label in wide_labels)


def test_fraction_counts_sit_inside_the_panel():
    values = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    figure = plots.sweep_metrics_figure([25, 50, 100], [{"ylabel": "reached", "fraction": True,
                                                         "lines": {"a": values, "b": 1 - values}}], "T", "t")
    figure.canvas.draw()
    ax = figure.axes[0]
    box = ax.get_window_extent()
    counts = [text for text in ax.texts if "/" in text.get_text()]
    assert len(counts) == 6
    for text in counts:
        extent = text.get_window_extent()
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1, text
