"""Edge loss: Charbonnier between one-level Laplacian-pyramid residuals."""
import torch
from kornia.filters import filter2d
from torch import nn

from .charbonnier import CharbonnierLoss


class EdgeLoss(nn.Module):
    """Charbonnier between `laplacian(x)` and `laplacian(y)`, as in the authors' (MPRNet's) EdgeLoss."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        taps = torch.tensor([0.05, 0.25, 0.4, 0.25, 0.05])
        # filter2d casts the kernel to the input's device and dtype; non-persistent keeps it out of state_dicts.
        self.register_buffer("kernel", torch.outer(taps, taps)[None], persistent=False)
        self.charbonnier = CharbonnierLoss(eps)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise 5x5 smoothing with replicate borders."""
        return filter2d(x, self.kernel, border_type="replicate")

    def laplacian(self, x: torch.Tensor) -> torch.Tensor:
        """`x - blur(up(down(blur(x))))`, down = every 2nd pixel from (0, 0), up = zero-stuffing times 4.

        kornia's pyrdown/pyrup use other kernels and resampling, so the authors' steps are spelled out.
        Not zero for a constant image within 2 pixels of the border (replicate padding of the zero-stuffed map).
        """
        filtered = self.blur(x)
        stuffed = torch.zeros_like(filtered)
        stuffed[..., ::2, ::2] = 4 * filtered[..., ::2, ::2]
        return x - self.blur(stuffed)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.charbonnier(self.laplacian(x), self.laplacian(y))
