"""`bptt sweep` under real processes: the local pool interrupted with SIGINT and started again, a local
worker killed, Ctrl-C while the command starts, a Dask scheduler and two workers on 127.0.0.1 with
and without one of them killed mid-sweep, the scheduler killed mid-sweep, a cluster without workers,
a cluster on TLS, a cell defined in a module the package does not know (on local and Dask workers),
and a grid point against the plain `bptt train` of the same settings.

Every test asserts outcomes (exit codes, messages, files, bitwise results), never how long anything
took: they pass with every core of the machine busy.

"Bitwise the same checkpoint" means every array of checkpoint.npz but `elapsed`, the wall seconds
trained, which no two runs share; logs are compared without their `elapsed` field, results.csv
without `wall_seconds` and `worker`. Every process a test starts is stopped by the test, by its id;
all traffic stays on 127.0.0.1.
"""

import csv
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bptt.runs.logs import read_jsonl
from bptt.runs.reader import read_run
from conftest import bptt_command as command, finish as finish_within

SPEC = """
[base]
task = "adding"
steps = 200
hidden = 8
seq_len = 10
batch_size = 8
eval_size = 16
eval_every = 50
checkpoint_every = 20
record_every = 40
[grid]
cell = ["rnn", "gru"]
seed = [0, 1, 2]
"""
NAMES = [f"cell={cell},seed={seed}" for cell in ("rnn", "gru") for seed in range(3)]
BLAS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ENV = {k: v for k, v in os.environ.items() if k not in BLAS}  # the sweep sets them for its workers
SINGLE = dict(ENV, **{k: "1" for k in BLAS})


def start_sweep(spec, out, *args, cwd=None):
    # SIGINT as a terminal's Ctrl-C finds it, even where this test runs with SIGINT ignored
    return subprocess.Popen(command("sweep", spec, "--out", out, "--sync-seconds", 0, *args), env=ENV, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


finish = functools.partial(finish_within, timeout=240)  # a sweep takes longer than one run


def stop(process):
    """Stop a process this test started, by its id: SIGTERM, then SIGKILL."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


def wait_for_checkpoint(out, process, timeout=120):
    """Return once the sweep has written some run's checkpoint (it is under way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if list(Path(out).glob("runs/*/checkpoint.npz")):
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint in {out} after {timeout} s")


def results(out):
    with open(Path(out) / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in ("wall_seconds", "worker")} for row in rows]


def checkpoint_arrays(folder):
    with np.load(Path(folder) / "checkpoint.npz") as data:
        return {key: data[key] for key in data.files}


def assert_same_run(a, b):
    """Two run folders hold bitwise the same training: checkpoint arrays but `elapsed`, logs but `elapsed`."""
    ours, theirs = checkpoint_arrays(a), checkpoint_arrays(b)
    assert sorted(ours) == sorted(theirs)
    for key in ours:
        if key != "elapsed":
            assert ours[key].dtype == theirs[key].dtype and np.array_equal(ours[key], theirs[key]), (a, key)
    for log in ("metrics.jsonl", "dh_norms.jsonl"):
        strip = [[{k: v for k, v in r.items() if k != "elapsed"} for r in read_jsonl(Path(folder) / log)]
                 for folder in (a, b)]
        assert strip[0] == strip[1], (a, log)


def assert_same_sweep(out, reference):
    assert without_timing(results(out)) == without_timing(results(reference))
    assert sorted(p.name for p in (Path(out) / "runs").iterdir()) == sorted(NAMES)
    for name in NAMES:
        assert_same_run(Path(out) / "runs" / name, Path(reference) / "runs" / name)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def reference(spec, tmp_path_factory):
    """The sweep run once, uninterrupted, on two local workers."""
    out = tmp_path_factory.mktemp("reference") / "sweep"
    code, stdout, stderr = finish(start_sweep(spec, out, "--workers", 2))
    assert code == 0, stderr
    assert "6 runs: 6 done, 0 failed" in stdout
    assert [row["status"] for row in results(out)] == ["done"] * 6
    return out


