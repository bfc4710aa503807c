"""A sweep's spec: a TOML file of training settings, and the grid points it expands to::

    [base]                  # settings every run shares: any TrainConfig field, by its name
    task = "adding"
    steps = 2000
    target_loss = 0.01
    [grid]                  # setting = [values]: every combination is a run
    cell = ["rnn", "lstm", "gru"]
    seq_len = [25, 50, 100, 200]
    seed = [0, 1, 2, 3, 4]

Rows with settings of their own go in `[[runs]]` tables, each crossed with the grid (the README's
results table: one table per task, `[grid]` holding the cells and the seeds)::

    [[runs]]
    label = "adding"        # optional: names the group in folder names and results.csv
    task = "adding"
    seq_len = 100
    [[runs]]
    label = "parity"
    task = "parity"
    hidden = 16

A key is a TrainConfig field (`out` excepted: the sweep places every run) with a value of the
field's type: an integer for an integer setting, a number for a float one, a string for a choice, a
path or a MODULE:CLASS cell; "none" gives None to k1, k2 and target_loss (TOML has no null). A key
goes in one place only: [base], [grid] or the [[runs]] tables. `text` is read relative to the
current folder, as by `bptt train`.

The spec is refused (`SpecError`) when it is not TOML, names an unknown table or key, gives a value
of the wrong type, lists a value twice, expands to no run, to more than `MAX_RUNS` runs or to two
runs with the same settings, gives two values whose folder names differ only in case, or when any
grid point's settings are invalid (`TrainConfig.validate`), alone or only in combination (k2 < k1,
proj_size with a cell other than lstm): the message names the grid point, the setting, its value and
where the spec gives it. Nothing starts then.

The grid points are made one at a time as they are asked for (`SweepSpec.points` is a lazy
sequence), so a grid of a million points costs memory for one point at a time; checking them all
costs one `TrainConfig.validate` each (about 6 us).

Every grid point has a folder name made of its swept values, e.g. `cell=lstm,seq_len=100,seed=3`
(a [[runs]] label stands for its group's settings: `adding,cell=gru,seed=0`); `point_name` spells
values so that two grid points never share a name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import os
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from ..training.config import TrainConfig
from ..core.untrusted import UntrustedFileError, read_bytes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]  # tomli only on 3.10

TABLES = ("base", "grid", "runs")
LABEL = "label"
REPLICATE = "seed"  # the swept key whose values are repeats of one experiment
NONE = "none"  # TOML has no null: this string stands for None where a setting allows it
MAX_RUNS = 10_000_000  # checking a grid point costs about 6 us: a bigger grid would take minutes to check
MAX_SPEC_BYTES = 1 << 20  # a spec is a page of settings, not data
_NAME_LIMIT = 180  # folder names stay well below the usual 255-byte limit
_NAME_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-")
_SHOWN_PROBLEMS = 8  # distinct invalid settings named in one refusal


class SpecError(ValueError):
    """A sweep spec that cannot be run: not TOML, an unknown key, a value of the wrong type, an empty
    grid, a key given twice, a grid point with invalid settings. The message names the spec file and
    the place in it."""


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep.

    Attributes
    ----------
    index : int
        Its place in the spec's order, from 0.
    name : str
        Its folder name under DIR/runs, made of its swept values.
    swept : dict
        The swept keys (in the column order of results.csv) and this run's values of them.
    settings : dict
        The settings the spec gives it ([base], its [[runs]] table and its grid values); the
        others are TrainConfig's defaults.
    """

    index: int
    name: str
    swept: dict
    settings: dict = field(repr=False)

    @property
    def config(self) -> TrainConfig:
        """Its TrainConfig (`out` unset: the sweep places the run); valid, as `parse_spec` checked."""
        return TrainConfig(**self.settings)


