"""Derain a folder of images (or one image) with a NeRD-Rain checkpoint, as the authors' test.py does.

python test.py --input_dir DIR|FILE --output_dir DIR --weights FILE|NAME|MODEL.onnx [--win_size 256] [--gpus 0]
               [--target_dir DIR [--protocol A|B|<dataset>] [--pair_by_order]] [--opt YAML] [--device auto|cpu|cuda]
               [--niqe] [--json FILE] [--save_comparison] [--amp] [--channels_last] [--compile] [--overwrite]
               [--batch_windows N] [--max_pixels N]

Each image is restored window by window (inference/tiling.py) and written as <stem>.png in 8-bit RGB.
The work is in inference/: network.py loads the network, folder.py derains the images.
--target_dir scores the results by PSNR/SSIM; --niqe by the no-reference NIQE of input and result (real rain).
Exit codes: 0 done, 1 some images could not be restored or scoring failed, or a result could not be written
(e.g. a full disk: the run stops, the results written so far are complete and a rerun skips them), 2 bad
arguments or files (an output folder that cannot be written too), 130 interrupted (Ctrl-C or SIGTERM; the
results written so far are kept, and a rerun skips them).
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from evaluations.evaluate import add_input_niqe, evaluate_pairs, format_table, niqe_report
from evaluations.metrics import resolve_protocol
from inference.folder import FolderRun, WriteError
from inference.network import BATCH_WINDOWS, WINDOW, DerainingNetwork, NetworkError, load_network
from inference.tiling import check_batch_windows, check_window
from training.options import load_options
from utils.cli import positive_int
from utils.device import device_name
from utils.files import check_writable, overlap, write_json_atomic
from utils.image_io import IMAGE_EXTENSIONS, MAX_PIXELS, list_images
from utils.pairing import PairingError, pair_files
from utils.signals import sigterm_as_interrupt


class UsageError(Exception):
    """A bad argument or file, found before any image is processed (exit code 2)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The authors' options plus ours."""
    parser = argparse.ArgumentParser(prog="python test.py", description=__doc__.splitlines()[0])
    parser.add_argument("--input_dir", "--input", dest="input", required=True, type=Path,
                        help="folder of rainy images (or DIR/input, the authors' layout), or one image file")
    parser.add_argument("--output_dir", default=Path("results"), type=Path,
                        help="where <stem>.png results go (default: results); never the input folder")
    parser.add_argument("--weights", required=True, type=Path,
                        help="checkpoint (.pth), the authors' or ours, a released name such as NeRD-Rain/Rain200H "
                             "(python -m models.pretrained list), or an ONNX model (.onnx: models/export_onnx.py)")
    parser.add_argument("--win_size", type=int,
                        help=f"window size, a multiple of 16 (default {WINDOW}; an ONNX model's is the exported one)")
    parser.add_argument("--gpus", help="sets CUDA_VISIBLE_DEVICES, e.g. 0 or 1,2")
    parser.add_argument("--target_dir", type=Path, help="clean images with the same stems: also score PSNR/SSIM")
    parser.add_argument("--pair_by_order", action="store_true",
                        help="pair inputs and --target_dir images by sorted position instead of by stem (the authors' way)")
    parser.add_argument("--protocol", default="A",
                        help="scoring protocol: A, B, or a dataset name (Rain200L/H, Rain100L/H, SPA-Data: A; "
                             "DID-Data, DDN-Data: B); default A")
    parser.add_argument("--niqe", action="store_true",
                        help="also score inputs and results by NIQE (no reference, for real rain; lower is better)")
    parser.add_argument("--json", type=Path, help="also write the scores (--target_dir, --niqe) to this JSON file")
    parser.add_argument("--opt", type=Path, help="options YAML whose 'network' section builds the network "
                                                 "(default: inferred from the checkpoint)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--save_comparison", action="store_true",
                        help="also write input | output | target side by side to OUTPUT_DIR/comparison/")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (faster on GPUs; not bit-exact)")
    parser.add_argument("--channels_last", action="store_true",
                        help="channels_last memory format on a GPU (within 1e-6; always on for the CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network (slow first image)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing results (default: skip them)")
    parser.add_argument("--batch_windows", type=int, default=BATCH_WINDOWS,
                        help=f"windows per network call, at least 2 (default {BATCH_WINDOWS}; 0: all windows of "
                             "an image at once, as the authors do); bounds memory, same results on the CPU")
    parser.add_argument("--max_pixels", type=positive_int, default=MAX_PIXELS,
                        help=f"largest image read, in pixels (default {MAX_PIXELS:,}: 8192x8192); a bigger one is "
                             "found from its header, never decoded, and skipped like an unreadable file")
    return parser.parse_args(argv)


