"""Training options: YAML files merged over the authors' recipe, with `--set key.sub=value` overrides.

    opt = load_options("options/rain200l.yml", ["train.lr=2e-4", "datasets.train.batch_size=4"])
    model = build_model(opt["network"])

Sections: `network` (build_model options), `datasets` (`train` and `val`), `train`, `paths`.
Keys outside `DEFAULTS` are rejected, naming the key and where it was set (typo protection); the
`network` and `train.loss` sections accept the arguments of the class their `type` names.
Relative paths in options are relative to the repository root (`resolve_path`).
"""
import copy
import difflib
import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from losses import LOSSES
from models import MODELS, NeRDRain
from utils.image_io import atomic_save

REPO_ROOT = Path(__file__).resolve().parents[1]

# The authors' recipe (NERD_RAIN_SPEC.md, "Training as the authors run it"); worker counts are ours.
DEFAULTS: dict[str, Any] = {
    "network": {"type": "NeRDRain"},
    "datasets": {
        "train": {"dir": "Datasets/Rain200L/train", "patch_size": 256, "batch_size": 1, "num_workers": 8,
                  "pairing": "stem"},
        "val": {"dir": "Datasets/Rain200L/test", "patch_size": 256, "batch_size": 1, "num_workers": 4,
                "pairing": "stem"},
    },
    "train": {
        "epochs": 3000, "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "warmup_epochs": 3, "eta_min": 1e-6,
        "schedule": "epoch",
        "loss": {"type": "MultiScaleLoss", "char": 1.0, "fft": 0.01, "edge": 0.05, "inr": 0.1},
        "seed": 1234, "amp": False, "compile": False, "channels_last": False, "cuda_graph": False, "val_every": 1,
        "save_every": 1,
    },
    "paths": {"experiment": "experiments/rain200l"},
}

# Sections whose keys are the constructor arguments of the class named by their `type`.
_OPEN_SECTIONS = {("network",): MODELS, ("train", "loss"): LOSSES}


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


def _dotted(keys: tuple[str, ...]) -> str:
    return ".".join(keys)


def _merge(base: dict[str, Any], update: dict[str, Any], at: tuple[str, ...], source: str,
           origin: dict[str, str]) -> None:
    """Deep-merges `update` into `base` in place, rejecting keys `base` does not know (outside open
    sections) and recording in `origin` where each value was set."""
    if at in _OPEN_SECTIONS and "type" in update and update["type"] != base.get("type"):
        base.clear()  # another class: the defaults' arguments belong to the old one
    for key, value in update.items():
        keys = (*at, str(key))
        if key not in base and at not in _OPEN_SECTIONS:
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


def _get(opt: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        opt = opt[key]
    return opt


def _validate(opt: dict[str, Any], origin: dict[str, str]) -> None:
    """Types against DEFAULTS, the open sections against their classes, then the ranges that matter."""

    def fail(key: str, message: str, *related: str) -> None:
        sources = dict.fromkeys(origin.get(k, "the defaults") for k in (key, *related))
        raise OptionsError(f"{key} {message} (set in {' and '.join(sources)})")

    _check_types(opt, DEFAULTS, (), fail)
    for keys, registry in _OPEN_SECTIONS.items():
        _check_open_section(_get(opt, keys), keys, registry, origin, fail)
    _check_network(opt["network"], fail)

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


def _check_types(opt: dict[str, Any], reference: dict[str, Any], at: tuple[str, ...], fail) -> None:
    """Values must have their default's type; ints pass as floats, and so do strings like '1e-4'
    (YAML reads exponents without a dot as strings)."""
    for key, default in reference.items():
        keys = (*at, key)
        if keys in _OPEN_SECTIONS:
            continue
        value = opt[key]
        if isinstance(default, dict):
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


def _as_float(value: Any, on_error) -> float:
    if isinstance(value, bool):
        on_error()
    try:
        return float(value)
    except (TypeError, ValueError):
        on_error()


def _check_open_section(section: dict[str, Any], keys: tuple[str, ...], registry: dict[str, Any],
                        origin: dict[str, str], fail) -> None:
    name = section.get("type")
    if name not in registry:
        fail(f"{_dotted(keys)}.type", f"= {name!r} must be one of {', '.join(sorted(registry))}")
    target = NeRDRain if registry is MODELS else registry[name]  # every network type is a NeRDRain preset
    known = ["type", *(p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs"))]
    for key in section:
        if key not in known:
            source = origin.get(f"{_dotted(keys)}.{key}", "the options")
            raise OptionsError(_unknown_key((*keys, key), source, known))


def _check_network(net: dict[str, Any], fail) -> None:
    """Shapes the network needs: 3 levels of blocks and heads dividing each level's width."""
    resolved = {name: p.default for name, p in inspect.signature(NeRDRain).parameters.items()}
    resolved.update(MODELS[net["type"]], **net)
    dim = resolved["dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        fail("network.dim", f"= {dim!r} must be a positive integer")
    for key in ("num_blocks", "heads"):
        value = resolved[key]
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            fail(f"network.{key}", f"= {value!r} must be 3 positive integers (levels 1, 2, 3)")
    for level, heads in enumerate(resolved["heads"]):
        if (dim << level) % heads:
            fail("network.heads", f"= {resolved['heads']}: level {level + 1} has {dim << level} channels, "
                                  f"not divisible by {heads} heads")
