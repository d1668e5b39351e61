"""Table 1 in one command: derain the five test sets with the released weights, score each with its
protocol, and put our numbers beside the paper's.

python -m evaluations.reproduce --datasets_dir Datasets --output_dir results/table1
    [--models NeRD-Rain NeRD-Rain-S] [--datasets Rain200L Rain200H DID-Data DDN-Data SPA-Data]
    [--weights_dir DIR] [--device auto|cpu|cuda] [--win_size 256] [--batch_windows 8] [--amp]
    [--channels_last] [--compile] [--max_pixels N]
python -m evaluations.reproduce --results_dir R [--datasets_dir Datasets] --output_dir results/table1
    [--models METHOD ...] [--datasets ...]

Each (model, dataset) derains Datasets/<Dataset>/test/input as test.py does (inference/),
writes the images to OUTPUT_DIR/<Model>/<Dataset>/ and scores them against test/target with the
dataset's protocol (A: Rain200L/H, SPA-Data; B: DID-Data, DDN-Data) into scores.json there. Weights:
DIR/<Model>/<Dataset>.pth with --weights_dir, else the released ones by name (models/pretrained.py).
--results_dir scores existing images R/<Method>/<Dataset>/*.png instead (any method names), against
the dataset's test/target or, where the folder holds N_DR.png beside N_GT.png, against those.
OUTPUT_DIR/table1.json and table1.md hold the table; a rerun reuses every pair whose images and scores
are there. A missing dataset or weights file is skipped (not an error).
Exit codes: 0 done, 1 some pair failed or a file could not be written (e.g. a full disk: the run stops, a
rerun goes on), 2 bad arguments or a dataset folder laid out otherwise, 130 interrupted (a rerun goes on).
"""
import argparse
import json
import re
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from evaluations.evaluate import evaluate_pairs
from evaluations.metrics import resolve_protocol
from data.check import pair_split
from evaluations.table1 import paper_scores, paper_table
from inference.folder import FolderRun, WriteError
from inference.network import BATCH_WINDOWS, WINDOW, NetworkError, deraining_device, load_network
from inference.tiling import check_batch_windows, check_window
from models import MODELS
from models.pretrained import DownloadError, fetch, find
from utils.cli import positive_int
from utils.device import device_name
from utils.files import overlap, write_json_atomic, write_text_atomic
from utils.image_io import MAX_PIXELS, list_images
from utils.pairing import pair_files
from utils.signals import sigterm_as_interrupt

DATASETS: list[str] = paper_table()["datasets"]
NETWORKS = [size.name for size in MODELS.values()]  # NeRD-Rain, NeRD-Rain-S: the paper's order
LAYOUT = """DATASETS_DIR/
  Rain200L/test/input/   the rainy test images (*.png, *.jpg)
  Rain200L/test/target/  the clean images, with the same names (or in the same sorted order)
  Rain200H/test/...      and likewise DID-Data, DDN-Data, SPA-Data"""
_PAIRED = re.compile(r"(.+)_(DR|GT)$")  # the authors' protocol B folders: N_DR.png beside N_GT.png


