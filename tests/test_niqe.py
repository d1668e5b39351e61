"""NIQE against the authors' MATLAB release, its resize and AGGD table, its failure cases, and the evaluation CLI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluations.evaluate import evaluate_niqe, format_table, main
from evaluations.niqe import _ALPHA, _RATIO, NiqeError, _mscn, _model, _nearest_alpha, imresize_half, niqe
from utils.image_io import read_rgb8, write_png_atomic

REPO = Path(__file__).resolve().parents[1]

# The LIVE release's .m files (computequality.m and the functions it calls) run in GNU Octave, with an
# imresize that follows MATLAB's algorithm, on baboon.png's uint8 rgb2ycbcr Y: 5.729573884152 (12 decimals).
OCTAVE_BABOON = 5.729573884152
# BasicSR documents 5.72957338 as the MATLAB R2021a figure: one digit apart (...388 against ...338).
BASICSR_MATLAB_BABOON = 5.72957338


def _noise_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_baboon_matches_the_official_release(fixtures: Path):
    rgb, note = read_rgb8(fixtures / "niqe" / "baboon.png")
    assert note is None
    score = niqe(rgb)
    assert abs(score - OCTAVE_BABOON) < 1e-11  # the printed value's last decimal
    assert round(score, 8) == 5.72957388 and abs(score - BASICSR_MATLAB_BABOON) < 6e-7


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


def _folder(root: Path, name: str, images: dict[str, np.ndarray]) -> Path:
    folder = root / name
    folder.mkdir()
    for stem, img in images.items():
        write_png_atomic(folder / f"{stem}.png", img)
    return folder


def test_cli_niqe_only(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    inputs = fixtures / "rain200l" / "input"
    out = tmp_path / "niqe.json"
    assert main(["--result_dir", str(inputs), "--metric", "niqe", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"images", "mean", "metric"} and report["metric"] == "niqe"
    assert [im["name"] for im in report["images"]] == ["1.png", "2.png"]
    expected = [niqe(read_rgb8(inputs / name)[0]) for name in ("1.png", "2.png")]
    assert [im["niqe"] for im in report["images"]] == expected
    assert report["mean"] == {"niqe": pytest.approx(np.mean(expected), abs=1e-12)}
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["image", "NIQE"] and table[-1].startswith("mean (2 images)")


def test_cli_psnr_ssim_and_niqe(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    split = fixtures / "rain200l"
    common = ["--result_dir", str(split / "input"), "--target_dir", str(split / "target"), "--protocol", "Rain200L"]
    both, psnr_only = tmp_path / "both.json", tmp_path / "psnr.json"
    assert main([*common, "--metric", "psnr_ssim,niqe", "--json", str(both)]) == 0
    assert main([*common, "--json", str(psnr_only)]) == 0
    report, plain = json.loads(both.read_text()), json.loads(psnr_only.read_text())
    assert set(plain) == {"images", "mean", "protocol"}  # the PSNR/SSIM report as before
    assert set(report) == {"images", "mean", "protocol", "metric"} and report["metric"] == "psnr_ssim,niqe"
    for im, ref in zip(report["images"], plain["images"], strict=True):
        assert im == {**ref, "niqe": niqe(read_rgb8(split / "input" / im["name"])[0])}
    assert report["mean"] == {**plain["mean"], "niqe": pytest.approx(np.mean([im["niqe"] for im in report["images"]]))}
    assert "NIQE" in capsys.readouterr().out.splitlines()[0]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluations.evaluate", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("metric", [None, "psnr_ssim", "psnr_ssim,niqe"])
def test_cli_psnr_ssim_needs_target_dir(fixtures: Path, metric: str | None):
    inputs = fixtures / "rain200l" / "input"
    proc = _cli("--result_dir", str(inputs), "--protocol", "A", *(["--metric", metric] if metric else []))
    assert proc.returncode == 2
    assert "needs --target_dir" in proc.stderr and "--metric niqe" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_unknown_metric(tmp_path: Path):
    proc = _cli("--result_dir", str(tmp_path), "--metric", "niqe,brisque")
    assert proc.returncode == 2 and "psnr_ssim, niqe" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_scores_the_rest_when_niqe_fails(tmp_path: Path):
    res = _folder(tmp_path, "res", {"flat": np.full((100, 200, 3), 7, np.uint8), "good": _noise_rgb(100, 200, 0),
                                    "small": _noise_rgb(90, 300, 1)})
    out = tmp_path / "niqe.json"
    proc = _cli("--result_dir", str(res), "--metric", "niqe", "--json", str(out))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "NIQE failed for flat.png: the image is flat" in proc.stderr
    assert "NIQE failed for small.png: 300x90 is too small" in proc.stderr
    report = json.loads(out.read_text())
    assert [im["name"] for im in report["images"]] == ["good.png"]
    assert [f["name"] for f in report["failed"]] == ["flat.png", "small.png"]
    assert report["mean"]["niqe"] == report["images"][0]["niqe"] and "mean (1 images)" in proc.stdout


def test_evaluate_niqe_none_scored(tmp_path: Path):
    res = _folder(tmp_path, "res", {"a": np.full((100, 200, 3), 7, np.uint8)})
    report = evaluate_niqe(res)
    assert report["images"] == [] and report["mean"] == {"niqe": None}
    assert [f["name"] for f in report["failed"]] == ["a.png"]
    assert format_table(report).splitlines()[-1].split() == ["mean", "(0", "images)", "-"]


def test_cli_unreadable_image_exits_2(tmp_path: Path):
    res = _folder(tmp_path, "res", {"good": _noise_rgb(100, 200, 0)})
    (res / "bad.png").write_text("not an image")
    proc = _cli("--result_dir", str(res), "--metric", "niqe")
    assert proc.returncode == 2 and "bad.png" in proc.stderr and "Traceback" not in proc.stderr
