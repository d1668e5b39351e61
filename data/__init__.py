"""Datasets, built by name from options: `build_dataset({'type': 'PairedTrain', 'dir': ..., 'patch_size': 256})`."""
from .augment import GEOMETRIC, center_crop, pad_to_patch, train_augment
from .datasets import (DATASETS, DataError, PairedTrainDataset, PairedValDataset, build_dataset,
                       find_pairs)

__all__ = ["DATASETS", "GEOMETRIC", "DataError", "PairedTrainDataset", "PairedValDataset",
           "build_dataset", "center_crop", "find_pairs", "pad_to_patch", "train_augment"]
