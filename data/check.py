"""Checks prepared dataset splits, <Datasets>/<Name>/<split>/{input,target}, and prints a table per dataset.

python -m data.check Datasets [NAME...] [--threads 8] [--max_pixels N]

Each split folder is checked as train.py and evaluations.reproduce read it: every rainy image in input/
has a clean image of the same file stem in target/, both decode, and both have the same size. The table
gives the pairs found, the published size (data/datasets.json), unpaired files, undecodable files, size
mismatches, and how the files compare with the split's manifest.json (written by data.prepare: every
file's size and SHA-256) when there is one. Without NAME, every dataset of the paper found in Datasets.
A count that differs from the published one, or files that differ from the manifest, are warnings: the
split can still be used. Exit codes: 0 every split can be used, 2 one cannot (or bad arguments), 130
interrupted.

In code: ``check_split(root)`` returns a SplitReport; ``report.usable`` and ``report.message()`` (one
paragraph naming the files and the fix) are what a start-up check raises its error with.
"""
import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from utils.image_io import MAX_PIXELS, ImageReadError, list_images, read_rgb8
from utils.cli import positive_int
from utils.pairing import PairingError, few, pair_files
from utils.signals import sigterm_as_interrupt

DATASETS_JSON = Path(__file__).with_name("datasets.json")  # the authors' links, the published sizes, the releases
SPLITS = ("train", "test")
SIDES = ("input", "target")
MANIFEST = "manifest.json"
SHOWN = 20  # problems listed in a message before "... and N more"

Item = TypeVar("Item")
Result = TypeVar("Result")


@cache
def releases() -> dict[str, dict[str, Any]]:
    """datasets.json's entry of each dataset of the paper, by name, in the paper's order."""
    return json.loads(DATASETS_JSON.read_text())["datasets"]


def dataset_names() -> list[str]:
    return list(releases())


def canonical_name(name: str) -> str | None:
    """The paper's spelling of a dataset name given in any case ("rain200l" -> "Rain200L"), or None."""
    return next((known for known in releases() if known.lower() == name.strip().lower()), None)


def published_pairs(dataset: str, split: str) -> int | None:
    """The split's published pair count, or None where none is published (or the dataset is not the paper's)."""
    name = canonical_name(dataset)
    return releases()[name]["pairs"].get(split) if name else None


