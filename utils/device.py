"""Choosing the compute device and the fast paths (bf16 autocast, channels_last, compile)."""
import contextlib
import ctypes
import ctypes.util
import resource
import sys

import torch
from torch import nn


def device_name(device: torch.device) -> str:
    """'cuda:0 (<GPU name>)' or 'cpu (<n> threads)'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU; use --device cpu or auto")
    return device


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on `device` when enabled (the --amp option), else a no-op.

    Without the cache of cast weights, which CUDA graph capture cannot use; a network that uses each
    weight once per forward pass casts it once anyway.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled, cache_enabled=False)


def slow_amp_note(device: torch.device, amp: bool) -> str | None:
    """A note for --amp on a CPU without native bf16 convolutions, where it is far slower, else None."""
    # No public API says whether oneDNN has bf16 kernels on this CPU; without them convolutions fall
    # back to a slow path, an order of magnitude slower than fp32 (bench/RESULTS.md).
    if amp and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return ("note: this CPU has no native bf16 convolutions, so --amp makes the network 10x to 20x slower "
                "here; it is meant for GPUs")
    return None


def set_tf32(enabled: bool) -> None:
    """Lets CUDA convolutions and matmuls use TF32 (PyTorch's default: convolutions only) or not.

    TF32 convolutions land ~1e-4 off fp32 and the golden outputs, so test.py's exact path turns it off.
    """
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


def reuse_freed_cpu_memory(device: torch.device) -> bool:
    """When `device` is the CPU, makes glibc keep freed memory in the process for reuse; returns whether
    it took (Linux only; off the CPU it does nothing).

    glibc gives every block above 32 MiB back to the OS on free, so each large activation (at 256x256,
    most of them) is page-faulted and zeroed anew. PyTorch has no CPU caching allocator to turn on
    (preloading jemalloc or tcmalloc would do the same), so mallopt stops glibc from mmap-ing large
    blocks and from trimming the heap. Outputs are unchanged. The process keeps its peak memory until
    it exits; at inference that peak is a little above the default's (glibc's aligned allocations
    fragment the heap). Gains and peaks are in bench/RESULTS.md.
    """
    if device.type != "cpu" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
        return libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 2**31 - 1) == 1
    except (OSError, AttributeError):  # not glibc
        return False


def peak_memory_mib(device: torch.device) -> float:
    """The most memory this process has held so far, in MiB: on a GPU what tensors took of it
    (torch.cuda.max_memory_allocated), else the resident set's high-water mark (ru_maxrss, as VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)  # B, kB


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool = False,
                  compile: bool = False) -> nn.Module:
    """Moves the model to `device`, in channels_last memory format when asked for or on the CPU, and
    optionally torch.compile's it.

    On the CPU, channels_last is always used: oneDNN's convolutions and the LayerNorm then need no
    layout conversions, which is faster at the same numbers (within 1e-6).
    """
    channels_last = channels_last or device.type == "cpu"
    model = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    return torch.compile(model) if compile else model
