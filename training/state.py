"""What a training checkpoint holds: the network in the authors' format, and everything resuming needs."""
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from models.weights import authors_state, load_weights

from .rng import rng_state, set_rng_state

RESUME_ENTRIES = ("epoch", "optimizer", "scheduler", "iteration", "rng")


class ResumeError(ValueError):
    """A checkpoint that cannot be resumed from, or not with these options: the message says why."""


@dataclass
class Progress:
    """Where training stands: `epoch` finished epochs, then `batches_done` batches into the next."""

    epoch: int = 0
    iteration: int = 0
    best_psnr: float = 0.0
    best_epoch: int = 0
    batches_done: int = 0
    loss_sum: float = 0.0

    def batch_done(self, loss: float) -> None:
        """Counts one optimizer step on a batch whose loss was `loss`."""
        self.iteration, self.batches_done, self.loss_sum = self.iteration + 1, self.batches_done + 1, self.loss_sum + loss

    @property
    def epoch_loss(self) -> float:
        """The mean loss of the batches of the epoch under way."""
        return self.loss_sum / max(self.batches_done, 1)

    def epoch_done(self, epoch: int, psnr: float | None) -> bool:
        """Closes epoch `epoch`, validated at `psnr` (None: not validated); returns whether it is the best yet."""
        self.epoch, self.batches_done, self.loss_sum = epoch, 0, 0.0
        improved = psnr is not None and psnr > self.best_psnr
        if improved:
            self.best_psnr, self.best_epoch = psnr, epoch
        return improved

    def __str__(self) -> str:
        into = f", {self.batches_done} batches into epoch {self.epoch + 1}" if self.batches_done else ""
        return f"epoch {self.epoch} done{into}"


def check_resumable(checkpoint: dict[str, Any], path: Path) -> Progress:
    """The progress a checkpoint holds; ResumeError unless it has every entry resuming needs."""
    if missing := [k for k in RESUME_ENTRIES if k not in checkpoint]:
        raise ResumeError(f"{path} cannot be resumed: it lacks {', '.join(missing)} (not written by this "
                          "train.py, e.g. a released model)")
    defaults = asdict(Progress())
    return Progress(**{key: checkpoint.get(key, default) for key, default in defaults.items()})


class TrainingState:
    """The network, optimizer, schedule, progress and random generators of a run, as one checkpoint.

    `state_dict()` is the checkpoint: the authors' format (`epoch`, `state_dict` under their key names,
    `optimizer`) plus `scheduler`, `rng` and the Progress fields; `load_state_dict` restores all of it.
    """

    def __init__(self, network: nn.Module, optimizer: Optimizer, scheduler: LRScheduler):
        self.network, self.optimizer, self.scheduler = network, optimizer, scheduler
        self.progress = Progress()

    def state_dict(self) -> dict[str, Any]:
        return {**asdict(self.progress), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": rng_state(), "state_dict": authors_state(self.network)}

    def load_state_dict(self, checkpoint: dict[str, Any], path: Path) -> None:
        """Restores a checkpoint of `state_dict()`'s, read from `path` (named in errors)."""
        progress = check_resumable(checkpoint, path)
        try:
            load_weights(self.network, checkpoint["state_dict"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        except (ValueError, KeyError, TypeError) as err:
            raise ResumeError(f"{path} does not fit these options ({str(err).splitlines()[0]}); resume with the "
                              "options it was trained with (its 'options' entry)") from None
        self.progress = progress
        set_rng_state(checkpoint["rng"])

