"""Windowed inference against the authors' test-time windowing: golden output, window geometry, odd sizes."""
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import img_as_ubyte
from torch import nn

from inference.network import prepare_for_inference
from inference.tiling import (check_batch_windows, check_window, reflect_pad_to, tiled_forward, window_chunks,
                              window_layout)
from models.weights import model_from_checkpoint


@pytest.fixture(scope="module")
def tiny_model(tiny_weights) -> nn.Module:
    """As test.py runs it on the CPU: channels_last and batch invariant."""
    return prepare_for_inference(model_from_checkpoint(tiny_weights), torch.device("cpu"))


@pytest.fixture
def golden_model(golden_network) -> nn.Module:
    return golden_network.eval()


class Restored(NamedTuple):
    restored: torch.Tensor


class Identity(nn.Module):
    """Stands in for the network: the restored image is the input, so the result shows where pixels were
    put back."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # tiled_forward reads the device from the parameters

    def forward(self, x: torch.Tensor) -> Restored:
        return Restored(x)


def to_rgb8(image: torch.Tensor) -> np.ndarray:
    return img_as_ubyte(image[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("batch_windows", [None, 2, 5])
def test_golden_tiled_output(golden, golden_model, batch_windows):
    out = tiled_forward(golden_model, golden["tiled_input"], golden["tile_window"], batch_windows)
    theirs = golden["tiled_output"]
    assert out.shape == theirs.shape
    assert (out - theirs).abs().max().item() < 1e-5
    grey_levels = np.abs(to_rgb8(out).astype(int) - to_rgb8(theirs).astype(int))
    assert grey_levels.max() <= 1


def fill_map(height: int, width: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """How many windows fill each pixel, and which window (index in the layout) fills it."""
    count = np.zeros((height, width), dtype=int)
    source = np.full((height, width), -1)
    for i, w in enumerate(window_layout(height, width, window)):
        assert 0 <= w.top <= w.fill_top < w.top + window <= height
        assert 0 <= w.left <= w.fill_left < w.left + window <= width
        count[w.fill_top:w.top + window, w.fill_left:w.left + window] += 1
        source[w.fill_top:w.top + window, w.fill_left:w.left + window] = i
    return count, source


@pytest.mark.parametrize("height, width", [(64, 64), (64, 96), (100, 140), (65, 64), (64, 95), (33, 200), (32, 32)])
def test_windows_cover_every_pixel_once(height, width):
    count, _ = fill_map(height, width, 32)
    assert (count == 1).all()


def test_grid_then_edge_windows_in_the_authors_order():
    layout = window_layout(100, 140, 64)  # 1 x 2 grid, right column, bottom row, corner
    assert [(w.top, w.left) for w in layout] == [(0, 0), (0, 64), (0, 76), (36, 0), (36, 64), (36, 76)]
    assert [(w.fill_top, w.fill_left) for w in layout] == [(0, 0), (0, 64), (0, 128), (64, 0), (64, 64), (64, 128)]
    _, source = fill_map(100, 140, 64)
    assert (source[:64, :64] == 0).all() and (source[:64, 64:128] == 1).all()  # interior: the grid
    assert (source[:64, 128:] == 2).all()  # right strip: the right-aligned window
    assert (source[64:, :64] == 3).all() and (source[64:, 64:128] == 4).all()  # bottom strip
    assert (source[64:, 128:] == 5).all()  # corner


@pytest.mark.parametrize("height, width, windows", [(64, 64, 4), (64, 80, 6), (80, 64, 6), (80, 80, 9), (32, 32, 1)])
def test_edge_windows_only_where_a_side_is_not_a_multiple(height, width, windows):
    assert len(window_layout(height, width, 32)) == windows


def test_layout_refuses_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="smaller than the window"):
        window_layout(31, 64, 32)


@pytest.mark.parametrize("size, length", [(5, 9), (3, 17), (2, 7), (1, 4), (10, 32)])
def test_reflect_pad_repeats_the_reflection(size, length):
    row = torch.arange(size, dtype=torch.float32).reshape(1, 1, 1, size)
    padded = reflect_pad_to(row, 1, length)
    expected = [0.0] * length if size == 1 else [float(min(i % (2 * size - 2), 2 * size - 2 - i % (2 * size - 2)))
                                                 for i in range(length)]
    assert padded.flatten().tolist() == expected
    if length - size < size:  # one reflection: F.pad's
        assert torch.equal(padded, F.pad(row, (0, length - size, 0, 0), mode="reflect"))


def test_reflect_pad_leaves_big_enough_sides_alone():
    image = torch.rand(1, 3, 40, 20)
    assert torch.equal(reflect_pad_to(image, 32, 32)[..., :, :20], image)
    assert reflect_pad_to(image, 32, 32).shape == (1, 3, 40, 32)


@pytest.mark.parametrize("height, width", [(96, 96), (70, 100), (33, 64), (10, 7), (1, 50), (50, 1), (1, 1)])
def test_identity_network_gives_the_image_back(height, width):
    image = torch.rand(1, 3, height, width)
    assert torch.equal(tiled_forward(Identity(), image, 32, 2), image)


@pytest.mark.parametrize("height, width", [(10, 7), (1, 40), (40, 1), (20, 45)])
def test_small_images_keep_their_size(tiny_model, height, width):
    image = torch.rand(1, 3, height, width)
    out = tiled_forward(tiny_model, image, 32)
    assert out.shape == image.shape and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_small_image_is_the_cropped_output_of_the_padded_window(tiny_model):
    image = torch.rand(1, 3, 10, 7)
    with torch.no_grad():
        expected = tiny_model(reflect_pad_to(image, 32, 32)).restored[..., :10, :7].clamp(0, 1)
    assert torch.equal(tiled_forward(tiny_model, image, 32), expected)


def test_output_is_clamped():
    image = torch.rand(1, 3, 40, 40) * 3 - 1
    assert torch.equal(tiled_forward(Identity(), image, 32), image.clamp(0, 1))


@pytest.mark.parametrize("count, size", [(7, 2), (7, 3), (6, 3), (1, 8), (9, 8), (5, None), (2, 2)])
def test_chunks_cover_all_windows_and_never_hold_a_lone_one(count, size):
    chunks = window_chunks(count, size)
    assert sorted(set().union(*map(set, chunks))) == list(range(count))
    assert all(len(c) <= (size or count) for c in chunks)
    assert count == 1 or all(len(c) >= 2 for c in chunks)


def test_chunked_equals_all_at_once_bit_for_bit(tiny_model):
    image = torch.rand(1, 3, 48, 80)  # 1 x 2 grid + 1 right + 2 bottom + corner = 6 windows of 32
    reference = tiled_forward(tiny_model, image, 32)
    for batch_windows in (2, 4, 5):  # 5: the lone 6th window runs with the 5th
        assert torch.equal(tiled_forward(tiny_model, image, 32, batch_windows), reference), batch_windows


def test_amp_runs_and_stays_close(tiny_model):
    image = torch.rand(1, 3, 40, 40)
    out = tiled_forward(tiny_model, image, 32, amp=True)
    assert out.dtype == torch.float32 and (out - tiled_forward(tiny_model, image, 32)).abs().max() < 0.1


@pytest.mark.parametrize("window", [0, -16, 24, 250, 16.0, True])
def test_window_must_be_a_positive_multiple_of_16(window):
    with pytest.raises(ValueError, match="multiple of 16"):
        check_window(window)


@pytest.mark.parametrize("batch_windows", [0, 1, -3])
def test_batch_windows_must_be_at_least_two(batch_windows):
    with pytest.raises(ValueError, match="at least 2"):
        check_batch_windows(batch_windows)


def test_one_image_at_a_time():
    with pytest.raises(ValueError, match=r"\(1, C, H, W\)"):
        tiled_forward(Identity(), torch.rand(2, 3, 32, 32), 32)


@pytest.mark.parametrize("batch_windows, calls", [(None, [(6, 6)]), (2, [(2, 6), (4, 6), (6, 6)]),
                                                  (5, [(5, 6), (6, 6)])])
def test_progress_is_called_once_per_chunk(batch_windows, calls):
    image = torch.rand(1, 3, 48, 80)  # 6 windows of 32; 5: the lone 6th runs with the 5th
    seen = []
    out = tiled_forward(Identity(), image, 32, batch_windows, progress=lambda *done_total: seen.append(done_total))
    assert seen == calls
    assert torch.equal(out, tiled_forward(Identity(), image, 32, batch_windows))
