"""NIQE against the authors' MATLAB release, its resize and AGGD table, and its failure cases."""
from pathlib import Path

import numpy as np
import pytest

from evaluations.niqe import _ALPHA, _RATIO, NiqeError, _mscn, _model, _nearest_alpha, imresize_half, niqe
from utils.image_io import read_rgb8

# computequality.m of the authors' release in MATLAB R2021a on baboon.png's uint8 rgb2ycbcr Y
# (/work/shared/niqe/README.md)
MATLAB_BABOON = 5.72957338
# This implementation gives 5.7295738842, 5.04e-7 above it; a float64 transcription of the release
# without the flat-neighbourhood zeros is 3.9e-4 off, BasicSR's float32 port 7.9e-7 below.
BABOON_TOLERANCE = 6e-7


def _noise_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_baboon_matches_matlab(shared_dir: Path):
    rgb, note = read_rgb8(shared_dir / "niqe" / "baboon.png")
    assert note is None
    assert abs(niqe(rgb) - MATLAB_BABOON) < BABOON_TOLERANCE


def test_constant_neighbourhoods_give_zero_coefficients():
    y = np.full((40, 40), 98.0)
    y[20:, 20:] = np.random.default_rng(0).integers(0, 256, (20, 20))
    mscn = _mscn(y, _model()[2])
    assert np.all(mscn[:17, :] == 0) and np.all(mscn[:, :17] == 0)  # 7x7 neighbourhoods inside the 98s
    assert np.count_nonzero(mscn[23:, 23:]) > 0.9 * 17 * 17


def test_flat_image_gets_a_clear_message_not_nan():
    with pytest.raises(NiqeError, match=r"flat \(Y = 126"):
        niqe(np.full((200, 300, 3), 128, np.uint8))


def test_nearly_flat_image():
    rgb = np.full((192, 192, 3), 128, np.uint8)
    rgb[10:86, 10:86] = _noise_rgb(76, 76, 0)  # texture in one block of four, away from the others
    with pytest.raises(NiqeError, match="only 1 of the 4 96x96 blocks"):
        niqe(rgb)


@pytest.mark.parametrize("h, w", [(96, 191), (95, 400), (60, 60)])
def test_too_small(h: int, w: int):
    with pytest.raises(NiqeError, match=f"{w}x{h} is too small for NIQE: it needs at least two 96x96 blocks"):
        niqe(_noise_rgb(h, w, 0))


@pytest.mark.parametrize("h, w", [(96, 192), (192, 96)])
def test_two_blocks_are_enough(h: int, w: int):
    assert np.isfinite(niqe(_noise_rgb(h, w, 0)))


def test_rejects_non_rgb8():
    with pytest.raises(ValueError, match="uint8"):
        niqe(np.zeros((192, 192, 3)))


def test_imresize_half_of_a_ramp():
    # By hand from imresize.m's contributions(): for a scale of 1/2 output x (1-based) weighs inputs
    # 2x-4 .. 2x+3 by 0.5 * cubic(d / 2), d = 3.5 .. -3.5, i.e. [-3, -9, 29, 111, 111, 29, -9, -3] / 256,
    # indices outside 1..n mirrored with the edge repeated (0 -> 1, -1 -> 2, n+1 -> n).
    # Ramp 1..8: x=1 sees [3 2 1 1 2 3 4 5], x=2 [1 1 2 3 4 5 6 7], x=3 [2 3 4 5 6 7 8 8], x=4 [4 5 6 7 8 8 7 6].
    ramp = np.tile(np.arange(1.0, 9.0), (3, 1))
    np.testing.assert_array_equal(imresize_half(ramp), np.tile([371 / 256, 893 / 256, 1411 / 256, 1933 / 256], (2, 1)))
    np.testing.assert_array_equal(imresize_half(ramp.T), imresize_half(ramp).T)
    # away from the borders the cubic kernel reproduces a linear ramp: output x is input position 2x - 0.5
    long_ramp = np.arange(1.0, 33.0)[None, :].repeat(2, 0)
    np.testing.assert_array_equal(imresize_half(long_ramp)[0, 2:14], 2 * np.arange(3, 15) - 0.5)


def test_imresize_half_of_an_impulse_shows_the_kernel():
    row = np.zeros((2, 32))
    row[:, 10] = 256  # input 11 (1-based) reaches outputs 4..7 through weights at d = 3.5, 1.5, -0.5, -2.5
    np.testing.assert_array_equal(imresize_half(row)[0, 3:7], [-3, 29, 111, -9])
    assert imresize_half(np.full((7, 9), 98.0)).tolist() == np.full((4, 5), 98.0).tolist()


def test_nearest_alpha_is_the_first_argmin():
    rng = np.random.default_rng(0)
    ratios = np.concatenate([rng.uniform(0.0, 0.8, 2000), _RATIO[::97], (_RATIO[:-1:89] + _RATIO[1::89]) / 2,
                             [_RATIO[0] - 1, _RATIO[-1] + 1, np.nan, np.inf]])
    with np.errstate(invalid="ignore"):
        expected = np.argmin((_RATIO[None, :] - ratios[:, None]) ** 2, axis=1)
    np.testing.assert_array_equal(_nearest_alpha(ratios), expected)
    assert len(_ALPHA) == 9801 and _ALPHA[0] == 0.2 and _ALPHA[-1] == 10