# ---------------------------------------------------------------- the same run as `bptt train`
def test_a_grid_point_is_the_plain_bptt_train_run_with_the_same_settings(spec, reference, tmp_path):
    plain = tmp_path / "plain"
    done = subprocess.run(command("train", "--task", "adding", "--cell", "gru", "--seed", 1, "--steps", 200,
                                  "--hidden", 8, "--seq-len", 10, "--batch-size", 8, "--eval-size", 16,
                                  "--eval-every", 50, "--checkpoint-every", 20, "--record-every", 40,
                                  "--out", plain, "--quiet"),
                          env=SINGLE, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    swept = reference / "runs" / "cell=gru,seed=1"
    assert_same_run(swept, plain)  # trained in chunks of one checkpoint, on two workers
    configs = [json.loads((folder / "config.json").read_text()) for folder in (swept, plain)]
    assert configs[0].pop("out") == str(swept) and configs[1].pop("out") == str(plain)
    assert configs[0] == configs[1]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (swept, plain)]
    for summary in summaries:
        summary.pop("wall_seconds")
    assert summaries[0] == summaries[1]
    # an ordinary run folder: read back, evaluated and drawn by the commands that read runs
    assert read_run(swept).steps[-1] == 200
    evaluated = [subprocess.run(command("evaluate", folder), env=SINGLE, capture_output=True, text=True, timeout=60)
                 for folder in (swept, plain)]
    assert evaluated[0].returncode == 0 and evaluated[0].stdout == evaluated[1].stdout
    drawn = subprocess.run(command("plot", swept, "--out", tmp_path / "figures"), env=SINGLE, capture_output=True,
                           text=True, timeout=120)
    assert drawn.returncode == 0 and (tmp_path / "figures" / "loss.png").exists()


def test_the_sweep_writes_its_summary_and_figures(reference):
    summary = (reference / "summary.md").read_text()
    assert "6 runs: 6 done, 0 failed" in summary
    assert "| cell | done | held-out loss | baseline loss | steps | wall s |" in summary
    assert "| rnn | 3/3 |" in summary and "| gru | 3/3 |" in summary
    assert (reference / "figures" / "curves.png").stat().st_size > 0
    assert (reference / "spec.toml").read_text() == SPEC


