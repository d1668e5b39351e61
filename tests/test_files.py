"""Atomic writes (utils/files.py): a reader finds the old content or the whole new one, never a part."""
import json
from pathlib import Path

import pytest

from utils.files import atomic_save, check_writable, overlap, stale_temporaries, write_json_atomic, write_text_atomic


def test_atomic_save_failure_keeps_old_file_and_no_temp(tmp_path: Path):
    path = tmp_path / "ckpt.pth"
    path.write_text("old")

    def fail(tmp: str) -> None:
        Path(tmp).write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_save(path, fail)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]
    atomic_save(path, lambda tmp: Path(tmp).write_text("new"))
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]


def test_text_and_json_writers_replace_the_file_whole(tmp_path: Path):
    write_text_atomic(tmp_path / "a.md", "one\n")
    write_json_atomic(tmp_path / "a.json", {"rows": [1, 2.5, None]})
    write_json_atomic(tmp_path / "a.json", {"rows": [3]})
    assert (tmp_path / "a.md").read_text() == "one\n"
    assert json.loads((tmp_path / "a.json").read_text()) == {"rows": [3]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.md"]


def test_a_value_json_cannot_write_leaves_the_old_file(tmp_path: Path):
    write_json_atomic(tmp_path / "a.json", {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "a.json", {"path": Path("x")})
    assert json.loads((tmp_path / "a.json").read_text()) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_overlap_sees_through_links_both_ways(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert overlap(tmp_path / "a", tmp_path / "link") == "is"
    assert overlap(tmp_path / "a" / "b" / "..", tmp_path / "a") == "is"
    assert overlap(tmp_path / "link" / "b", tmp_path / "a") == "lies inside"
    assert overlap(tmp_path / "a", tmp_path / "a" / "b" / "new") == "holds"  # a folder not made yet too
    assert overlap(tmp_path / "a", tmp_path / "c") is None
    assert overlap(tmp_path / "ab", tmp_path / "a") is None  # a prefix of the name is not a parent


def test_stale_temporaries_are_atomic_saves_own_names_only(tmp_path: Path):
    atomic_save(tmp_path / "kept.pth", lambda tmp: Path(tmp).write_text("whole"))
    stale = [tmp_path / ".model_best.pth.0123456789ab.tmp", tmp_path / ".metrics.csv.a1b2c3d4e5f6.tmp"]
    for path in stale:
        path.write_text("half")
    for name in (".x.tmp", "model.pth.0123456789ab.tmp", ".y.0123456789AB.tmp"):
        (tmp_path / name).write_text("someone else's")
    assert stale_temporaries(tmp_path) == sorted(stale)


def test_check_writable_leaves_nothing(tmp_path: Path):
    check_writable(tmp_path)
    assert not any(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError):
        check_writable(tmp_path / "missing")
