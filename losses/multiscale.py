"""The authors' training loss over NeRD-Rain's multi-scale outputs."""
from typing import Protocol

import torch
from kornia.geometry.transform import build_pyramid
from torch import nn

from .charbonnier import CharbonnierLoss
from .edge import EdgeLoss
from .fft import FFTLoss


def target_pyramid(target: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
    """Full, half, quarter... size targets: Gaussian blur then halve (not the network's nearest pyramid)."""
    return build_pyramid(target, levels)


class MultiScaleOutputs(Protocol):
    """The outputs the loss reads: NeRDRainOutputs' fields of these names (models/nerd_rain.py)."""

    restored: torch.Tensor
    restored_mid: torch.Tensor
    restored_small: torch.Tensor
    inr_mid: torch.Tensor
    inr_small: torch.Tensor


class MultiScaleLoss(nn.Module):
    """The authors' weighted sum over NeRD-Rain's outputs (models.nerd_rain.NeRDRainOutputs) against
    `g = target_pyramid(target)` (docs/architecture.md, "Losses"):

    `sum over (o, g_i) in ((restored, g_0), (restored_mid, g_1), (restored_small, g_2)) of
    [char*Charb(o, g_i) + fft*FFT(o, g_i) + edge*Edge(o, g_i)] + inr*(L1(inr_mid, g_1) + L1(inr_small, g_2))`.
    Returns the total and the unweighted terms `char`, `fft`, `edge`, `l1` (summed over scales, detached).

    Args:
        char, fft, edge: the weights of the Charbonnier, FFT and edge terms of the restored images.
        inr: the weight of the L1 terms of the two INR results.
    """

    def __init__(self, char: float = 1.0, fft: float = 0.01, edge: float = 0.05, inr: float = 0.1):
        super().__init__()
        self.weights = {"char": char, "fft": fft, "edge": edge, "l1": inr}
        self.charbonnier, self.fft, self.edge, self.l1 = CharbonnierLoss(), FFTLoss(), EdgeLoss(), nn.L1Loss()

    def forward(self, outputs: MultiScaleOutputs, target: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        full, half, quarter = target_pyramid(target, 3)
        images = [(outputs.restored, full), (outputs.restored_mid, half), (outputs.restored_small, quarter)]
        terms = {
            "char": sum(self.charbonnier(o, g) for o, g in images),
            "fft": sum(self.fft(o, g) for o, g in images),
            "edge": sum(self.edge(o, g) for o, g in images),
            "l1": self.l1(outputs.inr_mid, half) + self.l1(outputs.inr_small, quarter),
        }
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}
