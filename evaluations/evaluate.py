"""PSNR/SSIM of a folder of results against a folder of targets, and the no-reference NIQE.

python -m evaluations.evaluate --result_dir R --target_dir T --protocol {A,B,<dataset>} [--json PATH] [--pair_by_order]
python -m evaluations.evaluate --result_dir R --metric niqe [--json PATH]
python -m evaluations.evaluate --result_dir R --target_dir T --protocol P --metric psnr_ssim,niqe [--json PATH]

Exit codes: 0 done, 1 some images could not be scored by NIQE (too small, flat; the rest are scored),
2 bad arguments or files.
"""
import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluations.metrics import psnr_ssim, resolve_protocol
from evaluations.niqe import NiqeError, niqe
from utils.cli import positive_int
from utils.files import overlap, write_json_atomic
from utils.image_io import MAX_PIXELS, read_rgb8, require_images
from utils.pairing import PairingError, pair_files

log = logging.getLogger(__name__)

METRICS = ("psnr_ssim", "niqe")


class _Reader:
    """read_rgb8 within `max_pixels` that counts conversions to 8-bit RGB (16-bit, grayscale, alpha), to log
    once per kind."""

    def __init__(self, max_pixels: int = MAX_PIXELS) -> None:
        self.max_pixels = max_pixels
        self.conversions: Counter[str] = Counter()
        self.examples: dict[str, Path] = {}

    def __call__(self, path: Path) -> np.ndarray:
        img, note = read_rgb8(path, self.max_pixels)
        if note:
            self.conversions[note] += 1
            self.examples.setdefault(note, path)
        return img

    def log(self) -> None:
        for note, count in self.conversions.items():
            log.warning("%d image(s) were %s and were converted to 8-bit RGB (e.g. %s)",
                        count, note, self.examples[note])


def _niqe_or_none(img: np.ndarray, path: Path, failed: list[dict]) -> float | None:
    # an image NIQE cannot score is recorded in `failed` by name, so the others are still scored
    try:
        return niqe(img)
    except NiqeError as err:
        failed.append({"name": path.name, "error": str(err)})
        return None


def _mean(images: list[dict], key: str) -> float | None:
    # the mean over the images that have a score; None if none has
    values = [im[key] for im in images if im[key] is not None]
    return float(np.mean(values)) if values else None


def evaluate_folders(result_dir: str | Path, target_dir: str | Path, protocol: str, pair_by_order: bool = False,
                     progress: bool = False, with_niqe: bool = False, max_pixels: int = MAX_PIXELS) -> dict:
    """Per-image and mean PSNR/SSIM: {"images": [{"name", "psnr", "ssim"}], "mean": {"psnr", "ssim"}, "protocol"}.

    Each result is paired with the target of its file stem (the target folder may hold more: their
    count is "unused_targets"), or with pair_by_order by position in the sorted listings; progress
    shows a tqdm bar. Conversions to 8-bit RGB (16-bit, grayscale, alpha) are logged once per kind.
    with_niqe adds each result's NIQE ("niqe", None where it failed), its mean, "metric":
    "psnr_ssim,niqe", and "failed": [{"name", "error"}] if some results could not be scored. An image of more
    than `max_pixels` pixels is an ImageReadError (utils.image_io.read_rgb8), as an undecodable one is.
    PairingError names what does not pair (and --pair_by_order when the counts would allow it); ValueError
    for one folder as both (or one inside the other), whose results would be scored against themselves.
    """
    if how := overlap(result_dir, target_dir):
        raise ValueError(f"--result_dir {result_dir} {how} --target_dir {target_dir}: the results would be "
                         "scored against themselves; give the folder of clean images as --target_dir")
    results, targets = require_images(result_dir), require_images(target_dir)
    try:
        pairing = pair_files(results, targets, "order" if pair_by_order else "stem", ("result_dir", "target_dir"),
                             extra_second=True)
    except PairingError as err:
        hint = " (to pair files by sorted order instead: --pair_by_order)" if err.same_count and not pair_by_order else ""
        raise PairingError(f"{err}{hint}", err.same_count) from None
    report = evaluate_pairs(pairing.pairs, protocol, progress, with_niqe, max_pixels)
    if pairing.unused:
        report["unused_targets"] = len(pairing.unused)
    return report


