"""Datasets and DataLoaders of a training run, from its options: workers that live through a SIGTERM
sent to the whole job, and a training order that does not depend on the number of processes."""
import ctypes
import signal
import sys
import weakref
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data.check import check_split, published_pairs
from data.datasets import DataError, build_dataset
from utils.options import resolve_path
from utils.signals import ignore_sigterm, sigterm_blocked

from .distributed import Dist
from .sampler import GlobalBatchSampler, SeededPairs

_DATASET_TYPES = {"train": "PairedTrain", "val": "PairedVal"}


def init_worker(worker_id: int) -> None:
    """Ignores SIGTERM (see Loader) and dies with the process that started it; the augmentation seeds
    itself per pair (SeededPairs)."""
    ignore_sigterm()
    die_with_parent()


def die_with_parent() -> None:
    """On Linux, has the kernel kill this process when its parent dies, however it dies.

    A worker forked from a training process holds that process's sockets to the other processes of the
    job; one that outlives it (PyTorch's worker can block at exit on a queue nobody reads) keeps them
    open, and the others then wait on a process that is dead instead of failing at once.
    """
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1  # linux/prctl.h; the standard library has no prctl
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class Loader(DataLoader):
    """A DataLoader whose workers live through a SIGTERM sent to the whole job.

    Job schedulers (and `timeout`) send SIGTERM to every process of the job. A worker killed by it
    would end the main process with a DataLoader error before it saves model_latest.pth; so workers
    start with SIGTERM blocked and ignore it from init_worker on, and the main process, which gets
    the signal too, shuts them down itself (`shutdown`), as after Ctrl-C. Blocking it while they
    start matters: a signal could otherwise arrive before init_worker runs.
    """

    def __init__(self, dataset: Any, **kwargs: Any):
        super().__init__(dataset, worker_init_fn=init_worker, **kwargs)
        self._iterators: weakref.WeakSet = weakref.WeakSet()

    def __iter__(self) -> Any:
        with sigterm_blocked():
            iterator = super().__iter__()  # starts the workers
        self._iterators.add(iterator)
        return iterator

    def shutdown(self) -> None:
        """Ends the workers of every iterator still alive, whatever they are doing.

        After an error the workers may be stuck handing over a batch nobody reads; PyTorch's own
        shutdown then falls back to SIGTERM, which they ignore, and the process would wait for them
        forever when it exits. So the ones still alive after it are killed.
        """
        for iterator in list(self._iterators):
            if not hasattr(iterator, "_shutdown_workers"):  # num_workers 0: a single-process iterator, no workers
                continue
            iterator._shutdown_workers()
            for worker in iterator._workers:
                if worker.is_alive():
                    worker.kill()
                    worker.join()


def dataset_from_options(datasets: dict[str, Any], split: str, check: bool = True) -> Dataset:
    """The dataset of options section `datasets.<split>` ('train': augmented pairs, 'val': centre crops).
    With `check` and the section's `check` on, every pair is read once first, as `python -m data.check`
    reads it (data.check.check_split): DataError names every unusable pair; the split's warnings (a pair
    count other than the published one, files that differ from its manifest.json) are printed."""
    section = datasets[split]
    args = {k: v for k, v in section.items() if k not in ("batch_size", "num_workers", "check")}
    root = resolve_path(args["dir"])
    try:
        dataset = build_dataset({**args, "type": _DATASET_TYPES[split], "dir": root,
                                 "limit_name": f"datasets.{split}.max_pixels"})
    except DataError as err:
        raise DataError(f"datasets.{split}: {err} (datasets.{split}.dir = {section['dir']}; relative paths "
                        "start at the repository root)") from None
    if check and section["check"]:
        report = check_split(root, section["pairing"], max(section["num_workers"], 1),
                             published_pairs(root.parent.name, root.name), hashes=False,
                             max_pixels=section["max_pixels"], limit_name=f"datasets.{split}.max_pixels")
        if not report.usable:
            raise DataError(f"datasets.{split}: {report.message()}. Or start without this check (--set "
                            f"datasets.{split}.check=false: training then stops at the first unusable pair).")
        for warning in report.warnings():
            print(f"note: datasets.{split}: {warning}")
        patch = section["patch_size"]
        if split == "train" and (small := sum(min(size) < patch for size in report.sizes)):
            print(f"note: datasets.train: {small} of {len(report.sizes)} training pair(s) are smaller than the patch "
                  f"of {patch} and are reflect-padded to it (the authors' augmentation)")
    return dataset


def check_datasets(datasets: dict[str, Any]) -> None:
    """Reads every pair of options section `datasets` once (its splits' `check` allowing); DataError lists
    the unusable ones."""
    for split in ("train", "val"):
        dataset_from_options(datasets, split)


def loader_from_options(dataset: Dataset, section: dict[str, Any], device: torch.device,
                        sampler: Sampler | None = None) -> Loader:
    """A Loader with the batch size and worker count of an options section `datasets.<split>`, in the
    sampler's order; it leaves torch's global generator alone."""
    return Loader(dataset, batch_size=section["batch_size"], sampler=sampler, num_workers=section["num_workers"],
                  generator=torch.Generator(), pin_memory=device.type == "cuda")


def train_loader_from_options(dataset: Dataset, section: dict[str, Any], device: torch.device, dist: Dist,
                              seed: int, accumulate: int = 1) -> Loader:
    """The Loader of this process's share of every global batch (GlobalBatchSampler; set_epoch on its
    sampler before each epoch), each pair augmented from its own seed. A batch holds the pairs of one
    optimizer step: batch_size x `accumulate` (train.accumulate), which the step cuts into micro-batches,
    so that batch 1 accumulating 2 trains on the very pairs that batch 2 does."""
    section = {**section, "batch_size": section["batch_size"] * accumulate}
    sampler = GlobalBatchSampler(len(dataset), section["batch_size"], dist.world, dist.rank, seed)
    return loader_from_options(SeededPairs(dataset), section, device, sampler)


def worker_error_message(err: BaseException) -> str:
    """The message of an error; for one re-raised from a DataLoader worker, its original message."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return "\n".join(lines) or type(err).__name__
