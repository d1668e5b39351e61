"""NeRD-Rain: bidirectional multi-scale Transformer with implicit neural representations.

Three scales (small: quarter size, mid: half, max: full) each run U-Net passes of Restormer blocks:
one at the small scale, two at the mid scale, three at the max scale. INR results close the loop
from coarse to fine inputs, fusion units (the paper's BFPU) feed fine latents back to the coarser
scales, and decoder features flow from coarse to fine (NERD_RAIN_SPEC.md, "Forward pass"). Module
names differ from the authors' flat ones; `models.key_map` translates checkpoints both ways.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Downsample, FeedForward, Fusion, Upsample, transformer_level
from .inr import INR


def near(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Nearest-neighbour resize by `scale`, exactly as the authors call F.interpolate."""
    return F.interpolate(x, scale_factor=scale)


class EncoderFeatures(NamedTuple):
    """An encoder's two skip features (widths C and 2C) and its latent (4C, a quarter of its input's size)."""

    level1: torch.Tensor
    level2: torch.Tensor
    latent: torch.Tensor


class Encoder(nn.Module):
    """Entry conv, level 1, down, level 2, down, latent level."""

    def __init__(self, in_channels: int, dim: int, num_blocks: list[int], heads: list[int], expansion: float,
                 bias: bool, layernorm_type: str):
        super().__init__()
        self.entry = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)
        self.level1 = transformer_level(dim, num_blocks[0], heads[0], expansion, bias, layernorm_type)
        self.down1 = Downsample(dim)
        self.level2 = transformer_level(dim * 2, num_blocks[1], heads[1], expansion, bias, layernorm_type)
        self.down2 = Downsample(dim * 2)
        self.latent = transformer_level(dim * 4, num_blocks[2], heads[2], expansion, bias, layernorm_type)

    def forward(self, x: torch.Tensor) -> EncoderFeatures:
        out_level1 = self.level1(self.entry(x))
        out_level2 = self.level2(self.down1(out_level1))
        return EncoderFeatures(out_level1, out_level2, self.latent(self.down2(out_level2)))


class Decoder(nn.Module):
    """Up, concat the level-2 skip, 1x1 reduce, level 2, up, concat the level-1 skip, 1x1 reduce, level 1."""

    def __init__(self, dim: int, num_blocks: list[int], heads: list[int], expansion: float, bias: bool,
                 layernorm_type: str):
        super().__init__()
        self.up2 = Upsample(dim * 4)
        self.reduce2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.level2 = transformer_level(dim * 2, num_blocks[1], heads[1], expansion, bias, layernorm_type)
        self.up1 = Upsample(dim * 2)
        self.reduce1 = nn.Conv2d(dim * 2, dim, 1, bias=bias)
        self.level1 = transformer_level(dim, num_blocks[0], heads[0], expansion, bias, layernorm_type)

    def forward(self, latent: torch.Tensor, skips: EncoderFeatures, reduce1: nn.Module | None = None) -> torch.Tensor:
        """Decodes `latent` with the skips of `skips`; `reduce1` replaces the level-1 reduce conv."""
        inp_level2 = self.reduce2(torch.cat([self.up2(latent), skips.level2], dim=1))
        out_level2 = self.level2(inp_level2)
        inp_level1 = (reduce1 or self.reduce1)(torch.cat([self.up1(out_level2), skips.level1], dim=1))
        return self.level1(inp_level1)


