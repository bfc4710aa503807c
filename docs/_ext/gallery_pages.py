"""How a gallery page is laid out: its figures open at full size, and its column is wide.

- sphinx-gallery writes its figures as bare ``<img>`` tags scaled down to the column's width; a
  1650-pixel figure shown at 700 cannot be read without its file. The HTML that sphinx-gallery's own
  visitor writes is wrapped in ``<a href="SRC">``, as Sphinx does for scaled images.
- A gallery page is code, what it printed and its figures: the "on this page" column is dropped
  there, so they get its width.
"""

from __future__ import annotations

import re
from typing import Any

from sphinx_gallery.directives import depart_imgsg_html, imgsgnode, visit_imgsg_html

_SRC = re.compile(r'<img src="([^"]+)"')


def visit_linked(translator: Any, node: imgsgnode) -> None:
    start = len(translator.body)
    visit_imgsg_html(translator, node)
    written = "".join(translator.body[start:])
    match = _SRC.search(written)
    if match is None:  # rendered through Sphinx's own image visitor, which links scaled images itself
        node["bptt_linked"] = False
        return
    node["bptt_linked"] = True
    del translator.body[start:]
    translator.body.append(f'<a class="reference internal image-reference" href="{match.group(1)}" '
                           f'title="open at full size">{written}')


def depart_linked(translator: Any, node: imgsgnode) -> None:
    depart_imgsg_html(translator, node)
    if node.get("bptt_linked"):
        translator.body.append("</a>")


def no_page_toc(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    if pagename.startswith("gallery/"):
        context["secondary_sidebar_items"] = []


def setup(app: Any) -> dict[str, Any]:
    app.add_node(imgsgnode, override=True, html=(visit_linked, depart_linked))
    app.connect("html-page-context", no_page_toc, priority=900)  # after the theme sets the column's items
    return {"parallel_read_safe": True, "parallel_write_safe": True}
