"""`bptt gradcheck`: one gradient computed every way the package knows, compared against reverse mode.

The loss is the MSE of the hidden states against random targets. With --truncate k the sequence is
cut into chunks of k steps, each starting from the previous chunk's final state held constant (no
gradient flows across a cut), and every mode computes that same truncated gradient. A mode the cell
cannot run (forward mode for a cell without tangent rules, PyTorch for a cell it does not have) is
listed as skipped, with the reason.

Finite differences, and why they are taken of the loss's change: a central difference with step eps
errs by about eps^2 |d3L/dtheta3| / 6 (truncation) plus eps_mach |L| / eps (round-off in L itself).
The MSE is L ~ 1 while a coordinate's gradient is small, ~1/H (a mean over T N H terms), so at
H = 128, T = 100 the round-off term alone, 1.1e-16 / 1e-6 against a gradient of ~4e-5, is 3e-6
relative: a FAIL on correct code. A larger step trades it for truncation error and, in relu cells,
for the kinks it crosses (measured: 4e-3 at eps = 1e-4). Instead each chunk's loss is measured from
its value at the unperturbed weights, sum((h - h0) (h + h0 - 2 y)) / size, which is L - L0 exactly
but is summed from small terms, so its round-off scales with the change, not with L: with the same
eps = 1e-6 and two evaluations per coordinate the error there is 9e-9 (LSTM) and 7e-10 (relu RNN).
"""

from __future__ import annotations

import importlib.util
import json
import time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence, cast

import click
import numpy as np

from ..cells.cell import Cell
from ..cells.registry import CELL_NAMES, CELL_NAMING, cell_factory, cell_name, make_cell
from ..cells.stack import Stack
from ..core.import_path import ImportPathError
from ..core.types import Array, IntArray, Params, State
from ..core.unroll import Gradients, backward, forward
from ..modes.checkpointing import backward_checkpointed, forward_checkpointed
from ..modes.finite_diff import central_difference, relative_error
from ..modes.forward_mode import jvp
from ..modes.rtrl import rtrl
from . import cli, progress_stream

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import RNNBase

# a mode: (cell, xs, targets, chunks, the state each chunk starts from, the coordinates to check, progress) -> the
# gradient at those coordinates; progress(n) advances the bar by n
Mode = Callable[[Cell | Stack, Array, Array, Sequence[slice], Sequence[State | None], Mapping[str, IntArray],
                 Callable[[int], object]], Params]

EXHAUSTIVE_MAX_PARAMS = 2000  # above this the default checks SAMPLE_DEFAULT coordinates per parameter
EXHAUSTIVE_MAX_STACK_PARAMS = 500  # a stack's forward mode is one jvp per coordinate, not RTRL
SAMPLE_DEFAULT = 20


def chunk_starts(cell: Cell | Stack, xs: Array, chunks: Sequence[slice]) -> list[State | None]:
    """The state each chunk starts from (held constant: no gradient crosses a cut)."""
    state: State | None
    starts: list[State | None]
    state, starts = None, []
    for chunk in chunks:
        starts.append(state)
        _, tape = forward(cell, xs[chunk], state)
        state = tape.final_state
    return starts


def choose_coordinates(cell: Cell | Stack, sample: int | None, rng: np.random.Generator) -> dict[str, IntArray]:
    """{parameter name: sorted flat indices to check}: all of them, or `sample` random ones each
    (CS231n's sparse gradient check)."""
    chosen: dict[str, IntArray] = {}
    for name, p in cell.params.items():
        if sample is None or sample >= p.size:
            chosen[name] = np.arange(p.size)
        else:
            chosen[name] = np.sort(rng.choice(p.size, size=sample, replace=False))
    return chosen


def _at(grads: Mapping[str, Array], coordinates: Mapping[str, IntArray]) -> Params:
    return {name: np.ravel(grads[name])[idx] for name, idx in coordinates.items()}