def check_network_arguments(dim: int, num_blocks: list[int], heads: list[int]) -> None:
    """ValueError unless there are 3 levels of blocks and each level's width divides by its heads."""
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim = {dim!r} must be a positive integer")
    for name, value in (("num_blocks", num_blocks), ("heads", heads)):
        if (not isinstance(value, (list, tuple)) or len(value) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
            raise ValueError(f"{name} = {value!r} must be 3 positive integers (levels 1, 2, 3)")
    for level, level_heads in enumerate(heads):
        if (dim << level) % level_heads:
            raise ValueError(f"heads = {list(heads)}: level {level + 1} has {dim << level} channels, "
                             f"not divisible by {level_heads} heads")


class NeRDRain(nn.Module):
    """NeRD-Rain; its defaults are the paper's NeRD-Rain (NeRD-Rain-S has dim 32). Input sides must be
    multiples of 16."""

    def __init__(self, dim: int = 48, num_blocks: list[int] = (2, 3, 3), heads: list[int] = (1, 2, 4),
                 ffn_expansion_factor: float = 2.66, bias: bool = False, layernorm_type: str = "WithBias"):
        super().__init__()
        check_network_arguments(dim, num_blocks, heads)
        levels = dict(dim=dim, num_blocks=list(num_blocks), heads=list(heads), expansion=ffn_expansion_factor,
                      bias=bias, layernorm_type=layernorm_type)
        # The first pass of each scale enters from the image; later passes enter through a 3x3
        # "context" conv on the previous pass's decoder output.
        self.enc_small, self.dec_small = Encoder(3, **levels), Decoder(**levels)
        self.enc_mid = nn.ModuleList([Encoder(3, **levels), Encoder(dim, **levels)])
        self.dec_mid = nn.ModuleList([Decoder(**levels) for _ in range(2)])
        self.enc_max = nn.ModuleList([Encoder(3, **levels), Encoder(dim, **levels), Encoder(dim, **levels)])
        self.dec_max = nn.ModuleList([Decoder(**levels) for _ in range(3)])
        self.out_small, self.out_mid, self.out_max = (nn.Conv2d(dim, 3, 3, padding=1, bias=bias) for _ in range(3))
        # INR branches on the small and first mid latents, upsampled 4x to their own image size.
        self.up_small, self.up_mid = (nn.Sequential(Upsample(dim * 4), Upsample(dim * 2)) for _ in range(2))
        self.inr_small, self.inr_mid = INR(dim), INR(dim)
        self.fuse = nn.ModuleList([Fusion(dim * 4) for _ in range(3)])

    def set_batch_invariant(self, enabled: bool = True) -> "NeRDRain":
        """Makes each image's output independent of the batch it is computed in (FeedForward)."""
        for module in self.modules():
            if isinstance(module, FeedForward):
                module.batch_invariant = enabled
        return self

    def forward(self, inp_img: torch.Tensor) -> list[torch.Tensor]:
        """Returns [O3, O2, O1, O_inr2, M/2, O_inr1, X1]: max, mid and small restorations, the mid INR
        result, half the mid input, the small INR result, the small input (NERD_RAIN_SPEC.md)."""
        inp_img_max, inp_img_mid, inp_img_small = inp_img, near(inp_img, 0.5), near(inp_img, 0.25)

        # Coarse to fine through the INR results: each one is added to the next scale's input.
        enc_small = self.enc_small(inp_img_small)
        out_inr_small = self.inr_small(self.up_small(enc_small.latent)) + inp_img_small
        inp_mid = inp_img_mid + near(out_inr_small, 2)
        enc_mid1 = self.enc_mid[0](inp_mid)
        out_inr_mid = self.inr_mid(self.up_mid(enc_mid1.latent)) + inp_mid
        inp_max = inp_img_max + near(out_inr_mid, 2)

        # Max scale: three U-Net passes, the last one decoded below.
        enc_max1 = self.enc_max[0](inp_max)
        enc_max2 = self.enc_max[1](self.dec_max[0](enc_max1.latent, enc_max1))
        enc_max3 = self.enc_max[2](self.dec_max[1](enc_max2.latent, enc_max2))

        # Fine to coarse: fused latents of consecutive passes, halved, join the coarser latents.
        feedback_mid1 = near(self.fuse[0](enc_max1.latent, enc_max2.latent), 0.5)
        feedback_mid2 = near(self.fuse[1](enc_max2.latent, enc_max3.latent), 0.5)
        enc_mid2 = self.enc_mid[1](self.dec_mid[0](enc_mid1.latent + feedback_mid1, enc_mid1))
        feedback_small = near(self.fuse[2](enc_mid1.latent, enc_mid2.latent), 0.5)

        # Last decoders, coarse to fine, each adding the coarser decoder's output.
        out_dec_small = self.dec_small(enc_small.latent + feedback_small, enc_small)
        out_dec_mid = self.dec_mid[1](enc_mid2.latent + feedback_mid2, enc_mid2) + near(out_dec_small, 2)
        # Authors' quirk: the last max decoder reuses the second one's level-1 reduce conv; its own
        # (dec_max[2].reduce1) is in the checkpoint but never used.
        out_dec_max = self.dec_max[2](enc_max3.latent, enc_max3, reduce1=self.dec_max[1].reduce1)
        out_dec_max = out_dec_max + near(out_dec_mid, 2)
        return [self.out_max(out_dec_max) + inp_img_max, self.out_mid(out_dec_mid) + inp_img_mid,
                self.out_small(out_dec_small) + inp_img_small, out_inr_mid, inp_mid / 2, out_inr_small,
                inp_img_small]
