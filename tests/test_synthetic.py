"""Rain-streak synthesiser: determinism, appearance statistics, output folders and the CLI."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio

from data.synthetic import PRESETS, SKIMAGE_PHOTOS, add_rain, ensure_pairs, make_pairs, random_crop

REPO = Path(__file__).resolve().parents[1]


def skimage_clean_crops(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`n` random uint8 RGB crops of the colour photographs bundled with scikit-image, drawn as
    data.synthetic draws them."""
    photos = [getattr(skimage.data, name)() for name in SKIMAGE_PHOTOS]
    photos = [p[0] if isinstance(p, tuple) else p for p in photos]
    return [random_crop(photos[int(rng.integers(len(photos)))], size, rng) for _ in range(n)]


def _rainy(seed: int, preset: str = "heavy") -> np.ndarray:
    rng = np.random.default_rng(seed)
    clean = skimage_clean_crops(1, 96, rng)[0]
    return add_rain(clean, PRESETS[preset], rng)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _found_in(image: np.ndarray, crop: np.ndarray) -> bool:
    _, _, (x, y), _ = cv2.minMaxLoc(cv2.matchTemplate(image, crop, cv2.TM_SQDIFF))
    return np.array_equal(image[y:y + crop.shape[0], x:x + crop.shape[1]], crop)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "data.synthetic", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_seeded_output_is_deterministic():
    np.testing.assert_array_equal(_rainy(3), _rainy(3))
    assert not np.array_equal(_rainy(3), _rainy(4))


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_shapes_dtypes_and_rain_only_brightens(preset):
    clean = skimage_clean_crops(1, 64, np.random.default_rng(0))[0]
    clean = np.ascontiguousarray(clean[:48])
    rainy = add_rain(clean, PRESETS[preset], np.random.default_rng(0))
    assert clean.shape == rainy.shape == (48, 64, 3)
    assert clean.dtype == rainy.dtype == np.uint8
    assert (rainy >= clean).all() and (rainy > clean).any()


def test_presets_land_in_dataset_psnr_ranges():
    rng = np.random.default_rng(1)
    crops = skimage_clean_crops(24, 128, rng)
    psnr = {name: np.mean([peak_signal_noise_ratio(c, add_rain(c, p, rng)) for c in crops])
            for name, p in PRESETS.items()}
    assert 13 <= psnr["heavy"] <= 17
    assert 24 <= psnr["light"] <= 30


def test_cli_writes_matching_pairs(tmp_path):
    out = tmp_path / "pairs"
    result = _run_cli("--out", str(out), "--pairs", "3", "--size", "64")
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    assert _names(out / "input") == _names(out / "target") == ["0000.png", "0001.png", "0002.png"]
    rainy, clean = cv2.imread(str(out / "input" / "0000.png")), cv2.imread(str(out / "target" / "0000.png"))
    assert rainy.shape == clean.shape == (64, 64, 3)


def test_cli_rejects_empty_clean_dir(tmp_path):
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    result = _run_cli("--clean", str(empty), "--out", str(tmp_path / "out"), "--pairs", "2")
    assert result.returncode == 2
    assert str(empty) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_crops_come_from_clean_dir(tmp_path):
    source = np.random.default_rng(5).integers(0, 256, (90, 110, 3), dtype=np.uint8)
    (tmp_path / "clean").mkdir()
    cv2.imwrite(str(tmp_path / "clean" / "photo.png"), source)
    make_pairs(tmp_path / "out", 4, clean_dir=tmp_path / "clean", size=32)
    for name in _names(tmp_path / "out" / "target"):
        crop = cv2.imread(str(tmp_path / "out" / "target" / name))
        assert any(_found_in(source, c) for c in (crop, crop[:, ::-1].copy()))


def test_ensure_pairs_skips_complete_output_and_remakes_otherwise(tmp_path):
    out = tmp_path / "out"
    assert ensure_pairs(out, 2, size=32)
    assert not ensure_pairs(out, 2, size=32)
    assert ensure_pairs(out, 2, size=32, seed=1)
    (out / ".complete").unlink()
    assert ensure_pairs(out, 2, size=32, seed=1)
    assert _names(out / "input") == ["0000.png", "0001.png"]


def test_failed_run_leaves_nothing_behind(tmp_path):
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        make_pairs(tmp_path / "out", 2, clean_dir=tmp_path / "clean")
    assert _names(tmp_path) == ["clean"]


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        make_pairs(tmp_path, 1, size=32)
    assert _names(tmp_path) == ["keep.txt"]
