"""The authors' (MPRNet-style) training augmentation, with their random draws in their order.

Per training pair: reflect-pad to the patch size; a draw for a gamma step with gamma 1 (a no-op,
drawn to keep the random stream); with probability 1/3 one saturation factor in (0.8, 1.2] for both
images; to tensor; one random crop; one of the nine `GEOMETRIC` choices. Draws use Python's `random`
and NumPy's global generator, as the authors' loader does; the trainer seeds them.
"""
import random
from collections.abc import Callable

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image


def _rot90(x: torch.Tensor, k: int = 1) -> torch.Tensor:
    return torch.rot90(x, k=k, dims=(1, 2))


# The authors' `aug = random.randint(0, 8)` over (C, H, W) tensors: nine equally likely choices,
# identity twice (0 and 8). flip(1) is vertical, flip(2) horizontal.
GEOMETRIC: tuple[Callable[[torch.Tensor], torch.Tensor], ...] = (
    lambda x: x,
    lambda x: x.flip(1),
    lambda x: x.flip(2),
    lambda x: _rot90(x),
    lambda x: _rot90(x, 2),
    lambda x: _rot90(x, 3),
    lambda x: _rot90(x.flip(1)),
    lambda x: _rot90(x.flip(2)),
    lambda x: x,
)


def pad_to_patch(img: Image.Image, patch_size: int) -> Image.Image:
    """Reflect-pads on the right and bottom up to `patch_size` where the image is smaller."""
    w, h = img.size
    pad_w, pad_h = max(patch_size - w, 0), max(patch_size - h, 0)
    if pad_w or pad_h:
        img = TF.pad(img, [0, 0, pad_w, pad_h], padding_mode="reflect")
    return img


def train_augment(inp: Image.Image, tar: Image.Image, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' augmentation of a (rainy, clean) pair of same-size RGB images: two (3, P, P) tensors."""
    inp, tar = pad_to_patch(inp, patch_size), pad_to_patch(tar, patch_size)
    random.randint(0, 2)  # the authors' gamma step: adjust_gamma(img, 1) on 1 changes nothing
    if random.randint(0, 2) == 1:
        factor = 1 + (0.2 - 0.4 * np.random.rand())
        inp, tar = TF.adjust_saturation(inp, factor), TF.adjust_saturation(tar, factor)
    inp, tar = TF.to_tensor(inp), TF.to_tensor(tar)
    h, w = tar.shape[1:]
    top, left = random.randint(0, h - patch_size), random.randint(0, w - patch_size)
    transform = GEOMETRIC[random.randint(0, 8)]
    crop = (slice(None), slice(top, top + patch_size), slice(left, left + patch_size))
    return transform(inp[crop]), transform(tar[crop])


def center_crop(img: Image.Image, patch_size: int) -> torch.Tensor:
    """Validation input: the centre `patch_size` square as a tensor (zero-padded if the image is smaller)."""
    return TF.to_tensor(TF.center_crop(img, [patch_size, patch_size]))
