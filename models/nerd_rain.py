"""NeRD-Rain: bidirectional multi-scale Transformer with implicit neural representations.

Three scales (quarter, half, full size) each run U-Net passes of Restormer blocks: one at the
quarter scale, two at the half scale, three at the full scale. INR results close the loop from
coarse to fine inputs, fusion units feed fine latents back to the coarser scales, and decoder
features flow from coarse to fine. Module names differ from the authors' flat ones;
`models.key_map` translates checkpoints both ways.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Downsample, Fusion, Upsample, transformer_level
from .inr import INR


def near(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Nearest-neighbour resize by `scale`, exactly as the authors call F.interpolate."""
    return F.interpolate(x, scale_factor=scale)


class Encoder(nn.Module):
    """Entry conv, level 1, down, level 2, down, latent; returns both skips and the latent."""

    def __init__(self, entry: nn.Module, dim: int, blocks: list[int], heads: list[int], expansion: float,
                 bias: bool, layernorm_type: str):
        super().__init__()
        self.entry = entry
        self.level1 = transformer_level(dim, blocks[0], heads[0], expansion, bias, layernorm_type)
        self.down1 = Downsample(dim)
        self.level2 = transformer_level(dim * 2, blocks[1], heads[1], expansion, bias, layernorm_type)
        self.down2 = Downsample(dim * 2)
        self.latent = transformer_level(dim * 4, blocks[2], heads[2], expansion, bias, layernorm_type)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        skip1 = self.level1(self.entry(x))
        skip2 = self.level2(self.down1(skip1))
        return skip1, skip2, self.latent(self.down2(skip2))


class Decoder(nn.Module):
    """Up, concat skip 2, 1x1 reduce, level 2, up, concat skip 1, 1x1 reduce, level 1."""

    def __init__(self, dim: int, blocks: list[int], heads: list[int], expansion: float, bias: bool,
                 layernorm_type: str):
        super().__init__()
        self.up2 = Upsample(dim * 4)
        self.reduce2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.level2 = transformer_level(dim * 2, blocks[1], heads[1], expansion, bias, layernorm_type)
        self.up1 = Upsample(dim * 2)
        self.reduce1 = nn.Conv2d(dim * 2, dim, 1, bias=bias)
        self.level1 = transformer_level(dim, blocks[0], heads[0], expansion, bias, layernorm_type)

    def forward(self, latent: torch.Tensor, skip1: torch.Tensor, skip2: torch.Tensor,
                reduce1: nn.Module | None = None) -> torch.Tensor:
        x = self.level2(self.reduce2(torch.cat([self.up2(latent), skip2], dim=1)))
        x = torch.cat([self.up1(x), skip1], dim=1)
        return self.level1((reduce1 or self.reduce1)(x))


class NeRDRain(nn.Module):
    """NeRD-Rain (dim 48) and NeRD-Rain-S (dim 32). Input sides must be multiples of 16."""

    def __init__(self, dim: int = 48, num_blocks: list[int] = (2, 3, 3), heads: list[int] = (1, 2, 4),
                 ffn_expansion_factor: float = 2.66, bias: bool = False, layernorm_type: str = "WithBias"):
        super().__init__()
        cfg = dict(dim=dim, blocks=list(num_blocks), heads=list(heads), expansion=ffn_expansion_factor,
                   bias=bias, layernorm_type=layernorm_type)

        def encoder(entry_in: int) -> Encoder:
            return Encoder(nn.Conv2d(entry_in, dim, 3, padding=1, bias=bias), **cfg)

        # Quarter scale: one pass. Half scale: two. Full scale: three. Later passes enter through
        # a 3x3 "context" conv on the previous pass's decoder output instead of the image embedding.
        self.enc_small, self.dec_small = encoder(3), Decoder(**cfg)
        self.enc_mid = nn.ModuleList([encoder(3), encoder(dim)])
        self.dec_mid = nn.ModuleList([Decoder(**cfg) for _ in range(2)])
        self.enc_max = nn.ModuleList([encoder(3), encoder(dim), encoder(dim)])
        self.dec_max = nn.ModuleList([Decoder(**cfg) for _ in range(3)])
        self.out_small, self.out_mid, self.out_max = (nn.Conv2d(dim, 3, 3, padding=1, bias=bias) for _ in range(3))
        # INR branches on the quarter-scale and first half-scale latents, upsampled 4x to their image size.
        self.up_small, self.up_mid = (nn.Sequential(Upsample(dim * 4), Upsample(dim * 2)) for _ in range(2))
        self.inr_small, self.inr_mid = INR(dim), INR(dim)
        self.fuse = nn.ModuleList([Fusion(dim * 4) for _ in range(3)])

    def forward(self, x3: torch.Tensor) -> list[torch.Tensor]:
        """Returns [O3, O2, O1, O_inr2, M/2, O_inr1, X1]: full, half, quarter restorations, the
        half-scale INR result, half the half-scale input, the quarter INR result, the quarter input."""
        x2, x1 = near(x3, 0.5), near(x3, 0.25)

        # Coarse-to-fine closed loop through the INR results.
        e1, e2, z1 = self.enc_small(x1)
        o_inr1 = self.inr_small(self.up_small(z1)) + x1
        m_in = x2 + near(o_inr1, 2)
        m1, m2, z2a = self.enc_mid[0](m_in)
        o_inr2 = self.inr_mid(self.up_mid(z2a)) + m_in
        l_in = x3 + near(o_inr2, 2)

        # Full scale: three U-Net passes.
        a1, a2, z3a = self.enc_max[0](l_in)
        b1, b2, z3b = self.enc_max[1](self.dec_max[0](z3a, a1, a2))
        c1, c2, z3c = self.enc_max[2](self.dec_max[1](z3b, b1, b2))

        # Fine-to-coarse feedback of fused latents.
        f1 = near(self.fuse[0](z3a, z3b), 0.5)
        f2 = near(self.fuse[1](z3b, z3c), 0.5)
        n1, n2, z2b = self.enc_mid[1](self.dec_mid[0](z2a + f1, m1, m2))
        f3 = near(self.fuse[2](z2a, z2b), 0.5)

        # Decoders, coarse to fine, each adding the coarser decoder's features.
        s = self.dec_small(z1 + f3, e1, e2)
        m = self.dec_mid[1](z2b + f2, n1, n2) + near(s, 2)
        # Authors' quirk: the last full-scale decoder reuses the second one's level-1 reduce conv;
        # its own (dec_max[2].reduce1) is in the checkpoint but never used.
        d = self.dec_max[2](z3c, c1, c2, reduce1=self.dec_max[1].reduce1) + near(m, 2)
        return [self.out_max(d) + x3, self.out_mid(m) + x2, self.out_small(s) + x1,
                o_inr2, m_in / 2, o_inr1, x1]
