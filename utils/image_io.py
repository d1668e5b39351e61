"""Reading and writing image files, and listing the images of a folder."""
import os
from operator import attrgetter
from pathlib import Path

import cv2
import numpy as np

from utils.files import atomic_save

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class ImageReadError(ValueError):
    """An image file that is missing, unreadable or undecodable."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def read_rgb8(path: str | os.PathLike) -> tuple[np.ndarray, str | None]:
    """Read an image as (H, W, 3) uint8 RGB.

    Returns the image and a short note on what was converted to get there
    ("16-bit", "grayscale", "alpha dropped", comma-joined), or None for 8-bit RGB files.
    """
    try:
        # fromfile + imdecode instead of imread: tells a missing file from an undecodable one
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(path, e.strerror or str(e)) from e
    if buf.size == 0:
        raise ImageReadError(path, "empty file")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageReadError(path, "not a decodable image (corrupt, truncated or not an image)")
    notes = []
    if img.dtype == np.uint16:
        # v * 255 / 65535 == v / 257, and v / 257 never falls on a .5 tie
        img = np.rint(img / 257.0).astype(np.uint8)
        notes.append("16-bit")
    elif img.dtype != np.uint8:
        raise ImageReadError(path, f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        notes.append("grayscale")
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
        notes.append("alpha dropped")
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img, ", ".join(notes) or None


def write_png_atomic(path: str | os.PathLike, rgb8: np.ndarray, overwrite: bool = False) -> None:
    """Write an (H, W, 3) uint8 RGB image as PNG, atomically; refuse to replace a file unless overwrite."""
    path = Path(path)
    if rgb8.dtype != np.uint8 or rgb8.ndim != 3 or rgb8.shape[2] != 3:
        raise ValueError(f"{path}: expected an (H, W, 3) uint8 image, got {rgb8.shape} {rgb8.dtype}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (use --overwrite to replace it)")
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"{path}: PNG encoding failed")
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(data.tobytes()))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (png, jpg, jpeg, bmp, tif, tiff; any case) in `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    # dot-files are skipped: temp files of atomic_save and macOS "._x.png" sidecars are not images
    return sorted(
        (p for p in folder.iterdir()
         if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()),
        key=attrgetter("name"),
    )


def require_images(folder: str | os.PathLike) -> list[Path]:
    """list_images(folder), or FileNotFoundError/ValueError naming the folder when it holds none."""
    files = list_images(folder)
    if not files:
        raise ValueError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files
