"""The README's result figure: rainy | derained | clean for a few test pairs, each panel labelled with
its PSNR/SSIM (protocol A), deraining as test.py does.

python -m evaluations.figure --weights NeRD-Rain/Rain200H [--input_dir DIR --target_dir DIR] [--count 3]
                             [--caption TEXT] [--output docs/results.jpg|.png] [--device auto|cpu|cuda]

Defaults: the Rain100H crops shipped in tests/fixtures/rain100h (pairs by file name, the first --count, cut
to a common size at the top left) and docs/results.jpg.
`--caption` is printed under the figure: say what the weights are. Exit codes: 0 written, 2 bad arguments
or files.
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from evaluations.metrics import psnr_ssim
from inference.folder import derain
from inference.network import BATCH_WINDOWS, NetworkError, load_network
from utils.files import atomic_save
from utils.image_io import ImageReadError, list_images, read_rgb8
from utils.pairing import PairingError, pair_files

REPO = Path(__file__).resolve().parents[1]
FIXTURE_PAIRS = REPO / "tests" / "fixtures" / "rain100h"
TEXT = {"fontFace": cv2.FONT_HERSHEY_SIMPLEX, "fontScale": 0.45, "thickness": 1, "lineType": cv2.LINE_AA}
BAR = 20  # pixels of the label bar under each panel, and of each caption line


def label(panel: np.ndarray, text: str) -> np.ndarray:
    """The panel with a white bar below it holding `text`."""
    bar = np.full((BAR, panel.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, BAR - 6), color=(0, 0, 0), **TEXT)
    return np.concatenate([panel, bar])


def caption_lines(text: str, width: int) -> np.ndarray:
    """`text` wrapped into white bars of the figure's width."""
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and cv2.getTextSize(trial, TEXT["fontFace"], TEXT["fontScale"], TEXT["thickness"])[0][0] > width - 8:
            lines.append(line)
            trial = word
        line = trial
    lines.append(line)
    return np.concatenate([label(np.zeros((0, width, 3), np.uint8), line) for line in lines])


def figure(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], caption: str) -> np.ndarray:
    """Rows of rainy | derained | clean (RGB, all of one size), labelled with the rainy and derained scores, and
    the caption."""
    labelled = []
    for rainy, derained, clean in rows:
        scores = [psnr_ssim(image, clean, "A") for image in (rainy, derained)]
        texts = [f"rainy {scores[0][0]:.2f} dB / {scores[0][1]:.3f}", f"derained {scores[1][0]:.2f} dB / "
                 f"{scores[1][1]:.3f}", "clean"]
        labelled.append(np.concatenate([label(p, t) for p, t in zip((rainy, derained, clean), texts)], axis=1))
    return np.concatenate([*labelled, caption_lines(caption, labelled[0].shape[1])])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluations.figure", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a checkpoint or a released name, e.g. NeRD-Rain/Rain200H")
    parser.add_argument("--input_dir", type=Path, default=FIXTURE_PAIRS / "input", help="rainy images")
    parser.add_argument("--target_dir", type=Path, default=FIXTURE_PAIRS / "target", help="their clean images")
    parser.add_argument("--count", type=int, default=3, help="pairs shown, the first ones by name (default 3)")
    parser.add_argument("--caption", default="", help="what the weights are (printed under the figure)")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "results.jpg",
                        help="the image to write, JPEG (quality 90) or PNG by its suffix")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    if args.output.suffix.lower() not in (".jpg", ".jpeg", ".png"):
        parser.error(f"--output {args.output}: name a .jpg or .png file")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        pairs = pair_files(list_images(args.input_dir), list_images(args.target_dir), "stem",
                           ("--input_dir", "--target_dir"), extra_second=True).pairs[:args.count]
        network = load_network(args.weights, args.device)
        images = [(read_rgb8(rainy)[0], read_rgb8(clean)[0]) for rainy, clean in pairs]
        # every row the same size: each pair cut at the top left to the smallest height and width among them
        height, width = (min(rainy.shape[axis] for rainy, _ in images) for axis in (0, 1))
        rows = []
        for rainy, clean in images:
            rainy, clean = rainy[:height, :width].copy(), clean[:height, :width].copy()
            rows.append((rainy, derain(network.network, rainy, network.window, BATCH_WINDOWS), clean))
        source = Path(args.weights).name if Path(args.weights).is_file() else args.weights  # a file, or a name
        caption = " ".join(filter(None, [f"{network.description} from {source}.", args.caption]))
        ok, data = cv2.imencode(args.output.suffix, cv2.cvtColor(figure(rows, caption), cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, 90])
        atomic_save(args.output, lambda tmp: Path(tmp).write_bytes(data.tobytes()))
    except (FileNotFoundError, PairingError, NetworkError, ImageReadError, OSError) as err:
        print(f"figure: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {len(rows)} pairs, {network.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
