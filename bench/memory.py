"""Peak memory and time of a training iteration with and without activation checkpointing
(train.checkpoint_activations): `python -m bench.memory [--types NeRDRain NeRDRainS] [--sizes 256]
[--batches 1] [--device cpu|cuda] [--repeats 3] [--json FILE]`.

Each row (network, input side, batch, checkpointing) runs in a fresh process as train.py runs it: the
network built with seed 0 (on the CPU in channels_last, freed memory kept for reuse), the multi-scale
loss, backward and an Adam step on bench.speed's random input; one warm-up iteration, then the median of
`--repeats` timed ones.

Peak memory, in MiB: on the CPU the process's resident-set high-water mark (VmHWM) over its iterations,
and what training added to the resident set it had before the first one (the network's weights were
loaded then; gradients, Adam's moments and the activations saved for the backward pass came after); on a
GPU torch.cuda.max_memory_allocated, in all and above what was allocated before the first iteration.
"""
import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time

import torch

from bench.speed import Row, make_step, proc_status_kb, start_peak, step_inputs, sync
from models import build_model
from utils.device import prepare_model, resolve_device, reuse_freed_cpu_memory

COLUMNS = ("type", "size", "batch", "checkpointed")


def measure(args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    """One row, in this process: ms per iteration, peak MiB in all and added by training."""
    reuse_freed_cpu_memory(device)  # as train.py does on the CPU
    torch.manual_seed(0)
    model = prepare_model(build_model({"type": args.type}), device).set_checkpoint_activations(args.checkpointed)
    x, target = step_inputs(argparse.Namespace(batch=args.batch, size=args.size), device)
    step = make_step(Row(args.type, model), "train", x, target, device)
    before = start_peak(device) if device.type == "cuda" else proc_status_kb("VmRSS") * 1024
    times = []
    for i in range(1 + args.repeats):  # the first is the warm-up
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else proc_status_kb("VmHWM") * 1024
    return {"ms": statistics.median(times[1:]) * 1000, "peak_mib": peak / 2**20, "added_mib": (peak - before) / 2**20}


def run_row(args: argparse.Namespace, row: dict[str, object]) -> dict[str, float]:
    """measure() of `row` in a fresh process (allocator caches and an earlier row's peak would blur it)."""
    cmd = [sys.executable, "-m", "bench.memory", "--device", args.device, "--repeats", str(args.repeats),
           "--_row", json.dumps(row)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--types", nargs="+", default=["NeRDRain", "NeRDRainS"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[256], help="square input sides, multiples of 16")
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations after one warm-up")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--_row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if any(size % 16 for size in args.sizes):
        parser.error("--sizes must be multiples of 16")
    device = resolve_device(args.device)
    if args._row:
        print(json.dumps(measure(argparse.Namespace(**json.loads(args._row), repeats=args.repeats), device)))
        return

    where = torch.cuda.get_device_name() if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"train iteration, {device} ({where}), torch {torch.__version__}, median of {args.repeats} after 1 warm-up")
    print("| network | input | batch | checkpointing | ms per iteration | time vs plain | peak MiB | added by "
          "training MiB | added vs plain |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for kind, size, batch in itertools.product(args.types, args.sizes, args.batches):
        plain = None
        for checkpointed in (False, True):
            row = dict(zip(COLUMNS, (kind, size, batch, checkpointed)))
            result = {**row, **run_row(args, row)}
            plain = plain or result
            rows.append(result)
            print(f"| {kind} | {size}x{size} | {batch} | {'on' if checkpointed else 'off'} | {result['ms']:.0f} | "
                  f"{result['ms'] / plain['ms']:.2f}x | {result['peak_mib']:.0f} | {result['added_mib']:.0f} | "
                  f"{result['added_mib'] / plain['added_mib']:.2f}x |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