class GridPoints(Sequence):
    """A spec's grid points in order, each made when it is asked for: [[runs]] tables in order, each
    crossed with the grid, the last grid key varying fastest.

    Parameters
    ----------
    spec : SweepSpec

    Examples
    --------
    >>> spec = parse_spec('[grid]\\ncell = ["rnn", "gru"]\\nseed = [0, 1, 2]\\n')
    >>> len(spec.points), spec.points[4].name, [p.index for p in spec.points[::2]]
    (6, 'cell=gru,seed=1', [0, 2, 4])
    """

    def __init__(self, spec: "SweepSpec") -> None:
        self._spec = spec
        self._values = list(spec.grid.values())
        self._per_group = math.prod(len(values) for values in self._values)
        # each value's part of a folder name, spelled once: a grid holds few values, met many times
        self._parts = [[f"{key}={_name_value(v)}" for v in values] for key, values in spec.grid.items()]
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        self._fixed, self._heads, self._named = [], [], []
        for table in spec.tables:
            self._fixed.append(spec._settings(table, ()))
            head = {LABEL: table[LABEL]} if LABEL in table else {}
            head.update({k: table.get(k, spec.base.get(k, defaults[k])) for k in spec.varying})
            self._heads.append(head)
            if LABEL in table:  # the label stands for its group's settings
                self._named.append([_name_value(table[LABEL])])
            else:
                self._named.append([f"{k}={_name_value(v)}" for k, v in head.items()])

    def __len__(self) -> int:
        return self._per_group * len(self._fixed)

    @overload
    def __getitem__(self, index: int) -> GridPoint: ...

    @overload
    def __getitem__(self, index: slice) -> list[GridPoint]: ...

    def __getitem__(self, index: int | slice) -> GridPoint | list[GridPoint]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        size = len(self)
        if not -size <= index < size:
            raise IndexError(f"grid point {index} of {size}")
        index %= size
        group, rest = divmod(index, self._per_group)
        picks = []
        for values in reversed(self._values):  # the last key varies fastest
            rest, i = divmod(rest, len(values))
            picks.append(i)
        return self._point(index, group, tuple(reversed(picks)))

    def __iter__(self) -> Iterator[GridPoint]:
        index = 0
        for group in range(len(self._fixed)):
            for picks in itertools.product(*(range(len(values)) for values in self._values)):
                yield self._point(index, group, picks)
                index += 1

    def _point(self, index: int, group: int, picks: tuple) -> GridPoint:
        combination = [values[i] for values, i in zip(self._values, picks)]
        settings = dict(self._fixed[group])
        settings.update(zip(self._spec.grid, combination))
        swept = dict(self._heads[group])
        swept.update(zip(self._spec.grid, combination))
        name = ",".join(self._named[group] + [parts[i] for parts, i in zip(self._parts, picks)]) or "run"
        return GridPoint(index, _bounded(name), swept, settings)


@dataclass
class SweepSpec:
    """A parsed and checked spec, and its grid points.

    Attributes
    ----------
    path : str
        The spec file.
    text : str
        Its contents.
    base : dict
        [base]: settings every run shares.
    grid : dict
        [grid]: setting -> list of values.
    groups : list of dict
        The [[runs]] tables as given ([] when there are none).
    swept : list of str
        The keys that vary between runs, in column order: "label" (when the [[runs]] tables have
        labels), the [[runs]] settings whose values differ between tables, then the grid's keys.
    points : GridPoints
        Every run, a lazy sequence (`len`, indexing, iteration): [[runs]] tables in order, each
        crossed with the grid (the last grid key varying fastest).
    """

    path: str
    text: str
    base: dict
    grid: dict
    groups: list
    swept: list
    varying: list = field(default_factory=list, repr=False)  # the [[runs]] keys among `swept`
    points: GridPoints = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.points = GridPoints(self)

    @property
    def tables(self) -> list:
        """The [[runs]] tables, or one empty table when there are none: what the grid is crossed with."""
        return self.groups or [{}]

    def _settings(self, table: dict, combination: tuple) -> dict:
        return {**self.base, **{k: v for k, v in table.items() if k != LABEL}, **dict(zip(self.grid, combination))}

    def values(self, key: str) -> list:
        """Every value the runs give the setting `key`, each once, in the spec's order.

        Parameters
        ----------
        key : str
            A TrainConfig field.

        Returns
        -------
        list

        Examples
        --------
        >>> parse_spec('[base]\\nseed = 3\\n[grid]\\nlr = [0.1, 0.2]\\n').values("lr")
        [0.1, 0.2]
        """
        if key in self.grid:
            return list(self.grid[key])
        default = getattr(TrainConfig(), key)
        found = [table.get(key, self.base.get(key, default)) for table in self.tables]
        return list({repr(v): v for v in found}.values())