class _Swept:
    """A reverse-mode gradient of the MSE, chunk by chunk, with the given forward and backward.

    Its values at the coordinates, and as `rms` the RMS of each parameter's whole gradient (once called).
    """

    rms: dict[str, float]

    # the tape is whatever forward_fn returns and backward_fn takes: a Tape, CheckpointTape or StackTape
    def __init__(self, forward_fn: Callable[[Cell | Stack, Array, State | None], tuple[Array, Any]],
                 backward_fn: Callable[[Cell | Stack, Any, Array], Gradients]) -> None:
        self.forward_fn, self.backward_fn = forward_fn, backward_fn

    def __call__(self, cell: Cell | Stack, xs: Array, targets: Array, chunks: Sequence[slice],
                 starts: Sequence[State | None], coordinates: Mapping[str, IntArray],
                 progress: Callable[[int], object]) -> Params:
        total = {name: np.zeros_like(p) for name, p in cell.params.items()}
        scale = 2.0 / targets.size  # mse's gradient factor: dL/dh = 2 (h - target) / size
        for chunk, state in zip(chunks, starts):
            hs, tape = self.forward_fn(cell, xs[chunk], state)
            for name, g in self.backward_fn(cell, tape, scale * (hs - targets[chunk])).params.items():
                total[name] += g
        progress(len(coordinates))
        self.rms = {name: float(np.sqrt(np.mean(g * g))) for name, g in total.items()}
        return _at(total, coordinates)


reverse_mode = _Swept(forward, backward)
checkpointed_mode = _Swept(forward_checkpointed, backward_checkpointed)


def rtrl_mode(cell: Cell | Stack, xs: Array, targets: Array, chunks: Sequence[slice], starts: Sequence[State | None],
              coordinates: Mapping[str, IntArray], progress: Callable[[int], object]) -> Params:
    """RTRL, fed the loss gradient online: step t's dL/dh_t as soon as h_t exists."""
    total = {name: np.zeros_like(p) for name, p in cell.params.items()}
    scale = 2.0 / targets.size
    for chunk, state in zip(chunks, starts):
        chunk_targets = targets[chunk]
        # RTRL runs on a single cell only: gradcheck takes the jvp mode for a stack
        result = rtrl(cast(Cell, cell), xs[chunk], lambda t, h: scale * (h - chunk_targets[t]), state)
        for name, g in result.params.items():
            total[name] += g
    progress(len(coordinates))
    return _at(total, coordinates)


def jvp_mode(cell: Cell | Stack, xs: Array, targets: Array, chunks: Sequence[slice], starts: Sequence[State | None],
             coordinates: Mapping[str, IntArray], progress: Callable[[int], object]) -> Params:
    """Forward mode one coordinate at a time: dL/dtheta_k = sum_t <dL/dh_t, dh_t/dtheta_k>, with
    dh_t/dtheta_k from `jvp` along the unit tangent e_k (the sampled coordinates only)."""
    scale = 2.0 / targets.size
    out: Params = {}
    for name, idx in coordinates.items():
        values = np.zeros(len(idx))
        for j, flat_index in enumerate(idx):
            tangent = np.zeros(cell.params[name].size)
            tangent[flat_index] = 1.0
            for chunk, state in zip(chunks, starts):
                result = jvp(cell, xs[chunk], state, {name: tangent.reshape(cell.params[name].shape)})
                values[j] += np.sum(scale * (result.hs - targets[chunk]) * result.hs_dot)
        out[name] = values
        progress(1)
    return out


def finite_differences(cell: Cell | Stack, xs: Array, targets: Array, chunks: Sequence[slice],
                       starts: Sequence[State | None], coordinates: Mapping[str, IntArray],
                       progress: Callable[[int], object]) -> Params:
    """Central differences (step 1e-6, two forward passes per coordinate and chunk) of each chunk's
    share of the MSE, measured from its value at the unperturbed weights (see the module docstring)."""
    out: Params = {name: np.zeros(len(idx)) for name, idx in coordinates.items()}
    scale = 1.0 / targets.size
    bases = [forward(cell, xs[chunk], state)[0].copy() for chunk, state in zip(chunks, starts)]
    for name, param in cell.params.items():
        for chunk, state, h0 in zip(chunks, starts, bases):
            def loss_change(chunk: slice = chunk, state: State | None = state, h0: Array = h0) -> float:
                hs, _ = forward(cell, xs[chunk], state)
                # this chunk's (h - y)^2 - (h0 - y)^2, summed from small terms: no cancellation against L
                return scale * float(np.sum((hs - h0) * (hs + h0 - 2 * targets[chunk])))

            out[name] += central_difference(loss_change, param, indices=coordinates[name]).ravel()[coordinates[name]]
        progress(1)
    return out


