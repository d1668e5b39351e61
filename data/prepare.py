"""From a dataset's original release to Datasets/<Name>/<split>/{input,target}, checked, with a manifest.

python -m data.prepare NAME [--train SRC] [--test SRC] [--output Datasets] [--copy] [--overwrite] [--threads 8]

NAME is Rain200L, Rain200H, DID-Data, DDN-Data or SPA-Data (any case); SRC is one split, unpacked, as
its release ships it (the names it gets in Datasets/NAME/<split>/ after the arrow; the rainy image goes
to input/, its clean image to target/, under the same file stem):

  Rain200L, Rain200H  JORDER's new release: rain/ (Rain200H: rain/X2/) with norain-{i}x2.png, norain/ with
                      norain-{i}.png                                                       -> {i}.png
  DID-Data            DID-MDN: side-by-side images (rainy left half, clean right half) in SRC or in its
                      subfolders; each half a lossless PNG      -> {stem}.png, or {subfolders}_{stem}.png
  DDN-Data            Rain1400: rainy_image/{i}_{j}.jpg and ground_truth/{i}.jpg           -> {i}_{j}.jpg
  SPA-Data            SPANet: a list file of 'rainy_path clean_path' lines, or the folder holding one .txt
                                -> the rainy path below the folder all listed rainy files share, '_' for '/'
  any of them         the authors' package: input/ and target/, paired by file stem        -> names kept

Nothing is written until every pair is checked: every rainy image has its clean one, both decode, both
have one size; otherwise each faulty file is named and the exit code is 2. A split is built in a
temporary folder beside it and renamed into place, so Datasets/NAME/<split> is absent or complete.
Single images are hard-linked (copied with --copy, or where linking is impossible: another file
system, or a file linking is not allowed for); DID halves are written as PNG with exactly the decoded
pixels. manifest.json in the split records the source, the date, the pair count against the published
one (a difference is a warning: subsets are fine) and each file's size and SHA-256. A rerun keeps a
split whose manifest matches the source (the same layout, file names, sizes and modification times;
the images are not read again) and refuses to replace one that differs unless --overwrite. An
authors' package already in place (SRC is Datasets/NAME/<split>) is checked and gets its manifest.
Exit codes: 0 done, 1 the output could not be written, 2 bad arguments or a source that fails the
checks (nothing written), 130 interrupted (nothing half-written is left).
"""
import argparse
import errno
import json
import os
import re
import secrets
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from utils.files import write_text_atomic
from utils.image_io import ImageReadError, list_images, read_rgb8, write_png_atomic
from utils.signals import sigterm_as_interrupt, signals_ignored

from .check import (MANIFEST, SHOWN, SPLITS, canonical_name, dataset_names, difference, pair_split, published_pairs,
                    run_threaded, sha256_file, size_mismatch)

PROG = "data.prepare"
# os.link's failures that mean "no link here", so a copy is made instead: another file system (EXDEV),
# links unsupported (ENOTSUP, EPERM on FAT/SMB), a file of another user under fs.protected_hardlinks
# (EPERM), or too many links to one file (EMLINK)
NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}