def evaluate_pairs(pairs: list[tuple[Path, Path]], protocol: str, progress: bool = False,
                   with_niqe: bool = False, max_pixels: int = MAX_PIXELS) -> dict:
    """The report of evaluate_folders for given (result, target) file pairs."""
    protocol = resolve_protocol(protocol)
    images, failed, read = [], [], _Reader(max_pixels)
    for res_path, tar_path in tqdm(pairs, desc="evaluating", unit="img", disable=not progress):
        res, tar = read(res_path), read(tar_path)
        if res.shape != tar.shape:
            raise ValueError(f"size mismatch: {res_path} is {res.shape[1]}x{res.shape[0]}, "
                             f"{tar_path} is {tar.shape[1]}x{tar.shape[0]}")
        psnr, ssim = psnr_ssim(res, tar, protocol)
        images.append({"name": res_path.name, "psnr": psnr, "ssim": ssim})
        if with_niqe:
            images[-1]["niqe"] = _niqe_or_none(res, res_path, failed)
    read.log()
    mean = {key: float(np.mean([im[key] for im in images])) for key in ("psnr", "ssim")}
    report = {"images": images, "mean": mean, "protocol": protocol}
    if with_niqe:
        mean["niqe"] = _mean(images, "niqe")
        report["metric"] = "psnr_ssim,niqe"
        if failed:
            report["failed"] = failed
    return report


def evaluate_niqe(result_dir: str | Path, progress: bool = False, max_pixels: int = MAX_PIXELS) -> dict:
    """Per-image and mean NIQE of a folder: {"images": [{"name", "niqe"}], "mean": {"niqe"}, "metric": "niqe"}.

    Images NIQE cannot score (too small, flat) are left out of "images" and listed in
    "failed": [{"name", "error"}] (present only then); the mean is None if none was scored.
    progress shows a tqdm bar.
    """
    return niqe_report(require_images(result_dir), progress, max_pixels)


def niqe_report(paths: list[Path], progress: bool = False, max_pixels: int = MAX_PIXELS) -> dict:
    """The report of evaluate_niqe for given image files."""
    images, failed, read = [], [], _Reader(max_pixels)
    for path in tqdm(paths, desc="NIQE", unit="img", disable=not progress):
        score = _niqe_or_none(read(path), path, failed)
        if score is not None:
            images.append({"name": path.name, "niqe": score})
    read.log()
    report = {"images": images, "mean": {"niqe": _mean(images, "niqe")}, "metric": "niqe"}
    if failed:
        report["failed"] = failed
    return report


def add_input_niqe(report: dict, inputs: list[Path], progress: bool = False, max_pixels: int = MAX_PIXELS) -> None:
    """Adds the NIQE of each result's input ("niqe_input", matched by stem) and its mean to `report`.

    The inputs NIQE cannot score get None and join report["failed"].
    """
    scored = niqe_report(inputs, progress, max_pixels)
    by_stem = {Path(im["name"]).stem: im["niqe"] for im in scored["images"]}
    for image in report["images"]:
        image["niqe_input"] = by_stem.get(Path(image["name"]).stem)
    report["mean"]["niqe_input"] = _mean(report["images"], "niqe_input")
    if scored.get("failed"):
        report["failed"] = [*report.get("failed", []), *scored["failed"]]


# (report key, column title, width) in table order
_COLUMNS = (("psnr", "PSNR", 8), ("ssim", "SSIM", 6), ("niqe_input", "NIQE in", 8), ("niqe", "NIQE", 8))


