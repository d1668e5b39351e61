"""data.prepare: the six source layouts built from tiny generated images, each output pair holding exactly
its own rainy and clean image; unpaired, corrupt and mismatched files refused with nothing written; an
interrupted run leaving nothing half-written; reruns kept; a differing split refused without --overwrite;
hard links against --copy; the published-size warning and the manifest."""
import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import prepare
from data.check import published_pairs
from utils.image_io import read_rgb8

REPO = Path(__file__).resolve().parents[1]


def _image(seed: int, height: int = 3, width: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _jorder(root: Path, n: int = 3, heavy: bool = True, seed: int = 0) -> dict[str, tuple[Path, Path]]:
    """JORDER's new release: output name -> (rainy, clean) source files."""
    rain = root / "rain" / "X2" if heavy else root / "rain"
    return {f"{i}.png": (_write(rain / f"norain-{i}x2.png", _image(seed + 2 * i)),
                         _write(root / "norain" / f"norain-{i}.png", _image(seed + 2 * i + 1)))
            for i in range(1, n + 1)}


def _ddn(root: Path, clean: int = 2, types: int = 3) -> dict[str, tuple[Path, Path]]:
    pairs = {}
    for i in range(1, clean + 1):
        target = _write(root / "ground_truth" / f"{i}.jpg", _image(100 + i, 8, 8))
        for j in range(1, types + 1):
            pairs[f"{i}_{j}.jpg"] = (_write(root / "rainy_image" / f"{i}_{j}.jpg", _image(10 * i + j, 8, 8)), target)
    return pairs


def _did(root: Path, names: list[str]) -> dict[str, Path]:
    """Side-by-side files (rainy left, clean right): output name -> source file."""
    return {name: _write(root / f"{rel}.jpg", np.concatenate([_image(k, 4, 3), _image(50 + k, 4, 3)], axis=1))
            for k, (name, rel) in enumerate((n.replace("/", "_"), n) for n in names)}


def _spa(root: Path, n: int = 3) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """SPANet's test list: '/real_test_1000/rain/k.png /real_test_1000/gt/kgt.png' lines beside the images."""
    pairs, lines = {}, []
    for k in range(1, n + 1):
        rainy = _write(root / "real_test_1000" / "rain" / f"{k}.png", _image(200 + k))
        clean = _write(root / "real_test_1000" / "gt" / f"{k}gt.png", _image(300 + k))
        pairs[f"{k}.png"] = (rainy, clean)
        lines.append(f"/real_test_1000/rain/{k}.png /real_test_1000/gt/{k}gt.png")
    listing = root / "real_test_1000.txt"
    listing.write_text("\n".join(lines) + "\n")
    return listing, pairs


def _authors(root: Path, n: int = 3) -> dict[str, tuple[Path, Path]]:
    return {f"{i}.png": (_write(root / "input" / f"{i}.png", _image(400 + i)),
                         _write(root / "target" / f"{i}.png", _image(500 + i))) for i in range(1, n + 1)}


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = prepare.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_pairs(split: Path, expected: dict[str, tuple[Path, Path]]) -> None:
    """Every output pair is exactly (bytes) its own source rainy image and its own clean image."""
    for side in ("input", "target"):
        assert sorted(p.name for p in (split / side).iterdir()) == sorted(expected)
    for name, (rainy, clean) in expected.items():
        assert (split / "input" / name).read_bytes() == rainy.read_bytes()
        assert (split / "target" / name).read_bytes() == clean.read_bytes()


def _nothing_written(datasets: Path) -> bool:
    """No split folder, and no temporary or half-written one, under `datasets`."""
    return not datasets.exists() or all(not any(d.iterdir()) for d in datasets.iterdir())


@pytest.mark.parametrize("name, heavy", [("Rain200H", True), ("Rain200L", False)])
def test_jorder_pairs_are_linked_under_their_index(tmp_path, capsys, name, heavy):
    pairs = _jorder(tmp_path / "src", heavy=heavy)
    code, out, err = _run(capsys, name, "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 0, err
    split = tmp_path / "Datasets" / name / "train"
    _assert_pairs(split, pairs)
    for output, (rainy, _) in zip(sorted((split / "input").iterdir()), (pairs[k] for k in sorted(pairs))):
        assert output.stat().st_ino == rainy.stat().st_ino  # a hard link, not a copy
    assert "3 pairs" in out and "hard links" in out


def test_ddn_names_keep_the_rain_type_and_link_the_shared_clean_image(tmp_path, capsys):
    pairs = _ddn(tmp_path / "training")
    code, _, err = _run(capsys, "ddn-data", "--train", tmp_path / "training", "--output", tmp_path / "Datasets")
    assert code == 0, err
    split = tmp_path / "Datasets" / "DDN-Data" / "train"
    _assert_pairs(split, pairs)
    # the clean image 1.jpg is the target of 1_1, 1_2 and 1_3: one file, its own link plus three
    assert (tmp_path / "training" / "ground_truth" / "1.jpg").stat().st_nlink == 4
    assert (split / "target" / "1_2.jpg").stat().st_ino == (split / "target" / "1_3.jpg").stat().st_ino


def test_did_halves_are_the_decoded_pixels_left_rainy_right_clean(tmp_path, capsys):
    src = tmp_path / "DID-MDN-training"
    files = _did(src, ["Rain_Heavy/train2018new/0", "Rain_Light/train2018new/0", "Rain_Light/train2018new/7"])
    code, out, err = _run(capsys, "DID-Data", "--train", src, "--output", tmp_path / "Datasets")
    assert code == 0, err
    split = tmp_path / "Datasets" / "DID-Data" / "train"
    assert sorted(p.name for p in (split / "input").iterdir()) == sorted(f"{n}.png" for n in files)
    for name, source in files.items():
        whole = read_rgb8(source)[0]
        assert np.array_equal(read_rgb8(split / "input" / f"{name}.png")[0], whole[:, :3])
        assert np.array_equal(read_rgb8(split / "target" / f"{name}.png")[0], whole[:, 3:])
    assert "PNG halves" in out


def test_did_files_directly_in_the_folder_keep_their_stem(tmp_path, capsys):
    _did(tmp_path / "test", ["12", "3"])
    assert _run(capsys, "DID-Data", "--test", tmp_path / "test", "--output", tmp_path / "D")[0] == 0
    assert sorted(p.name for p in (tmp_path / "D" / "DID-Data" / "test" / "target").iterdir()) == ["12.png", "3.png"]


def test_did_odd_width_is_refused(tmp_path, capsys):
    _write(tmp_path / "src" / "1.png", _image(1, 4, 7))
    code, _, err = _run(capsys, "DID-Data", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 2 and "1.png is 7x4: an odd width" in err
    assert _nothing_written(tmp_path / "Datasets")


@pytest.mark.parametrize("as_folder", [False, True])
def test_spa_test_list_with_leading_slashes(tmp_path, capsys, as_folder):
    listing, pairs = _spa(tmp_path / "testing")
    src = listing.parent if as_folder else listing
    code, _, err = _run(capsys, "SPA-Data", "--test", src, "--output", tmp_path / "Datasets")
    assert code == 0, err
    _assert_pairs(tmp_path / "Datasets" / "SPA-Data" / "test", pairs)


def test_spa_training_list_relative_to_its_parent_folder(tmp_path, capsys):
    """SPANet's main.py reads training/real_world.txt and opens the listed paths from the code folder."""
    code_folder, lines, pairs = tmp_path / "SPANet", [], {}
    for k, (frame, x) in enumerate((("000-1", 1), ("000-1", 2), ("001-4", 1))):
        rel = f"real_world/{frame[:3]}/{frame}/{frame}_{x}_1"
        rainy = _write(code_folder / f"{rel}.png", _image(600 + 2 * k))
        clean = _write(code_folder / f"{rel}gt.png", _image(601 + 2 * k))
        lines.append(f"./{rel}.png ./{rel}gt.png")
        pairs[f"{frame[:3]}_{frame}_{frame}_{x}_1.png"] = (rainy, clean)
    (code_folder / "training").mkdir()
    (code_folder / "training" / "real_world.txt").write_text("\r\n".join(lines))
    code, _, err = _run(capsys, "SPA-Data", "--train", code_folder / "training" / "real_world.txt",
                        "--output", tmp_path / "Datasets")
    assert code == 0, err
    _assert_pairs(tmp_path / "Datasets" / "SPA-Data" / "train", pairs)


def test_spa_missing_listed_file_is_named_with_its_line(tmp_path, capsys):
    listing, pairs = _spa(tmp_path / "testing")
    pairs["2.png"][1].unlink()
    code, _, err = _run(capsys, "SPA-Data", "--test", listing, "--output", tmp_path / "Datasets")
    assert code == 2 and "missing:" in err and "2gt.png (listed in real_test_1000.txt line 2)" in err
    assert _nothing_written(tmp_path / "Datasets")


def test_authors_package_is_linked_as_it_is(tmp_path, capsys):
    pairs = _authors(tmp_path / "Rain200L" / "train")
    code, _, err = _run(capsys, "Rain200L", "--train", tmp_path / "Rain200L" / "train", "--output", tmp_path / "D")
    assert code == 0, err
    _assert_pairs(tmp_path / "D" / "Rain200L" / "train", pairs)


def test_authors_package_in_place_is_checked_and_gets_a_manifest(tmp_path, capsys):
    split = tmp_path / "Datasets" / "SPA-Data" / "test"
    pairs = _authors(split)
    inodes = {p: p.stat().st_ino for p in split.rglob("*.png")}
    code, out, err = _run(capsys, "SPA-Data", "--test", split, "--output", tmp_path / "Datasets")
    assert code == 0, err
    assert "where they stay" in out
    _assert_pairs(split, pairs)
    assert {p: p.stat().st_ino for p in split.rglob("*.png")} == inodes
    manifest = json.loads((split / "manifest.json").read_text())
    assert manifest["mode"] == "in place" and len(manifest["files"]) == 6
    code, out, _ = _run(capsys, "SPA-Data", "--test", split, "--output", tmp_path / "Datasets")
    assert code == 0 and "kept" in out


def test_both_splits_in_one_run(tmp_path, capsys):
    train, test = _jorder(tmp_path / "train"), _jorder(tmp_path / "test", n=2, seed=50)
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "train", "--test", tmp_path / "test",
                        "--output", tmp_path / "Datasets")
    assert code == 0, err
    _assert_pairs(tmp_path / "Datasets" / "Rain200H" / "train", train)
    _assert_pairs(tmp_path / "Datasets" / "Rain200H" / "test", test)


def test_unpaired_files_are_named_and_nothing_is_written(tmp_path, capsys):
    pairs = _jorder(tmp_path / "src")
    _write(tmp_path / "src" / "rain" / "X2" / "norain-9x2.png", _image(9))
    _write(tmp_path / "src" / "norain" / "norain-7.png", _image(7))
    pairs["3.png"][0].write_bytes(b"")
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 2
    assert "3 problems" in err
    assert "norain-9x2.png: no clean image norain-9.png" in err
    assert "norain-7.png: no rainy image norain-7x2.png" in err
    assert f"cannot read image {pairs['3.png'][0]}: empty file" in err  # the pairs there are are checked too
    assert "nothing was written" in err and "Traceback" not in err
    assert not (tmp_path / "Datasets").exists()


def test_corrupt_file_is_named(tmp_path, capsys):
    pairs = _jorder(tmp_path / "src", n=4)
    pairs["2.png"][1].write_bytes(b"not a png")
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 2
    assert f"cannot read image {pairs['2.png'][1]}: not a decodable image" in err
    assert _nothing_written(tmp_path / "Datasets")


def test_size_mismatch_is_named(tmp_path, capsys):
    pairs = _ddn(tmp_path / "src", clean=1, types=2)
    _write(pairs["1_2.jpg"][0], _image(5, 8, 9))
    code, _, err = _run(capsys, "DDN-Data", "--test", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 2
    assert f"{pairs['1_2.jpg'][0]} is 9x8 but {pairs['1_2.jpg'][1]} is 8x8" in err
    assert _nothing_written(tmp_path / "Datasets")


def test_a_corrupt_shared_clean_image_is_named_once(tmp_path, capsys):
    pairs = _ddn(tmp_path / "src", clean=2, types=3)
    pairs["2_1.jpg"][1].write_bytes(b"junk")
    code, _, err = _run(capsys, "DDN-Data", "--test", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 2 and err.count(f"cannot read image {pairs['2_1.jpg'][1]}") == 1
    assert _nothing_written(tmp_path / "Datasets")


def test_unknown_layout_and_old_release_are_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "DDN-Data", "--train", tmp_path / "empty", "--output", tmp_path / "D")
    assert code == 2 and "expected rainy_image/ and ground_truth/" in err
    _write(tmp_path / "RainTrainH" / "rain-1.png", _image(1))
    _write(tmp_path / "RainTrainH" / "norain-1.png", _image(2))
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "RainTrainH", "--output", tmp_path / "D")
    assert code == 2 and "the old Rain100H/Rain100L release" in err
    assert _run(capsys, "Rain300", "--train", tmp_path / "empty")[0] == 2
    assert _run(capsys, "Rain200H")[0] == 2  # no split given
    assert not (tmp_path / "D").exists()


@pytest.mark.parametrize("layout, how", [("jorder", "ctrl-c"), ("did", "ctrl-c"), ("jorder", "sigterm")])
def test_interrupted_run_leaves_nothing_half_written(tmp_path, capsys, monkeypatch, layout, how):
    if layout == "jorder":
        _jorder(tmp_path / "src", n=6)
        name, target, real = "Rain200H", "_place", prepare._place
    else:
        _did(tmp_path / "src", [str(k) for k in range(6)])
        name, target, real = "DID-Data", "write_png_atomic", prepare.write_png_atomic
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        if len(calls) == 5:
            if how == "sigterm":  # as `timeout` or a job scheduler sends it; handled in the main thread
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare, target, interrupted)
    code, _, err = _run(capsys, name, "--train", tmp_path / "src", "--output", tmp_path / "Datasets", "--threads", "2")
    assert code == 130 and "nothing half-written" in err
    assert _nothing_written(tmp_path / "Datasets")
    monkeypatch.setattr(prepare, target, real)
    assert _run(capsys, name, "--train", tmp_path / "src", "--output", tmp_path / "Datasets")[0] == 0


def test_rerun_keeps_the_split_untouched(tmp_path, capsys):
    _jorder(tmp_path / "src")
    args = ("Rain200L", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert _run(capsys, *args)[0] == 0
    split = tmp_path / "Datasets" / "Rain200L" / "train"
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [split, *split.rglob("*")]}
    code, out, _ = _run(capsys, *args)
    assert code == 0 and "kept" in out
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in [split, *split.rglob("*")]} == before


