"""NIQE, the no-reference "naturalness" score of Mittal, Soundararajan and Bovik (2013), "Making a
'completely blind' image quality analyzer", computed as the authors' MATLAB release computes it
(niqe_release: computequality.m, computefeature.m, estimateaggdparam.m). Lower is better.

The image is protocol A's Y (evaluations.metrics.luma_a), cropped to whole 96x96 blocks from the top
left. Each block gives 18 features at full scale and 18 at half scale (MATLAB's imresize(y, 0.5)); a
multivariate Gaussian fitted to the blocks' features is compared with the pristine model.

niqe_pris_params.npz (beside this file) is the authors' pristine model: mu_pris_param (1x36) and
cov_pris_param (36x36), the Gaussian they fitted to the features of the LIVE pristine images, as
distributed with their MATLAB release (modelparameters.mat,
http://live.ece.utexas.edu/research/quality/niqe_release.zip); plus gaussian_window, computequality.m's
fspecial('gaussian', 7, 7/6) normalised to sum 1. The file is the one BasicSR redistributes
(basicsr/metrics/niqe_pris_params.npz, Apache-2.0). It is data, not code.
"""
from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np
from scipy.special import gamma

from evaluations.metrics import luma_a

BLOCK = 96
_MODEL = Path(__file__).with_name("niqe_pris_params.npz")

# computefeature.m's circshifts for the products of neighbouring coefficients:
# horizontal, vertical, and the two diagonals
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))

# estimateaggdparam.m's table: alpha on the grid 0.2:0.001:10 (k/1000 is within an ulp of MATLAB's
# colon values) and the ratio it inverts, which increases with alpha
_ALPHA = np.arange(200, 10001) / 1000
_RATIO = gamma(2 / _ALPHA) ** 2 / (gamma(1 / _ALPHA) * gamma(3 / _ALPHA))
_BETA = np.sqrt(gamma(1 / _ALPHA) / gamma(3 / _ALPHA))  # beta = std * this
_MEAN = gamma(2 / _ALPHA) / gamma(1 / _ALPHA)  # AGGD mean = (beta_r - beta_l) * this

# MATLAB's imresize(x, 0.5), bicubic with antialiasing, widens the cubic kernel (a = -0.5) to 8 taps:
# 0.5 * cubic(d / 2) at distances d = 3.5, 2.5, ..., -3.5. The weights are dyadic and sum to exactly 1,
# so an integer Y is halved without rounding. Written here because no library has this resize:
# OpenCV's INTER_CUBIC does not widen the kernel, and PIL's and torch's antialiased bicubic
# renormalise the kernel at the borders where MATLAB mirrors the image.
_HALF_TAPS = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256


class NiqeError(ValueError):
    """An image NIQE cannot score: too small for the covariance of its blocks, or too flat."""


@cache
def _model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.load(_MODEL) as params:
        return params["mu_pris_param"][0], params["cov_pris_param"], params["gaussian_window"]


