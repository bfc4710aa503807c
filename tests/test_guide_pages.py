"""The guide pages that say they run: each page's ```pycon blocks are one doctest session, run in a
fresh folder, so what the page shows is what the package does."""

import doctest
import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide"
RUNNABLE = ["own_loop.md", "own_data.md"]


def session(page: Path) -> str:
    """The page's ```pycon blocks, in order, as one doctest text."""
    blocks = re.findall(r"^```pycon\n(.*?)^```$", page.read_text(), flags=re.S | re.M)
    return "\n".join(blocks)


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_runnable_guide_page_runs_as_a_doctest(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what a page writes goes to a folder of its own
    text = session(GUIDE / name)
    test = doctest.DocTestParser().get_doctest(text, {"__name__": name}, name, str(GUIDE / name), 0)
    assert len(test.examples) >= 10, f"{name}: too few examples to be the page's walk-through"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
