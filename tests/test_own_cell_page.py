"""docs/guide/own_cell.md runs as written: its Python blocks in order (their printed output equal to
the text block right after them), its shell blocks as commands, `mycells.py` assembled from the
page's blocks (the imports, then the classes it includes from experiments/own_cell.py) in a fresh
folder, the cell named mycells:MGU as a reader would."""

import ast
import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "guide" / "own_cell.md"
FENCE = re.compile(r"^```(\{literalinclude\} (\S+)|\w+)\n(.*?)^```", flags=re.M | re.S)


def page_blocks():
    """(kind, text) for each fenced block: python, bash, toml, text, or ("include", source)."""
    out = []
    for match in FENCE.finditer(PAGE.read_text()):
        if match.group(2):
            path = (PAGE.parent / match.group(2)).resolve()
            name = re.search(r":pyobject: (\w+)", match.group(3)).group(1)
            source = path.read_text()
            node = next(n for n in ast.parse(source).body if getattr(n, "name", None) == name)
            out.append(("include", ast.get_source_segment(source, node)))
        else:
            out.append((match.group(1), match.group(3)))
    return out


def test_the_own_cell_page_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "mycells", None)  # none imported before the page writes it
    del sys.modules["mycells"]
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    blocks, namespace, module = page_blocks(), {}, []
    ran = {"python": 0, "bash": 0}
    for i, (kind, text) in enumerate(blocks):
        first = text.splitlines()[0] if text else ""
        if kind == "python" and first == "# mycells.py" or kind == "include":
            module.append(text)
            (tmp_path / "mycells.py").write_text("\n\n\n".join(module) + "\n")
        elif kind == "toml" and re.fullmatch(r"# [\w.]+", first) and first != "# pyproject.toml":
            (tmp_path / first[2:]).write_text(text)
        elif kind == "python":
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(text, f"{PAGE.name}, block {i}", "exec"), namespace)
            if i + 1 < len(blocks) and blocks[i + 1][0] == "text":
                assert printed.getvalue().strip() == blocks[i + 1][1].strip(), f"block {i}"
            ran["python"] += 1
        elif kind == "bash":
            for line in text.splitlines():
                if line.strip() and not line.startswith("#"):
                    done = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                                          timeout=300)
                    assert done.returncode == 0, (line, done.stdout, done.stderr)
            ran["bash"] += 1
    assert ran["python"] >= 4 and ran["bash"] >= 3, ran
    assert (tmp_path / "runs" / "mgu" / "loss.png").is_file()
    results = (tmp_path / "runs" / "mgu-sweep" / "results.csv").read_text().splitlines()
    assert len(results) == 5 and all(",done," in row for row in results[1:]), results
