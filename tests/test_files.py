"""Atomic writes (utils/files.py): a reader finds the old content or the whole new one, never a part."""
import json
from pathlib import Path

import pytest

from utils.files import atomic_save, write_json_atomic, write_text_atomic


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
