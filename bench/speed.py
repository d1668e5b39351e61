"""Speed of NeRD-Rain paths side by side: `python -m bench.speed --what infer|train --device cpu|cuda
[--amp] [--compile] [--channels_last] [--cuda_graph] [--type NeRDRainS] [--size 256] [--batch 1]
[--weights FILE] [--onnx FILE]`.

Rows: the authors' way of computing (bench/baseline.py), our exact default path, each fast
option given, all of them together, and with --onnx, ONNX Runtime on the same network exported to FILE
(by this run, before any row is timed: windows of --size, CPU inference only). Steps are interleaved
across rows after a warm-up, and each row reports the median time, throughput, peak memory and the max
abs difference of its output 0 from the exact path's (same weights, same input).

The authors-style row runs in a process of its own with the C library's default allocator, as the
authors' scripts do. Our rows run in this process; on the CPU it keeps freed memory for reuse, as
test.py and train.py do (`utils.device.reuse_freed_cpu_memory`).

Peak memory: on the CPU, the growth of the resident set during one step in a fresh process; on a
GPU, the most CUDA memory a row's warm-up steps allocated above what was allocated before them
(so it includes the optimizer state, workspaces and CUDA graph pools that the first step creates).
"""
import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.baseline import authors_baseline
from losses import MultiScaleLoss
from models import build_model
from inference.export_onnx import export_onnx
from inference.network import prepare_for_inference
from inference.onnx_runtime import OnnxNetwork
from models.weights import model_from_checkpoint
from training.cuda_graph import CudaGraphed
from utils.device import autocast, prepare_model, resolve_device, reuse_freed_cpu_memory, set_tf32

AUTHORS = "authors-style"
ONNX_RUNTIME = "onnxruntime"
FAST_OPTIONS = ("channels_last", "amp", "compile", "cuda_graph")


@dataclass
class Row:
    name: str
    model: nn.Module
    amp: bool = False
    channels_last: bool = False
    cuda_graph: bool = False


def chosen_options(args: argparse.Namespace) -> list[str]:
    """The fast options given on the command line, in FAST_OPTIONS order."""
    return [flag for flag in FAST_OPTIONS if getattr(args, flag)]


def row_names(args: argparse.Namespace) -> list[str]:
    """The authors-style baseline, the exact path, each chosen fast option, and all together."""
    chosen = chosen_options(args)
    combos = [[flag] for flag in chosen if not args.combined_only] + ([chosen] if len(chosen) > 1 else [])
    names = [AUTHORS, "exact (default)", *(" + ".join(combo) for combo in combos)]
    return names + [ONNX_RUNTIME] if args.onnx else names


def make_row(name: str, model: nn.Module, onnx: str | None = None) -> Row:
    """The row `name` on a copy of `model` (the exact row uses `model` itself; the ONNX Runtime row, the
    export of `model` in the file `onnx`)."""
    if name == AUTHORS:
        return Row(name, authors_baseline(model))
    if name == ONNX_RUNTIME:
        return Row(name, OnnxNetwork(onnx))
    if name == "exact (default)":
        return Row(name, model)
    combo = name.split(" + ")
    net = copy.deepcopy(model)
    if "channels_last" in combo:
        net = net.to(memory_format=torch.channels_last)
    if "compile" in combo:
        net = torch.compile(net)
    return Row(name, net, amp="amp" in combo, channels_last="channels_last" in combo,
               cuda_graph="cuda_graph" in combo)


def make_step(row: Row, what: str, x: torch.Tensor, target: torch.Tensor, device: torch.device) -> Callable[[], None]:
    """One inference forward, or one training iteration (forward, loss, backward, Adam step)."""
    x = x.to(memory_format=torch.channels_last) if row.channels_last else x
    if what == "infer":
        row.model.eval()

        def step() -> None:
            with torch.no_grad(), autocast(device, row.amp):
                row.model(x)
        return step

    row.model.train()
    loss_fn = MultiScaleLoss().to(device)
    optimizer = torch.optim.Adam(row.model.parameters(), lr=1e-4)
    forward = CudaGraphed(row.model) if row.cuda_graph else row.model  # as train.py runs it

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, row.amp):
            outputs = forward(x)
        loss_fn(type(outputs)(*(o.float() for o in outputs)), target)[0].backward()
        optimizer.step()
    return step