def format_table(report: dict) -> str:
    """The report as an aligned text table, one row per image and a final mean row ("-": no score)."""
    columns = [col for col in _COLUMNS if col[0] in report["mean"]]
    rows = [(im["name"], [im[key] for key, _, _ in columns]) for im in report["images"]]
    rows.append((f"mean ({len(rows)} images)", [report["mean"][key] for key, _, _ in columns]))
    width = max(len("image"), *(len(name) for name, _ in rows))
    header = f"{'image':<{width}}" + "".join(f"  {title:>{w}}" for _, title, w in columns)
    if "protocol" in report:
        header += f"   (protocol {report['protocol']})"
    lines = [header]
    lines += [f"{name:<{width}}" + "".join("  " + (f"{v:{w}.4f}" if v is not None else f"{'-':>{w}}")
                                           for v, (_, _, w) in zip(values, columns))
              for name, values in rows]
    lines.insert(-1, "-" * len(lines[-1]))
    return "\n".join(lines)


def _metrics(text: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        parser.error(f"--metric {text!r}: choose one or more of {', '.join(METRICS)}, comma-separated")
    return names


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code (1 if NIQE failed on some images, 2 on bad input)."""
    parser = argparse.ArgumentParser(prog="python -m evaluations.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--result_dir", required=True, type=Path, help="folder of restored images")
    parser.add_argument("--target_dir", type=Path, help="folder of ground-truth images (PSNR/SSIM)")
    parser.add_argument("--protocol",
                        help="PSNR/SSIM protocol: A, B, or a dataset name "
                             "(Rain200L/H, Rain100L/H, SPA-Data: A; DID-Data, DDN-Data: B)")
    parser.add_argument("--metric", default="psnr_ssim",
                        help="psnr_ssim (default; needs --target_dir and --protocol), niqe (no reference, "
                             "for real rain), or both: psnr_ssim,niqe")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")
    parser.add_argument("--pair_by_order", action="store_true",
                        help="pair the sorted listings by position instead of by file stem")
    parser.add_argument("--max_pixels", type=positive_int, default=MAX_PIXELS,
                        help=f"largest image read, in pixels (default {MAX_PIXELS:,}: 8192x8192); a bigger one "
                             "is an error, found from its header before it is decoded")
    args = parser.parse_args(argv)
    metrics = _metrics(args.metric, parser)
    if "psnr_ssim" in metrics:
        if args.target_dir is None:
            parser.error("PSNR/SSIM needs --target_dir (the ground truth); "
                         "for the no-reference NIQE alone use --metric niqe")
        if args.protocol is None:
            parser.error("PSNR/SSIM needs --protocol (A, B, or a dataset name)")
    elif args.target_dir or args.protocol or args.pair_by_order:
        log.warning("--target_dir, --protocol and --pair_by_order are for PSNR/SSIM; NIQE does not use them")
    if args.json and (args.json.is_dir() or not args.json.parent.is_dir()):
        parser.error(f"--json {args.json}: not a file path in an existing folder")
    try:
        if "psnr_ssim" in metrics:
            report = evaluate_folders(args.result_dir, args.target_dir, args.protocol, pair_by_order=args.pair_by_order,
                                      progress=True, with_niqe="niqe" in metrics, max_pixels=args.max_pixels)
        else:
            report = evaluate_niqe(args.result_dir, progress=True, max_pixels=args.max_pixels)
        if args.json:
            write_json_atomic(args.json, report)
    except (ValueError, OSError) as e:
        print(f"evaluate: error: {e}", file=sys.stderr)
        return 2
    print(format_table(report))
    if unused := report.get("unused_targets"):
        print(f"{unused} image(s) of --target_dir have no result and were not scored")
    for failure in report.get("failed", []):
        print(f"evaluate: NIQE failed for {failure['name']}: {failure['error']}", file=sys.stderr)
    return 1 if report.get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
