"""Deraining image files with a loaded network, as the authors' test.py does: 8-bit RGB in, windows
through the network (inference/tiling.py), 8-bit RGB out, written atomically as <stem>.png."""
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from skimage import img_as_ubyte
from torch import nn

from utils.device import device_name
from utils.image_io import MAX_PIXELS, ImageReadError, read_rgb8, write_png_atomic

from .network import WINDOW
from .tiling import Progress, tiled_forward

class WriteError(Exception):
    """A result that cannot be written (a full disk, a folder that became read-only): the run stops, since
    every later image would fail the same way. The message names the file and the cause."""

    def __init__(self, path: Path, err: OSError):
        self.path = path
        super().__init__(f"cannot write {path}: {err.strerror or err}")


def to_tensor(rgb8: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (1, 3, H, W) float in [0, 1], with torchvision's to_tensor as the authors."""
    return TF.to_tensor(rgb8).unsqueeze(0)


def to_rgb8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> (H, W, 3) uint8 with skimage's img_as_ubyte, as the authors do."""
    return img_as_ubyte(image[0].permute(1, 2, 0).cpu().numpy())


def derain(model: nn.Module, rgb8: np.ndarray, window: int = WINDOW, batch_windows: int | None = None,
           amp: bool = False, progress: Progress | None = None) -> np.ndarray:
    """One (H, W, 3) uint8 image restored window by window: the authors' output as uint8.

    `progress(done, total)`: called after each chunk of windows (inference.tiling.tiled_forward).
    """
    return to_rgb8(tiled_forward(model, to_tensor(rgb8), window, batch_windows, amp, progress))


class FolderRun:
    """Derains images one by one into `output_dir`, keeping what happened to each for the summary.

    An existing result is skipped unless `overwrite`; an unreadable image, or one of more than `max_pixels`
    pixels, is recorded as failed and the run goes on. A result that cannot be written raises WriteError
    (atomic writes: no partial file is left). With `comparison_targets` (stem -> clean image),
    input | output [| target] panels go to `output_dir/comparison/` too.
    """

    def __init__(self, model: nn.Module, output_dir: Path, window: int = WINDOW, batch_windows: int | None = None,
                 amp: bool = False, overwrite: bool = False, comparison_targets: dict[str, Path] | None = None,
                 max_pixels: int = MAX_PIXELS):
        self.model, self.output_dir, self.window, self.batch_windows = model, output_dir, window, batch_windows
        self.amp, self.overwrite, self.comparison_targets = amp, overwrite, comparison_targets
        self.max_pixels = max_pixels
        self.written: list[Path] = []
        self.skipped: list[Path] = []
        self.failed: list[str] = []
        self.notes: list[str] = []
        self.conversions: Counter[str] = Counter()
        self.seconds = 0.0

    def process(self, path: Path) -> None:
        """Restores one image unless its result exists (and no overwrite) or it cannot be read."""
        out_path = self.output_dir / f"{path.stem}.png"
        if out_path.exists() and not self.overwrite:
            self.skipped.append(out_path)
            return
        start = time.perf_counter()
        try:
            rgb, note = read_rgb8(path, self.max_pixels)
            result = derain(self.model, rgb, self.window, self.batch_windows, self.amp)
        except ImageReadError as err:
            self.failed.append(str(err))
            return
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            self.failed.append(f"{path}: out of memory (try a smaller --batch_windows, or --amp)")
            return
        if note:
            self.conversions[note] += 1
        try:
            write_png_atomic(out_path, result, overwrite=self.overwrite)
        except FileExistsError:  # appeared since the check above: still never replaced
            self.skipped.append(out_path)
            return
        except OSError as err:
            raise WriteError(out_path, err) from None
        self.seconds += time.perf_counter() - start
        self.written.append(out_path)
        if self.comparison_targets is not None:
            self.write_comparison(path.stem, rgb, result)

    def write_comparison(self, stem: str, rgb: np.ndarray, result: np.ndarray) -> None:
        """input | output [| target] side by side, in OUTPUT_DIR/comparison/<stem>.png."""
        target = self.comparison_target(stem, rgb.shape)
        panels = [rgb, result] if target is None else [rgb, result, target]
        path = self.output_dir / "comparison" / f"{stem}.png"
        try:
            path.parent.mkdir(exist_ok=True)
            write_png_atomic(path, np.concatenate(panels, axis=1), overwrite=self.overwrite)
        except FileExistsError as err:
            self.notes.append(f"comparison not written: {err}")
        except OSError as err:
            raise WriteError(path, err) from None

    def comparison_target(self, stem: str, shape: tuple[int, ...]) -> np.ndarray | None:
        """The target with this stem, if there is one that reads and has the input's size."""
        path = (self.comparison_targets or {}).get(stem)
        if path is None:
            return None
        try:
            target, _ = read_rgb8(path, self.max_pixels)
        except ImageReadError as err:
            self.notes.append(f"comparison {stem}.png without target: {err}")
            return None
        if target.shape != shape:
            self.notes.append(f"comparison {stem}.png without target: {path.name} is {target.shape[1]}x"
                              f"{target.shape[0]}, the input {shape[1]}x{shape[0]}")
            return None
        return target

    def report(self, device: torch.device) -> str:
        """Conversions, skipped files, notes, and the summary line."""
        lines = []
        if self.conversions:
            kinds = ", ".join(f"{n} {kind}" for kind, n in self.conversions.items())
            lines.append(f"converted to 8-bit RGB: {sum(self.conversions.values())} file(s) ({kinds})")
        if self.skipped:
            names = ", ".join(p.name for p in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
            lines.append(f"skipped {len(self.skipped)} existing result(s), not replaced (use --overwrite): {names}")
        lines += self.notes
        if self.failed:
            lines.append(f"could not restore {len(self.failed)} file(s), skipped:")
            lines += [f"  {failure}" for failure in self.failed]
        per_image = f"{self.seconds / len(self.written):.2f} s per image" if self.written else "no image restored"
        lines.append(f"{len(self.written)} image(s) written to {self.output_dir}, {len(self.skipped)} skipped, "
                     f"{len(self.failed)} failed; {per_image} on {device_name(device)}")
        return "\n".join(lines)
