"""bptt as it was at a git revision, imported beside the working tree's bptt under another name.

`git archive REV bptt` is unpacked into a temporary folder and imported as the package
`bptt_at_<commit>`. bptt's modules import each other only relatively (`from .cells import ...`), so
the copy resolves every import inside itself and never touches the working tree's `bptt`; the
loader refuses a revision whose code imports `bptt` by its absolute name.

    with bptt_at("main~3") as revision:
        revision.package.forward(...), revision.commit
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent


class RevisionError(ValueError):
    """The revision cannot be loaded: not a commit, no bptt/ in it, or an import that would leak."""


@dataclass(frozen=True)
class Revision:
    name: str  # as given on the command line, e.g. "main~3"
    commit: str  # the full hash it resolved to
    package: ModuleType  # its bptt, imported as bptt_at_<commit>


def resolve(revision: str, repo: Path = REPO) -> str:
    """The full commit hash `revision` names in `repo`; RevisionError naming it if there is none."""
    if not revision or revision.startswith("-"):  # git would read it as an option
        raise RevisionError(f"revision {revision!r} is not a git revision")
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
                           capture_output=True, text=True, cwd=repo)
    if found.returncode != 0:
        raise RevisionError(f"revision {revision!r}: no such commit in {repo}")
    return found.stdout.strip()


def unpack(commit: str, folder: Path, repo: Path = REPO) -> Path:
    """Write the commit's bptt/ into `folder`; return the package folder."""
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "bptt"], capture_output=True, cwd=repo)
    if archive.returncode != 0:
        raise RevisionError(f"commit {commit[:12]} has no bptt/ folder: {archive.stderr.decode().strip()}")
    # the "data" filter refuses links and paths outside the folder (Python 3.12 warns without one)
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, **safe)
    return folder / "bptt"


def absolute_bptt_imports(package_folder: Path) -> list[str]:
    """`file:line` of every `import bptt...` / `from bptt... import`: under another name, those
    would load the working tree's modules into the old version."""
    found = []
    for path in sorted(package_folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            if any(name == "bptt" or name.startswith("bptt.") for name in names):
                found.append(f"{path.relative_to(package_folder.parent)}:{node.lineno}")
    return found


def import_as(package_folder: Path, name: str) -> ModuleType:
    """Import the package in `package_folder` as `name`, submodules included."""
    spec = importlib.util.spec_from_file_location(
        name, package_folder / "__init__.py", submodule_search_locations=[str(package_folder)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package  # before running it: its relative imports look the parent up by name
    try:
        spec.loader.exec_module(package)
    except BaseException:
        forget(name)
        raise
    return package


def forget(name: str) -> None:
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@contextlib.contextmanager
def bptt_at(revision: str, repo: Path = REPO):
    """The Revision for `revision`, its files kept until the block ends (modules may import lazily)."""
    commit = resolve(revision, repo)
    name = f"bptt_at_{commit[:12]}"
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as folder:
        package_folder = unpack(commit, Path(folder), repo)
        leaks = absolute_bptt_imports(package_folder)
        if leaks:
            raise RevisionError(f"revision {revision!r}: bptt at {commit[:12]} imports bptt by its absolute "
                                f"name ({', '.join(leaks)}), so a copy would mix in the working tree's modules")
        package = import_as(package_folder, name)
        try:
            yield Revision(revision, commit, package)
        finally:
            forget(name)
