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


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
