"""Networks, built by name from options: `build_model({'type': 'NeRDRain', 'dim': 48, ...})`."""
from functools import partial
from typing import Any

from torch import nn

from utils.registry import build_by_type

from .nerd_rain import NeRDRain

# Architecture presets: the paper's NeRD-Rain and NeRD-Rain-S differ only in width.
MODELS: dict[str, dict[str, Any]] = {
    "NeRDRain": {},
    "NeRDRainS": {"dim": 32},
}


def build_model(opt: dict[str, Any] | None = None) -> nn.Module:
    """Builds a network from an options dict; `type` picks the preset, other keys override it."""
    presets = {name: partial(NeRDRain, **preset) for name, preset in MODELS.items()}
    return build_by_type("network", presets, opt, default="NeRDRain")


__all__ = ["MODELS", "NeRDRain", "build_model"]