def pytorch_mode(cell: Cell | Stack, xs: Array, targets: Array, chunks: Sequence[slice],
                 starts: Sequence[State | None], coordinates: Mapping[str, IntArray],
                 progress: Callable[[int], object]) -> Params:
    """PyTorch autograd on nn.RNN/LSTM/GRU with the same weights, the state detached at each cut."""
    import torch  # optional: only when installed and asked for (imported before the clock starts)

    stack = isinstance(cell, Stack)
    name = cell.cell_name if isinstance(cell, Stack) else cell_name(cell)
    if name not in CELL_NAMES:
        raise NotImplementedError(f"PyTorch has no {name} cell (it has rnn, rnn-relu, lstm and gru)")
    kind = {"rnn": torch.nn.RNN, "rnn-relu": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[name]
    kwargs: dict[str, Any]  # the module's options: str, int and bool
    kwargs = {"nonlinearity": "relu" if name == "rnn-relu" else "tanh"} if name.startswith("rnn") else {}
    if isinstance(cell, Stack):
        kwargs.update(num_layers=cell.num_layers, bidirectional=cell.bidirectional)
    module = kind(cell.input_size, cell.hidden_size, **kwargs).double()
    module.load_state_dict({key if stack else key + "_l0": torch.from_numpy(value) for key, value in cell.params.items()})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend with each other
    try:
        grads = _pytorch_gradients(torch, module, cell, xs, targets, chunks)
    finally:
        torch.set_num_threads(threads)
    progress(len(coordinates))
    return _at(grads, coordinates)


def _pytorch_gradients(torch: ModuleType, module: RNNBase, cell: Cell | Stack, xs: Array, targets: Array,
                       chunks: Sequence[slice]) -> Params:
    state = None
    for chunk in chunks:
        out, state = module(torch.from_numpy(xs[chunk]), state)
        loss = ((out - torch.from_numpy(targets[chunk])) ** 2).sum() / targets.size
        loss.backward()
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    grads = dict(module.named_parameters())
    # the loss depends on every weight and bias, so backward has given each one a gradient
    return {name: cast("Tensor", grads[name if name in grads else name + "_l0"].grad).numpy() for name in cell.params}


def max_relative_error(grads: Mapping[str, Array], reference: Mapping[str, Array],
                       scales: Mapping[str, float] | None = None) -> float:
    """The largest norm-wise relative error over the parameters.

    scales: for sampled coordinates, {name: the RMS of that parameter's whole reference gradient},
    so the error is the RMS difference on the sampled coordinates over it: the error an exhaustive
    check would report if the sampled coordinates are typical (a few small coordinates alone would
    make any difference look large).
    """
    if scales is None:
        return max(relative_error(grads[name], reference[name]) for name in reference)
    return max(float(np.sqrt(np.mean((grads[name] - reference[name]) ** 2))) / scales[name]
               if scales[name] > 0 else relative_error(grads[name], reference[name]) for name in reference)


CELL_HELP = f"Cell to check: {CELL_NAMING}."


@cli.command()
@click.option("--cell", "cell_name", metavar="NAME", default="lstm", show_default=True, help=CELL_HELP)
@click.option("--hidden", type=click.IntRange(min=1), default=8, show_default=True,
              help="Hidden size H.")
@click.option("--input-size", type=click.IntRange(min=1), default=3, show_default=True,
              help="Input size D.")
@click.option("--batch-size", "--batch", "batch", type=click.IntRange(min=1), default=2, show_default=True,
              help="Sequences per batch N (--batch is the older spelling).")
@click.option("--seq-len", type=click.IntRange(min=1), default=20, show_default=True,
              help="Sequence length T.")
@click.option("--truncate", type=click.IntRange(min=1), default=None,
              help="Truncated BPTT: cut the sequence every k steps (default: the full gradient).")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-6, show_default=True,
              help="Largest relative error accepted against reverse mode.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for weights, inputs and targets.")
