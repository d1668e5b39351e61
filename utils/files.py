"""Writing files so that a reader never finds half of one: the old content or the whole new one."""
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"  # atomic_save's temporary files are .<name>.<hex>.tmp beside their target


def atomic_save(path: str | os.PathLike, save_fn: Callable[[str], None]) -> None:
    """Calls save_fn(tmp_path) on a temporary file beside `path`, then moves it onto `path`.

    `path` either keeps its old content or gets the complete new one; the temporary file is removed
    if save_fn fails.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMPORARY_SUFFIX}")
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
