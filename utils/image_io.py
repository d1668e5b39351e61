"""Reading, writing and pairing image files."""
import os
import secrets
from collections.abc import Callable, Sequence
from operator import attrgetter
from pathlib import Path

import cv2
import numpy as np

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


def atomic_save(path: str | os.PathLike, save_fn: Callable[[str], None]) -> None:
    """Call save_fn(tmp_path) on a temp file next to `path`, then move it onto `path`.

    `path` either keeps its old content or gets the complete new one; the temp file
    is removed if save_fn fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    # os.open rather than tempfile.mkstemp: mkstemp's 0600 mode would end up on the saved file
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        save_fn(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def _by_stem(files: Sequence[Path], side: str) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem:
            raise ValueError(f"two {side} files share the stem {f.stem!r}: {by_stem[f.stem].name}, {f.name}")
        by_stem[f.stem] = f
    return by_stem


def _few(names: list[str], shown: int = 5) -> str:
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def pair_by_stem(input_files: Sequence[Path], target_files: Sequence[Path],
                 sides: tuple[str, str] = ("input", "target")) -> list[tuple[Path, Path]]:
    """Pair files with the same stem, in stem order; every stem must be on both sides.

    `sides` names the two lists in error messages.
    """
    a, b = _by_stem(input_files, sides[0]), _by_stem(target_files, sides[1])
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        missing = [f"stems only in {side}: {_few(names)}"
                   for side, names in zip(sides, (only_a, only_b)) if names]
        raise ValueError("; ".join(missing))
    return [(a[s], b[s]) for s in sorted(a)]


def pair_by_order(input_files: Sequence[Path], target_files: Sequence[Path],
                  sides: tuple[str, str] = ("input", "target")) -> list[tuple[Path, Path]]:
    """Pair the two lists after sorting each by name; `sides` names them in error messages."""
    if len(input_files) != len(target_files):
        raise ValueError(f"cannot pair by order: {len(input_files)} files in {sides[0]} "
                         f"but {len(target_files)} in {sides[1]}")
    by_name = attrgetter("name")
    return list(zip(sorted(input_files, key=by_name), sorted(target_files, key=by_name)))
