"""Networks, built by name from options: `build_model({'type': 'NeRDRain', 'dim': 48, ...})`."""
from typing import Any

from torch import nn

from .nerd_rain import NeRDRain

# Architecture presets: the paper's NeRD-Rain and NeRD-Rain-S differ only in width.
MODELS: dict[str, dict[str, Any]] = {
    "NeRDRain": {},
    "NeRDRainS": {"dim": 32},
}


def build_model(opt: dict[str, Any] | None = None) -> nn.Module:
    """Builds a network from an options dict; `type` picks the preset, other keys override it."""
    opt = dict(opt or {})
    name = opt.pop("type", "NeRDRain")
    if name not in MODELS:
        raise ValueError(f"unknown network type {name!r}; choose one of {sorted(MODELS)}")
    try:
        return NeRDRain(**{**MODELS[name], **opt})
    except TypeError as err:
        raise ValueError(f"bad network options {opt}: {err}") from None


__all__ = ["MODELS", "NeRDRain", "build_model"]
