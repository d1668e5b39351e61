"""The learning-rate schedule against the authors' golden rates, and resuming it."""
import io
import json
import warnings

import pytest
import torch

from training.scheduler import build_scheduler


def make(num_epochs: int = 20, **kwargs) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    return optimizer, build_scheduler(optimizer, num_epochs, **kwargs)


def run(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("num_epochs", [20, 3000])
def test_epoch_rates_match_golden(fixtures, num_epochs, epoch_lrs):
    expected = json.loads((fixtures / "golden" / "lr_schedule.json").read_text())[f"epochs_{num_epochs}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's get_last_lr hint, raised inside warmup-scheduler
        rates = epoch_lrs(num_epochs, 1e-4)
    assert len(rates) == len(expected) == num_epochs
    assert rates[0] == 0.0
    for epoch, (ours, ref) in enumerate(zip(rates, expected), start=1):
        assert ours == pytest.approx(ref, rel=1e-12, abs=0), f"epoch {epoch}"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("done", [2, 3, 4, 5, 9])  # mid-warmup, its last epoch, the hand-over, mid-cosine
@pytest.mark.parametrize("load_optimizer", [True, False])
def test_state_dict_round_trip_resumes_the_same_rates(done, load_optimizer):
    optimizer, scheduler = make()
    run(optimizer, scheduler, done)
    buffer = io.BytesIO()
    torch.save({"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    expected = run(optimizer, scheduler, 20 - done)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    optimizer, scheduler = make()
    if load_optimizer:
        optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    assert run(optimizer, scheduler, 20 - done) == expected


def test_iteration_mode_warms_up_from_above_zero_and_ends_at_eta_min():
    optimizer, scheduler = make(10, warmup_epochs=2, eta_min=1e-6, mode="iteration", iters_per_epoch=7)
    rates = run(optimizer, scheduler, 70)
    assert rates[0] == pytest.approx(1e-4 / 14)
    assert rates[13] == pytest.approx(1e-4) and max(rates) == pytest.approx(1e-4)
    assert all(a < b for a, b in zip(rates[:14], rates[1:14]))
    assert all(a >= b for a, b in zip(rates[14:], rates[15:]))
    assert rates[-1] == pytest.approx(1e-6, rel=1e-9)


def test_bad_arguments():
    with pytest.raises(ValueError):
        make(3, warmup_epochs=3)
    with pytest.raises(ValueError):
        make(10, mode="iteration")
    with pytest.raises(ValueError):
        make(10, mode="step")


def test_the_rate_overshoots_right_after_warmup_as_the_authors_does(epoch_lrs):
    """The quirk the README lists: one epoch above the configured rate, large only in short runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert epoch_lrs(10, 1e-3, 1)[2] == pytest.approx(1.031e-3, rel=1e-3)
        assert epoch_lrs(4, 1e-3, 1)[2] == pytest.approx(1.333e-3, rel=1e-3)
        assert epoch_lrs(20, 1e-4)[4] == pytest.approx(1.0085e-4, rel=1e-4)
        assert max(epoch_lrs(3000, 1e-4)) == pytest.approx(1.0000003e-4, rel=1e-7)
