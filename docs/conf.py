"""Sphinx configuration of the bptt documentation.

Build it (warnings are errors) with::

    pip install -e '.[docs]'
    python -m sphinx -W --keep-going -b html docs docs/_build/html

The gallery executes every script in experiments/ at its --quick size (a few seconds each);
BPTT_GALLERY_SIZE=full runs them at their full size instead (several minutes).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version as _version
from pathlib import Path

# The experiments run in this process: thousands of small factorisations, for which OpenBLAS
# threads only contend (the scripts set the same, but numpy may be loaded before they run).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "bptt"
author = "the bptt authors"
copyright = "the bptt authors"
release = _version("bptt")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static: equations render without a network
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_click",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "gallery_pages",  # after sphinx_gallery: figures link to their full size, no "on this page" column
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
highlight_language = "none"  # plain ``` blocks are trees, tables and output; code blocks name their language
# no typographic quotes: a command's help and a docstring's example are pasted into shells and TOML
# files, where “adding” is not "adding" (sphinx-click renders help text as line blocks, not literals)
smartquotes = False
exclude_patterns = ["_build", "gallery/*.ipynb", "gallery/*.py", "gallery/*.zip"]
templates_path = ["_templates"]

# --- MyST (the Markdown pages)
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# --- API reference: autosummary writes one page per name; numpydoc renders the docstrings
autosummary_generate = True
autosummary_imported_members = False
autodoc_typehints = "none"  # the numpydoc Parameters sections say the types, with shapes
autodoc_member_order = "bysource"
numpydoc_show_class_members = False  # members are documented on the class page (templates/class.rst)
numpydoc_class_members_toctree = False


def _reexported() -> list[str]:
    """module.name of every name in bptt.__all__ that a module page would list a second time."""
    import bptt

    names = []
    for name in bptt.__all__:
        module = getattr(getattr(bptt, name), "__module__", None)
        if module and module != "bptt":
            names.append(f"{module}.{name}")
    return names


autosummary_context = {"reexported": _reexported()}
add_module_names = False

# --- the gallery: experiments/*.py, executed at build time
sphinx_gallery_conf = {
    "examples_dirs": ["../experiments"],
    "gallery_dirs": ["gallery"],
    "filename_pattern": r"/[a-z_]+\.py$",  # execute every script ...
    "ignore_pattern": r"(__init__|common)\.py$",  # ... but not the shared helpers
    "reset_argv": "gallery_runs.reset_argv",  # --out docs/_build/gallery-runs/NAME --quick
    "image_scrapers": ("gallery_runs.png_scraper",),  # the PNGs the script wrote through bptt.plots
    "within_subsection_order": "gallery_runs.ExperimentOrder",
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "show_memory": False,
    "doc_module": ("bptt",),
    "download_all_examples": False,
    "line_numbers": False,
}

# --- HTML
html_theme = "pydata_sphinx_theme"
html_title = f"bptt {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "header_links_before_dropdown": 7,
}
html_show_sourcelink = False
# pages without sub-pages need no section navigation: their text gets the width
html_sidebars = {"index": [], "getting_started": [], "cli": [], "performance": [], "security": []}
