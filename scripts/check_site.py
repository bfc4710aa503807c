"""Check the built documentation site for what a reader copies or zooms into.

    python scripts/check_site.py docs/_build/html

- Every literal block (``<pre>``) and every line block (how sphinx-click renders a command's help,
  e.g. the sweep's TOML example) holds straight quotes only: “adding” pasted into a TOML file or a
  shell is not "adding".
- Every gallery figure is a link to its own full-size file.

Prints one line per problem (file, what, an excerpt) and exits 1 if there is any, 0 otherwise.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CURLY = re.compile("[\u2018\u2019\u201c\u201d]")
LITERAL = re.compile(r"<pre\b.*?</pre>|<div class=\"line\">.*?</div>", re.DOTALL)
GALLERY_IMAGE = re.compile(r"(<a [^>]*>)?\s*<img [^>]*class = \"sphx-glr-single-img\"")


def problems(site: Path) -> list[str]:
    found = []
    for page in sorted(site.rglob("*.html")):
        html = page.read_text(encoding="utf-8")
        name = page.relative_to(site)
        for block in LITERAL.finditer(html):
            match = CURLY.search(block.group(0))
            if match:
                start = max(0, match.start() - 30)
                excerpt = re.sub(r"<[^>]+>", "", block.group(0)[start:match.end() + 30]).replace("\n", " ")
                found.append(f"{name}: a typographic quote in a literal or line block: ...{excerpt}...")
        for image in GALLERY_IMAGE.finditer(html):
            if image.group(1) is None:
                found.append(f"{name}: a gallery figure without a link to its full-size file")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="the built HTML, e.g. docs/_build/html")
    args = parser.parse_args()
    if not (args.site / "index.html").is_file():
        parser.error(f"{args.site} holds no index.html: build the site first")
    found = problems(args.site)
    for line in found:
        print(line)
    print(f"{len(found)} problem(s) in {args.site}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
