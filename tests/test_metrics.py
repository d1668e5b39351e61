"""Metrics against the authors' MATLAB/Octave numbers, and the evaluation CLI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from evaluations.evaluate import evaluate_folders, format_table, main
from evaluations.metrics import _wang_downsample, psnr_ssim, resolve_protocol, rgb_psnr, rgb_ssim
from utils.image_io import read_rgb8, write_png_atomic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(fixtures: Path) -> list[dict]:
    return json.loads((fixtures / "rain200l" / "metrics_reference.json").read_text())["records"]


def test_every_reference_record(fixtures: Path, reference: list[dict]):
    assert {r["protocol"] for r in reference} == {"A", "B"} and len(reference) == 4
    for r in reference:
        result, _ = read_rgb8(fixtures / r["result_image"])
        target, _ = read_rgb8(fixtures / r["target_image"])
        psnr, ssim = psnr_ssim(result, target, r["protocol"])
        assert psnr == pytest.approx(r["psnr"], abs=1e-6), r
        assert ssim == pytest.approx(r["ssim"], abs=1e-8), r


@pytest.mark.parametrize("name, expected", [
    ("A", "A"), ("b", "B"), ("Rain200L", "A"), ("rain200h", "A"), ("SPA-Data", "A"), ("Rain100H", "A"),
    ("RAIN100L", "A"), ("DID-Data", "B"), ("ddn-data", "B"),
])
def test_resolve_protocol(name: str, expected: str):
    assert resolve_protocol(name) == expected


def test_unknown_protocol_lists_choices():
    with pytest.raises(ValueError, match="Rain200L.*DDN-Data"):
        resolve_protocol("Rain800")


def _random_rgb(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_size_mismatch():
    with pytest.raises(ValueError, match="size mismatch"):
        psnr_ssim(_random_rgb(20, 30, 0), _random_rgb(30, 20, 1), "A")


def test_identical_images():
    img = _random_rgb(24, 24, 0)
    for protocol in "AB":
        assert psnr_ssim(img, img, protocol) == (float("inf"), 1.0)


def test_protocol_b_downsamples_by_block_means():
    a, b = _random_rgb(512, 520, 0), _random_rgb(512, 520, 1)  # f = round(512/256) = 2

    def block_mean_y(rgb: np.ndarray) -> np.ndarray:
        y = 16 + rgb.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255
        return y.reshape(256, 2, 260, 2).mean(axis=(1, 3))

    expected = structural_similarity(block_mean_y(a), block_mean_y(b), gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255)
    assert psnr_ssim(a, b, "B")[1] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("short_side, f", [(383, 1), (384, 2), (639, 2), (640, 3)])
def test_downsampling_factor_rounds_halves_up(short_side: int, f: int):
    assert _wang_downsample(np.zeros((short_side, 700))).shape[0] == -(-short_side // f)


def test_rgb_psnr_per_image_then_mean():
    target = torch.full((2, 3, 8, 8), 0.5)
    output = target.clone()
    output[0] += 0.1  # 20 dB
    output[1] += 0.01  # 40 dB
    assert rgb_psnr(output, target) == pytest.approx(30.0, abs=1e-4)
    assert rgb_psnr(target + 10, torch.ones_like(target)) == float("inf")  # output clamped to 1


def test_rgb_ssim_is_wangs_gaussian_ssim_over_rgb_per_image(rng):
    """train.py's validation SSIM: skimage's Gaussian SSIM (sigma 1.5, population covariances) over the
    channels, per image, then the mean over the batch; 1 for an image against itself."""
    target = torch.from_numpy(rng.random((2, 3, 40, 48), dtype=np.float32))
    output = (target + 0.1 * torch.from_numpy(rng.standard_normal((2, 3, 40, 48), dtype=np.float32))).clamp(0, 1)
    expected = np.mean([structural_similarity(o.numpy(), t.numpy(), channel_axis=0, data_range=1.0,
                                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                        for o, t in zip(output, target)])
    assert rgb_ssim(output, target) == pytest.approx(expected, abs=1e-4)
    assert rgb_ssim(target, target) == pytest.approx(1.0, abs=1e-6)


def _folder(root: Path, name: str, images: dict[str, np.ndarray]) -> Path:
    folder = root / name
    folder.mkdir()
    for stem, img in images.items():
        write_png_atomic(folder / f"{stem}.png", img)
    return folder


def test_evaluate_folders_size_mismatch_names_both_files(tmp_path: Path, capsys: pytest.CaptureFixture):
    res = _folder(tmp_path, "res", {"x": _random_rgb(20, 30, 0)})
    tar = _folder(tmp_path, "tar", {"x": _random_rgb(21, 30, 1)})
    with pytest.raises(ValueError, match=r"res/x\.png.*tar/x\.png"):
        evaluate_folders(res, tar, "A")
    assert main(["--result_dir", str(res), "--target_dir", str(tar), "--protocol", "A"]) == 2
    assert "size mismatch" in capsys.readouterr().err


def test_unreadable_image_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture):
    res = _folder(tmp_path, "res", {})
    (res / "x.png").write_text("not an image")
    tar = _folder(tmp_path, "tar", {"x": _random_rgb(20, 30, 1)})
    assert main(["--result_dir", str(res), "--target_dir", str(tar), "--protocol", "B"]) == 2
    assert "x.png" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["same", "inside"])
def test_one_folder_as_results_and_targets_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture, where: str):
    tar = _folder(tmp_path, "tar", {"x": _random_rgb(20, 30, 1)})
    res = tar if where == "same" else _folder(tar, "res", {"x": _random_rgb(20, 30, 2)})
    assert main(["--result_dir", str(res), "--target_dir", str(tar), "--protocol", "A"]) == 2
    err = capsys.readouterr().err
    how = "is" if where == "same" else "lies inside"
    assert f"evaluate: error: --result_dir {res} {how} --target_dir {tar}: the results would be scored" in err


def test_more_targets_than_results_scores_the_common_names(tmp_path: Path, capsys: pytest.CaptureFixture):
    """As test.py --target_dir does: the results' names are scored, the other targets counted."""
    images = {stem: _random_rgb(20, 30, seed) for seed, stem in enumerate(("a", "b", "c"))}
    tar = _folder(tmp_path, "tar", images)
    res = _folder(tmp_path, "res", {"b": _random_rgb(20, 30, 7)})
    assert main(["--result_dir", str(res), "--target_dir", str(tar), "--protocol", "A"]) == 0
    out = capsys.readouterr().out
    assert "mean (1 images)" in out and "b.png" in out and "a.png" not in out
    assert "2 image(s) of --target_dir have no result and were not scored" in out
    assert evaluate_folders(res, tar, "A")["unused_targets"] == 2