class UsageError(Exception):
    """A bad argument or dataset folder, found before any pair is run (exit code 2)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m evaluations.reproduce", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="expected layout:\n" + LAYOUT)
    parser.add_argument("--datasets_dir", type=Path, help="folder holding <Dataset>/test/input and test/target")
    parser.add_argument("--output_dir", type=Path, default=Path("results/table1"),
                        help="where images, table1.json and table1.md go (default results/table1)")
    parser.add_argument("--models", nargs="+", help=f"default {' '.join(NETWORKS)}; with --results_dir, "
                                                    "method folders (default: all of them)")
    parser.add_argument("--datasets", nargs="+", default=DATASETS, help=f"default {' '.join(DATASETS)}")
    parser.add_argument("--weights_dir", type=Path,
                        help="DIR/<Model>/<Dataset>.pth (default: released weights by name)")
    parser.add_argument("--results_dir", type=Path, help="score R/<Method>/<Dataset>/*.png instead of deraining")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--win_size", default=WINDOW, type=int, help=f"as test.py (default {WINDOW})")
    parser.add_argument("--batch_windows", default=BATCH_WINDOWS, type=int,
                        help=f"as test.py (default {BATCH_WINDOWS})")
    parser.add_argument("--amp", action="store_true", help="as test.py (bf16 autocast; not the paper's setting)")
    parser.add_argument("--channels_last", action="store_true", help="as test.py")
    parser.add_argument("--compile", action="store_true", help="as test.py")
    parser.add_argument("--max_pixels", type=positive_int, default=MAX_PIXELS,
                        help=f"as test.py: largest image read, in pixels (default {MAX_PIXELS:,})")
    return parser.parse_args(argv)


def canonical(given: list[str], known: list[str], what: str) -> list[str]:
    """The known spellings of `given` names (any case), or UsageError listing the choices."""
    by_lower = {name.lower(): name for name in known}
    if unknown := [name for name in given if name.lower() not in by_lower]:
        raise UsageError(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return list(dict.fromkeys(by_lower[name.lower()] for name in given))


def check_arguments(args: argparse.Namespace) -> None:
    """Names, speed options and folders, before any pair runs."""
    args.datasets = canonical(args.datasets, DATASETS, "dataset")
    if args.results_dir is not None:
        if not args.results_dir.is_dir():
            raise UsageError(f"--results_dir {args.results_dir}: no such folder (it holds <Method>/<Dataset>/*.png)")
        methods = sorted(p.name for p in args.results_dir.iterdir() if p.is_dir())
        args.models = canonical(args.models, methods, "method folder") if args.models else methods
    else:
        args.models = canonical(args.models or NETWORKS, NETWORKS, "model")
        if args.datasets_dir is None:
            raise UsageError("--datasets_dir is needed (or --results_dir to score existing images)")
        for flag, check, value in (("--win_size", check_window, args.win_size),
                                   ("--batch_windows", check_batch_windows, args.batch_windows or None)):
            try:
                check(value)
            except ValueError as err:
                raise UsageError(f"{flag}: {err}") from None
    if args.datasets_dir is not None:
        if not args.datasets_dir.is_dir():
            raise UsageError(f"--datasets_dir {args.datasets_dir}: no such folder. Expected layout:\n{LAYOUT}")
        for dataset in args.datasets:
            check_layout(args.datasets_dir, dataset, need_inputs=args.results_dir is None)
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output_dir {args.output_dir} is a file, not a folder")
    check_apart(args)


def check_apart(args: argparse.Namespace) -> None:
    """UsageError when --output_dir is, lies inside or holds a folder the run reads: a test set's input or
    target folder, or --results_dir (links resolved)."""
    read = [] if args.results_dir is None else [("--results_dir", args.results_dir)]
    if args.datasets_dir is not None:
        read += [(f"the {dataset} test folder", args.datasets_dir / dataset / "test" / part)
                 for dataset in args.datasets for part in ("input", "target")]
    for name, folder in read:
        if folder.is_dir() and (how := overlap(args.output_dir, folder)):
            raise UsageError(f"--output_dir {args.output_dir} {how} {name} {folder}; results and scores never go "
                             "among the images a run reads, choose another folder")


def check_layout(datasets_dir: Path, dataset: str, need_inputs: bool) -> None:
    """UsageError showing the expected layout when DATASETS_DIR/<dataset> exists but is laid out otherwise
    (what `python -m data.check` says of its test split; only test/target when `need_inputs` is false)."""
    folder = datasets_dir / dataset
    if not folder.is_dir():
        return  # not downloaded: its rows are skipped
    test = folder / "test"
    if need_inputs:
        problems = pair_split(test, "order").layout
    else:
        problems = [f"no images in {test / 'target'}"] if not (test / "target").is_dir() or not list_images(
            test / "target") else []
    if problems:
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise UsageError(f"{folder} is not laid out as expected: {'; '.join(problems)} (the folder holds {found}). "
                         f"Expected layout (python -m data.prepare {dataset} builds it from the download):\n{LAYOUT}")


def select_device(name: str, amp: bool) -> torch.device:
    """--device as test.py resolves it (inference.network.deraining_device), before any pair runs."""
    try:
        return deraining_device(name, amp)
    except NetworkError as err:
        raise UsageError(str(err)) from None


def paired_results(folder: Path) -> list[tuple[Path, Path]] | None:
    """N_DR/N_GT pairs when `folder` holds the authors' protocol B layout, else None."""
    sides: dict[str, dict[str, Path]] = {"DR": {}, "GT": {}}
    for path in list_images(folder):
        if match := _PAIRED.fullmatch(path.stem):
            sides[match.group(2)][match.group(1)] = path
    if not sides["DR"] or not sides["GT"]:
        return None
    if sides["DR"].keys() != sides["GT"].keys():
        raise ValueError(f"{folder}: the *_DR and *_GT images do not pair up "
                         f"(e.g. {sorted(sides['DR'].keys() ^ sides['GT'].keys())[:3]})")
    return [(sides["DR"][n], sides["GT"][n]) for n in sorted(sides["DR"])]


