"""Random generators of a training run: per-epoch and per-sample seeds, and generator states saved and
restored for resuming."""
import random
from typing import Any

import numpy as np
import torch


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's order of the training set (the same in every process)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the augmentation of training pair `index` in one epoch, whichever process draws it."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def seed_host_generators(seed: int) -> None:
    """Seeds Python's and NumPy's global generators (the authors' augmentation draws from them) with
    `seed` modulo 2**32, the most NumPy takes."""
    seed %= 2**32
    random.seed(seed)
    np.random.seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch generator states, in types torch.load(weights_only=True) accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what rng_state saved."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
