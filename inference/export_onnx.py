"""Exports a NeRD-Rain checkpoint to ONNX for ONNX Runtime (test.py --weights FILE.onnx).

python -m inference.export_onnx --weights W --output nerd_rain.onnx [--win_size 256] [--outputs final|all]
                             [--overwrite]

The graph takes (B, 3, w, w) windows, B dynamic, w fixed, and returns output 0 (final) or all seven
outputs (all). Its metadata records w, the network options (JSON), the source checkpoint and the
outputs. Before the file is written, ONNX Runtime's outputs on a random batch of 2 are compared with
PyTorch's; beyond TOLERANCE nothing is written. Exit codes: 0 written, 1 the check failed, 2 bad
arguments, files or missing packages.
"""
import argparse
import copy
import json
import os
import sys
import logging
import math
import time
from pathlib import Path

import torch
from torch import nn

from models.nerd_rain import NeRDRain, NeRDRainOutputs
from models.weights import model_from_checkpoint, network_options
from utils.files import atomic_save

from .network import WINDOW
from .onnx_runtime import (META_NETWORK, META_OUTPUTS, META_SOURCE, META_WINDOW, DeployPackagesMissing, OnnxNetwork,
                           require)
from .tiling import check_window

TOLERANCE = 1e-5  # max abs difference from PyTorch: the golden outputs' (docs/architecture.md)


class ExportCheckFailed(Exception):
    """ONNX Runtime's outputs differ from PyTorch's by more than the tolerance."""


class _Outputs(nn.Module):
    """The network returning output 0 alone ('final') or all its outputs ('all'), as a tuple."""

    def __init__(self, network: NeRDRain, outputs: str):
        super().__init__()
        self.network, self.final = network, outputs == "final"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.network(x)
        return (out.restored,) if self.final else tuple(out)


def export_onnx(network: NeRDRain, output: str | os.PathLike, window: int = WINDOW, outputs: str = "final",
                source: str = "", tolerance: float = TOLERANCE) -> float:
    """Writes `network` as an ONNX model for (B, 3, window, window) inputs; returns the max abs difference
    of ONNX Runtime from PyTorch on a random batch of 2, checked before `output` is written (atomically).

    ExportCheckFailed beyond `tolerance`, with nothing written; DeployPackagesMissing without the packages.
    """
    require("onnx", "onnxscript", "onnxruntime")
    check_window(window)
    if outputs not in ("final", "all"):
        raise ValueError(f"outputs must be 'final' or 'all', got {outputs!r}")
    # A copy that runs the whole batch in one feed-forward: the per-image loop of the batch-invariant CPU
    # path would not export with a dynamic batch.
    network = copy.deepcopy(network).cpu().set_batch_invariant(False)
    wrapped = _Outputs(network, outputs).eval()
    example = torch.rand(2, 3, window, window, generator=torch.Generator().manual_seed(0))
    # onnxscript's optimiser warns, once per feed-forward, that it leaves the split of constant weights
    # unfolded (FeedForward's halves): harmless, and 100+ lines of noise.
    logging.getLogger("onnxscript.optimizer").setLevel(logging.ERROR)
    names = ["restored"] if outputs == "final" else list(NeRDRainOutputs._fields)
    with torch.no_grad():
        program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=["windows"], output_names=names,
                                    dynamic_shapes=({0: torch.export.Dim.DYNAMIC},), verbose=False)
    program.model.metadata_props.update({
        META_WINDOW: str(window), META_NETWORK: json.dumps(network_options(network)), META_SOURCE: source,
        META_OUTPUTS: outputs})
    diff = math.nan

    def save_checked(tmp: str) -> None:
        nonlocal diff
        program.save(tmp)
        batch = torch.rand(2, 3, window, window, generator=torch.Generator().manual_seed(1))
        diff = _max_difference(wrapped, OnnxNetwork(tmp), batch)
        if not diff <= tolerance:
            raise ExportCheckFailed(f"ONNX Runtime's outputs are {diff:.3g} off PyTorch's (tolerance {tolerance:g}); "
                                    f"{output} was not written")

    atomic_save(output, save_checked)
    return diff


def _max_difference(wrapped: _Outputs, session: OnnxNetwork, batch: torch.Tensor) -> float:
    with torch.no_grad():
        expected = wrapped(batch)
    got = session(batch)
    return max((e - g).abs().max().item() for e, g in zip(expected, got, strict=True))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m inference.export_onnx", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, type=Path, help="checkpoint (.pth), the authors' or ours")
    parser.add_argument("--output", required=True, type=Path, help="the ONNX file to write (e.g. nerd_rain.onnx)")
    parser.add_argument("--win_size", type=int, default=WINDOW,
                        help=f"the window the graph takes, a multiple of 16 (default {WINDOW}, test.py's)")
    parser.add_argument("--outputs", choices=("final", "all"), default="final",
                        help="output 0 only (what test.py uses; default) or all seven outputs")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    try:
        check_window(args.win_size)
    except ValueError as err:
        parser.error(f"--win_size: {err}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        if not args.output.parent.is_dir():
            raise ValueError(f"--output {args.output}: the folder {args.output.parent} does not exist")
        if args.output.exists() and not args.overwrite:
            raise ValueError(f"--output {args.output} exists; pass --overwrite to replace it")
        require("onnx", "onnxscript", "onnxruntime")
        network = model_from_checkpoint(args.weights)
    except FileNotFoundError as err:
        return _error(f"{err}; pass --weights path/to/model_best.pth", 2)
    except (ValueError, DeployPackagesMissing) as err:
        return _error(str(err), 2)
    start = time.perf_counter()
    try:
        diff = export_onnx(network, args.output, args.win_size, args.outputs, str(args.weights))
    except ExportCheckFailed as err:
        return _error(str(err), 1)
    print(f"wrote {args.output}: windows of {args.win_size}, outputs {args.outputs}, exported and checked in "
          f"{time.perf_counter() - start:.0f} s; ONNX Runtime within {diff:.2e} of PyTorch")
    return 0


def _error(message: str, code: int) -> int:
    print(f"export_onnx: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
