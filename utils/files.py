"""Writing files so that a reader never finds half of one (the old content or the whole new one), and
keeping what a run writes apart from what it reads."""
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"  # atomic_save's temporary files are .<name>.<hex>.tmp beside their target
_TOKEN_BYTES = 6
_TEMPORARY = re.compile(rf"\..+\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}{re.escape(TEMPORARY_SUFFIX)}")


def atomic_save(path: str | os.PathLike, save_fn: Callable[[str], None]) -> None:
    """Calls save_fn(tmp_path) on a temporary file beside `path`, then moves it onto `path`.

    `path` either keeps its old content or gets the complete new one; the temporary file is removed
    if save_fn fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(_TOKEN_BYTES)}{TEMPORARY_SUFFIX}")
    # os.open rather than tempfile.mkstemp: mkstemp's 0600 mode would end up on the saved file
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        save_fn(str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` atomically (atomic_save)."""
    atomic_save(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Writes `data` as indented JSON to `path` atomically (atomic_save)."""
    write_text_atomic(path, json.dumps(data, indent=1))


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """atomic_save's temporary files in `folder`, sorted: what a process killed while saving leaves behind.

    Only the caller can know that no save into `folder` is under way (e.g. it holds the folder's lock).
    """
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if _TEMPORARY.fullmatch(p.name) and p.is_file())


def overlap(a: str | os.PathLike, b: str | os.PathLike) -> str | None:
    """How folder `a` relates to folder `b` once links are resolved: 'is', 'lies inside' or 'holds'; None
    when neither is inside the other. For keeping a run's results away from the folders it reads."""
    a, b = Path(a).resolve(), Path(b).resolve()
    if a == b:
        return "is"
    if a.is_relative_to(b):
        return "lies inside"
    return "holds" if b.is_relative_to(a) else None


def check_writable(folder: str | os.PathLike) -> None:
    """OSError (e.g. PermissionError, or ENOSPC on a full disk) unless a file can be created in `folder`;
    the test file is removed at once."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
        pass
