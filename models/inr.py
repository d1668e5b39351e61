"""The implicit neural representation (INR) branch of NeRD-Rain."""
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn


@cache
def _cell_extent(size: int, dtype: torch.dtype) -> float:
    """The authors' cell decoding input (2/size)*size, rounded in `dtype` as they compute it (about 2).

    Host arithmetic on a scalar: a constant of the forward pass, so no device work or copy is involved.
    """
    extent = torch.tensor(2 / size, dtype=dtype, device="cpu") * torch.tensor(size, dtype=dtype, device="cpu")
    return extent.item()


class MLP(nn.Module):
    """Linear-ReLU stack; `layers` keeps the authors' key names (imnet.layers.0/2/4/6).

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers, each followed by a ReLU.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (256, 256, 256)):
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.layers = nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


class INR(nn.Module):
    """Per-pixel MLP over 3x3 neighbourhoods of a feature map, returning an RGB image.

    The authors write this as a LIIF query (positional encoding of relative coordinates, 4-neighbour
    local ensemble, cell decoding), but they always query the feature map's own grid: the relative
    coordinates, hence their 18 encoding inputs, are zero, the four ensemble terms are equal with
    weight 1/4, and the cell inputs are constants. What remains is an MLP on the unfolded 3x3
    features, i.e. a 3x3 convolution (the first layer's weights reshaped) followed by per-pixel
    linear layers. Same weights, same numbers, a quarter of the compute and no unfold buffer.

    Args:
        dim: channels C of the feature map; the MLP takes 9C + pe_dims + 2 inputs.
        out_dim: output channels (RGB).
        pe_dims: the positional-encoding inputs of the authors' query (zero here, see above).
    """

    def __init__(self, dim: int, out_dim: int = 3, pe_dims: int = 18):
        super().__init__()
        self.dim, self.pe_dims = dim, pe_dims
        self.imnet = MLP(9 * dim + pe_dims + 2, out_dim)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        h, w = feat.shape[-2:]
        first, rest = self.imnet.layers[0], self.imnet.layers[1:]
        n_feat = 9 * self.dim
        cell_h, cell_w = _cell_extent(h, feat.dtype), _cell_extent(w, feat.dtype)
        cell_weight = first.weight[:, n_feat + self.pe_dims:]
        bias = first.bias + (cell_weight[:, 0] * cell_h + cell_weight[:, 1] * cell_w)
        weight = first.weight[:, :n_feat].reshape(-1, self.dim, 3, 3)  # F.unfold order = conv weight order
        x = F.conv2d(feat, weight, bias, padding=1)
        return rest(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
