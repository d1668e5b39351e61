"""NeRD-Rain: bidirectional multi-scale Transformer with implicit neural representations.

    Xiang Chen, Jinshan Pan and Jiangxin Dong, "Bidirectional Multi-Scale Implicit Neural
    Representations for Image Deraining", CVPR 2024. https://github.com/cschenxiang/NeRD-Rain

Three scales (small: quarter size, mid: half, max: full) each run U-Net passes of Restormer blocks:
one at the small scale, two at the mid scale, three at the max scale. INR results close the loop
from coarse to fine inputs, fusion units (the paper's BFPU) feed fine latents back to the coarser
scales, and decoder features flow from coarse to fine (docs/architecture.md, "Forward pass"). Module
names differ from the authors' flat ones; `models.key_map` translates checkpoints both ways.
"""
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Downsample, FeedForward, Fusion, TransformerLevel, Upsample, transformer_level
from .inr import INR


def resize_nearest(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Nearest-neighbour resize by `scale`: F.interpolate's default mode, as the authors call it."""
    return F.interpolate(x, scale_factor=scale)


class NeRDRainOutputs(NamedTuple):
    """What NeRDRain returns, in the authors' order (a tuple: their positional use still works).

    `restored` is the result; the other six feed the training loss or show the scales at work.
    """

    restored: torch.Tensor  # full size (the authors' O3)
    restored_mid: torch.Tensor  # half size (O2)
    restored_small: torch.Tensor  # quarter size (O1)
    inr_mid: torch.Tensor  # the mid scale's INR result, half size (O_inr2)
    mid_input_half: torch.Tensor  # half of the mid scale's input M (M/2)
    inr_small: torch.Tensor  # the small scale's INR result, quarter size (O_inr1)
    input_small: torch.Tensor  # the quarter-size input (X1)


class EncoderFeatures(NamedTuple):
    """An encoder's two skip features (widths C and 2C) and its latent (4C, a quarter of its input's size)."""

    level1: torch.Tensor
    level2: torch.Tensor
    latent: torch.Tensor


class Encoder(nn.Module):
    """Entry conv, level 1, down, level 2, down, latent level.

    Args:
        in_channels: channels of the input (3 for an image, `dim` for a previous pass's decoder output).
        dim: width C of level 1; level 2 has 2C, the latent 4C.
        num_blocks: TransformerBlocks of levels 1, 2 and the latent.
        heads: attention heads of levels 1, 2 and the latent.
        ffn_expansion_factor: hidden width of the feed-forward, as a multiple of its input's.
        bias: whether the convolutions have biases.
        layernorm_type: 'WithBias' or 'BiasFree'.
    """

    def __init__(self, in_channels: int, dim: int, num_blocks: Sequence[int], heads: Sequence[int],
                 ffn_expansion_factor: float, bias: bool, layernorm_type: str):
        super().__init__()
        level = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, layernorm_type=layernorm_type)
        self.entry = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)
        self.level1 = transformer_level(dim, num_blocks[0], heads[0], **level)
        self.down1 = Downsample(dim)
        self.level2 = transformer_level(dim * 2, num_blocks[1], heads[1], **level)
        self.down2 = Downsample(dim * 2)
        self.latent = transformer_level(dim * 4, num_blocks[2], heads[2], **level)

    def forward(self, x: torch.Tensor) -> EncoderFeatures:
        out_enc_level1 = self.level1(self.entry(x))
        out_enc_level2 = self.level2(self.down1(out_enc_level1))
        return EncoderFeatures(out_enc_level1, out_enc_level2, self.latent(self.down2(out_enc_level2)))


class Decoder(nn.Module):
    """Up, concat the level-2 skip, 1x1 reduce, level 2, up, concat the level-1 skip, 1x1 reduce, level 1.

    Args: as Encoder's, without `in_channels` (it decodes a latent of 4 * dim channels).
    """

    def __init__(self, dim: int, num_blocks: Sequence[int], heads: Sequence[int], ffn_expansion_factor: float,
                 bias: bool, layernorm_type: str):
        super().__init__()
        level = dict(ffn_expansion_factor=ffn_expansion_factor, bias=bias, layernorm_type=layernorm_type)
        self.up2 = Upsample(dim * 4)
        self.reduce2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.level2 = transformer_level(dim * 2, num_blocks[1], heads[1], **level)
        self.up1 = Upsample(dim * 2)
        self.reduce1 = nn.Conv2d(dim * 2, dim, 1, bias=bias)
        self.level1 = transformer_level(dim, num_blocks[0], heads[0], **level)

    def forward(self, latent: torch.Tensor, skips: EncoderFeatures, reduce1: nn.Module | None = None) -> torch.Tensor:
        """Decodes `latent` with the skips of `skips`; `reduce1` replaces the level-1 reduce conv."""
        inp_dec_level2 = self.reduce2(torch.cat([self.up2(latent), skips.level2], dim=1))
        out_dec_level2 = self.level2(inp_dec_level2)
        inp_dec_level1 = (reduce1 or self.reduce1)(torch.cat([self.up1(out_dec_level2), skips.level1], dim=1))
        return self.level1(inp_dec_level1)


