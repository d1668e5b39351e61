"""Reading and writing image files, and listing the images of a folder."""
import io
import os
import warnings
from operator import attrgetter
from pathlib import Path

import cv2
import numpy as np
import PIL.Image

from utils.files import atomic_save

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
# read_rgb8's default limit: 8192x8192 = 67,108,864 pixels (192 MB as 8-bit RGB). A 48-megapixel photo fits; a
# decompression bomb (a 20000x20000 PNG of a megabyte) does not. Callers can raise it.
MAX_PIXELS = 8192 * 8192
# PIL warns about images over its own limit when it reads their header; read_rgb8 applies `max_pixels` to
# that header's size instead, so the warning would only add a line before (or without) our message
warnings.filterwarnings("ignore", category=PIL.Image.DecompressionBombWarning)


class ImageReadError(ValueError):
    """An image file that is missing, unreadable or undecodable."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class PixelLimitError(ImageReadError):
    """An image with more pixels than the limit; `size` says how many ("5000x4000 = 20,000,000 pixels", or a
    lower bound), `limit` is the limit."""

    def __init__(self, path: str | os.PathLike, size: str, limit: int, limit_name: str):
        self.size, self.limit = size, limit
        super().__init__(path, f"{size}, over the limit of {limit:,} ({limit_name})")


def header_size(data: bytes | np.ndarray) -> tuple[int, int] | None:
    """(width, height) from an image file's header, without decoding its pixels; None where PIL cannot
    tell (not an image, or a format PIL does not know). PIL.Image.DecompressionBombError when the header
    declares over twice PIL's own limit (PIL.Image.MAX_IMAGE_PIXELS)."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            return image.size
    except PIL.Image.DecompressionBombError:
        raise
    except Exception:  # noqa: BLE001 - PIL raises many types for what it cannot open: the decoder decides
        return None


def check_pixels(path: str | os.PathLike, width: int, height: int, max_pixels: int,
                 limit_name: str = "--max_pixels") -> None:
    """PixelLimitError when an image of width x height has more than `max_pixels` pixels."""
    if width * height > max_pixels:
        raise PixelLimitError(path, f"{width}x{height} = {width * height:,} pixels", max_pixels, limit_name)


def read_rgb8(path: str | os.PathLike, max_pixels: int = MAX_PIXELS,
              limit_name: str = "--max_pixels") -> tuple[np.ndarray, str | None]:
    """Read an image as (H, W, 3) uint8 RGB.

    Returns the image and a short note on what was converted to get there
    ("16-bit", "grayscale", "alpha dropped", comma-joined), or None for 8-bit RGB files.
    ImageReadError for a file that is missing, unreadable or undecodable, and PixelLimitError for one of
    more than `max_pixels` pixels: its size is read from the header first, so such an image (a
    decompression bomb too) is never decoded. `limit_name` is the flag or option that sets the limit.
    """
    try:
        # fromfile + imdecode instead of imread: tells a missing file from an undecodable one
        buf = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(path, e.strerror or str(e)) from e
    if buf.size == 0:
        raise ImageReadError(path, "empty file")
    try:
        size = header_size(buf)
    except PIL.Image.DecompressionBombError:
        bound = 2 * PIL.Image.MAX_IMAGE_PIXELS
        if max_pixels < bound:
            raise PixelLimitError(path, f"more than {bound:,} pixels", max_pixels, limit_name) from None
        size = None  # a limit above PIL's: the decoded size decides
    if size is not None:
        check_pixels(path, *size, max_pixels, limit_name)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as err:  # e.g. OpenCV's own pixel limit (CV_IO_MAX_IMAGE_PIXELS)
        raise ImageReadError(path, f"the decoder failed ({str(err).strip().split('error: ')[-1]})") from None
    except MemoryError:
        raise ImageReadError(path, "not enough memory to decode it") from None
    if img is None:
        raise ImageReadError(path, "not a decodable image (corrupt, truncated or not an image)")
    check_pixels(path, img.shape[1], img.shape[0], max_pixels, limit_name)  # formats PIL cannot size
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