# Rain200L/Rain200H, JORDER's new release (Yang et al., CVPR 2017; the 1800 + 200 pairs of each are
# confirmed by flyywh/JORDER-E-Deep-Image-Deraining-TPAMI-2019-Journal issue #3). The folder layout is
# not in any file of the release itself that could be read: rain/X2/norain-{i}x2.png beside
# norain/norain-{i}.png is how third-party loaders read Rain200H (rain/ for Rain200L; some read Rain200H
# from rain/ as well), the X2 and x2 being the EDSR naming of JORDER-E's code (src/train.sh: --scale 2),
# and JORDER-E's own sample data (data/train/small/) names the rainy files norain-{i}.png in rain/.
# All of these are accepted: rain/X2/ when it exists, else rain/, with or without the x2.
JORDER_RAINY = re.compile(r"norain-(\d+)(?:x2)?")
JORDER_CLEAN = re.compile(r"norain-(\d+)")
# The old Rain100H/Rain100L release (PReNet's RainTrainH, csdwren/PReNet DerainDataset.py and README):
# rain-{i}.png beside norain-{i}.png in one folder; its training set repeats test images.
OLD_RAIN100 = re.compile(r"rain-\d+")
# DDN-Data, Rain1400 (Fu et al., CVPR 2017): the authors' page (xueyangfu.github.io projects/cvpr2017.html)
# links the download without describing it; rainy_image/{i}_{j}.jpg (j = 1..14 rain types) beside
# ground_truth/{i}.jpg is how csdwren/PReNet DerainDataset.py (prepare_data_Rain12600) reads it, and the
# two folders are named so in HuangxingLin123/Rain-Over-Me code_for_Rain1400/ReadMe.md.
DDN_RAINY = re.compile(r"(\d+)_(\d+)")
DDN_CLEAN = re.compile(r"(\d+)")

EXPECTED = {
    "Rain200L": "rain/ and norain/ (JORDER's new release)",
    "Rain200H": "rain/X2/ (or rain/) and norain/ (JORDER's new release)",
    "DID-Data": "a folder of side-by-side images (DID-MDN)",
    "DDN-Data": "rainy_image/ and ground_truth/ (Rain1400)",
    "SPA-Data": "a list file of 'rainy_path clean_path' lines, or the folder holding it (SPANet)",
}


FIX_FILES = "fix or remove those files (or unpack the download again) and rerun"


class SourceError(ValueError):
    """A source that is not laid out as its release ships, or whose files fail the checks: one line per
    problem; `where` is the source, when the problems are its files'."""

    def __init__(self, problems: list[str], where: str = ""):
        self.problems = problems
        self.where = where
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Pair:
    """One rainy image and its clean image, to be written as input/<name><ext> and target/<name><ext>.

    With `halves`, `rainy` is one side-by-side file (DID-MDN's): rainy left half, clean right half.
    `origin` tells where the pair was listed, for messages (an SPA list's line).
    """

    name: str
    rainy: Path
    clean: Path
    halves: bool = False
    origin: str = ""

    @property
    def outputs(self) -> tuple[str, str]:
        """The two files' paths inside the split folder."""
        if self.halves:
            return f"input/{self.name}.png", f"target/{self.name}.png"
        return f"input/{self.name}{self.rainy.suffix}", f"target/{self.name}{self.clean.suffix}"


@dataclass
class Source:
    """A split's files as one release ships them: the layout recognised and the pairs it gives."""

    path: Path
    layout: str
    description: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    base: Path | None = None  # what the manifest's source paths are relative to (default: path)

    def relative(self, file: Path) -> str:
        """`file` as the manifest records it: relative to the source where it lies below it."""
        try:
            return file.relative_to(self.base or self.path).as_posix()
        except ValueError:
            return str(file)


def _keyed(files: list[Path], pattern: re.Pattern, what: str, problems: list[str],
           key: Callable[[re.Match], str]) -> dict[str, Path]:
    """The files whose stem matches `pattern`, by key(match); a name that does not match, or two files with
    one key, is a problem."""
    found: dict[str, Path] = {}
    for file in files:
        match = pattern.fullmatch(file.stem)
        if not match:
            problems.append(f"{file}: not a name of the release's {what} ({pattern.pattern}{file.suffix})")
        elif (k := key(match)) in found:
            problems.append(f"{found[k]} and {file} are both {what} {k}")
        else:
            found[k] = file
    return found


def _number_order(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name))


