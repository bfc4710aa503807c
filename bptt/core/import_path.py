"""Names that stand for a class: the one resolver behind every `--cell` and `--task`.

A name is, in the order tried:

    a built-in name         "gru", "adding": the package's own table
    a registered name       "mgu": an installed package's entry point in the group (bptt.cells,
                            bptt.tasks), as pytest plugins register themselves in pytest11
    an import path          "mycells:MGU", "lab.cells:Minimal.Cell": MODULE:CLASS, as setuptools
                            entry points and uvicorn's module:app spell it

An import path is imported from the Python path as it is (`sys.path`: installed packages, PYTHONPATH,
and the working directory under ``python -m``); nothing is imported from anywhere else. Importing a
module runs its code, so a name read from a file (a run folder's config.json) is as trusted as that
file. Every answer is kept for the life of the process: a sweep resolving a million grid points
imports each module once.
"""

from __future__ import annotations

import importlib
import re
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_IMPORT_PATH = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*")
MAX_NAME_LENGTH = 300  # longer than any real MODULE:CLASS; bounds what a crafted config.json can ask

_resolved: dict[tuple[str, str], Callable[..., Any]] = {}
_registered: dict[str, dict[str, Any]] = {}


class ImportPathError(ValueError):
    """A name that resolves to no usable class.

    Parameters
    ----------
    kind : str
        What was named, e.g. "cell".
    name : str
        The name as given.
    problem : str
        What went wrong, e.g. "cannot import module 'mycells': No module named 'mycells'".
    expected : str
        What the name may be, for the message.
    """

    def __init__(self, kind: str, name: object, problem: str, expected: str) -> None:
        self.kind, self.name, self.problem, self.expected = kind, name, problem, expected
        super().__init__(f"{kind} {name!r}: {problem}. Expected {expected}")


def is_import_path(name: object) -> bool:
    """Whether `name` is spelled MODULE:CLASS (dotted identifiers on both sides of one colon).

    Examples
    --------
    >>> is_import_path("mycells:MGU"), is_import_path("lab.cells:Minimal.Cell"), is_import_path("gru")
    (True, True, False)
    """
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _IMPORT_PATH.fullmatch(name) is not None


def registered(group: str) -> dict[str, Any]:
    """The entry points installed packages register in `group` (e.g. "bptt.cells"), by name."""
    if group not in _registered:
        _registered[group] = {ep.name: ep for ep in entry_points(group=group)}
    return _registered[group]


def resolve(name: object, *, kind: str, builtins: Mapping[str, Callable[..., Any]], group: str,
            base: type) -> Callable[..., Any]:
    """What `name` stands for: a built-in's constructor, or a subclass of `base`.

    Parameters
    ----------
    name : str
        A built-in name, a name registered in the entry-point group `group`, or MODULE:CLASS.
    kind : str
        What is named ("cell", "task"), for messages.
    builtins : dict of str to callable
        The package's own names; they come first, so no package can shadow them.
    group : str
        The entry-point group, e.g. "bptt.cells".
    base : type
        The class a registered name or an import path must name a subclass of.

    Returns
    -------
    callable
        ``builtins[name]``, or the class.

    Raises
    ------
    ImportPathError
        (a ValueError) Naming the name, what was tried and what went wrong: no such built-in or
        registered name, a module that cannot be imported (with the exception it raised), no such
        attribute, or not a subclass of `base`.

    Examples
    --------
    >>> import bptt
    >>> resolve("bptt:GRU", kind="cell", builtins={}, group="bptt.cells", base=bptt.Cell)
    <class 'bptt.cells.gru.GRU'>
    >>> try:
    ...     resolve("bptt:Stack", kind="cell", builtins={}, group="bptt.cells", base=bptt.Cell)
    ... except ValueError as exc:
    ...     print(exc.problem)
    bptt:Stack is not a subclass of bptt.cells.cell.Cell
    """
    if isinstance(name, str) and name in builtins:
        return builtins[name]
    key = (group, name if isinstance(name, str) else repr(name))
    if key in _resolved:
        return _resolved[key]
    expected = (f"a built-in {kind} ({', '.join(builtins)}), a name an installed package registers in the "
                f"entry-point group {group}, or MODULE:CLASS naming a subclass of {_qualified(base)} importable "
                "on the Python path")

    def refuse(problem: str) -> ImportPathError:
        return ImportPathError(kind, name, problem, expected)

    if not isinstance(name, str) or not name:
        raise refuse("not a name")
    if name in registered(group):
        entry = registered(group)[name]
        try:
            found = entry.load()
        except Exception as exc:  # the registering package's own import failed
            raise refuse(f"the entry point {entry.value} registered as {name!r} in {group} cannot be "
                         f"loaded: {type(exc).__name__}: {exc}") from exc
        where = f"the entry point {name!r} ({entry.value})"
    elif is_import_path(name):
        found = _import(name, refuse)
        where = name
    else:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise refuse(f"{shown!r} is neither a built-in {kind} nor registered in {group}, and not MODULE:CLASS")
    if not (isinstance(found, type) and issubclass(found, base)):
        raise refuse(f"{where} is not a subclass of {_qualified(base)}")
    _resolved[key] = found
    return found


def _import(name: str, refuse: Callable[[str], ImportPathError]) -> Any:
    module_name, _, attribute = name.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise refuse(f"no module named {exc.name!r} on the Python path (install it, or add its folder to "
                         "PYTHONPATH)") from exc
        raise refuse(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # the module's own code raised: name it and what it raised
        raise refuse(f"importing module {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise refuse(f"module {module_name!r} has no attribute {attribute!r}")
        found = getattr(found, part)
    return found


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def folder_label(name: str) -> str:
    """A name as a folder name may hold it: a plain name as it is, MODULE:CLASS as its class's own name.

    Examples
    --------
    >>> folder_label("gru"), folder_label("lab.cells:MGU"), folder_label("lab.tasks:Outer.Echo")
    ('gru', 'MGU', 'Echo')
    """
    return name.rpartition(":")[2].rpartition(".")[2] if is_import_path(name) else name


def import_path_of(cls: type) -> str:
    """MODULE:CLASS of a class defined at a module's top level (or nested in classes there).

    Examples
    --------
    >>> import bptt
    >>> import_path_of(bptt.GRU)
    'bptt.cells.gru:GRU'
    """
    return f"{cls.__module__}:{cls.__qualname__}"