def new_row(model: str, dataset: str) -> dict:
    paper = paper_scores(model, dataset) or (None, None)
    return {"model": model, "dataset": dataset, "protocol": resolve_protocol(dataset), "images": 0, "psnr": None,
            "ssim": None, "paper_psnr": paper[0], "paper_ssim": paper[1], "status": "skipped"}


def scored_row(row: dict, pairs: list[tuple[Path, Path]], pairing: str, scores_file: Path, max_pixels: int) -> dict:
    """The row with the mean PSNR/SSIM of `pairs` (evaluations.evaluate), written to `scores_file` too."""
    report = evaluate_pairs(pairs, row["dataset"], progress=True, max_pixels=max_pixels)
    report |= {"pairing": pairing, **{key: row[key] for key in ("network", "weights") if key in row}}
    write_json_atomic(scores_file, report)
    return scores_row(row, report)


def scores_row(row: dict, report: dict) -> dict:
    extra = {key: report[key] for key in ("pairing", "network", "weights") if key in report}
    return {**row, "images": len(report["images"]), "psnr": report["mean"]["psnr"], "ssim": report["mean"]["ssim"],
            **extra, "status": "done"}


def reused_scores(scores_file: Path, results: list[Path]) -> dict | None:
    """The scores of an earlier run when they cover exactly these result images, all present."""
    if not scores_file.is_file() or not all(path.is_file() for path in results):
        return None
    report = json.loads(scores_file.read_text())
    return report if [im["name"] for im in report["images"]] == [p.name for p in results] else None


