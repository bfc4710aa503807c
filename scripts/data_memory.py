"""Peak memory of reading a data file (`bptt train --data`), against the size of its arrays.

Writes an .npz of inputs (S, T, D) and targets (S, T, O), float64, of about --mb megabytes of arrays
(compressed with --compressed), then, in a fresh process each, reads it

    bptt      as `bptt train --data` does: DataTask(path), its baseline, one batch and the held-out set
    np.load   numpy's own way, for comparison: np.load, then each array turned time-major

and prints each one's peak resident memory above what the process held before (VmHWM - VmRSS, from
/proc/self/status: Linux only) as a multiple of the arrays' size. The goal is at most 2.

    python scripts/data_memory.py                 # 200 MB of arrays
    python scripts/data_memory.py --mb 1000 --compressed
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import json, sys, time
import numpy as np
import bptt.training.data as data


def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


path, how = sys.argv[1], sys.argv[2]
before = status("VmRSS")
started = time.perf_counter()
if how == "bptt":
    task = data.DataTask(path)
    task.baseline
    task.sample(np.random.default_rng(0), 32)
    task.eval_batch(0, 0)
    held = task.data.inputs.nbytes + task.data.targets.nbytes
else:
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays = {k: np.ascontiguousarray(np.swapaxes(v, 0, 1)) for k, v in arrays.items()}
    held = sum(v.nbytes for v in arrays.values())
seconds = time.perf_counter() - started
print(json.dumps({"peak": status("VmHWM") - before, "held": held, "seconds": seconds}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=200, help="megabytes of arrays in the file (default 200)")
    parser.add_argument("--compressed", action="store_true", help="write it with numpy.savez_compressed")
    args = parser.parse_args()
    T, D, O = 100, 8, 2
    S = max(2, int(args.mb * 1e6 / (T * (D + O) * 8)))
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "data.npz")
        inputs = rng.standard_normal((S, T, D))
        targets = rng.standard_normal((S, T, O))
        arrays = inputs.nbytes + targets.nbytes
        (np.savez_compressed if args.compressed else np.savez)(path, inputs=inputs, targets=targets)
        del inputs, targets
        size = os.path.getsize(path)
        print(f"data file: S = {S}, T = {T}, D = {D}, O = {O}; arrays {arrays / 1e6:.0f} MB, file {size / 1e6:.0f} MB"
              f"{' (compressed)' if args.compressed else ''}")
        for how in ("bptt", "np.load"):
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, path, how], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout)
            print(f"{how:8s} peak {result['peak'] / 1e6:7.0f} MB above the start = {result['peak'] / arrays:.2f} x the "
                  f"arrays; holds {result['held'] / 1e6:.0f} MB after; {result['seconds']:.1f} s "
                  f"({time.perf_counter() - started:.1f} s with the interpreter)")


if __name__ == "__main__":
    main()
