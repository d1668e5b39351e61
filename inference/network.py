"""A network loaded for deraining, whatever the weights are: a checkpoint (the authors' or ours), a
released name such as NeRD-Rain/Rain200H (downloaded once, models/pretrained.py) or an exported ONNX
model; on the device asked for, set up as test.py, evaluations.reproduce and the web app all run it."""
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.pretrained import names as released_names, resolve_weights
from models.weights import describe, model_from_checkpoint, network_options
from utils.device import prepare_model, resolve_device, reuse_freed_cpu_memory, set_tf32, slow_amp_note

from .onnx_runtime import DeployPackagesMissing, is_onnx, open_onnx
from .tiling import check_window

WINDOW = 256  # the authors' test-time window (test.py --win_size)
BATCH_WINDOWS = 8  # windows per network call (test.py --batch_windows): bounds memory, same numbers on the CPU


class NetworkError(ValueError):
    """Weights, options or a device that cannot be used for deraining; the message says why and the fix."""


@dataclass(frozen=True)
class DerainingNetwork:
    """A network ready to derain with: `network(windows)` returns its outputs, `restored` among them.

    `window` is the window size to tile images with, `description` names the network (and the runtime),
    `notes` are lines worth showing the user (e.g. that --amp is slow on this CPU).
    """

    network: nn.Module
    device: torch.device
    window: int
    description: str
    weights: Path
    notes: tuple[str, ...] = ()


def prepare_for_inference(model: nn.Module, device: torch.device, channels_last: bool = False,
                          compile: bool = False) -> nn.Module:
    """The network in eval mode on `device` (utils.device.prepare_model). On the CPU it is made batch
    invariant, so that tiled results do not depend on how many windows go through it at once."""
    if device.type == "cpu":
        model.set_batch_invariant(True)
    return prepare_model(model.eval(), device, channels_last, compile)


def deraining_device(name: str | torch.device = "auto", amp: bool = False) -> torch.device:
    """The device for deraining ('auto': cuda when available). Without --amp, TF32 is turned off on CUDA
    (fp32 results, as the golden outputs); on the CPU, freed memory is kept for reuse
    (utils.device.reuse_freed_cpu_memory). NetworkError for a device that is not there."""
    try:
        device = resolve_device(name)
    except (ValueError, RuntimeError) as err:
        raise NetworkError(str(err)) from None
    if device.type == "cuda" and not amp:
        set_tf32(False)
    reuse_freed_cpu_memory(device)
    return device


def load_network(weights: str | os.PathLike, device: str | torch.device = "auto", *, amp: bool = False,
                 channels_last: bool = False, compile: bool = False, options: Mapping[str, Any] | None = None,
                 window: int | None = None, gpus: str | None = None) -> DerainingNetwork:
    """Loads `weights` for deraining on `device` (deraining_device); NetworkError, with the fix, if it cannot.

    A .pth file's network is inferred from its weights unless `options` (a `network` options section)
    says which; `amp`, `channels_last` and `compile` are test.py's speed options. A .onnx file runs in
    ONNX Runtime with the window it was exported for, on its CUDA provider only when `device` is 'cuda'.
    `window` (None: the default, or an ONNX model's) must be a multiple of 16. `gpus` sets
    CUDA_VISIBLE_DEVICES before CUDA starts.
    """
    notes = []
    if gpus is not None:
        if torch.cuda.is_initialized():
            notes.append("note: CUDA was already initialised, --gpus has no effect")
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    if window is not None:
        try:
            check_window(window)
        except ValueError as err:
            raise NetworkError(f"--win_size: {err}") from None
    if is_onnx(weights):
        pytorch_only = [flag for flag, given in (("--opt", options is not None), ("--amp", amp),
                                                 ("--channels_last", channels_last), ("--compile", compile)) if given]
        cuda = str(device) == "cuda"
        try:
            network = open_onnx(weights, window, cuda, tuple(pytorch_only))
        except (ValueError, FileNotFoundError, DeployPackagesMissing) as err:
            raise NetworkError(str(err)) from None
        return DerainingNetwork(network, torch.device("cuda" if cuda else "cpu"), network.window,
                                f"{describe(network.options)} in ONNX Runtime", Path(weights), tuple(notes))
    device = deraining_device(device, amp)
    if note := slow_amp_note(device, amp):
        notes.append(note)
    try:
        path = resolve_weights(weights)
        model = model_from_checkpoint(path, dict(options) if options is not None else None)
    except FileNotFoundError as err:
        raise NetworkError(f"{err}; pass --weights path/to/model_best.pth, or a released name "
                           f"(downloaded once): {', '.join(released_names())}") from None
    except ValueError as err:  # also a released name whose download failed (pretrained.DownloadError)
        raise NetworkError(str(err)) from None
    description = describe(network_options(model))
    return DerainingNetwork(prepare_for_inference(model, device, channels_last, compile), device,
                            WINDOW if window is None else window, description, path, tuple(notes))

