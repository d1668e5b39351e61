"""Learning-rate schedules: the authors' per-epoch warmup + cosine, and an optional per-iteration variant.

Trainer call pattern for mode 'epoch' (the authors' rates, tests/fixtures/golden/lr_schedule.json; epoch 1
runs at 0.0):

    scheduler = build_scheduler(optimizer, num_epochs)       # no step() before training
    for epoch in range(start_epoch, num_epochs + 1):
        ...train the epoch at optimizer.param_groups[0]['lr']...
        scheduler.step()                                       # once, at the end of every epoch
        save {'epoch': epoch, ..., 'scheduler': scheduler.state_dict()}

To resume, build the scheduler as above, call `scheduler.load_state_dict(saved)` and go on from
`epoch + 1`. For mode 'iteration', call `scheduler.step()` after every optimizer step instead.
"""
import warnings
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR
from warmup_scheduler import GradualWarmupScheduler


class ResumableWarmupScheduler(GradualWarmupScheduler):
    """GradualWarmupScheduler whose state_dict saves with torch.save, loads with weights_only and resumes.

    warmup-scheduler 0.3 puts the after_scheduler object itself into state_dict: saving pickles its
    optimizer, weights_only loading refuses it, and once loaded the cosine steps drive that stale copy
    instead of the live optimizer (the rate freezes). Here it holds the after_scheduler's state_dict.
    """

    def step(self, epoch: int | None = None, metrics: Any = None) -> None:
        # warmup-scheduler 0.3 calls get_lr() in every step, which makes torch warn every time.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="To get the last learning rate computed by the scheduler")
            super().step(epoch, metrics)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["after_scheduler"] = self.after_scheduler.state_dict()
        state["group_lrs"] = [group["lr"] for group in self.optimizer.param_groups]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.after_scheduler.load_state_dict(state.pop("after_scheduler"))
        # CosineAnnealingLR steps recursively from group['lr'], which building a scheduler resets: restore it.
        for group, lr in zip(self.optimizer.param_groups, state.pop("group_lrs"), strict=True):
            group["lr"] = lr
        super().load_state_dict(state)


def build_scheduler(optimizer: Optimizer, num_epochs: int, warmup_epochs: int = 3, eta_min: float = 1e-6,
                    mode: str = "epoch", iters_per_epoch: int | None = None) -> LRScheduler:
    """Warmup then cosine decay to `eta_min`.

    mode 'epoch' (the authors'): GradualWarmupScheduler(multiplier 1) over `warmup_epochs`, then
    CosineAnnealingLR(T_max=num_epochs - warmup_epochs); stepped once per epoch, so epoch 1 runs at 0.
    mode 'iteration': stepped per iteration; linear warmup from lr/W to lr over the first
    W = warmup_epochs * iters_per_epoch iterations, then cosine reaching `eta_min` on the last one.
    """
    if not 1 <= warmup_epochs < num_epochs:
        raise ValueError(f"need 1 <= warmup_epochs < num_epochs, got {warmup_epochs} and {num_epochs}")
    if mode == "epoch":
        cosine = CosineAnnealingLR(optimizer, T_max=num_epochs - warmup_epochs, eta_min=eta_min)
        return ResumableWarmupScheduler(optimizer, multiplier=1, total_epoch=warmup_epochs, after_scheduler=cosine)
    if mode == "iteration":
        if not iters_per_epoch or iters_per_epoch < 1:
            raise ValueError("mode 'iteration' needs iters_per_epoch >= 1")
        warmup, total = warmup_epochs * iters_per_epoch, num_epochs * iters_per_epoch
        return SequentialLR(optimizer, milestones=[warmup], schedulers=[
            LinearLR(optimizer, start_factor=1 / warmup, total_iters=warmup - 1),
            CosineAnnealingLR(optimizer, T_max=total - warmup - 1, eta_min=eta_min),
        ])
    raise ValueError(f"unknown scheduler mode {mode!r}; choose 'epoch' or 'iteration'")
