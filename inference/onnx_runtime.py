"""A NeRD-Rain network exported to ONNX (inference/export_onnx.py), run by ONNX Runtime and called like
the PyTorch network on batches of windows, so that the tiling serves it unchanged.

onnx, onnxscript and onnxruntime are optional (requirements-deploy.txt): they are imported here and in
inference/export_onnx.py only, when first needed.
"""
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from models.nerd_rain import NeRDRainOutputs

ONNX_SUFFIX = ".onnx"
INSTALL = "pip install -r requirements-deploy.txt"
# metadata_props keys written by the export and read back here
META_WINDOW, META_NETWORK, META_SOURCE, META_OUTPUTS = "win_size", "network", "source_checkpoint", "outputs"


class DeployPackagesMissing(ImportError):
    """onnx, onnxscript or onnxruntime is not installed."""


def require(*names: str) -> None:
    """DeployPackagesMissing naming the missing package and the install command, unless all import."""
    for name in names:
        try:
            __import__(name)
        except ImportError:
            raise DeployPackagesMissing(f"{name} is not installed: ONNX export and ONNX Runtime inference need "
                                        f"onnx, onnxscript and onnxruntime; {INSTALL}") from None


def is_onnx(path: str | os.PathLike) -> bool:
    """Whether a --weights path names an ONNX model (by its suffix)."""
    return Path(path).suffix.lower() == ONNX_SUFFIX


def session_options(threads: int | None = None) -> Any:
    """ONNX Runtime's options for NeRD-Rain: all graph optimisations, operators in sequence, `threads`
    intra-op threads (None: torch's count, as the PyTorch path uses), and no memory pattern: planning
    each batch size's buffers up front doubled the peak memory at the same speed (bench/RESULTS.md)."""
    require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.enable_mem_pattern = False
    return options


class Restored(NamedTuple):
    """What a model exported with `--outputs final` returns: the restored image alone."""

    restored: torch.Tensor


class OnnxNetwork(nn.Module):
    """An exported network in an ONNX Runtime session, used like `NeRDRain`: `network(batch)` takes
    (B, 3, w, w) windows on the CPU and returns the exported outputs as CPU tensors: NeRDRainOutputs, or
    Restored for a 'final' export. It has no parameters; `device` says where its inputs go
    (inference.tiling.model_device).

    `window` (w), `options` (the network's build options), `source` (the checkpoint it came from) and
    `outputs` ('final' or 'all') come from the model's metadata. `cuda`: run on ONNX Runtime's CUDA
    provider (onnxruntime-gpu); inputs and outputs stay in host memory either way.
    """

    device = torch.device("cpu")  # where the tiling puts the windows it passes in

    def __init__(self, path: str | os.PathLike, cuda: bool = False, threads: int | None = None):
        super().__init__()
        require("onnxruntime")
        import onnxruntime as ort

        if not Path(path).is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        providers = ["CPUExecutionProvider"]
        if cuda:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError(f"this onnxruntime has no CUDA provider (it has {ort.get_available_providers()}); "
                                 "install onnxruntime-gpu, or use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types, all unrelated to OSError
            raise ValueError(f"{path} is not an ONNX model ONNX Runtime can load: {err}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_WINDOW not in meta or META_NETWORK not in meta:
            raise ValueError(f"{path} has no NeRD-Rain metadata ({META_WINDOW}, {META_NETWORK}); "
                             "export it with python -m models.export_onnx")
        self.window = int(meta[META_WINDOW])
        self.options: dict[str, Any] = json.loads(meta[META_NETWORK])
        self.source, self.outputs = meta.get(META_SOURCE, ""), meta.get(META_OUTPUTS, "final")
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, batch: torch.Tensor) -> NeRDRainOutputs | Restored:
        feed = {self.input_name: np.ascontiguousarray(batch.detach().cpu().float().numpy())}
        outputs = [torch.from_numpy(out) for out in self.session.run(None, feed)]
        return (NeRDRainOutputs if self.outputs == "all" else Restored)(*outputs)


def open_onnx(path: str | os.PathLike, window: int | None = None, cuda: bool = False,
              pytorch_options: tuple[str, ...] = ()) -> OnnxNetwork:
    """The exported network at `path`, for deraining with windows of `window` (None: the exported one).

    ValueError (with the fix) for options that only apply to PyTorch checkpoints (`pytorch_options`, the
    flags given), a window other than the exported one, or a file that is not an exported NeRD-Rain;
    FileNotFoundError, DeployPackagesMissing.
    """
    if pytorch_options:
        verb, them = ("applies", "it") if len(pytorch_options) == 1 else ("apply", "them")
        raise ValueError(f"{', '.join(pytorch_options)} {verb} to PyTorch checkpoints, not to the ONNX model {path} "
                         f"(ONNX Runtime runs it in fp32 as exported); leave {them} out")
    network = OnnxNetwork(path, cuda)
    if window is not None and window != network.window:
        raise ValueError(f"--win_size {window} does not match {path}, exported for windows of {network.window}; "
                         f"leave out --win_size, or export again with --win_size {window}")
    return network
