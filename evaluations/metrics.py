"""PSNR and SSIM as the NeRD-Rain authors compute them in MATLAB (docs/architecture.md, "Metrics").

Protocol A (Rain200L/H, Rain100L/H, SPA-Data): Y of MATLAB's rgb2ycbcr rounded to uint8, PSNR with
peak 255, SSIM of Wang's ssim_index. Protocol B (DID-Data, DDN-Data): Y on doubles, not rounded, PSNR
with peak 1, SSIM after Wang's automatic downsampling.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
from skimage.metrics import structural_similarity

if TYPE_CHECKING:  # only for hints: importing torch would add seconds to every evaluation CLI run
    import torch

_PROTOCOLS = {
    "a": "A", "rain200l": "A", "rain200h": "A", "rain100l": "A", "rain100h": "A", "spa-data": "A",
    "b": "B", "did-data": "B", "ddn-data": "B",
}
_CHOICES = "A, B, Rain200L, Rain200H, Rain100L, Rain100H, SPA-Data (A), DID-Data, DDN-Data (B)"

# Y row of MATLAB rgb2ycbcr's origT, times 1/255 as rgb2ycbcr scales it
_Y_WEIGHTS = (1 / 255) * np.array([65.481, 128.553, 24.966])


def resolve_protocol(name: str) -> str:
    """'A' or 'B' for a protocol letter or a dataset name (any case)."""
    try:
        return _PROTOCOLS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown protocol or dataset {name!r}; choose one of {_CHOICES}") from None


def _luma(rgb8: np.ndarray) -> np.ndarray:
    # by hand: no library has MATLAB's rgb2ycbcr; T*rgb + offset summed in MATLAB's order, which decides
    # which way exact .5 values round in protocol A
    r, g, b = (rgb8[..., c].astype(np.float64) for c in range(3))
    return _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b + 16


def luma_a(rgb8: np.ndarray) -> np.ndarray:
    """Protocol A's Y: MATLAB rgb2ycbcr of (H, W, 3) uint8 RGB, rounded to its uint8 output, as float64."""
    # uint8 rgb2ycbcr rounds halves away from zero; Y >= 16 so floor(y + 0.5) does that
    return np.floor(_luma(rgb8) + 0.5)


def _psnr255(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a - b) ** 2)
    return math.inf if mse == 0 else 20 * math.log10(255 / math.sqrt(mse))


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    # 11x11 Gaussian (sigma 1.5, truncate 3.5), population covariances, border of 5 cropped:
    # Wang's ssim_index with 'valid' filtering (matches the Octave reference to 1e-14)
    return float(structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255))


def _wang_downsample(y: np.ndarray) -> np.ndarray:
    # by hand: Wang's ssim.m step; imfilter(y, ones(f)/f^2, 'symmetric', 'same') puts the kernel centre at
    # (f+1)//2 (1-based), i.e. anchor (f-1)//2: top-left for f = 2. Then y(1:f:end, 1:f:end)
    f = max(1, math.floor(min(y.shape) / 256 + 0.5))  # MATLAB round: halves away from zero
    if f == 1:
        return y
    a = (f - 1) // 2
    return cv2.blur(y, (f, f), anchor=(a, a), borderType=cv2.BORDER_REFLECT)[::f, ::f]


def psnr_ssim(result_rgb8: np.ndarray, target_rgb8: np.ndarray, protocol: str) -> tuple[float, float]:
    """(PSNR in dB, SSIM) of two (H, W, 3) uint8 RGB images under protocol A or B (or a dataset name)."""
    protocol = resolve_protocol(protocol)
    for name, img in (("result", result_rgb8), ("target", target_rgb8)):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name} must be an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    if result_rgb8.shape != target_rgb8.shape:
        (h1, w1), (h2, w2) = result_rgb8.shape[:2], target_rgb8.shape[:2]
        raise ValueError(f"size mismatch: result is {w1}x{h1}, target is {w2}x{h2}")
    if protocol == "A":
        y_res, y_tar = luma_a(result_rgb8), luma_a(target_rgb8)
        return _psnr255(y_res, y_tar), _ssim(y_res, y_tar)
    y_res, y_tar = _luma(result_rgb8), _luma(target_rgb8)
    # protocol B's PSNR of Y/255 with peak 1 equals this one; its "peak 255 if max > 2" branch cannot
    # trigger on images read as 8-bit
    return _psnr255(y_res, y_tar), _ssim(_wang_downsample(y_res), _wang_downsample(y_tar))


def _check_batches(output: torch.Tensor, target: torch.Tensor) -> None:
    if output.shape != target.shape or output.ndim != 4:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(output.shape)} "
                         f"and {tuple(target.shape)}")


def rgb_psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """Authors' validation PSNR of (B, C, H, W) batches: 20*log10(1/rmse) of clamp(output, 0, 1)
    vs target per image, averaged over the batch."""
    _check_batches(output, target)
    diff = output.detach().float().clamp(0, 1) - target.detach().float()
    rmse = diff.pow(2).flatten(1).mean(1).sqrt()
    return (20 * (1 / rmse).log10()).mean().item()


def rgb_ssim(output: torch.Tensor, target: torch.Tensor) -> float:
    """Training-time SSIM of (B, C, H, W) batches in [0, 1]: kornia's SSIM (11 x 11 Gaussian window, sigma
    1.5, 'valid' borders) over the RGB channels of clamp(output, 0, 1) against target, per image, averaged
    over the batch. A figure to watch training by (train.py's validation crops), not the protocols' SSIM on
    MATLAB's Y (psnr_ssim)."""
    from kornia.metrics import ssim  # here, not above: importing torch would slow every evaluation CLI run

    _check_batches(output, target)
    ssim_map = ssim(output.detach().float().clamp(0, 1), target.detach().float(), 11, padding="valid")
    return ssim_map.flatten(1).mean(1).mean().item()
