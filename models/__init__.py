"""Networks, built by name from options: `build_model({'type': 'NeRDRainS'})`.

The paper's two sizes are defined here and nowhere else: each option `type` is the paper's network
with the arguments in `MODELS`; any other argument of `NeRDRain` may be given beside `type`.
"""
import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from utils.registry import build_by_type

from .nerd_rain import NeRDRain


@dataclass(frozen=True)
class ModelSize:
    """One of the paper's networks: its name there and the `NeRDRain` arguments that differ from the defaults."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


MODELS: dict[str, ModelSize] = {
    "NeRDRain": ModelSize("NeRD-Rain"),
    "NeRDRainS": ModelSize("NeRD-Rain-S", {"dim": 32}),
}


def model_options(model_type: str) -> dict[str, Any]:
    """Every `NeRDRain` argument of a model type, with its `type`: what infer_network_options returns for it."""
    defaults = {name: p.default for name, p in inspect.signature(NeRDRain).parameters.items()}
    options = {**defaults, **MODELS[model_type].arguments}
    return {"type": "NeRDRain", **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}


def model_name(options: dict[str, Any]) -> str | None:
    """The paper's name of the network that `options` (all arguments, as infer_network_options gives) build."""
    full = {**options, "type": "NeRDRain"}
    return next((size.name for kind, size in MODELS.items() if model_options(kind) == full), None)


def build_model(opt: dict[str, Any] | None = None) -> nn.Module:
    """Builds a network from an options dict; `type` picks the size, other keys are `NeRDRain` arguments."""
    opt = dict(opt or {})
    kind = opt.get("type", "NeRDRain")
    if kind in MODELS:
        opt = {**MODELS[kind].arguments, **opt}
    return build_by_type("network", {name: NeRDRain for name in MODELS}, opt, default="NeRDRain")


__all__ = ["MODELS", "ModelSize", "NeRDRain", "build_model", "model_name", "model_options"]
