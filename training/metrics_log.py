"""The log of a training run: metrics.csv (a row per epoch) and, when tensorboard is installed, its
TensorBoard events."""
import csv
import io
from pathlib import Path
from typing import Any

from utils.files import write_text_atomic

METRICS_HEADER = ("epoch", "iterations", "loss", "lr", "val_psnr", "best_psnr", "seconds")


class MetricsLog:
    """metrics.csv of an experiment (one row per epoch, METRICS_HEADER), mirrored to TensorBoard when
    it is installed. Use it as a context manager, or close() it."""

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
        write_text_atomic(self.path, text.getvalue())
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

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tensorboard_writer(log_dir: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))
