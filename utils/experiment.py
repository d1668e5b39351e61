"""An experiment folder: where a run stands, which checkpoint it resumes from, its metrics.csv and
TensorBoard logs."""
import contextlib
import csv
import fcntl
import io
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from utils.checkpoint import read_checkpoint
from utils.distributed import Dist, start_on_main
from utils.image_io import atomic_save

METRICS_HEADER = ("epoch", "iterations", "loss", "lr", "val_psnr", "best_psnr", "seconds")


class ExperimentError(ValueError):
    """An experiment folder that does not allow what was asked: the message says what to do."""


@dataclass
class Progress:
    """Where training stands: `epoch` finished epochs, then `batches_done` batches into the next."""

    epoch: int = 0
    iteration: int = 0
    best_psnr: float = 0.0
    best_epoch: int = 0
    batches_done: int = 0
    loss_sum: float = 0.0

    def as_checkpoint(self) -> dict[str, Any]:
        """The checkpoint entries that hold it."""
        return asdict(self)

    def __str__(self) -> str:
        into = f", {self.batches_done} batches into epoch {self.epoch + 1}" if self.batches_done else ""
        return f"epoch {self.epoch} done{into}"


RESUME_ENTRIES = ("epoch", "optimizer", "scheduler", "iteration", "rng")


def read_resume_checkpoint(path: Path) -> tuple[dict[str, Any], Progress]:
    """A checkpoint of this train.py and the progress it holds."""
    try:
        ckpt = read_checkpoint(path)
    except (FileNotFoundError, ValueError) as err:
        raise ExperimentError(str(err)) from None
    if missing := [k for k in RESUME_ENTRIES if k not in ckpt]:
        raise ExperimentError(f"{path} cannot be resumed: it lacks {', '.join(missing)} (not written by this "
                              "train.py, e.g. a released model)")
    defaults = asdict(Progress())
    return ckpt, Progress(**{key: ckpt.get(key, default) for key, default in defaults.items()})


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
    over, and `note` says so; a live one raises ExperimentError naming its holder.
    """
    created = not exp_dir.exists()
    exp_dir.mkdir(parents=True, exist_ok=True)
    path = exp_dir / ".lock"
    with _locked(path) as f:
        if previous := _holder(f):
            note(f"note: taking over the lock of {exp_dir} from a run that is gone ({previous})")
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


class MetricsLog:
    """metrics.csv of an experiment (one row per epoch, METRICS_HEADER), mirrored to TensorBoard when
    it is installed."""

    def __init__(self, exp_dir: Path, resumed_epoch: int = 0):
        """Starts the file afresh, or after a resume keeps its rows up to `resumed_epoch`."""
        self.path = exp_dir / "metrics.csv"
        rows = []
        if resumed_epoch and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= resumed_epoch]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([METRICS_HEADER, *rows])
        atomic_save(self.path, lambda tmp: Path(tmp).write_text(text.getvalue()))
        self.tensorboard = _tensorboard_writer(exp_dir / "tensorboard")

    def write(self, row: dict[str, Any]) -> None:
        """Appends one epoch's row (values formatted as they should appear)."""
        with self.path.open("a", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow([row[k] for k in METRICS_HEADER])
        if self.tensorboard is not None:
            for key in ("loss", "lr", "val_psnr"):
                if row[key] != "":
                    self.tensorboard.add_scalar(key, float(row[key]), row["epoch"])
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(log_dir: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))