def imresize_half(img: np.ndarray) -> np.ndarray:
    """MATLAB's imresize(img, 0.5) (bicubic, antialiasing) of a 2-D float64 array: ceil(h/2) x ceil(w/2)."""
    out = img
    for axis in (0, 1):  # MATLAB resizes the rows first when both scales are equal
        n = out.shape[axis]
        # output i (0-based) weighs inputs 2i-3 .. 2i+4; MATLAB mirrors with the edge repeated ('symmetric')
        padded = np.pad(np.moveaxis(out, axis, 0), ((3, 4), (0, 0)), mode="symmetric")
        m = -(-n // 2)
        acc = sum(w * padded[k:k + 2 * m:2] for k, w in enumerate(_HALF_TAPS))
        out = np.moveaxis(acc, 0, axis)
    return out


def _nearest_alpha(ratio: np.ndarray) -> np.ndarray:
    # argmin((_RATIO - ratio).^2) by bisection (_RATIO increases): ties go to the lower index, as
    # MATLAB's min takes the first; a NaN or infinite ratio gives index 0, as min of all-NaN (or
    # all-Inf) squares returns index 1
    hi = np.clip(np.searchsorted(_RATIO, ratio), 1, len(_RATIO) - 1)
    lo = hi - 1
    k = np.where((_RATIO[lo] - ratio) ** 2 <= (_RATIO[hi] - ratio) ** 2, lo, hi)
    return np.where(np.isfinite(ratio), k, 0)


def _aggd(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # estimateaggdparam.m for each row: the alpha index into _ALPHA, beta_left, beta_right. A row
    # without negative (positive) values has mean([]) = NaN for its left (right) std, as in MATLAB
    neg, pos = np.minimum(vectors, 0), np.maximum(vectors, 0)
    neg_sq, pos_sq = np.einsum("ij,ij->i", neg, neg), np.einsum("ij,ij->i", pos, pos)
    n = vectors.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt(neg_sq / np.count_nonzero(neg, axis=1))
        right = np.sqrt(pos_sq / np.count_nonzero(pos, axis=1))
        g = left / right
        rhat = ((pos.sum(1) - neg.sum(1)) / n) ** 2 / ((neg_sq + pos_sq) / n)
        ratio = rhat * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    k = _nearest_alpha(ratio)
    return k, left * _BETA[k], right * _BETA[k]


def _mscn(y: np.ndarray, window: np.ndarray) -> np.ndarray:
    # computequality.m's (im - mu) ./ (sigma + 1), imfilter(..., 'replicate') being a correlation
    mu = cv2.filter2D(y, -1, window, borderType=cv2.BORDER_REPLICATE)
    var = cv2.filter2D(y * y, -1, window, borderType=cv2.BORDER_REPLICATE) - mu * mu
    mscn = (y - mu) / (np.sqrt(np.abs(var)) + 1)
    # Where the 7x7 neighbourhood is constant, mu is that constant, but the rounded weighted sum can
    # miss it by an ulp, leaving a +-1e-14 coefficient that the AGGD fit counts as negative or positive.
    # MATLAB's score for baboon.png is only reproduced with exact zeros there: its 13 such pixels,
    # left at -1e-14 (+1e-14), move the score by 3.9e-4 (1.4e-4). Neighbourhoods whose weighted mean
    # equals the centre by symmetry alone (a linear ramp) are left to floating point.
    square = np.ones((7, 7), np.uint8)
    flat = (cv2.dilate(y, square, borderType=cv2.BORDER_REPLICATE)
            == cv2.erode(y, square, borderType=cv2.BORDER_REPLICATE))
    mscn[flat] = 0
    return mscn


def _features(y: np.ndarray, block: int, window: np.ndarray) -> np.ndarray:
    # computefeature.m for every block of y: (blocks, 18), blocks in blkproc's (column-major) order
    nh, nw = y.shape[0] // block, y.shape[1] // block
    blocks = _mscn(y, window).reshape(nh, block, nw, block).transpose(2, 0, 1, 3).reshape(-1, block, block)
    products = [blocks * np.roll(blocks, shift, axis=(1, 2)) for shift in _SHIFTS]  # circshift within a block
    k, bl, br = _aggd(np.stack([blocks, *products], 1).reshape(-1, block * block))
    k, bl, br = (a.reshape(len(blocks), 5) for a in (k, bl, br))
    alpha, mean = _ALPHA[k], (br - bl) * _MEAN[k]
    # per block: alpha and (beta_l + beta_r) / 2 of the coefficients, then alpha, mean, beta_l, beta_r
    # of each of the four products
    own = np.stack([alpha[:, 0], (bl[:, 0] + br[:, 0]) / 2], 1)
    products = np.stack([alpha[:, 1:], mean[:, 1:], bl[:, 1:], br[:, 1:]], 2).reshape(len(blocks), 16)
    return np.concatenate([own, products], 1)


def niqe(rgb8: np.ndarray) -> float:
    """NIQE of an (H, W, 3) uint8 RGB image, as the authors' MATLAB release gives it on its protocol A Y.

    Raises NiqeError when the image has fewer than two 96x96 blocks (the block features' covariance
    needs two) or when fewer than two blocks have features at both scales (flat images).
    """
    if rgb8.dtype != np.uint8 or rgb8.ndim != 3 or rgb8.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb8.shape} {rgb8.dtype}")
    h, w = rgb8.shape[:2]
    nh, nw = h // BLOCK, w // BLOCK
    if nh * nw < 2:
        raise NiqeError(f"{w}x{h} is too small for NIQE: it needs at least two {BLOCK}x{BLOCK} blocks "
                        f"(e.g. {2 * BLOCK}x{BLOCK}) for the covariance of the block features")
    y = luma_a(rgb8[:nh * BLOCK, :nw * BLOCK])
    if y.min() == y.max():
        raise NiqeError(f"the image is flat (Y = {y.flat[0]:.0f} in all of its {BLOCK}x{BLOCK} blocks): "
                        "NIQE is undefined")
    mu_pris, cov_pris, window = _model()
    feats = np.concatenate([_features(y, BLOCK, window), _features(imresize_half(y), BLOCK // 2, window)], 1)
    # nanmean of all blocks, nancov of the blocks without NaN, as computequality.m; a block has NaN
    # features when its coefficients are all of one sign or zero (flat regions)
    complete = ~np.isnan(feats).any(1)
    if complete.sum() < 2:
        raise NiqeError(f"only {complete.sum()} of the {len(feats)} {BLOCK}x{BLOCK} blocks have texture "
                        "enough for NIQE's statistics (two needed); the image is nearly flat")
    diff = mu_pris - np.nanmean(feats, 0)
    # cov_pris is positive definite, so (cov_pris + cov) / 2 has no singular value near numpy's or
    # MATLAB's pinv tolerance: both give its plain inverse
    inv = np.linalg.pinv((cov_pris + np.cov(feats[complete], rowvar=False)) / 2)
    return float(np.sqrt(diff @ inv @ diff))