def test_an_image_over_the_pixel_limit_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture, huge_png):
    res = _folder(tmp_path, "res", {"x": _random_rgb(20, 30, 0)})
    tar = _folder(tmp_path, "tar", {})
    huge_png(tar / "x.png", 100_000, 100_000)
    assert main(["--result_dir", str(res), "--target_dir", str(tar), "--protocol", "A"]) == 2
    err = capsys.readouterr().err
    assert f"evaluate: error: cannot read image {tar / 'x.png'}: more than 178,956,970 pixels, over the limit of " \
           "67,108,864 (--max_pixels)" in err and "Traceback" not in err
    tar = _folder(tmp_path, "tar2", {"x": _random_rgb(20, 30, 1)})
    assert main(["--result_dir", str(res), "--target_dir", str(tar), "--protocol", "A", "--max_pixels", "599"]) == 2
    assert "30x20 = 600 pixels, over the limit of 599 (--max_pixels)" in capsys.readouterr().err


def test_format_table():
    report = {"images": [{"name": "long_name.png", "psnr": 30.0, "ssim": 0.9}],
              "mean": {"psnr": 30.0, "ssim": 0.9}, "protocol": "A"}
    rows = format_table(report).splitlines()
    assert rows[1].split() == ["long_name.png", "30.0000", "0.9000"]
    assert rows[-1].split()[-2:] == ["30.0000", "0.9000"] and rows[-1].startswith("mean")
    assert len(rows[1]) == len(rows[-1])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evaluations.evaluate", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_cli_matches_reference(fixtures: Path, reference: list[dict], tmp_path: Path):
    split = fixtures / "rain200l"
    out = tmp_path / "report.json"
    proc = _cli("--result_dir", str(split / "input"), "--target_dir", str(split / "target"),
                "--protocol", "Rain200L", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["protocol"] == "A"
    expected = {Path(r["result_image"]).name: r for r in reference if r["protocol"] == "A"}
    assert [im["name"] for im in report["images"]] == sorted(expected)
    for im in report["images"]:
        assert im["psnr"] == pytest.approx(expected[im["name"]]["psnr"], abs=1e-6)
        assert im["ssim"] == pytest.approx(expected[im["name"]]["ssim"], abs=1e-8)
    assert report["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in expected.values()]), abs=1e-6)
    assert "mean (2 images)" in proc.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_cli_missing_stem(fixtures: Path, tmp_path: Path):
    target = fixtures / "rain200l" / "target"  # 1.png, 2.png
    res = _folder(tmp_path, "res", {"1": _random_rgb(321, 481, 0), "stray_result": _random_rgb(321, 481, 1)})
    proc = _cli("--result_dir", str(res), "--target_dir", str(target), "--protocol", "A")
    assert proc.returncode == 2
    assert "stray_result" in proc.stderr and "only in target_dir: 2" in proc.stderr
    assert "--pair_by_order" in proc.stderr and "Traceback" not in proc.stderr
