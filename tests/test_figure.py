"""python -m evaluations.figure: rainy | derained | clean rows, the derained panel as test.py writes it."""
from pathlib import Path

import cv2
import numpy as np

from evaluations import figure
from utils.image_io import list_images, read_rgb8, write_png_atomic


def test_rows_of_three_panels_with_test_pys_pixels(tmp_path: Path, tiny_weights: Path, test_py, fixtures: Path):
    out = tmp_path / "results.png"  # lossless, to compare pixels
    assert figure.main(["--weights", str(tiny_weights), "--count", "2", "--output", str(out), "--device", "cpu",
                        "--caption", "a tiny untrained network"]) == 0
    image = cv2.imread(str(out))
    height, width = 160, 240  # the common top-left size of the first two fixture pairs (300x400 and 160x240)
    caption = image.shape[0] - 2 * (height + figure.BAR)  # the caption's lines, wrapped to the width
    assert image.shape[1:] == (3 * width, 3) and caption > 0 and caption % figure.BAR == 0
    # row 1: the rainy crop, test.py's result for it, and the clean crop
    first = list_images(fixtures / "rain100h" / "input")[0]
    (tmp_path / "in").mkdir()
    write_png_atomic(tmp_path / "in" / first.name, read_rgb8(first)[0][:height, :width].copy())
    assert test_py.main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "test_py"),
                         "--weights", str(tiny_weights), "--device", "cpu"]) == 0
    rainy, derained = (cv2.imread(str(path)) for path in (tmp_path / "in" / first.name,
                                                          tmp_path / "test_py" / first.name))
    clean = cv2.imread(str(fixtures / "rain100h" / "target" / first.name))[:height, :width]
    assert np.array_equal(image[:height], np.concatenate([rainy, derained, clean], axis=1))


def test_bad_weights_and_folders_exit_2(tmp_path: Path, capsys):
    assert figure.main(["--weights", str(tmp_path / "nope.pth"), "--output", str(tmp_path / "x.jpg")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert figure.main(["--weights", "x.pth", "--input_dir", str(tmp_path / "none")]) == 2
    assert "no such folder" in capsys.readouterr().err and not (tmp_path / "x.jpg").exists()