def input_images(path: Path) -> tuple[Path, list[Path]]:
    """The folder the inputs live in and the image files: one file, a folder, or the folder's input/."""
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise UsageError(f"input not found: {path} (give --input_dir a folder of images or one image file)")
    files = list_images(path)
    if not files and (path / "input").is_dir():
        path, files = path / "input", list_images(path / "input")
    if not files:
        raise UsageError(f"no images in {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    stems = Counter(f.stem for f in files)
    if clash := sorted(s for s, n in stems.items() if n > 1):
        raise UsageError(f"inputs in {path} share stems, so their <stem>.png results would collide: "
                         f"{', '.join(clash[:5])}; rename or move one of each")
    return path, files


def check_output_dir(output_dir: Path, input_dir: Path, target_dir: Path | None) -> None:
    """Refuses an output folder where results would replace or join the images read (links resolved): the
    input folder itself, or the --target_dir, a folder inside it or one that holds it; and a file."""
    if overlap(output_dir, input_dir) == "is":  # only sameness: a single image's folder often holds results/
        raise UsageError(f"--output_dir {output_dir} is the input folder; results never go there, "
                         "choose another folder")
    if target_dir is not None and (how := overlap(output_dir, target_dir)):
        raise UsageError(f"--output_dir {output_dir} {how} --target_dir {target_dir}; results never go among "
                         "the clean targets they are scored against, choose another folder")
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output_dir {output_dir} is a file, not a folder")


def make_output_dir(output_dir: Path) -> None:
    """Creates the output folder (and its parents) and checks that files can be written in it."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create --output_dir {output_dir}: {err.strerror or err}") from None
    try:
        check_writable(output_dir)
    except OSError as err:
        raise UsageError(f"cannot write to --output_dir {output_dir}: {err.strerror or err}") from None


def check_arguments(args: argparse.Namespace) -> None:
    """The checks that need no file I/O."""
    checks = (("--win_size", check_window, WINDOW if args.win_size is None else args.win_size),
              ("--batch_windows", check_batch_windows, args.batch_windows or None),
              ("--protocol", resolve_protocol, args.protocol))
    for flag, check, value in checks:
        try:
            check(value)
        except ValueError as err:
            raise UsageError(f"{flag}: {err}") from None
    if args.target_dir is not None and not args.target_dir.is_dir():
        raise UsageError(f"--target_dir {args.target_dir}: no such folder")
    if args.json is not None:
        if args.target_dir is None and not args.niqe:
            raise UsageError("--json writes scores: add --target_dir (PSNR/SSIM) or --niqe")
        if args.json.is_dir() or not args.json.parent.is_dir():
            raise UsageError(f"--json {args.json}: not a file path in an existing folder")


def input_targets(files: list[Path], target_dir: Path, by_order: bool) -> dict[str, Path]:
    """Input stem -> its clean image in `target_dir`, by stem (extra targets allowed, and counted as
    evaluations.evaluate counts them) or by sorted order."""
    try:
        pairing = pair_files(files, list_images(target_dir), "order" if by_order else "stem",
                             sides=("the inputs", "--target_dir"), extra_second=True)
    except PairingError as err:
        hint = " (to pair files by sorted order instead: --pair_by_order)" if err.same_count and not by_order else ""
        raise UsageError(f"cannot pair the inputs with --target_dir {target_dir}: {err}{hint}") from None
    if pairing.unused:
        print(f"{len(pairing.unused)} image(s) of --target_dir have no input and are not scored")
    return {inp.stem: target for inp, target in pairing.pairs}


def network_section(opt: Path | None) -> dict | None:
    """The `network` section of --opt, or None."""
    if opt is None:
        return None
    try:
        return load_options(opt)["network"]
    except ValueError as err:
        raise UsageError(f"--opt: {err}") from None


def score(args: argparse.Namespace, results: list[Path], inputs: dict[str, Path], targets: dict[str, Path]) -> bool:
    """Prints (and with --json writes) the scores of this run's results; False if scoring failed or was partial.

    PSNR/SSIM against `targets` (by result stem); with --niqe, NIQE of each result and of its input.
    """
    try:
        if targets:
            report = evaluate_pairs([(path, targets[path.stem]) for path in results], args.protocol,
                                    with_niqe=args.niqe, max_pixels=args.max_pixels)
        else:
            report = niqe_report(results, max_pixels=args.max_pixels)
        if args.niqe:
            add_input_niqe(report, [inputs[path.stem] for path in results], max_pixels=args.max_pixels)
        if args.json:
            write_json_atomic(args.json, report)
    except (ValueError, OSError) as err:
        print(f"scoring failed: {err}", file=sys.stderr)
        return False
    print(format_table(report))
    if args.niqe:
        mean = report["mean"]
        print(f"NIQE (no reference; lower is better): inputs {_format(mean['niqe_input'])}, "
              f"results {_format(mean['niqe'])}")
    for failure in report.get("failed", []):
        print(f"NIQE failed for {failure['name']}: {failure['error']}", file=sys.stderr)
    return not report.get("failed")


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def setup(args: argparse.Namespace) -> tuple[list[Path], dict[str, Path], DerainingNetwork]:
    """All checks that can fail before any image is processed, then the targets and the network."""
    check_arguments(args)
    input_dir, files = input_images(args.input)
    check_output_dir(args.output_dir, input_dir, args.target_dir)
    targets = input_targets(files, args.target_dir, args.pair_by_order) if args.target_dir else {}
    try:
        network = load_network(args.weights, args.device, amp=args.amp, channels_last=args.channels_last,
                               compile=args.compile, options=network_section(args.opt), window=args.win_size,
                               gpus=args.gpus)
    except NetworkError as err:
        raise UsageError(str(err)) from None
    for note in network.notes:
        print(note, file=sys.stderr)
    make_output_dir(args.output_dir)
    return files, targets, network


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2)
        return int(exit_.code or 0)
    run = None
    try:
        with sigterm_as_interrupt():
            files, targets, network = setup(args)
            print(f"{network.description}, windows of {network.window}, on {device_name(network.device)}")
            run = FolderRun(network.network, args.output_dir, network.window, args.batch_windows or None, args.amp,
                            args.overwrite, targets if args.save_comparison else None, args.max_pixels)
            for path in tqdm(files, desc="deraining", unit="img"):
                run.process(path)
    except UsageError as err:
        print(f"test.py: error: {err}", file=sys.stderr)
        return 2
    except WriteError as err:
        print(run.report(network.device))
        print(f"test.py: error: {err}; stopped after {len(run.written)} result(s) written, all complete (no partial "
              "file was left). Make room (or fix the folder) and run the same command again to go on: existing "
              "results are skipped.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if run is not None:
            print(run.report(network.device))
        done = f"after {len(run.written)} of {len(files)} image(s)" if run else "before the first image"
        print(f"test.py: interrupted {done}; no partial file was left. Run the same command again to go on: "
              "existing results are skipped.", file=sys.stderr)
        return 130
    print(run.report(network.device))
    results = run.written + run.skipped
    scoring = (targets or args.niqe) and results
    scored = score(args, results, {path.stem: path for path in files}, targets) if scoring else True
    return 0 if scored and not run.failed else 1


if __name__ == "__main__":
    sys.exit(main())