def read_jorder(src: Path) -> Source:
    """Rain200L/Rain200H as JORDER's new release ships a split (see JORDER_RAINY): output names {i}."""
    rainy_dir = src / "rain" / "X2" if (src / "rain" / "X2").is_dir() else src / "rain"
    clean_dir = src / "norain"
    source = Source(src, "jorder", f"JORDER's new release: {rainy_dir.relative_to(src)}/ and norain/")
    rainy = _keyed(list_images(rainy_dir), JORDER_RAINY, "rainy images", source.problems, lambda m: m[1])
    clean = _keyed(list_images(clean_dir), JORDER_CLEAN, "clean images", source.problems, lambda m: m[1])
    source.problems += [f"{rainy[i]}: no clean image norain-{i}.png in {clean_dir}"
                        for i in sorted(rainy.keys() - clean.keys(), key=int)]
    source.problems += [f"{clean[i]}: no rainy image norain-{i}x2.png in {rainy_dir}"
                        for i in sorted(clean.keys() - rainy.keys(), key=int)]
    source.pairs = [Pair(i, rainy[i], clean[i]) for i in sorted(rainy.keys() & clean.keys(), key=int)]
    return source


def read_ddn(src: Path) -> Source:
    """DDN-Data (Rain1400) as a split ships (see DDN_RAINY): output names {i}_{j}, the clean {i} on each."""
    rainy_dir, clean_dir = src / "rainy_image", src / "ground_truth"
    source = Source(src, "rain1400", "Rain1400: rainy_image/ and ground_truth/")
    rainy = _keyed(list_images(rainy_dir), DDN_RAINY, "rainy images", source.problems, lambda m: f"{m[1]}_{m[2]}")
    clean = _keyed(list_images(clean_dir), DDN_CLEAN, "clean images", source.problems, lambda m: m[1])
    used = set()
    for name in sorted(rainy, key=_number_order):
        i = name.split("_")[0]
        if i in clean:
            source.pairs.append(Pair(name, rainy[name], clean[i]))
            used.add(i)
        else:
            source.problems.append(f"{rainy[name]}: no clean image {i}.jpg in {clean_dir}")
    source.problems += [f"{clean[i]}: no rainy image {i}_*.jpg in {rainy_dir}"
                        for i in sorted(clean.keys() - used, key=int)]
    return source


def _flat_name(file: Path, base: Path) -> str:
    """`file`'s path below `base` without its extension, '_' for '/': a unique name that says where it came from."""
    return "_".join(file.relative_to(base).with_suffix("").parts)


def _images_below(folder: Path) -> list[Path]:
    """The images in `folder` and its subfolders (not hidden ones), sorted by path."""
    found = []
    for here, dirs, _ in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += list_images(here)
    return found


def read_did(src: Path) -> Source:
    """DID-Data as DID-MDN ships it: images holding the rainy image (left half) and the clean one (right
    half) side by side, in `src` or its subfolders (the training set: Rain_Heavy/, Rain_Medium/,
    Rain_Light/ each with train2018new/{i}.jpg). Output names: the path below `src`, '_' for '/'.

    DID-MDN's loaders (hezhangsprinter/DID-MDN datasets/pix2pix.py, pix2pix_class.py, pix2pix_val.py)
    crop imgA = (0, 0, w/2, h) and imgB = (w/2, 0, w, h), and derain_train_2018.py and test.py feed
    imgA as the network's input and imgB as its target: left rainy, right clean.
    """
    source = Source(src, "did-mdn", "DID-MDN: side-by-side images, rainy left half, clean right half")
    files = _images_below(src)
    if not files:
        source.problems.append(f"no images in {src} or its subfolders")
    source.pairs = [Pair(_flat_name(f, src), f, f, halves=True) for f in files]
    return source


