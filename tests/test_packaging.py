"""The distributions: a wheel with the package only, and an sdist that tests itself."""

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import bptt

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    """Build the sdist and the wheel once (in this environment: no download)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out),
                    str(REPO)], check=True, capture_output=True)
    return out


def test_the_wheel_holds_the_package_its_type_marker_and_licence_only(dist):
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"bptt", f"bptt-{bptt.__version__}.dist-info"}
    assert "bptt/py.typed" in names and f"bptt-{bptt.__version__}.dist-info/licenses/LICENSE" in names
    assert "bptt/cells/lstm.py" in names and not any("tests" in n.split("/") for n in names)
    metadata = zipfile.ZipFile(wheel).read(f"bptt-{bptt.__version__}.dist-info/METADATA").decode()
    assert "License-Expression: BSD-3-Clause" in metadata and "Classifier: Typing :: Typed" in metadata


def test_the_sdist_collects_and_runs_its_own_tests(dist, tmp_path):
    """What a distribution packager runs first: unpack, then collect the tests against the unpacked
    package (its conftest, data, scripts and experiments included), and run a few."""
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
        archive.extractall(tmp_path, filter="data")
    root = tmp_path / f"bptt-{bptt.__version__}"
    for needed in ("LICENSE", "tests/conftest.py", "tests/data/old_run_folders/expected.json", "scripts/bench.py",
                   "experiments/common.py", "benchmarks/results.jsonl", "bptt/py.typed"):
        assert f"bptt-{bptt.__version__}/{needed}" in names, needed
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"}
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q"], cwd=root, env=env,
                               capture_output=True, text=True)
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    assert "error" not in collected.stdout.lower().splitlines()[-1]
    ran = subprocess.run([sys.executable, "-c", "import bptt; print(bptt.__file__)"], cwd=root, env=env,
                         capture_output=True, text=True)
    assert ran.stdout.strip() == str(root / "bptt" / "__init__.py")  # the sdist's own package
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cells.py",
                            "tests/test_tasks.py"], cwd=root, env=env, capture_output=True, text=True)
    assert tests.returncode == 0, tests.stdout[-2000:]
