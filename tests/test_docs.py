"""The documentation's sources keep up with the code: every public name is in the API reference, and
every experiment is a gallery page (a titled reST docstring with its narrative)."""

import ast
import inspect
import re
from pathlib import Path

import bptt

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if p.name != "common.py")


def test_the_api_reference_lists_every_public_name():
    listed = set(re.findall(r"^   bptt\.(\w+)$", (ROOT / "docs" / "api.rst").read_text(), flags=re.M))
    modules = {name for name in bptt.__all__ if inspect.ismodule(getattr(bptt, name))}  # diagnostics, optim
    assert set(bptt.__all__) - modules <= listed, set(bptt.__all__) - listed
    assert listed <= set(bptt.__all__) | {"core", "training", "plots"}


def test_every_experiment_is_a_gallery_page():
    assert EXPERIMENTS
    for path in EXPERIMENTS:
        doc = ast.get_docstring(ast.parse(path.read_text()), clean=False)
        lines = doc.strip().splitlines()
        assert set(lines[1]) == {"="} and len(lines[1]) == len(lines[0]), f"{path.name}: no reST title"
        for section in ("What it shows", "The paper", "What to look for", "Run it"):
            assert f"\n{section}\n" in doc, f"{path.name}: no section {section!r}"
        assert f"python experiments/{path.name} --out DIR [--quick]" in doc, path.name


def bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_the_two_commands_are_the_same_everywhere_and_ci_runs_the_test_one():
    """The README's quickstart is two commands; the getting-started page repeats them, and CI installs
    what the test command installs and runs the same pytest."""
    readme = bash_blocks((ROOT / "README.md").read_text())[:2]
    assert readme == bash_blocks((ROOT / "docs" / "getting_started.md").read_text())[:2]
    train, test = readme
    assert train.endswith("bptt train") and "pip install -e ." in train
    install = re.search(r"pip install -e '\.\[([\w,]+)\]' (torch==[\d.]+)", test)
    assert install and test.endswith("python -m pytest -q"), test
    ci = (ROOT / ".ci" / "run").read_text()
    ci_install = re.search(r"pip install .*-e '\.\[([\w,]+)\]' (torch==[\d.]+)", ci)
    assert ci_install and ci_install.groups() == install.groups(), (ci_install, install.groups())
    assert "\n.venv/bin/python -m pytest -q\n" in ci
