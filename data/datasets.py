"""Datasets: paired training and validation sets in the authors' layout (`<dir>/input`, `<dir>/target`),
built by name with `build_dataset`."""
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from utils.image_io import MAX_PIXELS, ImageReadError, read_rgb8, require_images
from utils.pairing import PairingError, pair_files
from utils.registry import build_by_type

from .augment import center_crop, train_augment
from .check import size_mismatch


class DataError(ValueError):
    """A dataset that cannot be used: missing or empty folders, unpaired names, unreadable images.

    Takes one message, so DataLoader workers re-raise it as a DataError too.
    """


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"no folder {folder}: a paired dataset folder holds input/ (rainy) and target/ (clean)")
    try:
        return require_images(folder)
    except ValueError as err:
        raise DataError(str(err)) from None


def find_pairs(root: str | os.PathLike, pairing: str = "stem") -> list[tuple[Path, Path]]:
    """(input, target) files of `root/input` and `root/target`, paired by file stem or, with
    pairing 'order', by position in the sorted listings (the authors' way)."""
    root = Path(root)
    inputs, targets = _images(root / "input"), _images(root / "target")
    if pairing not in ("stem", "order"):
        raise DataError(f"unknown pairing {pairing!r}; choose 'stem' or 'order'")
    try:
        return pair_files(inputs, targets, pairing).pairs
    except PairingError as err:
        if pairing == "order":
            raise DataError(f"{root}: {err}") from None
        raise DataError(f"{root}: input and target names differ: {err}. Rename the files, or pair the "
                        "sorted listings by position with pairing: order") from None


class PairedDataset(Dataset):
    """(rainy, clean) pairs of `root`; items are dicts with `input`, `target` (3, P, P) tensors and `name`.

    An image of more than `max_pixels` pixels cannot be used (utils.image_io.read_rgb8); `limit_name` is
    the option that sets the limit, named in the message.
    """

    def __init__(self, dir: str | os.PathLike, patch_size: int = 256, pairing: str = "stem",
                 max_pixels: int = MAX_PIXELS, limit_name: str = "max_pixels"):
        self.pairs = find_pairs(dir, pairing)
        self.patch_size, self.max_pixels, self.limit_name = patch_size, max_pixels, limit_name

    def read(self, path: Path) -> np.ndarray:
        """One image as (H, W, 3) uint8 RGB within the pixel limit; DataError if it cannot be used."""
        try:
            return read_rgb8(path, self.max_pixels, self.limit_name)[0]
        except ImageReadError as err:
            raise DataError(str(err)) from None

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[Image.Image, Image.Image]:
        """The pair as PIL RGB images of one size."""
        inp_path, tar_path = self.pairs[index]
        inp, tar = Image.fromarray(self.read(inp_path)), Image.fromarray(self.read(tar_path))
        if inp.size != tar.size:
            raise DataError(size_mismatch(inp_path, inp.size[::-1], tar_path, tar.size[::-1]))
        return inp, tar

    def __getitem__(self, index: int) -> dict[str, Any]:
        inp, tar = self.transform(*self.load(index))
        return {"input": inp, "target": tar, "name": self.pairs[index][1].stem}

    def transform(self, inp: Image.Image, tar: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class PairedTrainDataset(PairedDataset):
    """Training pairs with the authors' augmentation (data/augment.py)."""

    def transform(self, inp: Image.Image, tar: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return train_augment(inp, tar, self.patch_size)


class PairedValDataset(PairedDataset):
    """Validation pairs: centre crops of `patch_size`, as the authors validate."""

    def transform(self, inp: Image.Image, tar: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        return center_crop(inp, self.patch_size), center_crop(tar, self.patch_size)


DATASETS: dict[str, type[Dataset]] = {
    "PairedTrain": PairedTrainDataset, "PairedVal": PairedValDataset,
}


def build_dataset(opt: dict[str, Any]) -> Dataset:
    """Builds a dataset from options: `type` names it (PairedTrain, PairedVal), the other
    keys are its arguments (`dir`, `patch_size`, `pairing`)."""
    return build_by_type("dataset", DATASETS, opt, error=DataError)
