"""An experiment folder: one run at a time (its lock), and which checkpoint a run resumes from."""
import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from utils.checkpoint import read_checkpoint
from utils.files import check_writable, stale_temporaries

from .distributed import Dist, start_on_main
from .state import check_resumable


class ExperimentError(ValueError):
    """An experiment folder that does not allow what was asked: the message says what to do."""


def read_resume_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint that a run can resume from (TrainingState's); ExperimentError naming what it lacks."""
    try:
        checkpoint = read_checkpoint(path)
        check_resumable(checkpoint, path)
    except (FileNotFoundError, ValueError) as err:
        raise ExperimentError(str(err)) from None
    return checkpoint


def resume_path(resume: str | None, exp_dir: Path) -> Path | None:
    """The checkpoint to resume from (`resume`: None, 'auto' or a path); refuses to start a new run
    over an experiment that has checkpoints."""
    existing = sorted(p.name for p in exp_dir.glob("model_*.pth"))
    if resume is None:
        if existing:
            raise ExperimentError(
                f"{exp_dir} already holds checkpoints ({', '.join(existing[:4])}{' ...' if len(existing) > 4 else ''}"
                "): continue that run with --resume auto, or start a new one in another folder with "
                "--set paths.experiment=experiments/NEW_NAME")
        return None
    if resume == "auto":
        latest = exp_dir / "model_latest.pth"
        if latest.is_file():
            return latest
        if existing:
            raise ExperimentError(f"--resume auto: no model_latest.pth in {exp_dir} (found "
                                  f"{', '.join(existing[:4])}); name one with --resume PATH")
        return None
    path = Path(resume)
    if not path.is_file():
        raise ExperimentError(f"--resume {resume}: no such checkpoint file")
    return path


@contextlib.contextmanager
def experiment_lock(exp_dir: Path, note: Any = print) -> Iterator[None]:
    """Holds `exp_dir/.lock` while the block runs, so that two runs never train into one folder.

    The lock is an flock on that file (the system drops it when its process ends, however it ends),
    and the file names its holder: host, pid and start time. A lock whose process is gone is taken
    over, and `note` says so; a live one raises ExperimentError naming its holder, and so does a folder
    that cannot be created or written (a file, permission denied). Temporary files that a save cut short
    left in the folder (utils.files.stale_temporaries) are removed, with a note.
    """
    created = not exp_dir.exists()
    path = exp_dir / ".lock"
    with contextlib.ExitStack() as stack:
        try:
            exp_dir.mkdir(parents=True, exist_ok=True)
            f = stack.enter_context(_locked(path))
            check_writable(exp_dir)
        except OSError as err:
            why = "it is a file, not a folder" if exp_dir.is_file() else err.strerror or str(err)
            raise ExperimentError(f"cannot train into paths.experiment {exp_dir}: {why}; choose a folder this user "
                                  "can write to, e.g. --set paths.experiment=experiments/NEW_NAME") from None
        if previous := _holder(f):
            note(f"note: taking over the lock of {exp_dir} from a run that is gone ({previous})")
        # with the lock held no save into the folder is under way: what atomic_save left is a killed run's
        if stale := stale_temporaries(exp_dir):
            for temporary in stale:
                temporary.unlink()
            note(f"note: removed {len(stale)} stale temporary file(s) left in {exp_dir} by an interrupted save: "
                 f"{', '.join(p.name for p in stale)}")
        f.seek(0)
        f.truncate()
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        f.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # before the flock goes with the file: no one can find a stale file
            if created and not any(exp_dir.iterdir()):
                exp_dir.rmdir()  # a run that wrote nothing leaves nothing behind


@contextlib.contextmanager
def started_experiment(exp_dir: Path, resume: str | None, check: Callable[[], Any],
                       dist: Dist) -> Iterator[tuple[Path | None, Any]]:
    """Rank 0's start-up while the other processes wait: it holds `exp_dir`'s lock for the block, finds and
    reads the checkpoint to resume (`resume`: as resume_path takes it), and runs `check` (the data check).
    Yields (checkpoint path or None, read_resume_checkpoint's result or None) on every process."""
    with contextlib.ExitStack() as stack:
        def start() -> tuple[Path | None, Any]:
            stack.enter_context(experiment_lock(exp_dir))
            checkpoint = resume_path(resume, exp_dir)
            if resume and checkpoint is None:
                print(f"--resume auto: no checkpoint in {exp_dir} yet, starting a new run")
            resumed = read_resume_checkpoint(checkpoint) if checkpoint else None  # a bad file fails before any work
            check()
            return checkpoint, resumed

        yield start_on_main(start, dist)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[Any]:
    """The lock file at `path`, open and flock-ed by this process."""
    while True:
        f = open(path, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(f)
            f.close()
            raise ExperimentError(f"{path.parent} is in use by another training run ({holder or 'starting'}); wait "
                                  "for it to end, or train into another folder with "
                                  "--set paths.experiment=experiments/NEW_NAME") from None
        if path.exists() and os.stat(path).st_ino == os.fstat(f.fileno()).st_ino:
            break
        f.close()  # the holder removed the file as we opened it: lock the new one
    with f:
        yield f


def _holder(f: Any) -> str:
    """'host H, pid P, since T' from a lock file's content, or '' when it names no one."""
    f.seek(0)
    try:
        owner = json.loads(f.read())
        return f"host {owner['host']}, pid {owner['pid']}, since {owner['started']}"
    except (ValueError, KeyError, TypeError):
        return ""


def _flatten(opt: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in opt.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def options_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every option that differs."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
