"""Windowed inference as the authors' test.py does it (docs/architecture.md, "Tiling").

The image is cut into the grid of full `window x window` windows from the top-left; where a side is
not a multiple of the window, a column of windows aligned to the right edge, a row aligned to the
bottom edge and the bottom-right corner window are added. The windows tile the image without
overlap in what they put back: the edge windows fill only the strip the grid did not cover.
Sides shorter than the window are reflect-padded up to it and cropped back afterwards.
"""
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from utils.device import autocast


@dataclass(frozen=True)
class Window:
    """A window cut at (top, left) whose output fills rows [fill_top, top + size) and
    columns [fill_left, left + size) of the image."""

    top: int
    left: int
    fill_top: int
    fill_left: int


def check_window(window: int) -> int:
    """The window size, if it is a positive multiple of 16 (the network halves each side four times)."""
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0 or window % 16:
        raise ValueError(f"window size must be a positive multiple of 16 (e.g. 256), got {window!r}")
    return window


def _starts(size: int, window: int) -> tuple[list[int], int | None]:
    """Grid window starts along one side, and the edge window's start if the grid leaves a strip."""
    covered = window * (size // window)
    return list(range(0, covered, window)), (size - window if covered < size else None)


def window_layout(height: int, width: int, window: int) -> list[Window]:
    """The windows of an image of at least window x window, in the authors' batch order:
    the grid row by row, the right column top to bottom, the bottom row left to right, the corner."""
    if height < window or width < window:
        raise ValueError(f"image {height}x{width} is smaller than the window {window}; pad it first")
    rows, bottom = _starts(height, window)
    cols, right = _starts(width, window)
    grid_h, grid_w = window * len(rows), window * len(cols)
    layout = [Window(r, c, r, c) for r in rows for c in cols]
    if right is not None:
        layout += [Window(r, right, r, grid_w) for r in rows]
    if bottom is not None:
        layout += [Window(bottom, c, grid_h, c) for c in cols]
    if right is not None and bottom is not None:
        layout.append(Window(bottom, right, grid_h, grid_w))
    return layout


def _reflect_index(size: int, length: int) -> torch.Tensor:
    """Indices 0..size-1 followed by their mirror images (edge not repeated), repeated as needed."""
    if size == 1:
        return torch.zeros(length, dtype=torch.long)
    period = 2 * (size - 1)
    i = torch.arange(length) % period
    return torch.where(i < size, i, period - i)


def reflect_pad_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Reflect-pads (B, C, H, W) at the bottom and right up to height x width (no-op if already that big).

    Unlike F.pad, any amount of padding works: the reflection repeats for tiny images.
    """
    h, w = image.shape[-2:]
    if h < height:
        image = image.index_select(-2, _reflect_index(h, height).to(image.device))
    if w < width:
        image = image.index_select(-1, _reflect_index(w, width).to(image.device))
    return image


def window_chunks(count: int, size: int | None) -> list[range]:
    """Runs of at most `size` consecutive windows (None: all in one run), never a lone window among several.

    PyTorch's CPU convolution takes another kernel for a batch of one small 3-channel input, which
    changes the output's last bits; so a lone last window runs together with the one before it (computed
    twice, same numbers) and every chunk size gives exactly the numbers of running all windows at once.
    """
    size = size or count
    chunks = [range(first, min(first + size, count)) for first in range(0, count, size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks[-1] = range(count - 2, count)
    return chunks


def check_batch_windows(batch_windows: int | None) -> int | None:
    """The chunk size, if None (all windows at once) or at least 2 (see window_chunks)."""
    if batch_windows is not None and (isinstance(batch_windows, bool) or not isinstance(batch_windows, int)
                                      or batch_windows < 2):
        raise ValueError(f"batch_windows must be at least 2 (a batch of one window takes other CPU kernels, "
                         f"whose last bits differ), got {batch_windows!r}")
    return batch_windows


def model_device(model: nn.Module) -> torch.device:
    """Where a network's windows go: its parameters' device, or, for a network without parameters (one run
    by ONNX Runtime, inference/onnx_runtime.py), its `device`."""
    parameter = next(model.parameters(), None)
    return model.device if parameter is None else parameter.device


Progress = Callable[[int, int], None]  # called with (windows done, windows in all)


def tiled_forward(model: nn.Module, image: torch.Tensor, window: int = 256, batch_windows: int | None = None,
                  amp: bool = False, progress: Progress | None = None) -> torch.Tensor:
    """Restores a (1, 3, H, W) image window by window; returns the network's `restored` output, (1, 3, H, W),
    clamped to [0, 1].

    Windows go through `model` (put it in eval mode) at most `batch_windows` at a time (None: all at
    once, as the authors do; on the CPU in fp32 every chunk size gives the same numbers, on CUDA the
    kernels cuDNN picks depend on the batch size). Each chunk is moved to the model's device and its
    output back to the image's, so a big image can stay on the CPU. `amp`: bf16 autocast. No gradients.
    `progress(done, total)` is called once per chunk (a lone last window's chunk re-runs one window, so
    `done` is the chunk's end, not a sum).
    """
    check_window(window)
    check_batch_windows(batch_windows)
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"expected one image of shape (1, C, H, W), got {tuple(image.shape)}")
    height, width = image.shape[-2:]
    padded = reflect_pad_to(image, max(height, window), max(width, window))
    layout = window_layout(*padded.shape[-2:], window)
    device = model_device(model)
    out = torch.empty_like(padded, dtype=torch.float32)
    with torch.no_grad():
        for chunk in window_chunks(len(layout), batch_windows):
            windows = [layout[i] for i in chunk]
            batch = torch.cat([padded[..., w.top:w.top + window, w.left:w.left + window] for w in windows])
            with autocast(device, amp):
                restored = model(batch.to(device)).restored
            restored = restored.float().to(out.device)
            for w, result in zip(windows, restored):
                out[0, :, w.fill_top:w.top + window, w.fill_left:w.left + window] = \
                    result[:, w.fill_top - w.top:, w.fill_left - w.left:]
            if progress is not None:
                progress(chunk.stop, len(layout))
    return out[..., :height, :width].clamp_(0, 1)
