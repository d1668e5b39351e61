"""Checkpoint files: reading one safely (weights only) and writing one atomically."""
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.files import atomic_save

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
        # Never weights_only=False: unpickling arbitrary objects can run code from the file.
        with warnings.catch_warnings():  # its hints on refused files would contradict the message below
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad file: say what the file is instead
        raise ValueError(f"cannot read checkpoint {path}: {_not_a_checkpoint(path, err)}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state_dict or a checkpoint dict")
    if "state_dict" not in obj:
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            obj = {"state_dict": obj}
        else:
            raise ValueError(f"{path} has no 'state_dict' entry (keys: {sorted(obj)[:8]})")
    return obj


def _not_a_checkpoint(path: Path, err: Exception) -> str:
    """What a file that torch.load(weights_only=True) refused is, and what to do about it."""
    again = "Download or copy it again."
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        return f"the file is empty (0 bytes): a download or copy that did not finish. {again}"
    if b"<html" in head.lower() or head.lstrip().lower().startswith(b"<!doctype html"):
        return ("the file is an HTML page, not a checkpoint: what a failed download saves (Google Drive's quota or "
                f"virus-scan page, a login or error page). {again}")
    if head.startswith(b"PK\x03\x04"):
        if not zipfile.is_zipfile(path):
            return f"the file is truncated (a zip archive without its end). {again}"
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(name.endswith("/data.pkl") for name in names):
            return f"the file is a zip archive but not a PyTorch checkpoint (it holds {', '.join(names[:3])})."
    pickled = head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")  # a torch zip, or a legacy pickle
    if pickled and "Weights only load failed" in str(err):
        return ("the file holds Python objects besides tensors (e.g. a whole pickled model), which PyTorch loads only "
                "with weights_only=False; that can run code from the file, and this project never does it. If you "
                "trust its source, save its state_dict alone with torch.save and pass that file.")
    try:
        text = head.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = None
    if text is not None and "\0" not in text:
        start = f"it starts with {text.splitlines()[0][:60]!r}" if text else "only blank characters"
        return f"the file is text, not a checkpoint ({start}). {again}"
    return f"the file is not a PyTorch checkpoint (an unknown binary format). {again}"


def save_checkpoint(path: str | os.PathLike, state_dict: StateDict, **extra: Any) -> None:
    """Writes `{**extra, 'state_dict': state_dict}` atomically (temp file + rename), tensors on the CPU.

    A failed write (a full disk) is the OSError behind it, e.g. ENOSPC; `path` keeps its old content.
    """
    state = {k: v.detach().cpu() for k, v in state_dict.items()}
    atomic_save(path, lambda tmp: _torch_save({**extra, "state_dict": state}, tmp))


def _torch_save(obj: Any, path: str) -> None:
    # torch.save to a path reports a failed write as "RuntimeError: [enforce fail at inline_container.cc...]"
    # without its cause; through a Python file object the OSError it met is that RuntimeError's context
    with open(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as err:
            if isinstance(err.__context__, OSError):
                raise err.__context__ from None
            raise
