"""The options of a training run: options/defaults.yml (the authors' recipe), a YAML file over it, then
`--set key.sub=value` overrides (utils/options.py), and the ranges that matter.

    opt = load_options("options/rain200l.yml", ["train.lr=2e-4", "datasets.train.batch_size=4"])

Sections: `network`, `datasets` (`train` and `val`), `train`, `paths`. `network` and `train.loss` are
open: their keys are the arguments of the class their `type` names (models.build_model,
losses.build_loss), checked where that class is built.
"""
import os
from collections.abc import Sequence
from typing import Any

from utils import options
from utils.options import Fail, read_yaml

DEFAULTS_FILE = options.REPO_ROOT / "options" / "defaults.yml"
DEFAULTS: dict[str, Any] = read_yaml(DEFAULTS_FILE)
OPEN_SECTIONS = {("network",), ("train", "loss")}
PAIRINGS = {"stem": "same file names", "order": "the authors' sorted-order pairing"}


def load_options(path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The training options of `path` (None: the defaults) with `overrides`, validated; OptionsError if bad."""
    return options.load_options(path, overrides, DEFAULTS, OPEN_SECTIONS, validate)


def validate(opt: dict[str, Any], fail: Fail) -> None:
    """The ranges and relations of the training options that their types do not say."""
    data, train = opt["datasets"], opt["train"]
    for split in ("train", "val"):
        prefix = f"datasets.{split}"
        ps = data[split]["patch_size"]
        if ps < 16 or ps % 16:
            fail(f"{prefix}.patch_size", f"= {ps} must be a positive multiple of 16 (the network halves "
                                         "the image 4 times)")
        if data[split]["batch_size"] < 1:
            fail(f"{prefix}.batch_size", "must be at least 1")
        if data[split]["max_pixels"] < 1:
            fail(f"{prefix}.max_pixels", "must be at least 1")
        if data[split]["num_workers"] < 0:
            fail(f"{prefix}.num_workers", "must be 0 (load in the main process) or more")
        if data[split]["pairing"] not in PAIRINGS:
            fail(f"{prefix}.pairing", f"= {data[split]['pairing']!r} must be 'stem' (same file names) or "
                                      "'order' (the authors' sorted-order pairing)")
    if not 1 <= train["warmup_epochs"] < train["epochs"]:
        fail("train.warmup_epochs", f"= {train['warmup_epochs']} must be at least 1 and less than "
                                    f"train.epochs = {train['epochs']}", "train.epochs")
    for key in ("lr", "eps"):
        if train[key] <= 0:
            fail(f"train.{key}", "must be positive")
    if not 0 <= train["eta_min"] <= train["lr"]:
        fail("train.eta_min", f"= {train['eta_min']} must be in [0, train.lr = {train['lr']}]", "train.lr")
    if len(train["betas"]) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in train["betas"]):
        fail("train.betas", f"= {train['betas']} must be two numbers in [0, 1), e.g. [0.9, 0.999]")
    if train["schedule"] not in ("epoch", "iteration"):
        fail("train.schedule", f"= {train['schedule']!r} must be 'epoch' (the authors') or 'iteration'")
    for key, least, meaning in (("accumulate", 1, "1: one batch per optimizer step"),
                                ("log_every", 1, "optimizer steps per TensorBoard point"),
                                ("tensorboard_images", 0, "0: none")):
        if train[key] < least:
            fail(f"train.{key}", f"= {train[key]} must be at least {least} ({meaning})")
    if train["seed"] < 0:
        fail("train.seed", "must be 0 or more")
    if train["val_every"] < 1:
        fail("train.val_every", "must be at least 1 (validation decides model_best.pth)")
    if train["save_every"] < 0:
        fail("train.save_every", "must be 0 (no model_epoch_{e}.pth files) or more")
    if not str(opt["paths"]["experiment"]).strip():
        fail("paths.experiment", "must name a folder")