def test_differing_split_is_refused_without_overwrite(tmp_path, capsys):
    _jorder(tmp_path / "old")
    new = _jorder(tmp_path / "new", n=4, seed=70)
    assert _run(capsys, "Rain200H", "--train", tmp_path / "old", "--output", tmp_path / "Datasets")[0] == 0
    split = tmp_path / "Datasets" / "Rain200H" / "train"
    manifest = (split / "manifest.json").read_bytes()
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "new", "--output", tmp_path / "Datasets")
    assert code == 2 and "pass --overwrite" in err
    assert (split / "manifest.json").read_bytes() == manifest
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "new", "--output", tmp_path / "Datasets",
                        "--overwrite")
    assert code == 0, err
    _assert_pairs(split, new)
    assert [p.name for p in split.parent.iterdir()] == ["train"]  # the old split is gone, no leftovers


def test_a_source_file_rewritten_with_the_same_size_is_not_kept(tmp_path, capsys):
    pairs = _jorder(tmp_path / "src")
    assert _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets", "--copy")[0] == 0
    clean = pairs["2.png"][1]
    before, old = clean.stat(), clean.read_bytes()
    other = next(data for seed in range(1000, 2000)  # another image whose PNG has the same size
                 if len(data := cv2.imencode(".png", _image(seed))[1].tobytes()) == len(old) and data != old)
    clean.write_bytes(other)
    os.utime(clean, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # as a later write stamps it
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 2 and f"{clean} changed since" in err and "pass --overwrite" in err


def test_a_folder_not_made_by_prepare_is_refused(tmp_path, capsys):
    _jorder(tmp_path / "src")
    _authors(tmp_path / "Datasets" / "Rain200H" / "train")
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 2 and "has no manifest.json" in err


def test_copy_makes_independent_files(tmp_path, capsys):
    pairs = _jorder(tmp_path / "src")
    code, out, _ = _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets", "--copy")
    assert code == 0 and "(copies)" in out
    split = tmp_path / "Datasets" / "Rain200H" / "train"
    _assert_pairs(split, pairs)
    assert all(p.stat().st_nlink == 1 for p in split.rglob("*.png"))
    assert all(rainy.stat().st_nlink == 1 for rainy, _ in pairs.values())


def test_copies_where_a_link_cannot_be_made(tmp_path, capsys, monkeypatch):
    pairs = _jorder(tmp_path / "src")

    def cross_device(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(prepare.os, "link", cross_device)
    code, out, _ = _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    assert code == 0 and "(copies)" in out
    _assert_pairs(tmp_path / "Datasets" / "Rain200H" / "train", pairs)


def test_manifest_and_published_size_warning(tmp_path, capsys):
    pairs = _jorder(tmp_path / "src")
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "src", "--output", tmp_path / "Datasets")
    published = published_pairs("Rain200H", "train")
    assert code == 0
    assert f"has 3 pairs, the published split {published} ({published - 3} fewer)" in err
    split = tmp_path / "Datasets" / "Rain200H" / "train"
    manifest = json.loads((split / "manifest.json").read_text())
    assert manifest["source"] == {"path": str((tmp_path / "src").resolve()), "layout": "jorder",
                                  "description": "JORDER's new release: rain/X2/ and norain/"}
    assert (manifest["pairs"], manifest["published"], manifest["difference"]) == (3, published, 3 - published)
    assert manifest["date"].endswith("+00:00")
    assert sorted(manifest["files"]) == sorted(f"{side}/{n}" for side in ("input", "target") for n in pairs)
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == hashlib.sha256((split / name).read_bytes()).hexdigest()
        assert entry["bytes"] == (split / name).stat().st_size
    assert manifest["files"]["input/2.png"]["source"] == "rain/X2/norain-2x2.png"


def test_source_inside_the_output_split_is_refused(tmp_path, capsys):
    _jorder(tmp_path / "Datasets" / "Rain200H" / "train" / "jorder")
    code, _, err = _run(capsys, "Rain200H", "--train", tmp_path / "Datasets" / "Rain200H" / "train" / "jorder",
                        "--output", tmp_path / "Datasets", "--overwrite")
    assert code == 2 and "keep the source and the output split apart" in err
    assert (tmp_path / "Datasets" / "Rain200H" / "train" / "jorder" / "norain" / "norain-1.png").is_file()


def test_module_runs_from_the_command_line(tmp_path):
    _jorder(tmp_path / "src", n=2)
    result = subprocess.run([sys.executable, "-m", "data.prepare", "Rain200H", "--train", str(tmp_path / "src"),
                             "--output", str(tmp_path / "Datasets")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Rain200H train: 2 pairs" in result.stdout


@pytest.mark.shared
def test_datasets_json_is_the_shared_copy(shared_dir):
    shared = shared_dir / "paper" / "datasets.json"
    assert json.loads((REPO / "data" / "datasets.json").read_text()) == json.loads(shared.read_text())


def test_docs_give_every_link_code_and_published_size():
    text = (REPO / "docs" / "datasets.md").read_text()
    for name, entry in json.loads((REPO / "data" / "datasets.json").read_text())["datasets"].items():
        assert entry["baidu_url"] in text and entry["baidu_code"] in text
        assert f"python -m data.prepare {name}" in text
        for count in entry["pairs"].values():
            assert count is None or f"{count:,}" in text or str(count) in text


def test_more_pairs_than_published_points_at_the_versions():
    source = prepare.Source(Path("src"), "jorder", "JORDER's new release")
    line, warning = prepare._report("Rain200H", "test", prepare.Outcome(Path("out"), source, 250, 200, "built"))
    assert "250 pairs" in line and "(50 more); check that this is the paper's version" in warning