def earlier_networks(table: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(model, dataset) -> {"network", "weights"} as an earlier run's table1.json recorded them."""
    rows = json.loads(table.read_text())["rows"] if table.is_file() else []
    return {(r["model"], r["dataset"]): {k: r[k] for k in ("network", "weights") if k in r} for r in rows}


def weights_file(args: argparse.Namespace, model: str, dataset: str) -> Path:
    """The checkpoint for (model, dataset); FileNotFoundError or DownloadError say why there is none."""
    if args.weights_dir is not None:
        path = args.weights_dir / model / f"{dataset}.pth"
        if not path.is_file():
            raise FileNotFoundError(f"no weights {path}")
        return path
    return fetch(find(f"{model}/{dataset}"))


def run_network(args: argparse.Namespace, device: torch.device, model: str, dataset: str,
                known: dict[str, str], shown_notes: set[str]) -> dict:
    """Derains one test set as test.py does (skipping images already written), then scores it. `known`:
    the network and weights an earlier run recorded, kept when only the scores are redone; `shown_notes`:
    the networks' notes printed so far (each is printed once)."""
    row = {**new_row(model, dataset), **known}
    test = args.datasets_dir / dataset / "test"
    if not test.parent.is_dir():
        return {**row, "status": f"skipped: no dataset {test.parent}"}
    # by name where every name pairs, else by sorted order as the authors' scripts do
    pairs, pairing, _ = pair_files(list_images(test / "input"), list_images(test / "target"), "either",
                                   ("test/input", "test/target"))
    out = args.output_dir / model / dataset
    results = [(out / f"{inp.stem}.png", target) for inp, target in pairs]
    if report := reused_scores(out / "scores.json", [res for res, _ in results]):
        return scores_row(row, report)
    if not all(res.is_file() for res, _ in results):
        try:
            weights = weights_file(args, model, dataset)
        except (FileNotFoundError, DownloadError) as err:
            return {**row, "status": f"skipped: {err}"}
        network = load_network(weights, device, amp=args.amp, channels_last=args.channels_last, compile=args.compile,
                               window=args.win_size)
        for note in set(network.notes) - shown_notes:
            print(note, file=sys.stderr)
        shown_notes.update(network.notes)
        row["network"] = network.description
        row["weights"] = str(weights)
        print(f"{model} on {dataset}: {row['network']} from {weights}, windows of {network.window}, "
              f"on {device_name(device)}")
        out.mkdir(parents=True, exist_ok=True)
        run = FolderRun(network.network, out, network.window, args.batch_windows or None, args.amp,
                        max_pixels=args.max_pixels)
        for inp, _ in tqdm(pairs, desc="deraining", unit="img"):
            run.process(inp)
        print(run.report(device))
        if run.failed:
            return {**row, "status": f"failed: could not restore {len(run.failed)} image(s): {run.failed[0]}"}
    return scored_row(row, results, pairing, out / "scores.json", args.max_pixels)


def score_results(args: argparse.Namespace, method: str, dataset: str) -> dict:
    """Scores R/<method>/<dataset>/ against its N_GT images or the dataset's test/target."""
    row = new_row(method, dataset)
    folder = args.results_dir / method / dataset
    if not folder.is_dir():
        return {**row, "status": f"skipped: no folder {folder}"}
    scores_file = args.output_dir / method / dataset / "scores.json"
    scores_file.parent.mkdir(parents=True, exist_ok=True)
    if pairs := paired_results(folder):
        return scored_row(row, pairs, "N_DR with N_GT", scores_file, args.max_pixels)
    target = args.datasets_dir / dataset / "test" / "target" if args.datasets_dir else None
    if target is None or not target.is_dir():
        return {**row, "status": f"skipped: no targets (give --datasets_dir with {dataset}/test/target)"}
    pairs, pairing, _ = pair_files(list_images(folder), list_images(target), "either", (str(folder), str(target)))
    return scored_row(row, pairs, pairing, scores_file, args.max_pixels)


def markdown(rows: list[dict]) -> str:
    """The paper's layout: one row per model, one column per dataset; each cell ours (ours - paper).

    A pair whose weights hold another network gets a row of its own, named for that network and not
    compared with the paper: a wrong file must not read as the model's score.
    """
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    lines = ["| | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for label in dict.fromkeys(_label(row) for row in rows):
        cells = {row["dataset"]: _cell(row) for row in rows if _label(row) == label}
        lines.append(f"| {label} | " + " | ".join(cells.get(dataset, "") for dataset in datasets) + " |")
    lines += ["", "PSNR (dB) / SSIM on Y; in brackets the difference to the paper's Table 1. Protocol A: Rain200L, "
              "Rain200H, SPA-Data; B: DID-Data, DDN-Data."]
    notes = [f"- {row['model']} / {row['dataset']}: {row['status']}" for row in rows if row["status"] != "done"]
    return "\n".join(lines + ([""] + notes if notes else []))


def _stand_in(row: dict) -> bool:
    """Whether the pair's weights hold a network other than the one the row is named for."""
    return row["status"] == "done" and bool(row.get("network")) and not row["network"].startswith(row["model"] + " ")


def _label(row: dict) -> str:
    return f"{row['network']} in place of {row['model']}" if _stand_in(row) else row["model"]


def _cell(row: dict) -> str:
    if row["status"] != "done":
        return row["status"].split(":")[0]
    ours = f"{row['psnr']:.2f} / {row['ssim']:.4f}"
    if row["paper_psnr"] is None or _stand_in(row):
        return ours
    return f"{ours} ({row['psnr'] - row['paper_psnr']:+.2f} / {row['ssim'] - row['paper_ssim']:+.4f})"


def write_table(output_dir: Path, rows: list[dict]) -> str:
    """table1.json and table1.md, each written atomically; returns the Markdown. WriteError if one cannot be."""
    text = markdown(rows)
    for path, write in ((output_dir / "table1.json", lambda path: write_json_atomic(path, {"rows": rows})),
                        (output_dir / "table1.md", lambda path: write_text_atomic(path, text + "\n"))):
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            write(path)
        except OSError as err:
            raise WriteError(path, err) from None
    return text


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    rows: list[dict] = []
    try:
        with sigterm_as_interrupt():
            check_arguments(args)
            device = None if args.results_dir is not None else select_device(args.device, args.amp)
            known, shown_notes = earlier_networks(args.output_dir / "table1.json"), set()
            for model in args.models:
                for dataset in args.datasets:
                    try:
                        row = (score_results(args, model, dataset) if device is None
                               else run_network(args, device, model, dataset, known.get((model, dataset), {}),
                                                shown_notes))
                    except (ValueError, OSError) as err:
                        row = {**new_row(model, dataset), "status": f"failed: {err}"}
                    rows.append(row)
                    print(f"{model} / {dataset}: {row['status']}" + (
                        f", {row['images']} images, PSNR {row['psnr']:.2f}, SSIM {row['ssim']:.4f} "
                        f"({row['pairing']})" if row["status"] == "done" else ""))
                    write_table(args.output_dir, rows)
            table = write_table(args.output_dir, rows)  # also when no pair ran
    except UsageError as err:
        print(f"reproduce: error: {err}", file=sys.stderr)
        return 2
    except WriteError as err:
        print(f"reproduce: error: {err}; the run stopped after {len(rows)} pair(s), and what was written is "
              "complete. Make room and run the same command again to go on.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"reproduce: interrupted after {len(rows)} pair(s); {args.output_dir}/table1.json holds them. "
              "Run the same command again to go on.", file=sys.stderr)
        return 130
    print(table)
    return 1 if any(row["status"].startswith("failed") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
