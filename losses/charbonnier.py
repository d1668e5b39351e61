"""Charbonnier loss, a smooth L1."""
import torch
from torch import nn


class CharbonnierLoss(nn.Module):
    """`mean(sqrt((x - y)^2 + eps))`; the authors use eps = 1e-6 (their 1e-3 squared)."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        diff = x - y
        # kornia.losses.charbonnier_loss is Barron's sqrt(d^2 + 1) - 1, a different function.
        return torch.sqrt(diff * diff + self.eps).mean()