# ---------------------------------------------------------------- Ctrl-C, and starting again
def snapshot(out):
    """Every file under the sweep folder but the lock files: (size, mtime, inode)."""
    return {str(p.relative_to(out)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
            for p in Path(out).rglob("*") if p.is_file() and p.name != ".lock"}


def test_an_interrupted_sweep_started_again_ends_as_one_never_interrupted(spec, reference, tmp_path):
    out = tmp_path / "sweep"
    process = start_sweep(spec, out, "--workers", 2)
    wait_for_checkpoint(out, process)
    os.kill(process.pid, signal.SIGINT)
    code, _, stderr = finish(process)
    assert code == 130, stderr
    assert "interrupted (done " in stderr and "Run the same command again" in stderr and "Traceback" not in stderr
    statuses = [row["status"] for row in results(out)]
    assert "pending" in statuses, statuses  # it stopped mid-sweep
    for folder in (out / "runs").iterdir():  # every run it began can be continued: a checkpoint, no temporaries
        files = {p.name for p in folder.iterdir()} - {".lock"}
        assert "checkpoint.npz" in files and not [name for name in files if name.endswith(".tmp")], files

    code, stdout, stderr = finish(start_sweep(spec, out, "--workers", 2))
    assert code == 0, stderr
    assert "6 runs: 6 done, 0 failed" in stdout
    assert_same_sweep(out, reference)

    before = snapshot(out)
    code, stdout, stderr = finish(start_sweep(spec, out, "--workers", 2))
    assert code == 0 and "6 runs: 6 done, 0 failed" in stdout, stderr
    assert "0 to run, 6 finished before" in stderr
    assert snapshot(out) == before  # nothing rewritten


# ---------------------------------------------------------------- a worker dies
def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the pool's processes through /proc")
def test_a_killed_local_worker_loses_no_run_and_leaves_no_temporaries(spec, reference, tmp_path):
    out, system_tmp = tmp_path / "sweep", tmp_path / "tmp"
    system_tmp.mkdir()
    process = subprocess.Popen(command("sweep", spec, "--out", out, "--sync-seconds", 0, "--workers", 2),
                               env=dict(ENV, TMPDIR=str(system_tmp)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        wait_for_checkpoint(out, process)
        workers = [c for c in children(process.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
                   and b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert len(workers) == 2, workers
        environ = Path(f"/proc/{workers[0]}/environ").read_bytes().split(b"\0")
        assert all(f"{name}=1".encode() in environ for name in BLAS)  # single-threaded BLAS, set by the sweep
        os.kill(workers[0], signal.SIGKILL)
    except BaseException:
        stop(process)
        raise
    code, stdout, stderr = finish(process)
    assert code == 0, stderr  # whether the killed worker held a run or was between two, no run is lost
    assert "6 runs: 6 done, 0 failed" in stdout
    assert_same_sweep(out, reference)
    assert not (out / ".workers").exists() and list(system_tmp.iterdir()) == []


# ---------------------------------------------------------------- Ctrl-C as the command starts
STARTING = """
import os, sys

class Marker:  # says when bptt's own imports begin, after its first lines ran
    def find_spec(self, name, path=None, target=None):
        if name == "bptt.cells":
            os.write(1, b"importing\\n")
        return None

sys.meta_path.insert(0, Marker())
sys.argv[0] = "bptt"  # as the console script runs it
from bptt.cli import cli
cli(prog_name="bptt")
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2, 0.3])
def test_ctrl_c_as_the_command_starts_is_not_a_traceback(spec, tmp_path, delay):
    # the console script's way in: SIGINT at some point of the imports (numpy's first), of reading the spec,
    # or of the runs
    process = subprocess.Popen([sys.executable, "-c", STARTING, "sweep", str(spec), "--out", str(tmp_path / "out")],
                               env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stdout.readline() == b"importing\n"
    time.sleep(delay)  # any moment gives the same outcome
    os.kill(process.pid, signal.SIGINT)
    code, _, stderr = finish(process)
    stderr = stderr.decode()
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert code == 130 or (code == 1 and "Aborted!" in stderr), (code, stderr)  # click's own Ctrl-C, between two


# ---------------------------------------------------------------- a Dask cluster on 127.0.0.1
@pytest.fixture
def start_cluster(distributed, tmp_path):
    """start_cluster(workers={"worker-a": {}, ...}, tls=None) -> (address, processes): a Dask scheduler
    and workers (each name with the environment variables it adds), each its own process on 127.0.0.1
    with no dashboard, in a folder of its own; with `tls` (a folder of certificates from
    `certificates`), on TLS. Every process is stopped by its id at the end."""
    processes, logs, counter = {}, [], [0]

    def launch(name, *args, env=None):
        folder = tmp_path / name
        folder.mkdir()
        logs.append(open(folder / "log", "w"))
        processes[name] = subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=folder,
                                           env=dict(SINGLE, **(env or {})), stdout=subprocess.DEVNULL,
                                           stderr=logs[-1])

    def start(workers=None, tls=None):
        workers = {"worker-a": {}, "worker-b": {}} if workers is None else workers
        counter[0] += 1
        scheduler_file = tmp_path / f"scheduler-{counter[0]}.json"
        tls_args = lambda role: [] if tls is None else [  # noqa: E731
            "--tls-ca-file", tls / "ca.pem", "--tls-cert", tls / f"{role}.pem", "--tls-key", tls / f"{role}.key"]
        launch("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
               "--scheduler-file", scheduler_file, *(["--protocol", "tls"] if tls else []), *tls_args("scheduler"))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline and processes["scheduler"].poll() is None, "no scheduler"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith(("tls" if tls else "tcp") + "://127.0.0.1:")
        for name, env in workers.items():
            launch(name, "worker", "--scheduler-file", scheduler_file, "--host", "127.0.0.1", "--nthreads", "1",
                   "--no-nanny", "--no-dashboard", "--name", name, *tls_args("worker"), env=env)
        security = None if tls is None else distributed.Security(
            tls_ca_file=str(tls / "ca.pem"), tls_client_cert=str(tls / "client.pem"),
            tls_client_key=str(tls / "client.key"), require_encryption=True)
        if workers:
            with distributed.Client(address, timeout=30, set_as_default=False, security=security) as client:
                client.wait_for_workers(len(workers), timeout=60)
        return address, processes

    try:
        yield start
    finally:
        for name in [n for n in processes if n != "scheduler"] + ["scheduler"]:
            if name in processes:
                stop(processes[name])
        for log in logs:
            log.close()


@pytest.fixture
def cluster(start_cluster):
    """A scheduler and two workers, worker-a and worker-b."""
    return start_cluster()


def test_a_sweep_on_a_dask_cluster_uses_both_workers_and_matches_the_local_one(spec, reference, cluster, tmp_path):
    address, _ = cluster
    out = tmp_path / "sweep"
    code, stdout, stderr = finish(start_sweep(spec, out, "--scheduler", address))
    assert code == 0, stderr
    assert "6 runs: 6 done, 0 failed" in stdout
    rows = results(out)
    assert {w for row in rows for w in row["worker"].split(";")} == {"worker-a", "worker-b"}
    assert_same_sweep(out, reference)


def test_a_worker_killed_mid_sweep_loses_no_run(spec, reference, cluster, tmp_path):
    address, processes = cluster
    out = tmp_path / "sweep"
    process = start_sweep(spec, out, "--scheduler", address)
    try:
        wait_for_checkpoint(out, process)
        os.kill(processes["worker-b"].pid, signal.SIGKILL)
        assert processes["worker-b"].wait(timeout=30) == -signal.SIGKILL
    except BaseException:
        stop(process)
        raise
    code, stdout, stderr = finish(process)
    assert code == 0, stderr
    assert "6 runs: 6 done, 0 failed" in stdout
    assert_same_sweep(out, reference)
    assert "worker-a" in {w for row in results(out) for w in row["worker"].split(";")}


def write_chars_text(path):
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40)


def write_data_file(path):
    inputs = np.random.default_rng(0).standard_normal((40, 6, 2))
    np.savez(path, inputs=inputs, targets=(inputs[:, :, 0].sum(axis=1) > 0).astype(np.int64))


@pytest.mark.parametrize("key, name, write, base", [
    ("text", "text.txt", write_chars_text, 'task = "chars"\nseq_len = 10\neval_size = 4\n'),
    ("data", "mine.npz", write_data_file, 'task = "data"\n'),
])
def test_an_input_file_travels_to_workers_that_cannot_read_it(cluster, tmp_path, key, name, write, base):
    """The chars text and a --data file: the workers run in folders of their own, where the spec's
    relative path means nothing, so the file's bytes go with each chunk."""
    address, _ = cluster
    here = tmp_path / "here"
    here.mkdir()
    write(here / name)
    (here / "spec.toml").write_text(f'[base]\n{base}{key} = "{name}"\nsteps = 20\nhidden = 8\nbatch_size = 4\n'
                                    'eval_every = 10\ncheckpoint_every = 10\n[grid]\ncell = ["gru", "lstm"]\n')
    code, stdout, stderr = finish(start_sweep("spec.toml", "out", "--scheduler", address, cwd=here))
    assert code == 0, stderr
    assert "2 runs: 2 done, 0 failed" in stdout
    run = here / "out" / "runs" / "cell=gru"
    assert json.loads((run / "config.json").read_text())[key] == name  # as the spec gave it
    evaluated = subprocess.run(command("evaluate", "out/runs/cell=gru", "--json"), cwd=here, env=SINGLE,
                               capture_output=True, text=True, timeout=60)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "eval_loss" in json.loads(evaluated.stdout)
    if key == "data":  # integer targets at the last step: a classification, with its accuracy
        assert "eval_accuracy" in json.loads(evaluated.stdout)


# ---------------------------------------------------------------- the scheduler lost, no workers, TLS
def test_a_sweep_ends_when_its_scheduler_dies_and_continues_on_this_machine(spec, reference, start_cluster, tmp_path):
    address, processes = start_cluster()
    out = tmp_path / "sweep"
    process = start_sweep(spec, out, "--scheduler", address, "--connect-timeout", 5)
    workers = [p for name, p in processes.items() if name != "scheduler"]
    try:
        wait_for_checkpoint(out, process)
        for worker in workers:  # frozen: no more run can finish, so the sweep is under way when the scheduler goes
            os.kill(worker.pid, signal.SIGSTOP)
        assert process.poll() is None, "the sweep ended before its workers were frozen"
        os.kill(processes["scheduler"].pid, signal.SIGKILL)
        code, stdout, stderr = finish(process)
    finally:
        stop(process)
        for worker in workers:  # a frozen process acts on SIGTERM only once continued: ended here, by its id
            worker.kill()
            worker.wait(timeout=60)
    assert code == 1, stderr
    assert f"Error: the Dask scheduler at {address} has not answered for 5 s (--connect-timeout)" in stderr
    assert "the sweep stopped (done " in stderr and "every run is saved where it can continue" in stderr
    assert "with a working --scheduler, or on this machine without it" in stderr
    assert "Traceback" not in stderr and "distributed.client - ERROR" not in stderr
    assert not [p for p in out.rglob("*.tmp")]
    code, stdout, stderr = finish(start_sweep(spec, out, "--workers", 2))
    assert code == 0, stderr
    assert_same_sweep(out, reference)


def test_a_cluster_without_workers_ends_the_sweep_after_the_connect_timeout(spec, start_cluster, tmp_path):
    address, _ = start_cluster(workers={})
    code, stdout, stderr = finish(start_sweep(spec, tmp_path / "sweep", "--scheduler", address, "--connect-timeout", 5))
    assert code == 1, stderr
    assert f"Error: the Dask cluster at {address} has had no worker for 5 s (--connect-timeout)" in stderr
    assert "the sweep stopped (done 0, failed 0, to go 6 of 6)" in stderr
    assert not (tmp_path / "sweep" / "runs").exists() or not list((tmp_path / "sweep" / "runs").iterdir())


def openssl(*args, cwd):
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certificates(tmp_path):
    """A CA and a certificate signed by it for each of the scheduler, the workers and the client."""
    if shutil.which("openssl") is None:
        if os.environ.get("BPTT_REQUIRE_DASK") == "1":  # CI runs every cluster test, TLS included
            pytest.fail("BPTT_REQUIRE_DASK=1 but the openssl command, which makes the test certificates, is missing")
        pytest.skip("needs the openssl command to make certificates")
    folder = tmp_path / "tls"
    folder.mkdir()
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", 1, "-subj", "/CN=bptt-test-ca",
            cwd=folder)
    for role in ("scheduler", "worker", "client"):
        openssl("req", *key, "-keyout", f"{role}.key", "-out", f"{role}.csr", "-subj", f"/CN={role}", cwd=folder)
        openssl("x509", "-req", "-in", f"{role}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{role}.pem", "-days", 1, cwd=folder)
    return folder


def test_a_sweep_on_a_tls_cluster(spec, reference, start_cluster, certificates, tmp_path):
    address, _ = start_cluster(tls=certificates)
    out = tmp_path / "sweep"
    refused = finish(start_sweep(spec, out, "--scheduler", address))  # no client certificate: one clear message
    assert refused[0] == 2 and "needs TLS settings" in refused[2] and not out.exists(), refused[2]
    code, stdout, stderr = finish(start_sweep(spec, out, "--scheduler", address, "--tls-ca-file",
                                              certificates / "ca.pem", "--tls-cert", certificates / "client.pem",
                                              "--tls-key", certificates / "client.key"))
    assert code == 0, stderr
    assert "warning" not in stderr
    assert_same_sweep(out, reference)


# ---------------------------------------------------------------- a cell the package does not know
CELL_MODULE = '''
"""A tanh cell written as a step pair only, in a module of its own."""
from typing import NamedTuple

import numpy as np

import bptt


class TanhCache(NamedTuple):
    x: np.ndarray
    h_prev: np.ndarray
    h: np.ndarray


class StepTanh(bptt.Cell):
    Cache = TanhCache
    gate_names = ("h",)

    def step_forward(self, x, state):
        x, (h_prev,) = self.check_step(x, state)
        p = self.params
        h = np.tanh(x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"])
        return h, TanhCache(x, h_prev, h)

    def step_backward(self, dstate, cache):
        (dh,) = self.check_step_gradient(dstate, cache)
        da = dh * (1 - cache.h * cache.h)  # backprop through tanh
        grads = {"weight_ih": da.T @ cache.x, "weight_hh": da.T @ cache.h_prev, "bias_ih": da.sum(0),
                 "bias_hh": da.sum(0)}
        return da @ self.params["weight_ih"], da @ self.params["weight_hh"], grads
'''
CELL_SPEC = SPEC.replace('cell = ["rnn", "gru"]\nseed = [0, 1, 2]', 'cell = ["gru", "sweep_test_cells:StepTanh"]\n'
                                                                  'seed = [0, 1]')


@pytest.fixture
def cell_module(tmp_path, monkeypatch):
    """A folder holding sweep_test_cells.py, on this process's path too (to train the same run here)."""
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "sweep_test_cells.py").write_text(CELL_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    return folder


def custom_spec(tmp_path):
    path = tmp_path / "cells.toml"
    path.write_text(CELL_SPEC)
    return path


def assert_as_train_makes_it(run, tmp_path, seed):
    import bptt
    from bptt.sweep.spec import parse_spec

    base = parse_spec(CELL_SPEC).base
    bptt.train(bptt.TrainConfig(**base, cell="sweep_test_cells:StepTanh", seed=seed, out=str(tmp_path / f"plain{seed}")))
    assert_same_run(run, tmp_path / f"plain{seed}")


def test_a_cell_by_import_path_in_a_local_sweep(cell_module, tmp_path):
    out = tmp_path / "sweep"
    process = subprocess.Popen(command("sweep", custom_spec(tmp_path), "--out", out, "--workers", 2, "--sync-seconds", 0),
                               env=dict(ENV, PYTHONPATH=str(cell_module)), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    code, stdout, stderr = finish(process)
    assert code == 0, stderr
    assert "4 runs: 4 done, 0 failed" in stdout
    run = out / "runs" / "cell=sweep_test_cells%3AStepTanh,seed=1"
    assert json.loads((run / "config.json").read_text())["cell"] == "sweep_test_cells:StepTanh"
    assert_as_train_makes_it(run, tmp_path, seed=1)


def test_a_cell_by_import_path_on_dask_workers_that_can_import_it(cell_module, start_cluster, tmp_path):
    address, _ = start_cluster(workers={"worker-a": {"PYTHONPATH": str(cell_module)}})
    out = tmp_path / "sweep"
    process = subprocess.Popen(command("sweep", custom_spec(tmp_path), "--out", out, "--scheduler", address,
                                       "--sync-seconds", 0),
                               env=dict(ENV, PYTHONPATH=str(cell_module)), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    code, stdout, stderr = finish(process)
    assert code == 0, stderr
    assert_as_train_makes_it(out / "runs" / "cell=sweep_test_cells%3AStepTanh,seed=0", tmp_path, seed=0)


def test_a_dask_worker_that_cannot_import_the_cell_says_what_it_needs(cell_module, start_cluster, tmp_path):
    address, _ = start_cluster(workers={"worker-b": {}})
    out = tmp_path / "sweep"
    process = subprocess.Popen(command("sweep", custom_spec(tmp_path), "--out", out, "--scheduler", address),
                               env=dict(ENV, PYTHONPATH=str(cell_module)), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    code, stdout, stderr = finish(process)
    assert code == 1, stderr
    assert "4 runs: 2 done, 2 failed" in stdout
    failed = [row for row in results(out) if row["status"] == "failed"]
    assert [row["cell"] for row in failed] == ["sweep_test_cells:StepTanh"] * 2
    for row in failed:
        assert row["error"].startswith("SettingError: cell must be"), row["error"]
        assert "(on worker worker-b: a cell named MODULE:CLASS must be importable there too)" in row["error"]