def check_network_arguments(dim: int, num_blocks: Sequence[int], heads: Sequence[int]) -> None:
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
    """NeRD-Rain; the defaults are the paper's NeRD-Rain (NeRD-Rain-S has dim 32).

    Args:
        dim: width C of each U-Net's first level (levels 2 and 3 have 2C and 4C).
        num_blocks: TransformerBlocks of levels 1, 2 and 3 of every encoder and decoder.
        heads: attention heads of levels 1, 2 and 3.
        ffn_expansion_factor: the feed-forward's hidden width, as a multiple of its input's.
        bias: whether the convolutions of the Transformer blocks, entries and outputs have biases.
        layernorm_type: 'WithBias' or 'BiasFree' (Restormer's two LayerNorms).

    Input sides must be multiples of 16 (each U-Net halves the quarter-size input twice).
    """

    def __init__(self, dim: int = 48, num_blocks: Sequence[int] = (2, 3, 3), heads: Sequence[int] = (1, 2, 4),
                 ffn_expansion_factor: float = 2.66, bias: bool = False, layernorm_type: str = "WithBias"):
        super().__init__()
        check_network_arguments(dim, num_blocks, heads)
        levels = dict(dim=dim, num_blocks=list(num_blocks), heads=list(heads),
                      ffn_expansion_factor=ffn_expansion_factor, bias=bias, layernorm_type=layernorm_type)
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

    def set_checkpoint_activations(self, enabled: bool = True) -> "NeRDRain":
        """Trades time for memory in training: each Transformer level keeps only its input and recomputes
        its blocks' activations in the backward pass (about one more forward pass; same gradients)."""
        for module in self.modules():
            if isinstance(module, TransformerLevel):
                module.checkpointed = enabled
        return self

    def forward(self, inp_img: torch.Tensor) -> NeRDRainOutputs:
        inp_img_max, inp_img_mid, inp_img_small = inp_img, resize_nearest(inp_img, 0.5), resize_nearest(inp_img, 0.25)

        # Coarse to fine through the INR results: each one is added to the next scale's input.
        enc_small = self.enc_small(inp_img_small)
        out_inr_small = self.inr_small(self.up_small(enc_small.latent)) + inp_img_small
        inp_mid = inp_img_mid + resize_nearest(out_inr_small, 2)
        enc_mid1 = self.enc_mid[0](inp_mid)
        out_inr_mid = self.inr_mid(self.up_mid(enc_mid1.latent)) + inp_mid
        inp_max = inp_img_max + resize_nearest(out_inr_mid, 2)

        # Max scale: three U-Net passes, the last one decoded below.
        enc_max1 = self.enc_max[0](inp_max)
        enc_max2 = self.enc_max[1](self.dec_max[0](enc_max1.latent, enc_max1))
        enc_max3 = self.enc_max[2](self.dec_max[1](enc_max2.latent, enc_max2))

        # Fine to coarse: fused latents of consecutive passes, halved, join the coarser latents.
        feedback_mid1 = resize_nearest(self.fuse[0](enc_max1.latent, enc_max2.latent), 0.5)
        feedback_mid2 = resize_nearest(self.fuse[1](enc_max2.latent, enc_max3.latent), 0.5)
        enc_mid2 = self.enc_mid[1](self.dec_mid[0](enc_mid1.latent + feedback_mid1, enc_mid1))
        feedback_small = resize_nearest(self.fuse[2](enc_mid1.latent, enc_mid2.latent), 0.5)

        # Last decoders, coarse to fine, each adding the coarser decoder's output.
        out_dec_small = self.dec_small(enc_small.latent + feedback_small, enc_small)
        out_dec_mid = self.dec_mid[1](enc_mid2.latent + feedback_mid2, enc_mid2) + resize_nearest(out_dec_small, 2)
        # Authors' quirk: the last max decoder reuses the second one's level-1 reduce conv; its own
        # (dec_max[2].reduce1) is in the checkpoint but never used.
        out_dec_max = self.dec_max[2](enc_max3.latent, enc_max3, reduce1=self.dec_max[1].reduce1)
        out_dec_max = out_dec_max + resize_nearest(out_dec_mid, 2)
        return NeRDRainOutputs(
            restored=self.out_max(out_dec_max) + inp_img_max, restored_mid=self.out_mid(out_dec_mid) + inp_img_mid,
            restored_small=self.out_small(out_dec_small) + inp_img_small, inr_mid=out_inr_mid,
            mid_input_half=inp_mid / 2, inr_small=out_inr_small, input_small=inp_img_small)
