"""Where one NeRD-Rain step spends its time: `python -m bench.profile --what infer|train
--device cpu|cuda [--amp] [--channels_last] [--compile] [--tf32] [--type NeRDRainS] [--size 256]
[--batch 1] [--top 25]`.

Prints the median wall time of a step, the device time its kernels add up to (on a GPU the gap
between the two is launch overhead and host work), and the torch.profiler table of the ops and
kernels that took the most self time.
"""
import argparse
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench.speed import Row, build, make_step, sync
from utils.device import resolve_device, set_tf32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["infer", "train"], default="infer")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--type", default="NeRDRain")
    parser.add_argument("--weights", help="a checkpoint (authors' or ours, or golden/parity.pt)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile")
    parser.add_argument("--tf32", action="store_true", help="TF32 convolutions and matmuls on a GPU")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--top", type=int, default=25, help="rows of the profiler table")
    args = parser.parse_args()
    if args.size % 16:
        parser.error("--size must be a multiple of 16")
    device = resolve_device(args.device)
    set_tf32(args.tf32)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    model = build(args, device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if args.compile:
        model = torch.compile(model)
    step = make_step(Row("profiled", model, args.amp, args.channels_last), args.what, x, (x * 0.8).clamp(0, 1),
                     device)

    start = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warmup_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        sync(device)
        start = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - start)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        sync(device)
    events = prof.key_averages()
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    flags = " ".join(f"--{f}" for f in ("amp", "channels_last", "compile", "tf32") if getattr(args, f))
    print(f"== {args.what} {args.type} batch {args.batch} {args.size}x{args.size} {device} {flags}".rstrip())
    print(f"warm-up {warmup_s:.1f} s; median step {statistics.median(times) * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}) over {args.repeats}")
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        print(f"kernels: {len(kernels)}, their device time {sum(e.device_time for e in kernels) / 1000:.1f} ms "
              f"in the profiled step; peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    print(events.table(sort_by=sort_by, row_limit=args.top, max_name_column_width=70))


if __name__ == "__main__":
    main()
