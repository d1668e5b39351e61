"""data.check: check_split's report on good and bad split folders (unpaired, undecodable, size mismatches,
manifest comparison), its one-paragraph message, the table and the CLI's exit codes."""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import check, prepare
from data.check import SplitReport, check_split, format_table, published_pairs, run_threaded

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, seed: int, height: int = 3, width: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb)
    return path


def _split(root: Path, n: int = 3) -> Path:
    for i in range(1, n + 1):
        _write(root / "input" / f"{i}.png", 2 * i)
        _write(root / "target" / f"{i}.png", 2 * i + 1)
    return root


def _prepared(tmp_path: Path, capsys) -> Path:
    """Datasets/ with Rain200L train and test made by data.prepare from JORDER-layout sources."""
    for split, n in (("train", 4), ("test", 2)):
        for i in range(1, n + 1):
            _write(tmp_path / split / "rain" / f"norain-{i}x2.png", 10 * i)
            _write(tmp_path / split / "norain" / f"norain-{i}.png", 10 * i + 1)
    assert prepare.main(["Rain200L", "--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"),
                         "--output", str(tmp_path / "Datasets")]) == 0
    capsys.readouterr()
    return tmp_path / "Datasets"


def _check(capsys, *args) -> tuple[int, str, str]:
    code = check.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_good_split(tmp_path):
    report = check_split(_split(tmp_path / "train"), published=3)
    assert report.usable and report.message() == "" and report.problems() == [] and report.warnings() == []
    assert [(a.name, b.name) for a, b in report.pairs] == [("1.png", "1.png"), ("2.png", "2.png"), ("3.png", "3.png")]
    assert report.manifest is None


def test_unpaired_files_are_named_per_side(tmp_path):
    root = _split(tmp_path / "train")
    _write(root / "input" / "7.png", 7)
    _write(root / "target" / "8.jpg", 8)
    report = check_split(root)
    assert not report.usable
    assert (report.only_input, report.only_target) == (["7.png"], ["8.jpg"])
    assert len(report.pairs) == 3
    message = report.message()
    assert "1 input image(s) have no target of the same file stem" in message and "7.png" in message
    assert "8.jpg" in message and "python -m data.prepare" not in message.split("cannot be used")[0]


def test_undecodable_and_mismatched_files_are_named(tmp_path):
    root = _split(tmp_path / "test", n=4)
    (root / "target" / "2.png").write_bytes(b"\x89PNG truncated")
    (root / "input" / "3.png").write_bytes(b"")
    _write(root / "input" / "4.png", 99, height=5)
    report = check_split(root, threads=2)
    assert not report.usable
    assert sorted((p.name, p.parent.name, reason) for p, reason in report.undecodable) == [
        ("2.png", "target", "not a decodable image (corrupt, truncated or not an image)"),
        ("3.png", "input", "empty file")]
    assert report.mismatched == [f"{root / 'input' / '4.png'} is 4x5 but {root / 'target' / '4.png'} is 4x3"]
    message = report.message()
    assert f"cannot read image {root / 'target' / '2.png'}" in message and "is 4x5 but" in message
    assert message.startswith(f"{root} cannot be used: ")


def test_fix_names_the_prepare_command_for_a_dataset_split(tmp_path):
    root = tmp_path / "Datasets" / "DDN-Data" / "test"
    (root / "input").mkdir(parents=True)
    report = check_split(root)
    assert not report.usable
    assert f"no folder {root / 'target'}" in report.message()
    fix = f"python -m data.prepare DDN-Data --test SRC --output {tmp_path / 'Datasets'} --overwrite"
    assert fix in report.message()


def test_duplicate_stems_and_empty_folders(tmp_path):
    root = _split(tmp_path / "s")
    _write(root / "input" / "1.jpg", 5)
    report = check_split(root)
    assert not report.usable and "2 files share the stem '1' (1.jpg, 1.png)" in report.message()
    empty = tmp_path / "e"
    (empty / "input").mkdir(parents=True)
    (empty / "target").mkdir()
    assert "no images in" in check_split(empty).message()


def test_order_pairing(tmp_path):
    root = tmp_path / "s"
    for i, (a, b) in enumerate((("a.png", "x.png"), ("b.png", "y.png"))):
        _write(root / "input" / a, i)
        _write(root / "target" / b, i + 10)
    assert not check_split(root).usable
    report = check_split(root, pairing="order")
    assert report.usable and [(a.name, b.name) for a, b in report.pairs] == [("a.png", "x.png"), ("b.png", "y.png")]
    _write(root / "input" / "c.png", 3)
    assert "cannot pair by order" in check_split(root, pairing="order").message()


