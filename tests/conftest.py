"""Shared fixtures: the read-only data in ../shared (or $NERD_SHARED).

Tests that need it fail (never skip) when it is missing, so CI cannot go green without it.
"""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("NERD_SHARED", REPO.parent / "shared"))
    if not (path / "golden" / "parity.pt").is_file():
        pytest.fail(f"shared data not found at {path}: set NERD_SHARED to the folder holding golden/, datasets/, samples/")
    return path


@pytest.fixture(scope="session")
def golden(shared_dir: Path) -> dict:
    return torch.load(shared_dir / "golden" / "parity.pt", weights_only=True)


@pytest.fixture(scope="session")
def epoch_lrs():
    """rates(num_epochs, lr, warmup_epochs=3, eta_min=1e-6): the rate each epoch runs at (index e-1 for
    epoch e) with the authors' scheduler, stepped as train.py steps it."""
    from utils.scheduler import build_scheduler

    def rates(num_epochs: int, lr: float, warmup_epochs: int = 3, eta_min: float = 1e-6) -> list[float]:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        scheduler = build_scheduler(optimizer, num_epochs, warmup_epochs, eta_min)
        result = []
        for _ in range(num_epochs):
            result.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradients: a no-op that keeps torch's step-order check quiet
            scheduler.step()
        return result
    return rates


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
