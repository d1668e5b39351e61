"""Parameters and FLOPs of a network: `python -m models.summary [--type NeRDRainS] [--size 256]`.

FLOPs are counted by torch.utils.flop_counter (convolutions and matrix products). They differ from
the authors' count: the INR branch is evaluated once, not four times over (models/inr.py), and levels
with 2 or 4 heads compute their attention products over all channel pairs in one matrix product
(models/blocks.py). README.md, "Known differences", gives both counts.
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