def _settings() -> dict:
    """TrainConfig's settings a spec may give, with their types."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig) if f.name != "out"}


def _type_name(hint: Any) -> str:
    optional = _optional_of(hint)
    if optional is not None:
        return f'{_type_name(optional)} or "{NONE}"'
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


def _optional_of(hint: Any) -> Any:
    """X for `X | None` with X a number type (None otherwise)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2 and args[0] in (int, float):
            return args[0]
    return None


def _toml_type(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)


def _coerce(where: str, key: str, value: Any, hint: Any) -> Any:
    """`value` as the setting `key` takes it, or a SpecError naming `where`."""
    optional = _optional_of(hint)
    if optional is not None:
        if value == NONE:
            return None
        hint = optional
    ok = {
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        str: lambda v: isinstance(v, str),
        bool: lambda v: isinstance(v, bool),
    }.get(hint, lambda v: True)
    if not ok(value):
        raise SpecError(f"{where}: {key} takes {_type_name(hint if optional is None else typing.Optional[optional])}, "
                        f"got {value!r} ({_toml_type(value)})")
    return float(value) if hint is float else value


def _check_keys(spec_path: str, where: str, table: dict, settings: dict, extra: tuple = ()) -> None:
    valid = list(settings) + list(extra)
    for key in table:
        if key == "out":
            raise SpecError(f"{spec_path}: {where}.out: the sweep places every run in DIR/runs/<name> "
                            "(bptt sweep --out DIR); remove this key")
        if key not in valid:
            raise SpecError(f"{spec_path}: {where}: unknown key {key!r}; valid keys: {', '.join(valid)}")


