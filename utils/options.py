"""Training options: a YAML file read over the authors' recipe (options/defaults.yml), then
`--set key.sub=value` overrides.

    opt = load_options("options/rain200l.yml", ["train.lr=2e-4", "datasets.train.batch_size=4"])

Sections: `network`, `datasets` (`train` and `val`), `train`, `paths`. A key that defaults.yml does
not have is rejected, naming the key and where it was set (typo protection), and every value must
have its default's type. `network` and `train.loss` are open: their keys are the arguments of the
class their `type` names, checked where that class is built. Relative paths in options are taken
from the repository root (`resolve_path`).
"""
import copy
import difflib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

from utils.image_io import atomic_save

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS_FILE = REPO_ROOT / "options" / "defaults.yml"

# Sections whose keys are the constructor arguments of the class their `type` names.
OPEN_SECTIONS = {("network",), ("train", "loss")}


class OptionsError(ValueError):
    """Options that cannot be used: the message names the key, where it was set and the fix."""


def resolve_path(path: str | os.PathLike) -> Path:
    """A path from the options: relative ones are taken from the repository root."""
    return REPO_ROOT / Path(path).expanduser()


def load_options(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The options of `path` (a YAML file; None: defaults only) over DEFAULTS, then `overrides`
    ("key.sub=value", values parsed as YAML); validated. Raises OptionsError."""
    opt, origin = copy.deepcopy(DEFAULTS), {}
    if path is not None:
        _merge(opt, _read_yaml(Path(path)), (), str(path), origin)
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
        _merge(opt, update, (), f"--set {item}", origin)
    _validate(opt, origin)
    return opt


def save_options(opt: dict[str, Any], path: str | os.PathLike) -> None:
    """Writes resolved options as YAML, atomically."""
    text = yaml.safe_dump(opt, sort_keys=False, default_flow_style=None)
    atomic_save(path, lambda tmp: Path(tmp).write_text(text))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise OptionsError(f"options file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or _first_line(err)
        raise OptionsError(f"{path}:{where}: not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionsError(f"{path}: expected a mapping of sections (network, datasets, train, paths), "
                           f"got a {type(data).__name__}")
    return data


DEFAULTS: dict[str, Any] = _read_yaml(DEFAULTS_FILE)


def _dotted(keys: tuple[str, ...]) -> str:
    return ".".join(keys)


def _merge(base: dict[str, Any], update: dict[str, Any], at: tuple[str, ...], source: str,
           origin: dict[str, str]) -> None:
    """Deep-merges `update` into `base` in place, rejecting keys `base` does not know (outside open
    sections) and recording in `origin` where each value was set."""
    if at in OPEN_SECTIONS and "type" in update and update["type"] != base.get("type"):
        base.clear()  # another class: the defaults' arguments belong to the old one
    for key, value in update.items():
        keys = (*at, str(key))
        if key not in base and at not in OPEN_SECTIONS:
            raise OptionsError(_unknown_key(keys, source, sorted(base)))
        if isinstance(base.get(key), dict):
            if not isinstance(value, dict):
                raise OptionsError(f"{_dotted(keys)} (in {source}) must be a mapping with keys "
                                   f"{', '.join(sorted(base[key]))}, got {value!r}")
            _merge(base[key], value, keys, source, origin)
        else:
            base[key] = value
            origin[_dotted(keys)] = source


def _unknown_key(keys: tuple[str, ...], source: str, known: list[str]) -> str:
    section = f"'{_dotted(keys[:-1])}'" if len(keys) > 1 else "the top level"
    close = difflib.get_close_matches(keys[-1], known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown option '{_dotted(keys)}' in {source}.{hint} Known keys in {section}: {', '.join(known)}"


Fail = Callable[..., NoReturn]


def _validate(opt: dict[str, Any], origin: dict[str, str]) -> None:
    """Types against DEFAULTS, then the ranges that matter."""

    def fail(key: str, message: str, *related: str) -> NoReturn:
        sources = dict.fromkeys(origin.get(k, "the defaults") for k in (key, *related))
        raise OptionsError(f"{key} {message} (set in {' and '.join(sources)})")

    _check_types(opt, DEFAULTS, (), fail)
    data, train = opt["datasets"], opt["train"]
    for split in ("train", "val"):
        prefix = f"datasets.{split}"
        ps = data[split]["patch_size"]
        if ps < 16 or ps % 16:
            fail(f"{prefix}.patch_size", f"= {ps} must be a positive multiple of 16 (the network halves "
                                         "the image 4 times)")
        if data[split]["batch_size"] < 1:
            fail(f"{prefix}.batch_size", "must be at least 1")
        if data[split]["num_workers"] < 0:
            fail(f"{prefix}.num_workers", "must be 0 (load in the main process) or more")
        if data[split]["pairing"] not in ("stem", "order"):
            fail(f"{prefix}.pairing", f"= {data[split]['pairing']!r} must be 'stem' (same file names) or "
                                      "'order' (the authors' sorted-order pairing)")
    if not 1 <= train["warmup_epochs"] < train["epochs"]:
        fail("train.warmup_epochs", f"= {train['warmup_epochs']} must be at least 1 and less than "
                                    f"train.epochs = {train['epochs']}", "train.epochs")
    for key in ("lr", "eps"):
        if train[key] <= 0:
            fail(f"train.{key}", "must be positive")
    if not 0 <= train["eta_min"] <= train["lr"]:
        fail("train.eta_min", f"= {train['eta_min']} must be in [0, train.lr = {train['lr']}]", "train.lr")
    if len(train["betas"]) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in train["betas"]):
        fail("train.betas", f"= {train['betas']} must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    if train["schedule"] not in ("epoch", "iteration"):
        fail("train.schedule", f"= {train['schedule']!r} must be 'epoch' (the authors') or 'iteration'")
    if train["seed"] < 0:
        fail("train.seed", "must be 0 or more")
    if train["val_every"] < 1:
        fail("train.val_every", "must be at least 1 (validation decides model_best.pth)")
    if train["save_every"] < 0:
        fail("train.save_every", "must be 0 (no model_epoch_{e}.pth files) or more")
    if not str(opt["paths"]["experiment"]).strip():
        fail("paths.experiment", "must name a folder")


def _check_types(opt: dict[str, Any], reference: dict[str, Any], at: tuple[str, ...], fail: Fail) -> None:
    """Values must have their default's type; ints pass as floats, and so do strings like '1e-4'
    (YAML reads exponents without a dot as strings). Open sections need a `type` name only."""
    for key, default in reference.items():
        keys = (*at, key)
        value = opt[key]
        if keys in OPEN_SECTIONS:
            if not isinstance(value.get("type"), str):
                fail(_dotted((*keys, "type")), f"= {value.get('type')!r} must name a class, e.g. {default['type']}")
        elif isinstance(default, dict):
            _check_types(value, default, keys, fail)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                fail(_dotted(keys), f"= {value!r} must be true or false")
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                fail(_dotted(keys), f"= {value!r} must be an integer")
        elif isinstance(default, float):
            opt[key] = _as_float(value, lambda: fail(_dotted(keys), f"= {value!r} must be a number"))
        elif not isinstance(value, type(default)):
            fail(_dotted(keys), f"= {value!r} must be a {type(default).__name__}")


def _as_float(value: Any, on_error: Callable[[], NoReturn]) -> float:
    if isinstance(value, bool):
        on_error()
    try:
        return float(value)
    except (TypeError, ValueError):
        on_error()
