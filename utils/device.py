"""Choosing the compute device and the opt-in fast paths (bf16 autocast, channels_last, compile)."""
import contextlib

import torch
from torch import nn


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when enabled (the --amp option), else a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool = False,
                  compile: bool = False) -> nn.Module:
    """Moves the model to `device`, optionally in channels_last memory format and torch.compile'd."""
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return torch.compile(model) if compile else model