class RemoteRow:
    """A row served by a child process (`--_serve ROW`): step() and output0() over a pipe."""

    def __init__(self, name: str):
        self.name = name
        cmd = [sys.executable, "-m", "bench.speed", *sys.argv[1:], "--_serve", name]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, request: str) -> str:
        self.proc.stdin.write(request + "\n")
        self.proc.stdin.flush()
        status, _, answer = self.proc.stdout.readline().strip().partition(" ")
        if status != "ok":
            raise RuntimeError(f"the {self.name} process failed on {request!r} (its error is above)")
        return answer

    def step(self) -> None:
        self.ask("step")

    def output0(self) -> torch.Tensor:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "out.pt"
            self.ask(f"output {path}")
            return torch.load(path)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve(row: Row, step: Callable[[], None], x: torch.Tensor, device: torch.device) -> None:
    """The child side of RemoteRow: answers 'step', 'peak' (CUDA memory the steps took) and
    'output PATH' lines until EOF."""
    allocated_before_steps = None
    for line in sys.stdin:
        request, _, arg = line.strip().partition(" ")
        answer = ""
        if request == "step":
            if allocated_before_steps is None:
                allocated_before_steps = start_peak(device)
            step()
            sync(device)
        elif request == "peak":
            answer = f" {(torch.cuda.max_memory_allocated() - allocated_before_steps) / 2**20}"
        else:
            torch.save(output0(row, x, device).cpu(), arg)
        print("ok" + answer, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def output0(row: Row, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = x.to(memory_format=torch.channels_last) if row.channels_last else x
    was_training = row.model.training
    row.model.eval()
    with torch.no_grad(), autocast(device, row.amp):
        out = row.model(x).restored.float()
    row.model.train(was_training)
    return out


def start_peak(device: torch.device) -> int:
    """Resets CUDA's peak-memory count; returns the bytes allocated now (0 on the CPU)."""
    if device.type != "cuda":
        return 0
    sync(device)
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def cpu_peak_mb(name: str) -> float:
    """The RSS high-water mark of one step of row `name` in a fresh process (allocator caches would
    hide it in a warm one)."""
    cmd = [sys.executable, "-m", "bench.speed", *sys.argv[1:], "--_peak_of", name]
    return float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[-1])


def proc_status_kb(field: str) -> int:
    """A memory figure (kB) of this process from /proc/self/status."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def build(args: argparse.Namespace, device: torch.device) -> nn.Module:
    if args.weights:
        model = model_from_checkpoint(args.weights)
    else:
        torch.manual_seed(0)
        model = build_model({"type": args.type})
    if args.what == "infer":  # as test.py runs it
        return prepare_for_inference(model, device)
    return prepare_model(model, device)  # as train.py runs it (channels_last on the CPU)


def step_parser(description: str) -> argparse.ArgumentParser:
    """The options of a timed step: network, input, fast options, warm-up and repeats (bench.profile too)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--what", choices=["infer", "train"], default="infer")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--type", default="NeRDRain", help="network type when no --weights")
    parser.add_argument("--weights", help="a checkpoint (authors' or ours, or tests/fixtures/golden/parity.pt)")
    parser.add_argument("--size", type=int, default=256, help="square input side, a multiple of 16")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--compile", action="store_true", help="torch.compile")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--cuda_graph", action="store_true", help="training forward+backward as CUDA graphs")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    return parser


def parse_step_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parses and checks the options of step_parser()."""
    args = parser.parse_args()
    if args.size % 16:
        parser.error("--size must be a multiple of 16")
    if args.cuda_graph and (args.what != "train" or resolve_device(args.device).type != "cuda"):
        parser.error("--cuda_graph times training steps on a CUDA device (--what train --device cuda)")
    return args


def step_inputs(args: argparse.Namespace, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random input (seed 0) for every row and process, and a training target from it."""
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    return x, (x * 0.8).clamp(0, 1)


