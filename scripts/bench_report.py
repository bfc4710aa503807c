"""The bench's output: the run's header, the row table, the summary lines, the training-loop table,
and --show, which prints a stored record as the run that wrote it did."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from bench_harness import bptt_flops, gemm_fraction
from bench_peers import GEMM_SIZE
from bench_stack import format_stack_table
from bptt.cells.registry import CELL_NAMES

# Column order. naive (a textbook numpy loop, since replaced by stepwise) appears in older records.
PEER_ORDER = ["ref", "torch", "jax", "stepwise", "naive"]


def ordered(peers) -> list[str]:
    return sorted(peers, key=lambda p: (PEER_ORDER.index(p) if p in PEER_ORDER else len(PEER_ORDER), p))


def fraction_of_gemm(row: dict, runner: str = "bptt") -> float:
    """A runner's matrix-product rate (bptt's flop count over its time) over numpy's GEMM rate, each
    from its fastest run in the row: on a shared machine the fastest run is the one least disturbed,
    and the 30 ms GEMM is disturbed most. A peer at fraction p of the GEMM rate can only be beaten by
    a factor r if bptt reaches p / r of it."""
    if "best_seconds" not in row:  # records written before best times were kept
        return row["fraction_of_gemm"]
    flops = bptt_flops(row["cell"], row["T"], row["B"], row["D"], row["H"])
    return gemm_fraction(flops, row["best_seconds"], runner)


def format_table(rows: list[dict], peers: list[str]) -> str:
    """One line per row; '-' where a peer did not run on it (not installed, or stepwise on a big row)."""
    header = ["cell", "dtype", "T", "B", "D", "H", "bptt ms", "bptt of gemm"]
    for peer in peers:
        header += [f"{peer} ms", f"bptt/{peer}", f"{peer} of gemm"]
    header += ["bptt GFLOP/s", "tape B/step", "/ states", "max grad err"]
    lines = [header]
    for r in rows:
        line = [r["cell"], r["dtype"], r["T"], r["B"], r["D"], r["H"], f"{1e3 * r['seconds']['bptt']:.2f}",
                f"{100 * fraction_of_gemm(r):.0f}%"]
        for peer in peers:
            if peer in r["ratio"]:
                line += [f"{1e3 * r['seconds'][peer]:.2f}", f"{r['ratio'][peer]:.2f}",
                         f"{100 * fraction_of_gemm(r, peer):.0f}%" if "best_seconds" in r else "-"]
            else:
                line += ["-", "-", "-"]
        line += [
            f"{r['bptt_gflops']:.1f}",
            f"{r['tape_bytes_per_step']:.0f}", f"{r['tape_bytes_per_step'] / r['state_bytes_per_step']:.1f}",
            f"{max(r['gradient_error'].values()):.1e}",
        ]
        lines.append([str(x) for x in line])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["| " + " | ".join(s.rjust(w) for s, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(out)


def summary(rows: list[dict], peers: list[str]) -> str:
    """Per cell and dtype, each peer's median and worst ratio over the rows it ran on."""
    width = max([5, *map(len, peers)])
    lines = []
    for cell in [c for c in CELL_NAMES if any(r["cell"] == c for r in rows)]:
        for dtype in ("float32", "float64"):
            chosen = [r for r in rows if r["cell"] == cell and r["dtype"] == dtype]
            for peer in peers:
                ratios = [r["ratio"][peer] for r in chosen if peer in r["ratio"]]
                cpu = [r["cpu_ratio"][peer] for r in chosen if peer in r.get("cpu_ratio", {})]
                if ratios:
                    lines.append(
                        f"{cell:4s} {dtype}: bptt/{peer:{width}s} median {statistics.median(ratios):.2f}, "
                        f"worst {max(ratios):.2f} over {len(ratios)} rows"
                        + (f" (from CPU time: median {statistics.median(cpu):.2f}, worst {max(cpu):.2f})"
                           if cpu else "")
                    )
    return "\n".join(lines)


def format_train(rows: list[dict]) -> str:
    lines = ["| loop | dtype | T | B | H | bptt steps/s | torch steps/s | bptt/torch (higher is faster) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        torch_rate = r["steps_per_second"].get("torch")
        lines.append(
            f"| adding, LSTM, Adam, clip 1.0 | {r['dtype']} | {r['seq_len']} | {r['batch_size']} | {r['hidden']} "
            f"| {r['steps_per_second']['bptt']:.1f} | {'-' if torch_rate is None else f'{torch_rate:.1f}'} "
            f"| {r['ratio'].get('torch', float('nan')):.2f} |"
        )
    return "\n".join(lines)


def against_line(against: dict) -> str:
    return f"ref: bptt at {against['revision']} (commit {against['commit'][:12]}), timed beside the working tree's"


def pinning_line(cores) -> str:
    if not cores:
        return "not pinned: each framework's threads run on any core (XLA's beyond its thread cap)"
    return (f"pinned to CPU {','.join(map(str, cores))} (os.sched_setaffinity): every framework's threads "
            f"share {'this core' if len(cores) == 1 else 'these cores'}")


def header(info: dict) -> str:
    """The lines a run prints before its rows: machine, thread caps, BLAS, versions, the revision."""
    lines = [f"{info['date']}  {info['machine']['cpu']}, {info['machine']['cores']} cores, "
             f"load {info['machine']['load_average']}",
             f"OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: {info['machine']['openblas_env']}",
             f"threads per framework (numpy BLAS, PyTorch, XLA): {info['threads']}; "
             f"{info['settle_seconds']} s pause before each timed call",
             pinning_line(info.get("pinned_cores"))]
    for lib in info["blas"]:
        lines.append(f"{'BLAS' if lib.get('library') in ('openblas', 'mkl', 'blis') else 'thread pool'}: {lib}")
    lines.append(f"versions: {info['versions']}")
    if info.get("against"):
        lines.append(against_line(info["against"]))
    return "\n".join(lines)


def gemm_line(dtype: str, gflops: float) -> str:
    return f"numpy {GEMM_SIZE}^3 matrix product, {dtype}: {gflops:.1f} GFLOP/s"


def show(path: Path) -> None:
    """Print the tables of the last record in a results file, as the run that wrote it did."""
    record = json.loads(path.read_text().splitlines()[-1])
    peers = ordered({peer for row in record["rows"] for peer in row["ratio"]})
    print(f"{record['command']}  ({record['date']}, load {record['machine']['load_average']} before, "
          f"{record['machine'].get('load_average_after')} after, {record.get('threads')} thread(s))")
    if "pinned_cores" in record:  # records before pinning say nothing about it
        print(pinning_line(record["pinned_cores"]))
    if record.get("against"):
        print(against_line(record["against"]))
    print(format_table(record["rows"], peers))
    print(summary(record["rows"], peers))
    if record.get("stack_rows"):
        print(format_stack_table(record["stack_rows"], record["rows"]))
    if record.get("train_rows"):
        print(format_train(record["train_rows"]))