def sha256_file(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def run_threaded(fn: Callable[[Item], Result], items: Sequence[Item], threads: int, desc: str,
                 progress: bool = True) -> list[Result]:
    """[fn(item) for item in items] in `threads` threads (image decoding releases the GIL), with a progress bar.

    Only a few items are queued at a time, so 640 thousand pairs need no 640 thousand futures, and an
    interrupt (or an exception raised in fn, KeyboardInterrupt included) cancels the queued ones
    instead of waiting for them all.
    """
    threads = max(1, threads)
    results: list[Any] = [None] * len(items)
    queued = iter(enumerate(items))
    pool = ThreadPoolExecutor(threads)
    try:
        # disable=None: the bar is drawn on a terminal only, not into logs
        with tqdm(total=len(items), desc=desc, unit="pair", leave=False, disable=None if progress else True) as bar:
            pending = {pool.submit(fn, item): i for i, item in islice(queued, 4 * threads)}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results[pending.pop(future)] = future.result()
                bar.update(len(done))
                pending.update({pool.submit(fn, item): i for i, item in islice(queued, len(done))})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def size_mismatch(first: Path, first_hw: tuple[int, int], second: Path, second_hw: tuple[int, int]) -> str:
    """The message for two images of a pair that differ in size (PairedDataset raises it too)."""
    return f"{first} is {first_hw[1]}x{first_hw[0]} but {second} is {second_hw[1]}x{second_hw[0]}"


@dataclass
class ManifestComparison:
    """The split's files against its manifest.json: names recorded but gone, names not recorded, and
    names whose size (or SHA-256, when hashes were compared) differs."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unreadable: str | None = None
    hashed: bool = True

    @property
    def matches(self) -> bool:
        return not (self.unreadable or self.missing or self.extra or self.changed)

    def summary(self) -> str:
        """A few words for the table: 'matches', 'differs (2 changed)', 'unreadable'."""
        if self.unreadable:
            return "unreadable"
        if self.matches:
            return "matches" if self.hashed else "matches (sizes)"
        parts = [f"{len(names)} {what}" for what, names in
                 (("missing", self.missing), ("not recorded", self.extra), ("changed", self.changed)) if names]
        return f"differs ({', '.join(parts)})"


@dataclass
class SplitReport:
    """What check_split found in one split folder `root` (holding input/ and target/)."""

    root: Path
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    only_input: list[str] = field(default_factory=list)
    only_target: list[str] = field(default_factory=list)
    layout: list[str] = field(default_factory=list)
    undecodable: list[tuple[Path, str]] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    published: int | None = None
    manifest: ManifestComparison | None = None
    files: list[Path] = field(default_factory=list, repr=False)  # every image found in input/ and target/
    sizes: list[tuple[int, int]] = field(default_factory=list, repr=False)  # (height, width) of each usable pair

    @property
    def usable(self) -> bool:
        """Whether training or scoring can read every file of the split."""
        return bool(self.pairs) and not (self.layout or self.only_input or self.only_target or self.undecodable
                                         or self.mismatched)

    def problems(self) -> list[str]:
        """What makes the split unusable, one line each, naming the files."""
        lines = list(self.layout)
        for side, other, names in (("input", "target", self.only_input), ("target", "input", self.only_target)):
            if names:
                lines.append(f"{len(names)} {side} image(s) have no {other} of the same file stem in "
                             f"{self.root / other}: {few(names)}")
        lines += [str(ImageReadError(path, reason)) for path, reason in self.undecodable]
        lines += self.mismatched
        if not lines and not self.pairs:
            lines.append(f"no pairs in {self.root}")
        return lines

    def warnings(self) -> list[str]:
        """What differs from the published size or from the manifest; the split can still be used."""
        lines = []
        if self.published is not None and self.pairs and len(self.pairs) != self.published:
            lines.append(f"{self.root}: {len(self.pairs)} pairs, the published split has {self.published} "
                         f"({difference(len(self.pairs), self.published)})")
        comparison = self.manifest
        if comparison and comparison.unreadable:
            lines.append(f"{self.root / MANIFEST} cannot be read ({comparison.unreadable})")
        elif comparison and not comparison.matches:
            details = [f"{what}: {few(names)}" for what, names in (("recorded but missing", comparison.missing),
                       ("not recorded", comparison.extra), ("changed", comparison.changed)) if names]
            lines.append(f"{self.root}: the files differ from {MANIFEST} ({'; '.join(details)})")
        return lines

    def message(self, shown: int = SHOWN) -> str:
        """One paragraph: why the split cannot be used and how to fix it ('' when it can be)."""
        if self.usable:
            return ""
        problems = self.problems()
        listed = "; ".join(problems[:shown]) + (f"; ... and {len(problems) - shown} more" if len(problems) > shown
                                                else "")
        return f"{self.root} cannot be used: {listed}. {self.fix()}"

    def fix(self) -> str:
        """How to get a usable split again."""
        split, dataset = self.root.name, self.root.parent.name
        if split in SPLITS and canonical_name(dataset):
            rebuild = (f"python -m data.prepare {canonical_name(dataset)} --{split} SRC "
                       f"--output {self.root.parent.parent} --overwrite")
        else:
            rebuild = "python -m data.prepare NAME --train SRC --test SRC --output DATASETS"
        return f"Fix or remove those files, or build the split again from its download: {rebuild}"


def difference(found: int, published: int) -> str:
    """'10 fewer', '3 more' or 'the same'."""
    if found == published:
        return "the same"
    return f"{abs(found - published)} {'fewer' if found < published else 'more'}"


def _pair(root: Path, inputs: list[Path], targets: list[Path], pairing: str, report: SplitReport) -> None:
    """Fills report.pairs and the unpaired names; the pairing itself is utils.pairing's."""
    if pairing == "order":
        try:
            report.pairs = pair_files(inputs, targets, "order", sides=(str(root / "input"), str(root / "target"))).pairs
        except PairingError as err:
            report.layout.append(str(err))
        return
    if pairing != "stem":
        raise ValueError(f"unknown pairing {pairing!r}; choose 'stem' or 'order'")
    stems = [Counter(p.stem for p in files) for files in (inputs, targets)]
    for side, files, counts in zip(SIDES, (inputs, targets), stems):
        for stem in sorted(s for s, n in counts.items() if n > 1):
            names = ", ".join(p.name for p in files if p.stem == stem)
            report.layout.append(f"{root / side}: {counts[stem]} files share the stem {stem!r} ({names})")
    both = {s for s in stems[0].keys() & stems[1].keys() if stems[0][s] == 1 and stems[1][s] == 1}
    report.only_input = [p.name for p in inputs if p.stem not in stems[1]]
    report.only_target = [p.name for p in targets if p.stem not in stems[0]]
    report.pairs = pair_files([p for p in inputs if p.stem in both], [p for p in targets if p.stem in both]).pairs


def _read_manifest(root: Path) -> dict[str, Any] | str | None:
    """The manifest's file table, the reason it cannot be read, or None when there is no manifest."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a table")
        return files
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{type(err).__name__}: {err}"


def pair_split(root: str | os.PathLike, pairing: str = "stem") -> SplitReport:
    """The split folder `root`'s pairs (input/ rainy, target/ clean) by file stem or, with pairing 'order',
    by position in the sorted listings, and what cannot be paired; nothing is decoded."""
    root = Path(root)
    report = SplitReport(root)
    folders = [root / side for side in SIDES]
    for folder in folders:
        if not folder.is_dir():
            report.layout.append(f"no folder {folder} (a split folder holds input/ with the rainy images and "
                                 "target/ with the clean ones)")
    if report.layout:
        return report
    inputs, targets = (list_images(folder) for folder in folders)
    report.files = inputs + targets
    report.layout += [f"no images in {folder}" for folder, files in zip(folders, (inputs, targets)) if not files]
    _pair(root, inputs, targets, pairing, report)
    return report


def check_split(root: str | os.PathLike, pairing: str = "stem", threads: int = 8, published: int | None = None,
                hashes: bool = True, progress: bool = True, max_pixels: int = MAX_PIXELS,
                limit_name: str = "--max_pixels") -> SplitReport:
    """Inspects the split folder `root` (input/ rainy, target/ clean): pairs it as pair_split does, decodes
    every paired image once in `threads` threads (an image over `max_pixels`, the limit `limit_name` sets, is
    undecodable), and compares the files with `root`/manifest.json when there is one (sizes always, SHA-256
    too with `hashes`).

    `published` is the expected pair count, for the report's warnings (published_pairs(name, split)).
    Never raises for a bad split: the report says what is wrong (report.usable, report.message()).
    """
    report = pair_split(root, pairing)
    report.published = published
    recorded = _read_manifest(report.root)
    want_hashes = hashes and isinstance(recorded, dict)

    def inspect(pair: tuple[Path, Path]) -> tuple[list[tuple[Path, str]], tuple[int, int] | str | None,
                                                  dict[Path, str]]:
        """Undecodable files, the pair's size (or its size mismatch, or None), and the files' hashes."""
        bad, shapes, digests = [], [], {}
        for path in pair:
            try:
                shapes.append(read_rgb8(path, max_pixels, limit_name)[0].shape[:2])
            except ImageReadError as err:
                bad.append((path, err.reason))
            if want_hashes and path.is_file():
                digests[path] = sha256_file(path)
        if len(shapes) < 2:
            return bad, None, digests
        if shapes[0] != shapes[1]:
            return bad, size_mismatch(pair[0], shapes[0], pair[1], shapes[1]), digests
        return bad, shapes[0], digests

    digests: dict[Path, str] = {}
    for bad, size, found in run_threaded(inspect, report.pairs, threads, f"checking {report.root}", progress):
        report.undecodable += bad
        if isinstance(size, str):
            report.mismatched.append(size)
        elif size is not None:
            report.sizes.append(size)
        digests.update(found)
    if recorded is not None:
        report.manifest = _compare_manifest(recorded, report.files, digests if hashes else None)
    return report


def _compare_manifest(recorded: dict[str, Any] | str, files: Iterable[Path],
                      digests: dict[Path, str] | None) -> ManifestComparison:
    """The files on disk against the manifest's table {"input/1.png": {"bytes": n, "sha256": hex}, ...};
    `digests` holds the hashes already computed (None: compare sizes only)."""
    if isinstance(recorded, str):
        return ManifestComparison(unreadable=recorded)
    present = {f"{path.parent.name}/{path.name}": path for path in files}
    comparison = ManifestComparison(missing=sorted(recorded.keys() - present.keys()),
                                    extra=sorted(present.keys() - recorded.keys()), hashed=digests is not None)
    for name in sorted(recorded.keys() & present.keys()):
        entry, path = recorded[name], present[name]
        if not isinstance(entry, dict) or path.stat().st_size != entry.get("bytes"):
            comparison.changed.append(name)
        elif digests is not None:
            digest = digests.get(path) or sha256_file(path)  # unpaired files were not hashed while decoding
            if digest != entry.get("sha256"):
                comparison.changed.append(name)
    return comparison


def format_table(dataset: str, reports: dict[str, SplitReport]) -> str:
    """The table of one dataset's splits: pairs, published size, unpaired, undecodable, size mismatches,
    manifest, status."""
    header = ("split", "pairs", "published", "unpaired input/target", "undecodable", "size mismatches", "manifest",
              "status")
    rows = [header]
    for split, r in reports.items():
        published = "-" if r.published is None else str(r.published)
        if r.published is not None and r.pairs and len(r.pairs) != r.published:
            published += f" ({len(r.pairs) - r.published:+d})"
        manifest = r.manifest.summary() if r.manifest else "none"
        status = "ok" if r.usable else "UNUSABLE"
        rows.append((split, str(len(r.pairs)), published, f"{len(r.only_input)}/{len(r.only_target)}",
                     str(len(r.undecodable)), str(len(r.mismatched)), manifest, status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    right = {1, 2, 4, 5}  # the counts
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in rows]
    return "\n".join([dataset, *("  " + line for line in lines)])


def _datasets(root: Path, names: list[str]) -> list[str]:
    """The dataset folders to check: `names` (the paper's spelling where known), else the paper's that exist.
    ValueError naming what is missing."""
    if not names:
        found = [name for name in dataset_names() if (root / name).is_dir()]
        if not found:
            raise ValueError(f"no dataset folder in {root} (looked for {', '.join(dataset_names())}); prepare one "
                             "with python -m data.prepare NAME --train SRC --test SRC --output " + str(root))
        return found
    chosen = [canonical_name(name) or name for name in names]
    if missing := [name for name in chosen if not (root / name).is_dir()]:
        raise ValueError(f"no folder {', '.join(str(root / name) for name in missing)}; prepare it with "
                         f"python -m data.prepare {missing[0]} --train SRC --test SRC --output {root}")
    return list(dict.fromkeys(chosen))


def check_datasets(root: Path, names: list[str], threads: int = 8, progress: bool = True,
                   max_pixels: int = MAX_PIXELS) -> dict[str, dict[str, SplitReport]]:
    """check_split of every split folder (train, test) of each dataset; ValueError for a missing folder."""
    results = {}
    for dataset in _datasets(root, names):
        splits = [split for split in SPLITS if (root / dataset / split).is_dir()]
        if not splits:
            empty = SplitReport(root / dataset, layout=[f"{root / dataset} has neither train/ nor test/"])
            results[dataset] = {"-": empty}
            continue
        results[dataset] = {split: check_split(root / dataset / split, threads=threads, progress=progress,
                                               published=published_pairs(dataset, split), max_pixels=max_pixels)
                            for split in splits}
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m data.check", description=__doc__.splitlines()[0])
    parser.add_argument("datasets_dir", type=Path, metavar="DATASETS", help="the folder holding <Name>/<split>/")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"datasets to check (default: those of "
                        f"{', '.join(dataset_names())} that exist)")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="decoding threads")
    parser.add_argument("--max_pixels", type=positive_int, default=MAX_PIXELS,
                        help=f"an image of more pixels is unusable (default {MAX_PIXELS:,}, as train.py's)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if not args.datasets_dir.is_dir():
        print(f"data.check: error: no folder {args.datasets_dir}", file=sys.stderr)
        return 2
    try:
        with sigterm_as_interrupt():
            results = check_datasets(args.datasets_dir, args.names, args.threads, max_pixels=args.max_pixels)
    except ValueError as err:
        print(f"data.check: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("data.check: interrupted", file=sys.stderr)
        return 130
    unusable = 0
    for dataset, reports in results.items():
        print(format_table(dataset, reports))
        for report in reports.values():
            for line in report.warnings():
                print(f"  warning: {line}")
            if not report.usable:
                unusable += 1
                print(f"  error: {report.message()}")
    return 2 if unusable else 0


if __name__ == "__main__":
    sys.exit(main())