def parse_spec(text: str, path: str = "<spec>") -> SweepSpec:
    """Parse and check a spec, and every grid point's settings.

    Parameters
    ----------
    text : str
        The TOML text.
    path : str
        Its file name, for messages.

    Returns
    -------
    SweepSpec

    Raises
    ------
    SpecError
        (a ValueError) Naming the file, the table and the key, and what was expected; for invalid
        settings, the grid points, the setting, its value and where the spec gives it.

    Examples
    --------
    >>> spec = parse_spec('[base]\\nsteps = 50\\n[grid]\\ncell = ["rnn", "gru"]\\nseed = [0, 1]\\n')
    >>> [p.name for p in spec.points]
    ['cell=rnn,seed=0', 'cell=rnn,seed=1', 'cell=gru,seed=0', 'cell=gru,seed=1']
    >>> spec.points[1].config.steps, spec.swept
    (50, ['cell', 'seed'])
    >>> parse_spec('[base]\\nk1 = 4\\n[grid]\\nk2 = [2, 8]\\n', "k.toml")
    Traceback (most recent call last):
    ...
    bptt.sweep.spec.SpecError: k.toml: 1 of 2 runs have invalid settings; nothing was started:
      run k2=2: k2 must be >= k1 = 4 (an update backpropagates at least its k1 new steps), got 2 ([grid] k2)
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path} is not valid TOML: {exc}") from exc
    unknown = [key for key in raw if key not in TABLES]
    if unknown:
        raise SpecError(f"{path}: unknown table or key {unknown[0]!r}; a spec has [base], [grid] and [[runs]]")
    settings = _settings()

    base = raw.get("base", {})
    if not isinstance(base, dict):
        raise SpecError(f"{path}: base must be a table ([base]), got {_toml_type(base)}")
    _check_keys(path, "[base]", base, settings)
    base = {key: _coerce(f"{path}: [base]", key, value, settings[key]) for key, value in base.items()}

    grid_raw = raw.get("grid", {})
    if not isinstance(grid_raw, dict):
        raise SpecError(f"{path}: grid must be a table ([grid]), got {_toml_type(grid_raw)}")
    _check_keys(path, "[grid]", grid_raw, settings)
    grid = {}
    for key, values in grid_raw.items():
        if key in base:
            raise SpecError(f"{path}: {key} is both in [base] and in [grid]; keep it in one of them")
        if not isinstance(values, list):
            raise SpecError(f"{path}: [grid] {key} must be a list of values, e.g. {key} = [{values!r}], "
                            f"got {_toml_type(values)}")
        if not values:
            raise SpecError(f"{path}: [grid] {key} is an empty list: give it at least one value")
        coerced = [_coerce(f"{path}: [grid] {key}[{i}]", key, v, settings[key]) for i, v in enumerate(values)]
        _no_repeats(path, f"[grid] {key}", coerced)
        grid[key] = coerced

    groups = raw.get("runs", [])
    if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups)):
        raise SpecError(f"{path}: runs must be tables ([[runs]]), got {_toml_type(groups)}")
    checked = []
    for i, group in enumerate(groups):
        where = f"[[runs]] #{i + 1}"
        _check_keys(path, where, group, settings, extra=(LABEL,))
        entry = {}
        for key, value in group.items():
            if key == LABEL:
                if not isinstance(value, str) or not value.strip():
                    raise SpecError(f"{path}: {where}: label must be a non-empty string, got {value!r}")
                entry[key] = value
                continue
            for other, table in (("[base]", base), ("[grid]", grid)):
                if key in table:
                    raise SpecError(f"{path}: {key} is both in {other} and in {where}; keep it in one place")
            entry[key] = _coerce(f"{path}: {where}", key, value, settings[key])
        checked.append(entry)
    labelled = [LABEL in g for g in checked]
    if any(labelled) and not all(labelled):
        raise SpecError(f"{path}: [[runs]] #{labelled.index(False) + 1} has no label; give every [[runs]] "
                        "table a label, or none")
    if any(labelled):
        _no_repeats(path, "[[runs]] label", [g[LABEL] for g in checked])
    if not grid and not checked:
        raise SpecError(f"{path}: the grid is empty: give [grid] a setting with a list of values "
                        "(e.g. seed = [0, 1, 2]) or add [[runs]] tables")

    defaults = dataclasses.asdict(TrainConfig())
    tables = checked or [{}]
    group_keys = list(dict.fromkeys(k for g in tables for k in g if k != LABEL))
    varying = [k for k in group_keys if len({repr(g.get(k, base.get(k, defaults[k]))) for g in tables}) > 1]
    swept = ([LABEL] if any(labelled) else []) + varying + list(grid)
    spec = SweepSpec(path, text, base, grid, checked, swept, varying)
    total = len(spec.points)
    if total > MAX_RUNS:
        raise SpecError(f"{path}: the grid has {total:,} runs, more than the {MAX_RUNS:,} a sweep takes; "
                        "split it into several specs")
    _no_twins(spec, defaults)
    _no_names_only_case_apart(spec)
    _check_points(spec)
    return spec


def _no_repeats(path: str, where: str, values: list) -> None:
    seen = set()
    for value in values:
        if repr(value) in seen:
            raise SpecError(f"{path}: {where} lists {value!r} twice")
        seen.add(repr(value))


def _no_twins(spec: SweepSpec, defaults: dict) -> None:
    """Refuse two [[runs]] tables with the same settings: each grid point would run twice. (Within a
    table the grid's values differ, and no grid key is in a table.)"""
    seen: dict[str, int] = {}
    for i, table in enumerate(spec.tables):
        resolved = {**defaults, **spec.base, **{k: v for k, v in table.items() if k != LABEL}}
        key = repr(sorted(resolved.items()))
        if key in seen:
            first, second = (spec.points[g * len(spec.points) // len(spec.tables)].name for g in (seen[key], i))
            raise SpecError(f"{spec.path}: [[runs]] #{seen[key] + 1} and #{i + 1} have the same settings: runs "
                            f"{first} and {second} would be the same run")
        seen[key] = i


def _no_names_only_case_apart(spec: SweepSpec) -> None:
    """Refuse values whose folder names differ only in case: a case-insensitive file system (macOS's
    and Windows' defaults) would give both runs one folder."""
    for key in spec.swept:
        values = [t[LABEL] for t in spec.groups] if key == LABEL else spec.values(key)
        seen: dict[str, object] = {}
        for value in values:
            folded = _name_value(value).casefold()
            if folded in seen:
                raise SpecError(f"{spec.path}: {key} takes both {seen[folded]!r} and {value!r}, whose folder names "
                                "differ only in case; a case-insensitive file system (macOS, Windows) would "
                                "give both runs one folder: rename one")
            seen[folded] = value


def _where(spec: SweepSpec, group: int, setting: str) -> str:
    """Where the spec gives a grid point's `setting`."""
    table = spec.tables[group]
    if setting in spec.grid:
        return f"[grid] {setting}"
    if setting in table:
        label = f" ({table[LABEL]})" if LABEL in table else ""
        return f"[[runs]] #{group + 1}{label}"
    if setting in spec.base:
        return f"[base] {setting}"
    return "its default"


def _check_points(spec: SweepSpec) -> None:
    """Validate every grid point's settings (`TrainConfig.validate`); refuse the spec naming each
    distinct problem, a grid point that has it and how many do."""
    problems: dict[str, list] = {}  # message -> [count, first point's index]
    invalid, index = 0, 0
    for group, table in enumerate(spec.tables):
        fixed = spec._settings(table, ())
        for combination in itertools.product(*spec.grid.values()):
            settings = dict(fixed)
            settings.update(zip(spec.grid, combination))
            try:
                TrainConfig(**settings).validate()
            except ValueError as exc:
                invalid += 1
                setting = getattr(exc, "setting", None)
                where = f" ({_where(spec, group, setting)})" if setting else ""
                entry = problems.setdefault(f"{exc}{where}", [0, index])
                entry[0] += 1
            index += 1
    if not invalid:
        return
    lines = []
    for message, (count, first) in list(problems.items())[:_SHOWN_PROBLEMS]:
        more = f" and {count - 1} more run{'s' if count > 2 else ''}" if count > 1 else ""
        lines.append(f"run {spec.points[first].name}{more}: {message}")
    if len(problems) > _SHOWN_PROBLEMS:
        lines.append(f"and {len(problems) - _SHOWN_PROBLEMS} more problems")
    raise SpecError(f"{spec.path}: {invalid} of {len(spec.points)} runs have invalid settings; nothing was started:\n  "
                    + "\n  ".join(lines))


def _name_value(value: object) -> str:
    """A value as it appears in a folder name: None as "none", a float by repr, anything else by str,
    every character but letters, digits and ._+- written as %XX per UTF-8 byte (so "%" too, and a
    leading ".")."""
    if value is None:
        return NONE
    text = repr(value) if isinstance(value, float) else str(value)
    encoded = "".join(c if c in _NAME_SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                      for c in text)
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def point_name(swept: dict, named_by_label: bool = False) -> str:
    """The folder name of a grid point: its swept values, "key=value" joined by commas.

    Two different sets of swept values never give one name: every character of a value other than
    ASCII letters, digits and ``._+-`` is written as ``%XX`` for each of its UTF-8 bytes, as URLs
    spell them, so "é" is ``%C3%A9``, "," ``%2C``, "=" ``%3D``, ":" ``%3A``, "/" ``%2F`` and "%"
    itself ``%25``; and a name never starts with a dot.

    Parameters
    ----------
    swept : dict
        Swept key -> value, in column order.
    named_by_label : bool
        Whether swept["label"] stands for its group's settings (it is written without "label=").

    Returns
    -------
    str
        E.g. "cell=lstm,seq_len=100,seed=3"; "run" when nothing is swept. A name longer than 180
        characters is cut and ends with a hash of the whole.

    Examples
    --------
    >>> point_name({"cell": "gru", "lr": 0.001, "k1": None})
    'cell=gru,lr=0.001,k1=none'
    >>> point_name({"label": "adding", "seed": 2}, named_by_label=True)
    'adding,seed=2'
    >>> point_name({"label": "é"}, named_by_label=True), point_name({"label": "ü"}, named_by_label=True)
    ('%C3%A9', '%C3%BC')
    >>> point_name({"cell": "mymodule:MGU", "text": "data/a b.txt"})
    'cell=mymodule%3AMGU,text=data%2Fa%20b.txt'
    """
    parts = []
    for key, value in swept.items():
        if key == LABEL and named_by_label:
            parts.append(_name_value(value))
        else:
            parts.append(f"{key}={_name_value(value)}")
    return _bounded(",".join(parts) or "run")


def _bounded(name: str) -> str:
    """A name cut to `_NAME_LIMIT` characters, ending with a hash of the whole when cut."""
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{name[:_NAME_LIMIT - 11]}-{digest}"


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Read and parse a spec file (`parse_spec`).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    SweepSpec

    Raises
    ------
    SpecError
        If the file cannot be read (or is not a regular file, or is larger than 1 MiB), or as
        `parse_spec`.
    """
    try:
        data = read_bytes(path, MAX_SPEC_BYTES, follow_links=True)
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"cannot read the spec {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except UntrustedFileError as exc:
        raise SpecError(f"cannot read the spec {path}: it {exc.problem}") from exc
    except OSError as exc:
        raise SpecError(f"cannot read the spec {path}: {exc.strerror or exc}") from exc
    return parse_spec(text, str(path))
