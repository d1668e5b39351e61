"""Parameters and FLOPs of a network: `python -m models.summary [--type NeRDRainS] [--size 256]`.

FLOPs are counted by torch.utils.flop_counter (convolutions and matrix products). The authors'
code measures 312.6 GFLOPs (NeRD-Rain) and 158.6 (NeRD-Rain-S) at 256x256; ours is lower by
three quarters of the INR branch, which the authors evaluate four times over (see models/inr.py),
and higher by the attention products that levels with 2 or 4 heads compute over all channel pairs
in one matrix product (see models/blocks.py; 11.3 G for NeRD-Rain): 293.3 and 137.5 G.
"""
import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import MODELS, build_model


def count(model_type: str = "NeRDRain", size: int = 256) -> tuple[int, int]:
    """(parameters, FLOPs of one forward pass on 1x3xSIZExSIZE)."""
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = build_model({"type": model_type}).eval()
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(torch.empty(1, 3, size, size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--type", default="NeRDRain", choices=sorted(MODELS))
    parser.add_argument("--size", type=int, default=256, help="square input side, a multiple of 16")
    args = parser.parse_args()
    if args.size <= 0 or args.size % 16:
        parser.error("--size must be a positive multiple of 16")
    params, flops = count(args.type, args.size)
    print(f"{args.type} at 1x3x{args.size}x{args.size}")
    print(f"  parameters: {params:,}")
    print(f"  FLOPs:      {flops / 1e9:.1f} G ({flops / 2e9:.1f} GMACs)")


if __name__ == "__main__":
    main()
