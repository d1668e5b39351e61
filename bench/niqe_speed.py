"""NIQE throughput on real images: `python -m bench.niqe_speed --folder DIR [--count 100] [--repeats 3]`.

DIR: e.g. the Rain100H test inputs (481x321; bench/RESULTS.md used those). Two rows, each the
median of the repeats after a warm-up image: `niqe` on decoded images (the metric alone), and
`evaluate_niqe` on the folder (reading the PNGs too, as `python -m evaluations.evaluate --metric niqe` does).
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from evaluations.evaluate import evaluate_niqe
from evaluations.niqe import niqe
from utils.image_io import read_rgb8, require_images

def main() -> None:
    """Prints images/s of both rows."""
    parser = argparse.ArgumentParser(prog="python -m bench.niqe_speed", description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="a folder of images, e.g. Rain100H/input")
    parser.add_argument("--count", type=int, default=100, help="first N images of the folder")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    paths = require_images(args.folder)[:args.count]
    images = [read_rgb8(p)[0] for p in paths]
    niqe(images[0])  # warm-up: loads the model
    sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images})
    print(f"{len(images)} images ({', '.join(sizes)}) from {args.folder}, {os.cpu_count()} CPU(s)")
    with tempfile.TemporaryDirectory() as tmp:
        # evaluate_niqe reads a whole folder: link the first N files into one
        for p in paths:
            (Path(tmp) / p.name).symlink_to(p.resolve())
        rows = {"niqe (decoded images)": lambda: [niqe(im) for im in images],
                "evaluate_niqe (with PNG decoding)": lambda: evaluate_niqe(tmp)}
        for name, run in rows.items():
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                run()
                seconds.append(time.perf_counter() - start)
            rates = ", ".join(f"{len(images) / s:.1f}" for s in seconds)
            print(f"{name}: {len(images) / statistics.median(seconds):.1f} images/s (median; runs: {rates})")


if __name__ == "__main__":
    main()
