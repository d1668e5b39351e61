"""Options as YAML over a file of defaults, then `--set key.sub=value` overrides: the one parser.

    opt = load_options("options/rain200l.yml", ["train.lr=2e-4"], defaults=DEFAULTS)

A key that the defaults do not have is rejected, naming the key and where it was set (typo
protection), and every value must have its default's type; floats must be finite. "Open" sections
(e.g. `network`) take any keys: those are the arguments of the class their `type` names, checked
where that class is built. `validate(opt, fail)` checks what types cannot (ranges, relations), and
calls `fail(key, message, *related_keys)`, which names where the keys were set. Relative paths in
options are taken from the repository root (`resolve_path`).
"""
import copy
import difflib
import math
import os
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from utils.files import write_text_atomic

REPO_ROOT = Path(__file__).resolve().parents[1]
Key = tuple[str, ...]
Fail = Callable[..., NoReturn]
Validate = Callable[[dict[str, Any], Fail], None]


class OptionsError(ValueError):
    """Options that cannot be used: the message names the key, where it was set and the fix."""


def resolve_path(path: str | os.PathLike) -> Path:
    """A path from the options: relative ones are taken from the repository root."""
    return REPO_ROOT / Path(path).expanduser()


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML file of sections, or OptionsError naming the file (and the line of a syntax error)."""
    if not path.is_file():
        raise OptionsError(f"options file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or _first_line(err)
        raise OptionsError(f"{path}:{where}: not valid YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise OptionsError(f"cannot read options file {path}: {_first_line(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionsError(f"{path}: expected a mapping of sections, got a {type(data).__name__}")
    return data


def load_options(path: str | os.PathLike | None, overrides: Sequence[str], defaults: dict[str, Any],
                 open_sections: Collection[Key] = (), validate: Validate | None = None) -> dict[str, Any]:
    """The options of `path` (a YAML file; None: the defaults only) over `defaults`, then `overrides`
    ("key.sub=value", values parsed as YAML); type-checked, then `validate`d. Raises OptionsError."""
    opt, origin = copy.deepcopy(defaults), {}
    if path is not None:
        _merge(opt, read_yaml(Path(path)), (), str(path), origin, open_sections)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise OptionsError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=2e-4")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise OptionsError(f"--set {item!r}: the value is not valid YAML ({_first_line(err)})") from None
        *parents, leaf = key.strip().split(".")
        update: dict[str, Any] = {leaf: value}
        for parent in reversed(parents):
            update = {parent: update}
        _merge(opt, update, (), f"--set {item}", origin, open_sections)

    def fail(key: str, message: str, *related: str) -> NoReturn:
        sources = dict.fromkeys(origin.get(k, "the defaults") for k in (key, *related))
        raise OptionsError(f"{key} {message} (set in {' and '.join(sources)})")

    _check_types(opt, defaults, (), fail, open_sections)
    if validate is not None:
        validate(opt, fail)
    return opt


def save_options(opt: dict[str, Any], path: str | os.PathLike) -> None:
    """Writes resolved options as YAML, atomically."""
    write_text_atomic(path, yaml.safe_dump(opt, sort_keys=False, default_flow_style=None))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _dotted(keys: Key) -> str:
    return ".".join(keys)


def _merge(base: dict[str, Any], update: dict[str, Any], at: Key, source: str, origin: dict[str, str],
           open_sections: Collection[Key]) -> None:
    """Deep-merges `update` into `base` in place, rejecting keys `base` does not know (outside open
    sections) and recording in `origin` where each value was set."""
    if at in open_sections and "type" in update and update["type"] != base.get("type"):
        base.clear()  # another class: the defaults' arguments belong to the old one
    for key, value in update.items():
        keys = (*at, str(key))
        if key not in base and at not in open_sections:
            raise OptionsError(_unknown_key(keys, source, sorted(base)))
        if isinstance(base.get(key), dict):
            if not isinstance(value, dict):
                raise OptionsError(f"{_dotted(keys)} (in {source}) must be a mapping with keys "
                                   f"{', '.join(sorted(base[key]))}, got {value!r}")
            _merge(base[key], value, keys, source, origin, open_sections)
        else:
            base[key] = value
            origin[_dotted(keys)] = source


def _unknown_key(keys: Key, source: str, known: list[str]) -> str:
    section = f"'{_dotted(keys[:-1])}'" if len(keys) > 1 else "the top level"
    close = difflib.get_close_matches(keys[-1], known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown option '{_dotted(keys)}' in {source}.{hint} Known keys in {section}: {', '.join(known)}"


def _check_types(opt: dict[str, Any], reference: dict[str, Any], at: Key, fail: Fail,
                 open_sections: Collection[Key]) -> None:
    """Values must have their default's type; ints pass as floats, and so do strings like '1e-4'
    (YAML reads exponents without a dot as strings); floats must be finite. Open sections need a `type`
    name only."""
    for key, default in reference.items():
        keys = (*at, key)
        value = opt[key]
        if keys in open_sections:
            if not isinstance(value.get("type"), str):
                fail(_dotted((*keys, "type")), f"= {value.get('type')!r} must name a class, e.g. {default['type']}")
            for name, argument in value.items():
                if isinstance(argument, float) and not math.isfinite(argument):
                    fail(_dotted((*keys, name)), f"= {argument!r} must be a finite number")
        elif isinstance(default, dict):
            _check_types(value, default, keys, fail, open_sections)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                fail(_dotted(keys), f"= {value!r} must be true or false")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                fail(_dotted(keys), f"= {value!r} must be an integer")
        elif isinstance(default, float):
            opt[key] = _as_finite_float(value, lambda: fail(_dotted(keys), f"= {value!r} must be a finite number"))
        elif not isinstance(value, type(default)):
            fail(_dotted(keys), f"= {value!r} must be a {type(default).__name__}")
        elif isinstance(default, list):
            if any(isinstance(v, float) and not math.isfinite(v) for v in value):
                fail(_dotted(keys), f"= {value!r} must hold finite numbers")


def _as_finite_float(value: Any, on_error: Callable[[], NoReturn]) -> float:
    if isinstance(value, bool):
        on_error()
    try:
        number = float(value)
    except (TypeError, ValueError):
        on_error()
    if not math.isfinite(number):
        on_error()
    return number