def test_manifest_comparison(tmp_path, capsys):
    root = _prepared(tmp_path, capsys) / "Rain200L" / "train"
    report = check_split(root)
    assert report.usable and report.manifest.matches and report.manifest.summary() == "matches"
    _write(root / "input" / "2.png", 77)  # a different image of the same size: only the hash tells
    (root / "target" / "3.png").unlink()
    (root / "input" / "3.png").unlink()
    report = check_split(root)
    assert report.usable  # the files differ from the manifest, but can be used
    assert report.manifest.changed == ["input/2.png"]
    assert report.manifest.missing == ["input/3.png", "target/3.png"]
    assert report.manifest.summary() == "differs (2 missing, 1 changed)"
    assert any("differ from manifest.json" in w and "input/2.png" in w for w in report.warnings())
    assert check_split(root, hashes=False).manifest.changed == []  # sizes alone match
    (root / "manifest.json").write_text("{")
    assert check_split(root).manifest.summary() == "unreadable"


def test_cli_good_tree(tmp_path, capsys):
    datasets = _prepared(tmp_path, capsys)
    code, out, err = _check(capsys, datasets)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Rain200L"
    assert lines[1].split()[:3] == ["split", "pairs", "published"]
    train = lines[2].split()
    published = published_pairs("Rain200L", "train")
    assert train[:4] == ["train", "4", str(published), f"({4 - published:+d})"]
    assert train[-2:] == ["matches", "ok"]
    assert lines[3].split()[:2] == ["test", "2"]
    assert f"4 pairs, the published split has {published} ({published - 4} fewer)" in out


def test_cli_bad_tree(tmp_path, capsys):
    datasets = _prepared(tmp_path, capsys)
    (datasets / "Rain200L" / "test" / "target" / "1.png").write_bytes(b"junk")
    _split(datasets / "DDN-Data" / "train")
    (datasets / "DDN-Data" / "train" / "target" / "2.png").unlink()
    code, out, _ = _check(capsys, datasets)
    assert code == 2
    assert [line.split()[0] for line in out.splitlines() if not line.startswith(" ")] == ["Rain200L", "DDN-Data"]
    assert "UNUSABLE" in out and f"cannot read image {datasets / 'Rain200L' / 'test' / 'target' / '1.png'}" in out
    assert "2.png" in out
    code, out, _ = _check(capsys, datasets, "rain200l")  # one dataset, any case: still the bad test split
    assert code == 2 and "DDN-Data" not in out


def test_cli_argument_errors(tmp_path, capsys):
    code, _, err = _check(capsys, tmp_path / "nowhere")
    assert code == 2 and err.startswith("data.check: error: no folder")
    (tmp_path / "Datasets").mkdir()
    code, _, err = _check(capsys, tmp_path / "Datasets")
    assert code == 2 and "no dataset folder" in err and "python -m data.prepare" in err
    code, _, err = _check(capsys, tmp_path / "Datasets", "SPA-Data")
    assert code == 2 and "SPA-Data" in err
    (tmp_path / "Datasets" / "SPA-Data").mkdir()
    code, out, _ = _check(capsys, tmp_path / "Datasets", "SPA-Data")
    assert code == 2 and "neither train/ nor test/" in out


def test_table_columns(tmp_path):
    good = check_split(_split(tmp_path / "a"), published=3)
    bad = SplitReport(tmp_path / "b", only_target=["9.png"])
    table = format_table("X", {"train": good, "test": bad}).splitlines()
    assert table[0] == "X"
    assert table[2].split() == ["train", "3", "3", "0/0", "0", "0", "none", "ok"]
    assert table[3].split() == ["test", "0", "-", "0/1", "0", "0", "none", "UNUSABLE"]


def test_run_threaded_keeps_order_and_stops_on_an_interrupt():
    assert run_threaded(lambda x: x * x, list(range(50)), 3, "t", progress=False) == [x * x for x in range(50)]
    started = []
    lock = threading.Lock()

    def work(x):
        with lock:
            started.append(x)
        if x == 2:
            raise KeyboardInterrupt
        time.sleep(0.01)
        return x

    with pytest.raises(KeyboardInterrupt):
        run_threaded(work, list(range(10_000)), 2, "t", progress=False)
    assert len(started) < 100  # the queued rest was cancelled, not worked through


def test_module_runs_from_the_command_line(tmp_path, capsys):
    datasets = _prepared(tmp_path, capsys)
    result = subprocess.run([sys.executable, "-m", "data.check", str(datasets)], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Rain200L\n")
    assert json.loads((datasets / "Rain200L" / "test" / "manifest.json").read_text())["pairs"] == 2
