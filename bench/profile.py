"""Where one NeRD-Rain step spends its time: `python -m bench.profile --what infer|train
--device cpu|cuda [--amp] [--channels_last] [--compile] [--cuda_graph] [--tf32] [--type NeRDRainS]
[--size 256] [--batch 1] [--top 25]`.

Prints the median wall time of a step, the device time its kernels add up to (on a GPU the gap
between the two is launch overhead and host work), the time its convolutions took, and the
torch.profiler table of the ops and kernels that took the most self time.
"""
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench.speed import (build, chosen_options, make_row, make_step, parse_step_args, step_inputs, step_parser,
                         sync)
from utils.device import resolve_device, reuse_freed_cpu_memory, set_tf32


def main() -> None:
    parser = step_parser(__doc__.splitlines()[0])
    parser.add_argument("--tf32", action="store_true", help="TF32 convolutions and matmuls on a GPU")
    parser.add_argument("--top", type=int, default=25, help="rows of the profiler table")
    args = parse_step_args(parser)
    device = resolve_device(args.device)
    set_tf32(args.tf32)
    reuse_freed_cpu_memory(device)  # as test.py and train.py run
    chosen = chosen_options(args)
    row = make_row(" + ".join(chosen) or "exact (default)", build(args, device))
    step = make_step(row, args.what, *step_inputs(args, device), device)

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
    flags = " ".join(f"--{f}" for f in [*chosen, *(["tf32"] if args.tf32 else [])])
    print(f"== {args.what} {args.type} batch {args.batch} {args.size}x{args.size} {device} {flags}".rstrip())
    print(f"warm-up {warmup_s:.1f} s; median step {statistics.median(times) * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}) over {args.repeats}")
    if device.type == "cuda":
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        total_us = sum(e.device_time for e in kernels)
        print(f"kernels: {len(kernels)}, their device time {total_us / 1000:.1f} ms "
              f"in the profiled step; peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")
    else:
        total_us = events.self_cpu_time_total
    # The floor that no change outside the convolutions can go below.
    conv_us = sum(e.device_time_total if device.type == "cuda" else e.cpu_time_total
                  for e in events if e.key in ("aten::convolution", "aten::convolution_backward"))
    print(f"convolutions, forward and backward: {conv_us / 1000:.1f} ms, {conv_us / total_us:.0%} of the profiled "
          f"step's {total_us / 1000:.1f} ms of {'kernel' if device.type == 'cuda' else 'CPU'} time")
    print(events.table(sort_by=sort_by, row_limit=args.top, max_name_column_width=70))


if __name__ == "__main__":
    main()
