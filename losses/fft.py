"""Frequency-domain L1 loss."""
import torch
from torch import nn


class FFTLoss(nn.Module):
    """Mean complex modulus of the 2-D FFT difference over the last two dims (the authors' loss terms use the
    modulus, not the mean of |real| and |imag| parts)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # The FFT is linear: one transform of the difference equals fft2(x) - fft2(y) at half the cost.
        return torch.fft.fft2(x - y).abs().mean()