@click.option("--layers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Layers L: more than one checks a bptt.Stack (as torch.nn.RNN/LSTM/GRU(num_layers=L)).")
@click.option("--bidirectional", is_flag=True,
              help="Both directions in every layer (a bptt.Stack); not with --truncate.")
@click.option("--torch/--no-torch", "use_torch", default=None,
              help="Include PyTorch autograd (default: when torch is installed).")
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help=f"Check K random coordinates of each parameter instead of all of them (the error is "
                   f"then the RMS difference on them over the RMS of the whole reverse-mode gradient); "
                   f"forward mode runs one jvp per coordinate instead of RTRL  [default: all coordinates "
                   f"up to {EXHAUSTIVE_MAX_PARAMS} parameters ({EXHAUSTIVE_MAX_STACK_PARAMS} for a stack), "
                   f"else {SAMPLE_DEFAULT}]")
@click.option("--json", "as_json", is_flag=True,
              help="Print the result as one JSON object: settings, each mode's error and time, passed.")
def gradcheck(cell_name: str, hidden: int, input_size: int, batch: int, seq_len: int, truncate: int | None, tol: float,
              seed: int, layers: int, bidirectional: bool, use_torch: bool | None, sample: int | None,
              as_json: bool) -> None:
    """Compute one gradient by reverse mode, checkpointed reverse mode, forward mode (RTRL, or jvp
    per coordinate with --sample), finite differences and PyTorch; print each one's error against
    reverse mode and its time.

    The loss is the MSE of the hidden states against random targets, in float64. With --truncate,
    the state is cut every K steps in every mode. Above 2000 parameters (500 for stacks) only a
    random sample of coordinates is checked, and the error is scaled by each gradient's RMS.
    Finite differences are central, step 1e-6, of the loss's change from its value at the
    unperturbed weights (which keeps round-off at the size of the change: 9e-9 at --hidden 128
    --seq-len 100): two forward passes per checked coordinate, 0.6 s for the 80 coordinates
    sampled there. A mode the cell cannot run (forward mode without tangent rules, PyTorch for a
    cell it does not have) is listed as skipped, with the reason. Prints one line per mode on
    stdout (one JSON object with --json); the progress bar goes to stderr. Exit status 0 when
    every mode run is within --tol, 1 when any is above it, 2 for a bad option or a cell that
    cannot be found.

    \b
    Examples:
      bptt gradcheck                                     # LSTM, every mode
      bptt gradcheck --cell gru --layers 2 --bidirectional
      bptt gradcheck --hidden 64 --sample 50 --json | jq .passed
      PYTHONPATH=. bptt gradcheck --cell mycells:MGU     # a cell of your own
    """
    torch_installed = importlib.util.find_spec("torch") is not None
    if use_torch and not torch_installed:
        raise click.UsageError("--torch asked for, but torch is not installed (pip install torch==2.13.0)")
    torch_declined = use_torch is False and torch_installed
    use_torch = torch_installed if use_torch is None else use_torch
    if truncate is not None and truncate > seq_len:
        raise click.BadParameter(f"{truncate} is longer than the sequence (--seq-len {seq_len}): there "
                                 "is nothing to cut", param_hint="--truncate")

    if bidirectional and truncate is not None and truncate < seq_len:
        raise click.BadParameter("a bidirectional stack cannot be truncated: its reverse direction needs "
                                 "the whole sequence", param_hint="--truncate")
    try:
        cell_factory(cell_name)
    except ImportPathError as exc:
        raise click.BadParameter(f"{exc.problem}. Expected {exc.expected}", param_hint="--cell") from exc

    rng = np.random.default_rng(seed)
    stacked = layers > 1 or bidirectional
    cell: Cell | Stack
    if stacked:
        cell = Stack(cell_name, input_size, hidden, layers, bidirectional=bidirectional, seed=seed)
    else:
        cell = make_cell(cell_name, input_size, hidden, seed=seed)
    xs = rng.standard_normal((seq_len, batch, input_size))
    targets = rng.standard_normal((seq_len, batch, hidden * (2 if bidirectional else 1)))
    k = truncate or seq_len
    chunks = [slice(start, start + k) for start in range(0, seq_len, k)]
    starts = chunk_starts(cell, xs, chunks)
    if use_torch:  # import torch and warm it up outside the clock: its first call costs ~1 s
        try:
            pytorch_mode(cell, xs[:1], targets[:1], [slice(0, 1)], [None], {}, lambda n: None)
        except NotImplementedError:  # a cell PyTorch does not have: its row says so
            pass
    if sample is None and cell.num_params > (EXHAUSTIVE_MAX_STACK_PARAMS if stacked else EXHAUSTIVE_MAX_PARAMS):
        sample = SAMPLE_DEFAULT
    coordinates = choose_coordinates(cell, sample, rng)
    checked = sum(len(idx) for idx in coordinates.values())

    modes: list[tuple[str, Mode]] = [
        ("reverse (BPTT)", reverse_mode),
        ("reverse, checkpointed", checkpointed_mode),
        ("forward (RTRL)", rtrl_mode) if sample is None and not stacked else ("forward (jvp)", jvp_mode),
        ("finite differences", finite_differences),
    ]
    if use_torch:
        modes.append(("PyTorch autograd", pytorch_mode))

    cut = f"truncated every {truncate} steps" if truncate else "full BPTT"
    which = (f"all {cell.num_params} parameters" if checked == cell.num_params else
             f"{sample} random coordinates of each parameter ({checked} of {cell.num_params})")
    shape = f"L={layers}{' bidirectional' if bidirectional else ''} " if stacked else ""
    header = (f"gradcheck {cell_name}: {shape}D={input_size} H={hidden} N={batch} T={seq_len}, {cut}, "
              f"float64, loss = mse(h, random targets); checked: {which}")
    rows: list[dict[str, Any]]
    rows, reference, failed, skipped = [], None, [], []
    with click.progressbar(length=len(modes) * len(coordinates), label="checking", file=progress_stream(),
                           item_show_func=lambda label: label) as bar:
        for label, run in modes:
            bar.update(0, label)
            begin = time.perf_counter()
            try:
                grads = run(cell, xs, targets, chunks, starts, coordinates, bar.update)
            except NotImplementedError as exc:  # the cell lacks what this mode needs: the reason names it
                rows.append({"mode": label, "error": None, "ms": None, "skipped": str(exc)})
                skipped.append(label)
                bar.update(len(coordinates))
                continue
            elapsed = time.perf_counter() - begin
            if reference is None:
                reference, error = grads, None
                scales = None if sample is None else reverse_mode.rms  # the reference is reverse_mode's
            else:
                error = max_relative_error(grads, reference, scales)
                if not error <= tol:  # NaN fails too
                    failed.append(label)
            rows.append({"mode": label, "error": error, "ms": elapsed * 1e3})
    if torch_declined:
        click.echo("(PyTorch not included: --no-torch)", err=True)
    elif not use_torch:
        click.echo("(PyTorch not included: it is not installed; pip install torch==2.13.0 adds it)", err=True)
    if as_json:
        click.echo(json.dumps({
            "cell": cell_name, "layers": layers, "bidirectional": bidirectional, "D": input_size, "H": hidden,
            "N": batch, "T": seq_len, "truncate": truncate, "seed": seed, "parameters": cell.num_params,
            "checked": checked, "tol": tol, "modes": rows, "failed": failed, "skipped": skipped,
            "passed": not failed}))
    else:
        click.echo(header)
        click.echo(f"{'mode':<24}{'max rel. error vs reverse':>27}{'time':>12}")
        for row in rows:
            if "skipped" in row:
                click.echo(f"{row['mode']:<24}skipped: {row['skipped']}")
                continue
            error_text = "(reference)" if row["error"] is None else f"{row['error']:.2e}"
            click.echo(f"{row['mode']:<24}{error_text:>27}{row['ms']:>9.1f} ms")
        if failed:
            click.echo(f"FAIL: {', '.join(failed)} above tolerance {tol:g}")
        else:
            ran = f"every mode run ({len(skipped)} skipped)" if skipped else "every mode"
            click.echo(f"PASS: {ran} within {tol:g} of reverse mode")
    if failed:
        raise SystemExit(1)