def _spa_list(src: Path) -> Path:
    """The list file: `src` itself, or the one .txt file in the folder `src`."""
    if src.is_file():
        return src
    lists = sorted(p for p in src.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
    if len(lists) != 1:
        found = ", ".join(p.name for p in lists) or "none"
        raise SourceError([f"{src}: expected one list file (.txt) of 'rainy_path clean_path' lines, found {found}; "
                           "pass the list file itself as SRC"])
    return lists[0]


def read_spa(src: Path) -> Source:
    """SPA-Data as SPANet ships it: a list file whose lines are 'rainy_path clean_path'.

    stevewongv/SPANet dataset.py reads such lines (first field rainy, second clean) from
    training/real_world.txt and testing/real_test_1000.txt (main.py), opening the paths from the code
    folder, the list's parent, with '.' put before the test list's paths (which start with '/').
    So the paths are taken relative to the list's folder, or else to its parent (the one where the
    first listed rainy file is), a leading '/' included. Output names: the rainy path below the
    deepest folder holding every listed rainy file, without extension, '_' for '/'.
    """
    listing = _spa_list(src)
    source = Source(listing, "spanet-list", f"SPANet list file {listing.name}: 'rainy_path clean_path' lines")
    entries = []
    try:
        lines = listing.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError([f"cannot read the list {listing}: {err}"]) from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if len(fields) == 2:
            entries.append((number, *(PurePosixPath(f.lstrip("/")) for f in fields)))
        elif fields:
            source.problems.append(f"{listing} line {number}: expected 'rainy_path clean_path', found {line.strip()!r}")
    if not entries:
        source.problems.append(f"{listing} lists no pairs")
        return source
    bases = (listing.parent, listing.parent.parent)
    base = next((b for b in bases if (b / entries[0][1]).is_file()), None)
    if base is None:
        source.problems.append(f"{listing} line {entries[0][0]}: {entries[0][1]} is neither in {bases[0]} nor in "
                               f"{bases[1]}; unpack the images beside the list as the release ships them")
        return source
    source.base = base
    rainy = [base / e[1] for e in entries]
    common = Path(os.path.commonpath([str(p.parent) for p in rainy]))
    source.pairs = [Pair(_flat_name(r, common), r, base / clean, origin=f"{listing.name} line {number}")
                    for r, (number, _, clean) in zip(rainy, entries)]
    return source


def read_authors(src: Path) -> Source:
    """The authors' package: `src`/input/ and `src`/target/, paired by file stem (data.check's pairing)."""
    report = pair_split(src)
    source = Source(src, "authors", "the authors' package: input/ and target/")
    source.problems = report.problems()  # nothing is decoded yet: folders and pairing only
    source.pairs = [Pair(inp.stem, inp, tar) for inp, tar in report.pairs]
    return source


def read_source(dataset: str, src: Path) -> Source:
    """The split at `src` as its release ships it (the layout is recognised from the folders it holds);
    SourceError when it is none of the layouts `dataset` comes in."""
    if not src.exists():
        raise SourceError([f"no such file or folder: {src}"])
    if src.is_dir() and (src / "input").is_dir() and (src / "target").is_dir():
        return read_authors(src)
    if dataset in ("Rain200L", "Rain200H") and (src / "rain").is_dir() and (src / "norain").is_dir():
        return read_jorder(src)
    if dataset in ("Rain200L", "Rain200H") and src.is_dir() and any(OLD_RAIN100.fullmatch(p.stem)
                                                                     for p in list_images(src)):
        raise SourceError([f"{src} holds rain-N.png beside norain-N.png: the old Rain100H/Rain100L release, whose "
                           f"training set repeats test images; {dataset} is JORDER's new release ({EXPECTED[dataset]}),"
                           " or the authors' package (docs/datasets.md)"])
    if dataset == "DDN-Data" and (src / "rainy_image").is_dir() and (src / "ground_truth").is_dir():
        return read_ddn(src)
    if dataset == "SPA-Data":
        return read_spa(src)
    if dataset == "DID-Data" and src.is_dir():
        return read_did(src)
    raise SourceError([f"{src} is not laid out as {dataset} ships: expected {EXPECTED[dataset]}, or the authors' "
                       "package (input/ and target/)"])


def _duplicates(pairs: list[Pair]) -> list[str]:
    """Output names that two pairs would both write."""
    counts = Counter(pair.name for pair in pairs)
    return [f"{', '.join(str(p.rainy) for p in pairs if p.name == name)} would all be written as {name}"
            for name, n in counts.items() if n > 1]


@dataclass
class Outcome:
    """What prepare_split did with one split."""

    out: Path
    source: Source
    pairs: int
    published: int | None
    action: str  # "built", "kept" or "checked in place"
    mode: str = ""  # "hard links", "copies", "hard links and copies", "PNG halves"


def _planned(source: Source) -> dict[str, tuple[str, Path]]:
    """Each output file (its path inside the split) and the source file it comes from."""
    planned = {}
    for pair in source.pairs:
        inp, tar = pair.outputs
        planned[inp] = (source.relative(pair.rainy), pair.rainy)
        planned[tar] = (source.relative(pair.clean), pair.clean)
    return planned


def _difference_from_manifest(out: Path, source: Source) -> str | None:
    """None when the split `out` was made from this source: its manifest records the same layout, the same
    output names, each from the same source file with the recorded size and modification time, each
    output file has its recorded size, and nothing else is in the split. Else what differs. No hashes:
    a rerun reads no image (data.check compares the hashes). The modification time tells a file that
    was rewritten with other bytes of the same size (unzip restores the archive's times)."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
        recorded, layout = manifest["files"], manifest["source"]["layout"]
    except FileNotFoundError:
        return f"{out} exists and has no {MANIFEST} (it was not made by data.prepare)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{out / MANIFEST} cannot be read ({type(err).__name__}: {err})"
    if layout != source.layout:
        return f"{out} was made from another layout ({layout}, not {source.layout})"
    planned = _planned(source)
    present = {f"{side}/{p.name}" for side in ("input", "target") if (out / side).is_dir()
               for p in list_images(out / side)}
    if recorded.keys() != planned.keys() or present != planned.keys():
        differ = sorted((recorded.keys() | present) ^ planned.keys())
        return f"{out} holds other files than {source.path} gives ({len(differ)} differ, e.g. {', '.join(differ[:3])})"
    for name, (relative, file) in planned.items():
        entry = recorded[name]
        try:
            stat = file.stat()
            same = (entry["source"] == relative and stat.st_size == entry["source_bytes"]
                    and stat.st_mtime_ns == entry["source_mtime_ns"] and (out / name).stat().st_size == entry["bytes"])
        except (OSError, KeyError, TypeError):
            same = False
        if not same:
            return f"{file} changed since {out / name} was made from it ({MANIFEST} records another size or time)"
    return None


def _place(src: Path, dst: Path, copy: bool) -> str:
    """Hard-links (or, with `copy` or where no link can be made, copies) `src` to `dst`; 'link' or 'copy'."""
    if not copy:
        try:
            os.link(src, dst)
            return "link"
        except OSError as err:
            if err.errno not in NO_LINK:
                raise
    shutil.copy2(src, dst)
    return "copy"


def _entry(file: Path, digest: str, source: Source, src: Path, **extra: Any) -> dict[str, Any]:
    """The manifest's line of the output `file` (SHA-256 `digest`), made from the source file `src`."""
    stat = src.stat()
    return {"bytes": file.stat().st_size, "sha256": digest, "source": source.relative(src),
            "source_bytes": stat.st_size, "source_mtime_ns": stat.st_mtime_ns, **extra}


class _Builder:
    """Checks each pair and, while no pair has failed, writes it into the folder `into` (None: the files
    stay where they are, the authors' package in place) and gives its manifest entries."""

    def __init__(self, source: Source, into: Path | None, copy: bool):
        self.source, self.into, self.copy = source, into, copy
        self.failed = threading.Event()  # once a pair fails nothing more is written: it will all be removed
        # per source file, as DDN's clean images serve 14 pairs each (two threads may both compute one: harmless)
        self.shapes: dict[Path, tuple[int, int]] = {}
        self.digests: dict[Path, str] = {}

    def _shape(self, path: Path) -> tuple[int, int]:
        """(height, width) of the decoded image; ImageReadError when it does not decode."""
        if path not in self.shapes:
            self.shapes[path] = read_rgb8(path)[0].shape[:2]
        return self.shapes[path]

    def _digest(self, path: Path) -> str:
        if path not in self.digests:
            self.digests[path] = sha256_file(path)
        return self.digests[path]

    def __call__(self, pair: Pair) -> tuple[list[str], dict[str, dict[str, Any]], set[str]]:
        """(problems, manifest entries, how the files were placed) of one pair."""
        where = f" (listed in {pair.origin})" if pair.origin else ""
        missing = [f"missing: {path}{where}" for path in dict.fromkeys((pair.rainy, pair.clean)) if not path.is_file()]
        if missing:
            self.failed.set()
            return missing, {}, set()
        return self._halves(pair) if pair.halves else self._files(pair, where)

    def _files(self, pair: Pair, where: str) -> tuple[list[str], dict[str, dict[str, Any]], set[str]]:
        problems, shapes = [], []
        for path in (pair.rainy, pair.clean):
            try:
                shapes.append(self._shape(path))
            except ImageReadError as err:
                problems.append(f"{err}{where}")
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            problems.append(size_mismatch(pair.rainy, shapes[0], pair.clean, shapes[1]) + where)
        if problems:
            self.failed.set()
        if problems or self.failed.is_set():
            return problems, {}, set()
        entries, modes = {}, set()
        for name, src in zip(pair.outputs, (pair.rainy, pair.clean)):
            dst = src if self.into is None else self.into / name
            modes.add("in place" if self.into is None else _place(src, dst, self.copy))
            entries[name] = _entry(dst, self._digest(src), self.source, src)  # a link or copy: the same bytes
        return [], entries, modes

    def _halves(self, pair: Pair) -> tuple[list[str], dict[str, dict[str, Any]], set[str]]:
        try:
            rgb = read_rgb8(pair.rainy)[0]
        except ImageReadError as err:
            self.failed.set()
            return [str(err)], {}, set()
        height, width = rgb.shape[:2]
        if width % 2:
            # DID-MDN (Python 2, w/2 floors) would give the right half one column more than the left:
            # a pair of two sizes, which is refused like any other
            self.failed.set()
            return [f"{pair.rainy} is {width}x{height}: an odd width does not split into two halves of one size"], \
                {}, set()
        if self.failed.is_set():
            return [], {}, set()
        entries = {}
        for name, half, side in zip(pair.outputs, (rgb[:, :width // 2], rgb[:, width // 2:]), ("left", "right")):
            write_png_atomic(self.into / name, np.ascontiguousarray(half))
            entries[name] = _entry(self.into / name, sha256_file(self.into / name), self.source, pair.rainy, half=side)
        return [], entries, {"png"}


def _mode(modes: set[str]) -> str:
    """How the files got into the split, in words."""
    for mode, words in (("png", "PNG halves"), ("in place", "in place")):
        if mode in modes:
            return words
    return {frozenset({"link"}): "hard links", frozenset({"copy"}): "copies"}.get(frozenset(modes),
                                                                                  "hard links and copies")


def _manifest(dataset: str, split: str, source: Source, entries: dict[str, dict[str, Any]], mode: str) -> str:
    """manifest.json's text: one line per file, as SPA's 640 thousand pairs make 1.3 million of them."""
    pairs = len(source.pairs)
    published = published_pairs(dataset, split)
    head = json.dumps({
        "dataset": dataset, "split": split,
        "source": {"path": str(source.path.resolve()), "layout": source.layout, "description": source.description},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pairs": pairs, "published": published, "difference": None if published is None else pairs - published,
        "mode": mode,
    }, indent=1).removesuffix("\n}")
    files = ",\n".join(f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in sorted(entries.items()))
    return f'{head},\n "files": {{\n{files}\n }}\n}}\n'


def _swap_in(tmp: Path, out: Path) -> None:
    """Renames the finished `tmp` to `out`, replacing an old `out` (moved aside first, then removed)."""
    old = None
    with signals_ignored():  # between the two renames an interrupt would leave no split at all
        if out.exists():
            old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
            out.rename(old)
        tmp.rename(out)
    if old is not None:
        shutil.rmtree(old)


def prepare_split(dataset: str, split: str, source: Source, output: Path, copy: bool = False, overwrite: bool = False,
                  threads: int = 8, progress: bool = True) -> Outcome:
    """Builds `output`/`dataset`/`split` from `source` (read_source's): checked, then written into a temporary
    folder and renamed into place. SourceError (nothing written) when a pair fails the checks or an
    existing split differs and `overwrite` is not given; KeyboardInterrupt leaves nothing half-written."""
    out = output / dataset / split
    published = published_pairs(dataset, split)
    problems = source.problems + _duplicates(source.pairs)
    if not problems and not source.pairs:
        problems = [f"no pairs in {source.path}"]
    desc = f"{dataset} {split}"
    if problems:  # the pairs there are are checked all the same, so that one run names every faulty file
        _build(source, None, copy, threads, desc, progress, problems)
    in_place = source.layout == "authors" and out.exists() and out.resolve() == source.path.resolve()
    if not in_place:
        # an --overwrite removes the old split: it must not hold the source (nor DID's walk the output)
        files = source.base or source.path
        for inner, outer in ((files, out), (out, files)):
            if outer.is_dir() and inner.resolve().is_relative_to(outer.resolve()):
                raise SourceError([f"{inner} lies inside {outer}: keep the source and the output split apart"])
    if out.exists():
        if not out.is_dir():
            raise SourceError([f"{out} is a file, not a split folder"])
        reason = _difference_from_manifest(out, source)
        if reason is None:
            return Outcome(out, source, len(source.pairs), published, "kept")
        first_manifest = in_place and not (out / MANIFEST).exists()  # the authors' package unpacked in place
        if not (overwrite or first_manifest):
            raise SourceError([f"{reason}; pass --overwrite to replace it"])
    if in_place:  # the files stay where they are: they are checked and get their manifest
        entries, mode = _build(source, None, copy, threads, desc, progress)
        write_text_atomic(out / MANIFEST, _manifest(dataset, split, source, entries, mode))
        return Outcome(out, source, len(source.pairs), published, "checked in place", mode)
    out.parent.mkdir(parents=True, exist_ok=True)
    # mkdir rather than tempfile.mkdtemp, whose 0700 would stay on the split; the dot keeps it out of listings
    tmp = out.parent / f".{split}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        for side in ("input", "target"):
            (tmp / side).mkdir()
        entries, mode = _build(source, tmp, copy, threads, desc, progress)
        (tmp / MANIFEST).write_text(_manifest(dataset, split, source, entries, mode))
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Outcome(out, source, len(source.pairs), published, "built", mode)


def _build(source: Source, into: Path | None, copy: bool, threads: int, desc: str, progress: bool,
           known: Sequence[str] = ()) -> tuple[dict[str, dict[str, Any]], str]:
    """Every pair checked and written (see _Builder): the manifest entries and the mode; SourceError listing
    every faulty file, after the `known` problems, when any pair fails (with `known` problems, nothing is
    written)."""
    builder = _Builder(source, into, copy)
    if known:
        builder.failed.set()
    results = run_threaded(builder, source.pairs, threads, desc, progress)
    # dict.fromkeys: a shared clean image that fails is named once, not once per pair
    if problems := list(dict.fromkeys([*known, *(p for found, _, _ in results for p in found)])):
        raise SourceError(problems, str(source.path))
    entries = {name: entry for _, found, _ in results for name, entry in found.items()}
    return entries, _mode(set().union(*(modes for _, _, modes in results)))


def _report(dataset: str, split: str, outcome: Outcome) -> list[str]:
    """The lines printed for a prepared split; the second, if any, is the published-size warning."""
    source, n = outcome.source, outcome.pairs
    if outcome.action == "kept":
        line = f"{dataset} {split}: kept {outcome.out} ({n} pairs; its {MANIFEST} matches {source.path})"
    elif outcome.action == "checked in place":
        line = f"{dataset} {split}: {n} pairs checked in {outcome.out}, where they stay; wrote its {MANIFEST}"
    else:
        line = (f"{dataset} {split}: {n} pairs from {source.path} ({source.description}) -> {outcome.out} "
                f"({outcome.mode})")
    if outcome.published is None:
        return [f"{line}; no published size to compare with"]
    if n == outcome.published:
        return [f"{line}; the published split has {n} too"]
    advice = ("fine for a subset, but scores are not comparable with the paper's then" if n < outcome.published
              else "check that this is the paper's version of the dataset (docs/datasets.md, version pitfalls)")
    return [line, f"{dataset} {split} has {n} pairs, the published split {outcome.published} "
                  f"({difference(n, outcome.published)}); {advice}"]


def _split_error(dataset: str, split: str, err: SourceError) -> str:
    """The error for a split: one line, or a line and the list of faulty files."""
    fix = f"; {FIX_FILES}" if err.where else ""
    if len(err.problems) == 1:
        return f"{PROG}: error: {dataset} {split}: {err.problems[0]}; nothing was written{fix}"
    listed = "\n".join(f"  {p}" for p in err.problems[:SHOWN])
    more = f"\n  ... and {len(err.problems) - SHOWN} more" if len(err.problems) > SHOWN else ""
    return (f"{PROG}: error: {dataset} {split}: {len(err.problems)} problems{' in ' + err.where if err.where else ''}"
            f"; nothing was written:\n{listed}{more}\n{FIX_FILES[0].upper()}{FIX_FILES[1:]}.")


def _dataset(text: str) -> str:
    name = canonical_name(text)
    if name is None:
        raise argparse.ArgumentTypeError(f"unknown dataset {text!r}; choose from {', '.join(dataset_names())}")
    return name


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("name", type=_dataset, metavar="NAME", help=", ".join(dataset_names()))
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=Path, metavar="SRC", help=f"the {split} split as its release ships it")
    parser.add_argument("--output", type=Path, default=Path("Datasets"),
                        help="the Datasets folder (default: %(default)s)")
    parser.add_argument("--copy", action="store_true", help="copy the files instead of hard-linking them")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing split that differs")
    parser.add_argument("--threads", type=int, default=min(8, os.cpu_count() or 1), help="decoding threads")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    splits = {split: getattr(args, split) for split in SPLITS if getattr(args, split) is not None}
    if not splits:
        print(f"{PROG}: error: give --train SRC, --test SRC or both", file=sys.stderr)
        return 2
    sources = {}
    for split, src in splits.items():  # every source's layout is recognised before anything is written
        try:
            sources[split] = read_source(args.name, src)
        except SourceError as err:
            print(_split_error(args.name, split, err), file=sys.stderr)
            return 2
        except OSError as err:
            print(f"{PROG}: error: {args.name} {split}: cannot read {src}: {err}", file=sys.stderr)
            return 2
    try:
        with sigterm_as_interrupt():
            for split, source in sources.items():
                outcome = prepare_split(args.name, split, source, args.output, args.copy, args.overwrite, args.threads)
                line, *warning = _report(args.name, split, outcome)
                print(line)
                for text in warning:
                    print(f"{PROG}: warning: {text}", file=sys.stderr)
    except SourceError as err:
        print(_split_error(args.name, split, err), file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{PROG}: error: {args.name} {split}: cannot write the split: {err}; nothing was left half-written",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted during {args.name} {split}; nothing half-written was left (rerun to finish)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
