"""How the gallery runs the experiments: each script's command line, and the PNGs it wrote.

The scripts in experiments/ parse ``--out DIR [--quick]`` and write their figures with
``bptt.plots.save_figure`` (no pyplot), so sphinx-gallery's matplotlib scraper sees none of them.
``reset_argv`` gives each script a fresh output folder under ``docs/_build/gallery-runs/NAME`` and
``--quick`` (unless ``BPTT_GALLERY_SIZE=full``); ``png_scraper`` copies the PNGs that appeared in that
folder (in the order they were written) to the places sphinx-gallery gives it, and returns one
image per row, each under its file name.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SIZE_VARIABLE = "BPTT_GALLERY_SIZE"  # "quick" (default) or "full": the experiments' own full size


def full_size() -> bool:
    size = os.environ.get(SIZE_VARIABLE, "quick")
    if size not in ("quick", "full"):
        raise ValueError(f"{SIZE_VARIABLE} must be quick or full, got {size!r}")
    return size == "full"


def out_dir(gallery_conf, src_file) -> Path:
    """The folder one experiment writes into: docs/_build/gallery-runs/NAME."""
    return Path(gallery_conf["src_dir"], "_build", "gallery-runs", Path(src_file).stem)


def reset_argv(gallery_conf, script_vars) -> list[str]:
    """sys.argv[1:] for one experiment: a new, empty --out folder and --quick (unless full size)."""
    out = out_dir(gallery_conf, script_vars["src_file"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return ["--out", str(out)] + ([] if full_size() else ["--quick"])


IMAGE = """
``{name}``

.. image-sg:: /{path}
   :alt: {alt}
   :srcset: /{path}
   :class: sphx-glr-single-img

"""


def png_scraper(block, block_vars, gallery_conf) -> str:
    """Every PNG the experiment wrote since the last call, as reST, oldest first."""
    out = out_dir(gallery_conf, block_vars["src_file"])
    seen = block_vars.setdefault("bptt_pngs_seen", set())
    new = sorted((p for p in out.rglob("*.png") if p not in seen), key=lambda p: (p.stat().st_mtime_ns, str(p)))
    rst = []
    for png, target in zip(new, block_vars["image_path_iterator"]):
        seen.add(png)
        shutil.copyfile(png, target)
        name = png.relative_to(out).as_posix()
        path = Path(os.path.relpath(target, gallery_conf["src_dir"])).as_posix()
        alt = f"{Path(block_vars['src_file']).stem}: {name}"
        rst.append(IMAGE.format(name=name, path=path, alt=alt))
    return "".join(rst)


ORDER = ("vanishing_exploding", "clipping", "truncation", "cells_adding", "training_gradients", "stack_gradients")


class ExperimentOrder:
    """Sort key for sphinx-gallery: the experiments in the order the user guide tells them."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename) -> tuple[int, str]:
        stem = Path(filename).stem
        return (ORDER.index(stem) if stem in ORDER else len(ORDER), stem)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