def main() -> None:
    parser = step_parser(__doc__.splitlines()[0])
    parser.add_argument("--combined_only", action="store_true",
                        help="time the chosen options together only, not each alone (fewer compiles)")
    parser.add_argument("--onnx", help="also time ONNX Runtime: export the network to this file (replaced) first")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--_peak_of", help=argparse.SUPPRESS)
    parser.add_argument("--_serve", help=argparse.SUPPRESS)
    args = parse_step_args(parser)
    args.warmup = max(args.warmup, 1)  # the warm-up also measures the CUDA peak
    device = resolve_device(args.device)
    if args.onnx and (args.what != "infer" or device.type != "cpu"):
        parser.error("--onnx times CPU inference (--what infer --device cpu)")
    if args.what == "infer":
        set_tf32(False)  # as test.py runs the exact path (train.py keeps PyTorch's TF32 convolutions)
    x, target = step_inputs(args, device)
    if AUTHORS not in (args._serve, args._peak_of):
        reuse_freed_cpu_memory(device)
    model = build(args, device)
    if args._peak_of:  # child process of cpu_peak_mb: one step, then the RSS growth
        row = make_row(args._peak_of, model, args.onnx)
        step = make_step(row, args.what, x, target, device)
        # Linux: writing 5 to clear_refs resets VmHWM (ru_maxrss would keep the parent's, from fork).
        Path("/proc/self/clear_refs").write_text("5")
        before = proc_status_kb("VmRSS")
        step()
        print((proc_status_kb("VmHWM") - before) / 1024)
        return
    if args._serve:
        row = make_row(args._serve, model)
        serve(row, make_step(row, args.what, x, target, device), x, device)
        return

    if args.onnx:
        start = time.perf_counter()
        diff = export_onnx(model, args.onnx, args.size)
        print(f"exported to {args.onnx} in {time.perf_counter() - start:.0f} s (ONNX Runtime within {diff:.2e} "
              "of PyTorch on a batch of 2)")
    names = row_names(args)
    rows = [make_row(name, model, args.onnx) for name in names if name != AUTHORS]
    remote = RemoteRow(AUTHORS)
    reference = output0(rows[0], x, device)
    diffs = {AUTHORS: (remote.output0().to(device) - reference).abs().max().item()}
    diffs.update({row.name: (output0(row, x, device) - reference).abs().max().item() for row in rows})
    steps = {AUTHORS: remote.step, **{row.name: make_step(row, args.what, x, target, device) for row in rows}}
    peaks = {}
    for name, step in steps.items():
        allocated_before = start_peak(device)
        for _ in range(args.warmup):
            step()
        sync(device)
        if device.type == "cuda":
            peaks[name] = (float(remote.ask("peak")) if name == AUTHORS
                           else (torch.cuda.max_memory_allocated() - allocated_before) / 2**20)
        else:
            peaks[name] = cpu_peak_mb(name)
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):  # interleaved, so drifts in clock or load hit every row alike
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            step()
            sync(device)
            times[name].append(time.perf_counter() - start)
    remote.close()

    unit = "window" if args.what == "infer" else "iteration"
    exact = statistics.median(times["exact (default)"])
    print(f"{args.what}, {args.type if not args.weights else args.weights}, batch {args.batch}, "
          f"{args.size}x{args.size}, {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}), "
          f"torch {torch.__version__}, median of {args.repeats} after {args.warmup} warm-up")
    print(f"| path | ms per {unit} | {unit}s/s | vs exact | peak MB | max abs diff |")
    print("|---|---|---|---|---|---|")
    results = []
    for name in names:
        t = statistics.median(times[name])
        per = t * 1000 / (args.batch if args.what == "infer" else 1)
        results.append({"path": name, "ms": per, "per_s": 1000 / per, "speedup": exact / t,
                        "peak_mb": peaks[name], "max_abs_diff": diffs[name]})
        print(f"| {name} | {per:.1f} | {1000 / per:.2f} | {exact / t:.2f}x | {peaks[name]:.0f} | {diffs[name]:.2e} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "torch": torch.__version__, "rows": results}, f,
                      indent=1)


if __name__ == "__main__":
    main()
