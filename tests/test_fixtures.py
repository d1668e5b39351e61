"""tests/fixtures against the benchmark data it was cut from: the same files, the same crops, the same
reference values (skipped without that data; .ci/run runs them)."""
import json
from pathlib import Path

import numpy as np
import pytest

from utils.image_io import list_images, read_rgb8

pytestmark = pytest.mark.shared


def test_golden_files_are_the_originals(fixtures: Path, shared_dir: Path):
    for path in sorted((fixtures / "golden").iterdir()):
        assert path.read_bytes() == (shared_dir / "golden" / path.name).read_bytes(), path.name


def test_rain200l_pairs_and_their_reference_values_are_the_originals(fixtures: Path, shared_dir: Path):
    for path in sorted((fixtures / "rain200l").glob("*/*.png")):
        original = shared_dir / "samples" / "rain200l" / "test" / path.parent.name / path.name
        assert path.read_bytes() == original.read_bytes(), path
    shipped = json.loads((fixtures / "rain200l" / "metrics_reference.json").read_text())["records"]
    original = json.loads((shared_dir / "metrics_reference.json").read_text())["records"]
    renamed = [{**r, **{key: r[key].replace("samples/rain200l/test/", "rain200l/") for key in
                        ("result_image", "target_image")}} for r in original if "/test/" in r["result_image"]]
    assert shipped == renamed and len(shipped) == 4


def test_rain100h_crops_are_the_top_left_of_the_originals(fixtures: Path, shared_dir: Path):
    crops = list_images(fixtures / "rain100h" / "input") + list_images(fixtures / "rain100h" / "target")
    assert len(crops) == 8
    for path in crops:
        full = read_rgb8(shared_dir / "datasets" / "Rain100H" / path.parent.name / path.name)[0]
        crop = read_rgb8(path)[0]
        assert np.array_equal(crop, full[:crop.shape[0], :crop.shape[1]]), path


def test_baboon_is_the_original(fixtures: Path, shared_dir: Path):
    assert (fixtures / "niqe" / "baboon.png").read_bytes() == (shared_dir / "niqe" / "baboon.png").read_bytes()
