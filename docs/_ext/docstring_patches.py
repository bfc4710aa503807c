"""Stopgap fixes for docstrings in bptt/ that are not valid reST yet, applied as the docs render them.

Each entry names one object (``module.qualname``, or the module's name) and replaces one piece of
its docstring (or of a ``bptt`` command's help) with what the source should say. Nothing else is
touched, and no warning is silenced: a docstring that is wrong in a new way still fails the build.
When the source is fixed the entry no longer matches; the build then says so (an info line, "patch
no longer needed"), and the entry should be deleted. The reST rules involved: ``|x|`` is a
substitution reference, ``word_`` a hyperlink reference, an indented block after a paragraph a block
quote (a literal block needs ``::``), and ```Name`s`` an unfinished interpreted text.
"""

from __future__ import annotations

from sphinx.util import logging

logger = logging.getLogger(__name__)

PATCHES: dict[str, list[tuple[str, str]]] = {
    "bptt.cells.cell.Cell": [
        ("the largest |activation'| of each", "the largest ``|activation'|`` of each"),
    ],
    "bptt.core.diagnostics.RecurrentBound": [
        ("With |act'| <= gamma,", "With ``|act'| <= gamma``,"),
    ],
    "bptt.core.diagnostics.lyapunov_spectrum": [
        ("the averages of log |diag R_t| over", "the averages of ``log |diag R_t|`` over"),
    ],
    "bptt.core.losses.sigmoid_binary_cross_entropy": [
        ("Computed as max(z, 0) - z y + log(1 + exp(-|z|)), stable",
         "Computed as ``max(z, 0) - z y + log(1 + exp(-|z|))``, stable"),
    ],
    "bptt.training.clipping.clip_grad_value": [
        ("The largest |element| left unchanged", "The largest ``|element|`` left unchanged"),
        ("some element had |g| > max_value", "some element had ``|g| > max_value``"),
    ],
    "bptt.training.clipping.max_abs": [
        ("The largest |element| over all gradients.", "The largest ``|element|`` over all gradients."),
    ],
    "bptt.training.run_folder.Run.clipping": [
        ('("value", max |element|)', '("value", max ``|element|``)'),
    ],
    "bptt.training.trainer.evaluate": [
        ("and eval_/baseline_ accuracy or success where the",
         "and ``eval_``/``baseline_`` accuracy or success where the"),
    ],
    "bptt.training.folder_lock": [
        ("two `FolderLock`s of one file", "two ``FolderLock`` objects of one file"),
    ],
    "bptt.training.init": [
        ("here). W_hh (G*H, H) stacks one (H, H) block per gate; each initialiser below sets every block:",
         "here). W_hh (G*H, H) stacks one (H, H) block per gate; each initialiser below sets every block::"),
    ],
    "bptt.training.run_folder": [
        ("The run folder: its files, their formats, and how they are written and read back.",
         "The run folder: its files, their formats, and how they are written and read back::"),
    ],
    "bptt.training.tasks": [
        ("A batch is time-major:", "A batch is time-major::"),
        ("so a result means something only when it is clearly below it.",
         "so a result means something only when it is clearly below it. The tasks::"),
    ],
    # sphinx-click: the help of `bptt train --clip-threshold`
    "bptt train": [
        ("(or max |element| with --clip value)", "(or max ``|element|`` with --clip value)"),
    ],
}

# Module-level data has no docstring of its own: autodoc reads a ``#:`` comment above it, and without
# one shows the docstring of the value's type (for a tuple, "Built-in immutable sequence.").
DATA_DOCS: dict[str, str] = {
    "bptt.CELL_NAMES": "The names of the built-in cells, ``(\"rnn\", \"rnn-relu\", \"lstm\", \"gru\")``: what "
                       "``make_cell``, ``Stack`` and ``bptt train --cell`` accept.",
}

_used: set[tuple[str, str]] = set()


def _qualified(obj) -> str | None:
    if isinstance(obj, property):
        obj = obj.fget
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname:
        return f"{module}.{qualname}"
    return getattr(obj, "__name__", None)  # a module


def _patch(key: str, lines: list[str]) -> None:
    patches = PATCHES.get(key)
    if not patches:
        return
    text = "\n".join(lines)
    for old, new in patches:
        if old in text:
            text = text.replace(old, new)
            _used.add((key, old))
    lines[:] = text.split("\n")


def process_docstring(app, what, name, obj, options, lines) -> None:
    if what == "data" and name in DATA_DOCS:
        lines[:] = [DATA_DOCS[name], ""]
        _used.add((name, ""))
        return
    key = _qualified(obj) if what != "module" else name
    if key:
        _patch(key, lines)


def process_click(app, ctx, lines) -> None:
    _patch(ctx.command_path, lines)


def report_unused(app, exception) -> None:
    if exception is None:
        for key, patches in PATCHES.items():
            for old, _ in patches:
                if (key, old) not in _used:
                    logger.info(f"docstring patch no longer needed (docs/_ext/docstring_patches.py): {key}: {old!r}")
        for name in DATA_DOCS:
            if (name, "") not in _used:
                logger.info(f"docstring patch not used (docs/_ext/docstring_patches.py): {name}")


def setup(app):
    # priority below numpydoc's (which runs at the default 500), so numpydoc sees the fixed text
    app.connect("autodoc-process-docstring", process_docstring, priority=100)
    app.connect("sphinx-click-process-options", process_click)
    app.connect("build-finished", report_unused)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
