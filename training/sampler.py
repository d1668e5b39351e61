"""The training order: one permutation of the training set per epoch, cut into global batches the same
way whatever the number of processes, and an augmentation seed for every pair.

With a global batch of B = batch_size x world pairs, process r of `world` trains on pairs
[r * batch_size, (r + 1) * batch_size) of every global batch; gradients averaged over the processes
then equal those of one process with batch B. A last global batch that the set does not fill is
completed from the start of the permutation, so that every process gets as many pairs.
"""
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from .rng import epoch_seed, sample_seed, seed_host_generators


class GlobalBatchSampler(Sampler):
    """(index, augmentation seed) of the pairs process `rank` of `world` trains on, batch after batch;
    call set_epoch(e) before each epoch."""

    def __init__(self, size: int, batch_size: int, world: int = 1, rank: int = 0, seed: int = 0):
        self.size, self.batch_size, self.world, self.rank, self.seed = size, batch_size, world, rank, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> int:
        """Iterations per epoch."""
        return math.ceil(self.size / (self.batch_size * self.world))

    def __len__(self) -> int:
        return self.global_batches() * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator)
        step = self.batch_size * self.world
        order = order.repeat(math.ceil(self.global_batches() * step / self.size))
        for start in range(0, self.global_batches() * step, step):
            first = start + self.rank * self.batch_size
            for index in order[first:first + self.batch_size].tolist():
                yield index, sample_seed(self.seed, self.epoch, index)


class SeededPairs(Dataset):
    """A training set whose items GlobalBatchSampler names: each pair is augmented with Python's and
    NumPy's generators seeded from its own seed, so that no process or worker's history matters."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        seed_host_generators(seed)
        return self.dataset[index]
