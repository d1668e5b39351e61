"""The log of a training run: metrics.csv (a row per epoch) and, with train.tensorboard, its TensorBoard
events in <experiment>/tensorboard."""
import csv
import io
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from utils.files import write_text_atomic

METRICS_HEADER = ("epoch", "iterations", "loss", "lr", "val_psnr", "best_psnr", "seconds")


class MetricsLog:
    """metrics.csv of an experiment (one row per epoch, METRICS_HEADER) and, with `tensorboard`, TensorBoard
    events whose x axis is the optimizer step. Use it as a context manager, or close() it.

    TensorBoard gets the training scalars (`train/loss` and its terms, `train/lr`,
    `train/seconds_per_iteration`, `train/peak_memory_mib`) as their means over every `every` steps and
    over the rest of each epoch, and at each validation `val/psnr`, `val/ssim` and its images.
    """

    def __init__(self, exp_dir: Path, resumed_epoch: int = 0, resumed_iteration: int = 0, tensorboard: bool = False,
                 every: int = 100, peak_memory: Callable[[], float] = lambda: 0.0):
        """Starts the files afresh, or after a resume keeps the rows up to `resumed_epoch` and the events up to
        step `resumed_iteration`. `peak_memory`: the process's peak memory so far in MiB."""
        self.path = exp_dir / "metrics.csv"
        rows = []
        if resumed_epoch and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= resumed_epoch]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([METRICS_HEADER, *rows])
        write_text_atomic(self.path, text.getvalue())
        # Events past the resumed step came from the part of the run that is done again: TensorBoard hides them.
        self.tensorboard = _tensorboard_writer(exp_dir / "tensorboard", resumed_iteration + 1) if tensorboard else None
        self.every, self.peak_memory = every, peak_memory
        self.start_steps()

    def write(self, row: dict[str, Any]) -> None:
        """Appends one epoch's row to metrics.csv (values formatted as they should appear)."""
        with self.path.open("a", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow([row[k] for k in METRICS_HEADER])

    def start_steps(self) -> None:
        """Starts the clock of the steps to come (and forgets steps not yet written)."""
        self._sums: dict[str, float] = {}
        self._steps, self._since = 0, time.perf_counter()

    def step(self, iteration: int, scalars: Mapping[str, float]) -> None:
        """Counts optimizer step `iteration` with its scalars (the loss, its terms, the rate); writes the means
        every `every` steps."""
        if self.tensorboard is None:
            return
        for name, value in scalars.items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._steps += 1
        if self._steps >= self.every:
            self.end_steps(iteration)

    def end_steps(self, iteration: int) -> None:
        """Writes the means of the steps counted since the last point, as the point of step `iteration`."""
        if self.tensorboard is None or not self._steps:
            return
        seconds = (time.perf_counter() - self._since) / self._steps
        for name, value in {**{k: v / self._steps for k, v in self._sums.items()}, "seconds_per_iteration": seconds,
                            "peak_memory_mib": self.peak_memory()}.items():
            self.tensorboard.add_scalar(f"train/{name}", value, iteration)
        self.tensorboard.flush()
        self.start_steps()

    def validation(self, iteration: int, psnr: float, ssim: float, images: list[torch.Tensor]) -> None:
        """A validation's PSNR and SSIM at step `iteration`, and its (3, H, W) images in [0, 1]."""
        if self.tensorboard is None:
            return
        self.tensorboard.add_scalar("val/psnr", psnr, iteration)
        self.tensorboard.add_scalar("val/ssim", ssim, iteration)
        for i, image in enumerate(images, 1):
            self.tensorboard.add_image(f"val/image_{i}", image, iteration)
        self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _tensorboard_writer(log_dir: Path, purge_step: int) -> Any:
    """A SummaryWriter into `log_dir` that hides earlier runs' events from step `purge_step` on; None, with a
    note, when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("note: tensorboard is not installed, so there are no TensorBoard logs: pip install tensorboard, "
              "or set train.tensorboard=false")
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)
