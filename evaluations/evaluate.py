"""PSNR/SSIM of a folder of results against a folder of targets.

python -m evaluations.evaluate --result_dir R --target_dir T --protocol {A,B,<dataset>} [--json PATH] [--pair_by_order]
"""
import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Collection
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluations.metrics import psnr_ssim, resolve_protocol
# aliased: evaluate_folders' pair_by_order parameter shadows the name
from utils.image_io import atomic_save, pair_by_order as _pair_by_order, pair_by_stem, read_rgb8, require_images

log = logging.getLogger(__name__)


def evaluate_folders(result_dir: str | Path, target_dir: str | Path, protocol: str,
                     pair_by_order: bool = False, progress: bool = False,
                     only: Collection[str] | None = None) -> dict:
    """Per-image and mean PSNR/SSIM: {"images": [{"name", "psnr", "ssim"}], "mean": {"psnr", "ssim"}, "protocol"}.

    Images are paired by file stem, or by sorted order with pair_by_order; `only` restricts both
    folders to these stems (e.g. the images of one test.py run); progress shows a tqdm bar.
    Conversions to 8-bit RGB (16-bit, grayscale, alpha) are logged once per kind.
    """
    protocol = resolve_protocol(protocol)
    results, targets = require_images(result_dir), require_images(target_dir)
    if only is not None:
        results, targets = ([p for p in files if p.stem in only] for files in (results, targets))
    if pair_by_order:
        pairs = _pair_by_order(results, targets, sides=("result_dir", "target_dir"))
    else:
        try:
            pairs = pair_by_stem(results, targets, sides=("result_dir", "target_dir"))
        except ValueError as err:
            raise ValueError(f"{err} (to pair files by sorted order instead: --pair_by_order)") from None
    images, conversions, examples = [], Counter(), {}
    for res_path, tar_path in tqdm(pairs, desc="evaluating", unit="img", disable=not progress):
        (res, res_note), (tar, tar_note) = read_rgb8(res_path), read_rgb8(tar_path)
        for path, note in ((res_path, res_note), (tar_path, tar_note)):
            if note:
                conversions[note] += 1
                examples.setdefault(note, path)
        if res.shape != tar.shape:
            raise ValueError(f"size mismatch: {res_path} is {res.shape[1]}x{res.shape[0]}, "
                             f"{tar_path} is {tar.shape[1]}x{tar.shape[0]}")
        psnr, ssim = psnr_ssim(res, tar, protocol)
        images.append({"name": res_path.name, "psnr": psnr, "ssim": ssim})
    for note, count in conversions.items():
        log.warning("%d image(s) were %s and were converted to 8-bit RGB (e.g. %s)", count, note, examples[note])
    mean = {key: float(np.mean([im[key] for im in images])) for key in ("psnr", "ssim")}
    return {"images": images, "mean": mean, "protocol": protocol}


def format_table(report: dict) -> str:
    """The report as an aligned text table, one row per image and a final mean row."""
    rows = [(im["name"], im["psnr"], im["ssim"]) for im in report["images"]]
    rows.append((f"mean ({len(rows)} images)", report["mean"]["psnr"], report["mean"]["ssim"]))
    width = max(len("image"), *(len(name) for name, _, _ in rows))
    lines = [f"{'image':<{width}}  {'PSNR':>8}  {'SSIM':>6}   (protocol {report['protocol']})"]
    lines += [f"{name:<{width}}  {psnr:8.4f}  {ssim:6.4f}" for name, psnr, ssim in rows]
    lines.insert(-1, "-" * len(lines[-1]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (2 on bad input)."""
    parser = argparse.ArgumentParser(prog="python -m evaluations.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--result_dir", required=True, type=Path, help="folder of restored images")
    parser.add_argument("--target_dir", required=True, type=Path, help="folder of ground-truth images")
    parser.add_argument("--protocol", required=True,
                        help="A, B, or a dataset name (Rain200L/H, Rain100L/H, SPA-Data: A; DID-Data, DDN-Data: B)")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    parser.add_argument("--pair_by_order", action="store_true",
                        help="pair the sorted listings by position instead of by file stem")
    args = parser.parse_args(argv)
    if args.json and (args.json.is_dir() or not args.json.parent.is_dir()):
        parser.error(f"--json {args.json}: not a file path in an existing folder")
    try:
        report = evaluate_folders(args.result_dir, args.target_dir, args.protocol,
                                  pair_by_order=args.pair_by_order, progress=True)
        if args.json:
            text = json.dumps(report, indent=1)
            atomic_save(args.json, lambda tmp: Path(tmp).write_text(text))
    except (ValueError, OSError) as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
