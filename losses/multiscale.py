"""The authors' training loss over NeRD-Rain's multi-scale outputs."""
import torch
from kornia.geometry.transform import build_pyramid
from torch import nn

from .charbonnier import CharbonnierLoss
from .edge import EdgeLoss
from .fft import FFTLoss


def target_pyramid(target: torch.Tensor, levels: int = 3) -> list[torch.Tensor]:
    """Full, half, quarter... size targets: Gaussian blur then halve (not the network's nearest pyramid)."""
    return build_pyramid(target, levels)


class MultiScaleLoss(nn.Module):
    """Weighted sum over the network's outputs `[O3, O2, O1, O_inr2, M/2, O_inr1, X1]`:

    `sum_i [char*Charb(o_i, g_i) + fft*FFT(o_i, g_i) + edge*Edge(o_i, g_i)] for i = 0..2
    + inr*(L1(O_inr2, g_1) + L1(O_inr1, g_2))`, with `g = target_pyramid(target)`.
    Returns the total and the unweighted terms `char`, `fft`, `edge`, `l1` (summed over scales, detached).
    """

    def __init__(self, char: float = 1.0, fft: float = 0.01, edge: float = 0.05, inr: float = 0.1):
        super().__init__()
        self.weights = {"char": char, "fft": fft, "edge": edge, "l1": inr}
        self.charbonnier, self.fft, self.edge, self.l1 = CharbonnierLoss(), FFTLoss(), EdgeLoss(), nn.L1Loss()

    def forward(self, outputs: list[torch.Tensor], target: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if len(outputs) != 7:
            raise ValueError(f"expected the network's 7 outputs, got {len(outputs)}")
        pyramid = target_pyramid(target, 3)
        images = list(zip(outputs[:3], pyramid))
        terms = {
            "char": sum(self.charbonnier(o, g) for o, g in images),
            "fft": sum(self.fft(o, g) for o, g in images),
            "edge": sum(self.edge(o, g) for o, g in images),
            "l1": self.l1(outputs[3], pyramid[1]) + self.l1(outputs[5], pyramid[2]),
        }
        total = sum(self.weights[name] * value for name, value in terms.items())
        return total, {name: value.detach() for name, value in terms.items()}
