"""Building blocks of NeRD-Rain: Restormer's transformer block, resampling, and the fusion unit."""
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class LayerNorm(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map, per pixel (Restormer's two kinds).

    Args:
        dim: channels.
        layernorm_type: 'WithBias' (centred, with a bias) or 'BiasFree' (scaled by 1/std only).
    """

    def __init__(self, dim: int, layernorm_type: str = "WithBias"):
        super().__init__()
        if layernorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"layernorm_type must be 'WithBias' or 'BiasFree', got {layernorm_type!r}")
        # 'body' keeps the authors' state_dict names (norm1.body.weight).
        self.body = _ChannelNorm(dim, with_bias=layernorm_type == "WithBias")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _ChannelNorm(nn.Module):
    def __init__(self, dim: int, with_bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm on a channels-last view: the same numbers as the authors' mean/var over a
        # permuted copy, at a fraction of the cost (free when x is channels_last).
        x = x.permute(0, 2, 3, 1)
        if self.bias is None:  # BiasFree: scale by 1/std without centring
            x = x * torch.rsqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5) * self.weight
        else:
            x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, 1e-5)
        return x.permute(0, 3, 1, 2)


class DepthwiseConv(nn.Module):
    """3x3 depthwise conv (kept in a Sequential for the authors' key names, `.main.0.`).

    Args:
        dim: channels.
        bias: whether the conv has a bias.
    """

    def __init__(self, dim: int, bias: bool):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class Attention(nn.Module):
    """Restormer's transposed self-attention: attention between channels, not pixels.

    For each head with d = dim / heads channels, q, k and v are (d, H*W) matrices from a 1x1 then a 3x3
    depthwise conv of the input; with q^ and k^ their rows L2-normalised over the pixels and t the head's
    learned temperature, the head computes `softmax(t * q^ k^T) v` (a d x d attention), and a 1x1 conv
    mixes the heads' outputs (docs/architecture.md, "Building blocks").

    Args:
        dim: channels, divisible by `heads`.
        heads: attention heads.
        bias: whether the convs have biases.
    """

    def __init__(self, dim: int, heads: int, bias: bool):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = DepthwiseConv(dim * 3, bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads
        qkv = self.qkv_dwconv(self.qkv(x))
        # (pixels, channels) matrices; views, not copies, when qkv is channels_last (LayerNorm leaves it so).
        qkv = qkv.permute(0, 2, 3, 1).reshape(b, h * w, 3 * c)
        q, k, v = qkv.split(c, dim=-1)
        # q^ k^T computed as (q k^T) / (|q| |k|^T): normalising the product rather than q and k gives the
        # same numbers without two passes over them (the authors normalise first, with F.normalize). The
        # norms come from the same view as q and k, so training's gradient reaches qkv_dwconv
        # channels_last; a sum of squares is faster than vector_norm over this dim and closer to the
        # authors' norms (bench/RESULTS.md). The clamp before the root is F.normalize's 1e-12 on the norm,
        # and gives all-zero q or k a zero gradient.
        norms = qkv[..., :2 * c].square().sum(1).clamp_min(1e-24).sqrt()
        q_norm, k_norm = norms.split(c, dim=1)
        logits = (q.transpose(1, 2) @ k) / (q_norm[:, :, None] * k_norm[:, None, :])
        # All heads go through one c x c product; each head keeps its own d x d diagonal block.
        logits = logits.reshape(b, self.heads, d, self.heads, d).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)
        attn = (logits * self.temperature).softmax(dim=-1)
        eye = torch.eye(self.heads, dtype=attn.dtype, device=attn.device)
        mix = torch.einsum("bhij,hg->bhigj", attn, eye).reshape(b, c, c)  # the heads' blocks on the diagonal
        out = v @ mix.transpose(1, 2)
        return self.project_out(out.reshape(b, h, w, c).permute(0, 3, 1, 2))


class FeedForward(nn.Module):
    """Gated-GELU feed-forward with a depthwise conv: `project_out(gelu(x1) * x2)`, where x1 and x2 are
    the two halves of `dwconv(project_in(x))`.

    The authors chunk one dwconv(project_in(x)) into x1 and x2; computing the two halves apart (same
    weights, same numbers) gives x1 a tensor of its own, on which GELU runs much faster on the CPU than
    on a channel slice of a channels_last map.

    Args:
        dim: channels in and out.
        ffn_expansion_factor: hidden channels, as a multiple of `dim` (rounded down).
        bias: whether the convs have biases.
    """

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool):
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = DepthwiseConv(hidden * 2, bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)
        # On the CPU, GELU's vectorised and scalar code round differently in the last bit, and which
        # elements take which depends on the tensor's size: so an image's result depends on the batch
        # it is in. With batch_invariant, images go through one at a time (NeRDRain.set_batch_invariant).
        self.batch_invariant = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_invariant and len(x) > 1:
            return torch.cat([self.whole_batch(image) for image in x.split(1)])
        return self.whole_batch(x)

    def whole_batch(self, x: torch.Tensor) -> torch.Tensor:
        """The feed-forward of all images of `x` at once."""
        dw = self.dwconv.main[0]
        x1, x2 = (F.conv2d(F.conv2d(x, *p), *d, padding=1, groups=dw.groups // 2)
                  for p, d in zip(_output_halves(self.project_in), _output_halves(dw)))
        return self.project_out(F.gelu(x1).mul_(x2))


def _output_halves(conv: nn.Conv2d) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(weight, bias) of the first and of the second half of a conv's output channels."""
    biases = (None, None) if conv.bias is None else conv.bias.chunk(2)
    return list(zip(conv.weight.chunk(2), biases))


class TransformerBlock(nn.Module):
    """Pre-norm residual attention + feed-forward: `x + attn(norm1(x))`, then `x + ffn(norm2(x))`.

    Args:
        dim: channels.
        heads: attention heads.
        ffn_expansion_factor: the feed-forward's hidden width, as a multiple of `dim`.
        bias: whether the convs have biases.
        layernorm_type: 'WithBias' or 'BiasFree'.
    """

    def __init__(self, dim: int, heads: int, ffn_expansion_factor: float, bias: bool, layernorm_type: str):
        super().__init__()
        self.norm1 = LayerNorm(dim, layernorm_type)
        self.attn = Attention(dim, heads, bias)
        self.norm2 = LayerNorm(dim, layernorm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class TransformerLevel(nn.Sequential):
    """TransformerBlocks in sequence (the authors' key names: `.0.`, `.1.`, ...). With `checkpointed`
    set, a forward that records gradients keeps only the level's input and recomputes its blocks'
    activations in the backward pass (NeRDRain.set_checkpoint_activations)."""

    checkpointed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.checkpointed and torch.is_grad_enabled():
            return checkpoint(super().forward, x, use_reentrant=False)
        return super().forward(x)


def transformer_level(dim: int, blocks: int, heads: int, ffn_expansion_factor: float, bias: bool,
                      layernorm_type: str) -> TransformerLevel:
    """`blocks` TransformerBlocks in sequence."""
    return TransformerLevel(*[TransformerBlock(dim, heads, ffn_expansion_factor, bias, layernorm_type)
                              for _ in range(blocks)])


class Downsample(nn.Module):
    """3x3 conv to n/2 channels, then PixelUnshuffle(2): n -> 2n channels, half size.

    Args:
        n: input channels (even).
    """

    def __init__(self, n: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n, n // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """3x3 conv to 2n channels, then PixelShuffle(2): n -> n/2 channels, double size.

    Args:
        n: input channels (even).
    """

    def __init__(self, n: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n, n * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Fusion(nn.Module):
    """Bidirectional feature propagation unit (the paper's BFPU): a gated mix of two feature maps.

    With `a = sigmoid(query_conv(x) * key_conv(y))`, `ax = x * a` and `ay = y * a`, two 3x3 convs weigh
    each map against its gated self: `gx = gamma1([x, ax])`, `x' = x * gx_0 + ax * gx_1` (likewise y'
    with gamma2); the result is `x' + y'`.

    Args:
        dim: channels of both maps (the convs have biases, as the authors').
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query_conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.key_conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.gamma1 = nn.Conv2d(dim * 2, 2, 3, padding=1)
        self.gamma2 = nn.Conv2d(dim * 2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.query_conv(x) * self.key_conv(y))
        ax, ay = x * a, y * a
        gx = self.gamma1(torch.cat([x, ax], dim=1))
        gy = self.gamma2(torch.cat([y, ay], dim=1))
        return (x * gx[:, 0:1] + ax * gx[:, 1:2]) + (y * gy[:, 0:1] + ay * gy[:, 1:2])
