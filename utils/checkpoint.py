"""Checkpoint files: reading one safely (weights only) and writing one atomically."""
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.image_io import atomic_save

StateDict = dict[str, torch.Tensor]
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP/DataParallel and torch.compile wrappers."""
    while isinstance(getattr(model, "module", None), nn.Module) or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def strip_wrapper_prefixes(state_dict: StateDict) -> StateDict:
    """A state_dict without the `module.` / `_orig_mod.` prefix that wrappers put on every key."""
    for prefix in _WRAPPER_PREFIXES:
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Loads a checkpoint file on the CPU; a bare state_dict comes back as `{'state_dict': ...}`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file; all mean the same to the user
        raise ValueError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict or a checkpoint dict")
    if "state_dict" not in obj:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            obj = {"state_dict": obj}
        else:
            raise ValueError(f"{path} has no 'state_dict' entry (keys: {sorted(obj)[:8]})")
    return obj


def save_checkpoint(path: str | os.PathLike, state_dict: StateDict, **extra: Any) -> None:
    """Writes `{**extra, 'state_dict': state_dict}` atomically (temp file + rename), tensors on the CPU."""
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    atomic_save(path, lambda tmp: torch.save({**extra, "state_dict": state}, tmp))
