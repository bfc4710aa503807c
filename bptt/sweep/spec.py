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
field's type: an integer for an integer setting, a number for a float one, a string for a choice or
a path; "none" gives None to k1, k2 and target_loss (TOML has no null). A key goes in one place only:
[base], [grid] or the [[runs]] tables. `text` is read relative to the current folder, as by
`bptt train`. The spec is refused (`SpecError`) when it is not TOML, names an unknown table or key,
gives a value of the wrong type, lists a value twice, expands to no run or to two runs with the same
settings, or when no run at all has valid settings. A grid point whose settings are invalid only in
combination (k2 < k1, lr = 0 for one value of a swept lr) is kept with its error: it fails alone.

Every grid point has a folder name made of its swept values, e.g. `cell=lstm,seq_len=100,seed=3`
(a [[runs]] label stands for its group's settings: `adding,cell=gru,seed=0`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import os
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training.config import SettingError, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]  # tomli only on 3.10

TABLES = ("base", "grid", "runs")
LABEL = "label"
REPLICATE = "seed"  # the swept key whose values are repeats of one experiment
NONE = "none"  # TOML has no null: this string stands for None where a setting allows it
_NAME_LIMIT = 180  # folder names stay well below the usual 255-byte limit


class SpecError(ValueError):
    """A sweep spec that cannot be run: not TOML, an unknown key, a value of the wrong type, an empty
    grid, a key given twice. The message names the spec file and the place in it."""


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep.

    Attributes
    ----------
    name : str
        Its folder name under DIR/runs, made of its swept values.
    swept : dict
        The swept keys (in the column order of results.csv) and this run's values of them.
    config : TrainConfig
        Its settings (`out` unset: the sweep places the run).
    error : str or None
        Why its settings are invalid (a `SettingError`'s message); such a run fails without starting.
    """

    name: str
    swept: dict
    config: TrainConfig
    error: str | None = None


@dataclass
class SweepSpec:
    """A parsed spec and its grid points.

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
        The [[runs]] tables ([{}] when there are none).
    swept : list of str
        The keys that vary between runs, in column order: "label" (when the [[runs]] tables have
        labels), the [[runs]] settings whose values differ between tables, then the grid's keys.
    points : list of GridPoint
        Every run, [[runs]] tables in order, each crossed with the grid (the last grid key varying
        fastest).
    """

    path: str
    text: str
    base: dict
    grid: dict
    groups: list
    swept: list
    points: list = field(default_factory=list)


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
    """Parse and check a spec, and expand its grid points.

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
        (a ValueError) Naming the file, the table and the key, and what was expected.

    Examples
    --------
    >>> spec = parse_spec('[base]\\nsteps = 50\\n[grid]\\ncell = ["rnn", "gru"]\\nseed = [0, 1]\\n')
    >>> [p.name for p in spec.points]
    ['cell=rnn,seed=0', 'cell=rnn,seed=1', 'cell=gru,seed=0', 'cell=gru,seed=1']
    >>> spec.points[1].config.steps, spec.swept
    (50, ['cell', 'seed'])
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

    groups = checked or [{}]
    defaults = dataclasses.asdict(TrainConfig())
    group_keys = list(dict.fromkeys(k for g in groups for k in g if k != LABEL))
    varying = [k for k in group_keys if len({repr(g.get(k, base.get(k, defaults[k]))) for g in groups}) > 1]
    swept = ([LABEL] if any(labelled) else []) + varying + list(grid)
    spec = SweepSpec(path, text, base, grid, checked, swept)
    spec.points = _expand(spec, groups, varying)
    return spec


def _no_repeats(path: str, where: str, values: list) -> None:
    seen = set()
    for value in values:
        if repr(value) in seen:
            raise SpecError(f"{path}: {where} lists {value!r} twice")
        seen.add(repr(value))


def _expand(spec: SweepSpec, groups: list, varying: list) -> list:
    points: list[GridPoint] = []
    by_settings: dict[str, GridPoint] = {}
    by_name: dict[str, GridPoint] = {}
    keys = list(spec.grid)
    for group in groups:
        for combination in itertools.product(*spec.grid.values()):
            settings = {**spec.base, **{k: v for k, v in group.items() if k != LABEL}, **dict(zip(keys, combination))}
            config = TrainConfig(**settings)
            resolved = dataclasses.asdict(config)
            swept = {}
            if LABEL in group:
                swept[LABEL] = group[LABEL]
            swept.update({k: resolved[k] for k in varying})
            swept.update(dict(zip(keys, combination)))
            if LABEL in group:  # the label stands for its group's settings
                name = point_name({LABEL: group[LABEL], **dict(zip(keys, combination))}, named_by_label=True)
            else:
                name = point_name(swept)
            try:
                config.validate()
                error = None
            except SettingError as exc:
                error = str(exc)
            point = GridPoint(name, swept, config, error)
            key = repr(sorted(resolved.items()))
            if key in by_settings:
                raise SpecError(f"{spec.path}: runs {by_settings[key].name} and {name} have the same settings")
            if name in by_name:
                raise SpecError(f"{spec.path}: runs with different settings would share the folder name {name}; "
                                "give the [[runs]] tables labels")
            by_settings[key] = by_name[name] = point
            points.append(point)
    if all(p.error for p in points):
        raise SpecError(f"{spec.path}: no run has valid settings; the first, {points[0].name}: {points[0].error}")
    return points


def _name_value(value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))


def point_name(swept: dict, named_by_label: bool = False) -> str:
    """The folder name of a grid point: its swept values, "key=value" joined by commas.

    Parameters
    ----------
    swept : dict
        Swept key -> value, in column order.
    named_by_label : bool
        Whether swept["label"] stands for its group's settings (it is written without "label=").

    Returns
    -------
    str
        E.g. "cell=lstm,seq_len=100,seed=3"; "run" when nothing is swept. Characters other than
        letters, digits and ._+- become "_"; a name longer than 180 characters is cut and ends with
        a hash of the whole.

    Examples
    --------
    >>> point_name({"cell": "gru", "lr": 0.001, "k1": None})
    'cell=gru,lr=0.001,k1=none'
    >>> point_name({"label": "adding", "seed": 2}, named_by_label=True)
    'adding,seed=2'
    """
    parts = []
    for key, value in swept.items():
        if key == LABEL and named_by_label:
            parts.append(_name_value(value))
        else:
            parts.append(f"{key}={_name_value(value)}")
    name = ",".join(parts) or "run"
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > _NAME_LIMIT:
        digest = hashlib.sha256(name.encode()).hexdigest()[:10]
        name = f"{name[:_NAME_LIMIT - 11]}-{digest}"
    return name


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
        If the file cannot be read, or as `parse_spec`.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the spec {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    return parse_spec(text, str(path))
