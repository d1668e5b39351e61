"""The authors' released weights by name ("NeRD-Rain/Rain200H"): downloaded once, verified, cached.

python -m models.pretrained list                  every name, whether it is cached, and its file
python -m models.pretrained download NAME... | all  fetch ahead of time

A name is <Model>/<Dataset> as in Table 1 (any case). Its file is <cache>/<Model>/<Dataset>.pth, where
<cache> is $NERD_RAIN_HOME/weights, else ~/.cache/nerd_rain/weights. A missing file is downloaded from
the Google Drive id in pretrained.json (the authors' README links) and enters the cache only once it
loads, holds the named network and has the authors' keys. Exit codes: 0 done, 2 a bad name or a
download that failed (nothing is left in the cache then).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import gdown
import torch

from utils.checkpoint import read_checkpoint

from . import MODELS, build_model, model_name
from .key_map import to_authors_keys
from .weights import authors_state, infer_network_options, network_state

RELEASES = Path(__file__).with_name("pretrained.json")  # the links of the authors' README
DRIVE_URL = "https://drive.google.com/uc?id={}"
DOWNLOAD_URL = DRIVE_URL  # what gdown fetches; tests point it at a local server
HOME_VARIABLE = "NERD_RAIN_HOME"


class DownloadError(ValueError):
    """A released file that could not be fetched or verified; the message says how to get it by hand."""


@dataclass(frozen=True)
class Release:
    """One released checkpoint: the paper's model and dataset names and where the authors put it."""

    model: str
    dataset: str
    google_drive_id: str
    baidu_url: str
    baidu_code: str

    @property
    def name(self) -> str:
        return f"{self.model}/{self.dataset}"

    @property
    def drive_url(self) -> str:
        return DRIVE_URL.format(self.google_drive_id)

    @property
    def path(self) -> Path:
        """Where the file is cached (and where a manual download goes)."""
        return cache_dir() / self.model / f"{self.dataset}.pth"


def cache_dir() -> Path:
    """$NERD_RAIN_HOME/weights, else ~/.cache/nerd_rain/weights."""
    home = os.environ.get(HOME_VARIABLE)
    return Path(home).expanduser() / "weights" if home else Path.home() / ".cache" / "nerd_rain" / "weights"


@cache
def releases() -> tuple[Release, ...]:
    """Every released checkpoint, in pretrained.json's order."""
    table = json.loads(RELEASES.read_text())["weights"]
    return tuple(Release(model, dataset, **links) for model, files in table.items() for dataset, links in files.items())


def find(name: str) -> Release | None:
    """The release called `name` ("NeRD-Rain/Rain200H", any case), or None."""
    return next((r for r in releases() if r.name.lower() == name.strip().lower()), None)


def names() -> list[str]:
    return [r.name for r in releases()]


def resolve_weights(given: str | os.PathLike) -> Path:
    """The checkpoint file for a --weights argument: an existing path as it is; else a released name's
    cached file, downloaded first if missing (DownloadError if that fails); else the path as given,
    for the caller's 'not found' message."""
    path = Path(given).expanduser()
    if path.exists():
        return path
    release = find(str(given))
    return fetch(release) if release else path


def fetch(release: Release, quiet: bool = False) -> Path:
    """The release's cached file, downloaded and verified first if it is not there yet."""
    return release.path if release.path.is_file() else download(release, quiet)


def download(release: Release, quiet: bool = False) -> Path:
    """Downloads the release into a temporary folder beside its cache file, verifies it, then moves it
    into place atomically. DownloadError, with nothing left in the cache, when any step fails."""
    release.path.parent.mkdir(parents=True, exist_ok=True)
    # gdown keeps partial files (.part) beside its output for resuming: a folder of our own takes them all
    folder = Path(tempfile.mkdtemp(dir=release.path.parent, prefix=f".{release.dataset}-download-"))
    try:
        file = folder / "model_best.pth"
        try:
            gdown.download(DOWNLOAD_URL.format(release.google_drive_id), str(file), quiet=quiet)
        except Exception as err:  # noqa: BLE001 - network, HTTP and Drive errors come as many types
            raise DownloadError(_manual(release, f"the download failed ({_first_line(err)})")) from None
        try:
            verify(file, release)
        except ValueError as err:  # the temporary file's path would only confuse: it is gone when this is read
            reason = str(err).removeprefix(f"cannot read checkpoint {file}: ").rstrip(".")
            raise DownloadError(_manual(release, f"the downloaded file is not the release: {reason}")) from None
        os.replace(file, release.path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _remove_if_empty(release.path.parent)
    return release.path


def verify(path: Path, release: Release) -> None:
    """ValueError unless `path` loads (weights only), holds the release's network and has its authors' keys."""
    state = read_checkpoint(path)["state_dict"]
    try:
        found = model_name(infer_network_options(state))
    except (ValueError, KeyError, IndexError):
        found = None
    if found != release.model:
        raise ValueError(f"it holds {found or 'no network of the paper'}, not {release.model}")
    keys = set(to_authors_keys(network_state(state)))
    expected = set(authors_keys(release.model))
    if keys != expected:
        differ = sorted(keys ^ expected)
        raise ValueError(f"its keys differ from the authors' {release.model} in {len(differ)} names "
                         f"(e.g. {', '.join(differ[:3])})")


def authors_keys(model: str) -> list[str]:
    """The authors' key names of the paper's network `model`, in their order."""
    kind = next(kind for kind, size in MODELS.items() if size.name == model)
    with torch.device("meta"):  # names only: no memory, no initialisation
        return list(authors_state(build_model({"type": kind})))


def _manual(release: Release, what: str) -> str:
    return (f"Cannot get the weights {release.name}: {what}. Download the file by hand from Google Drive "
            f"({release.drive_url}) or Baidu ({release.baidu_url}, code {release.baidu_code}) and save it as "
            f"{release.path}; it is then used as it is. Nothing was left in the cache.")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty: it holds other files
        pass


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m models.pretrained", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every name, whether it is cached, and its file")
    fetch_parser = commands.add_parser("download", help="fetch released weights ahead of time")
    fetch_parser.add_argument("names", nargs="+", metavar="NAME", help="e.g. NeRD-Rain/Rain200H, or all")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.command == "list":
        width = max(map(len, names()))
        for release in releases():
            print(f"{release.name:<{width}}  {'cached ' if release.path.is_file() else 'missing'}  {release.path}")
        return 0
    wanted = releases() if [n.lower() for n in args.names] == ["all"] else [find(n) for n in args.names]
    if None in wanted:
        unknown = [n for n, r in zip(args.names, wanted) if r is None]
        print(f"models.pretrained: error: unknown name(s) {', '.join(unknown)}; choose from {', '.join(names())}, "
              "or all", file=sys.stderr)
        return 2
    failed = 0
    for release in wanted:
        try:
            print(f"{release.name}: {fetch(release)}")
        except DownloadError as err:
            print(f"models.pretrained: error: {err}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
