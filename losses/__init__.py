"""Training losses, built by name from options: `build_loss({'type': 'MultiScaleLoss', 'fft': 0.01})`."""
from typing import Any

from torch import nn

from utils.registry import build_by_type

from .charbonnier import CharbonnierLoss
from .edge import EdgeLoss
from .fft import FFTLoss
from .multiscale import MultiScaleLoss, target_pyramid

LOSSES: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (MultiScaleLoss, CharbonnierLoss, FFTLoss, EdgeLoss, nn.L1Loss)
}


def build_loss(opt: dict[str, Any]) -> nn.Module:
    """Builds a loss from an options dict; `type` names the class, other keys are its arguments."""
    return build_by_type("train.loss", LOSSES, opt, default="MultiScaleLoss")


__all__ = ["LOSSES", "CharbonnierLoss", "EdgeLoss", "FFTLoss", "MultiScaleLoss", "build_loss", "target_pyramid"]
