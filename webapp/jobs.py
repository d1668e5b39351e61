"""What the page's Derain button does, without gradio: the weights on offer, one network loaded per
weights file, an uploaded file read within the pixel limit, and its result as test.py writes it."""
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from evaluations.metrics import psnr_ssim, resolve_protocol
from inference.folder import derain
from inference.network import BATCH_WINDOWS, WINDOW, DerainingNetwork, load_network
from inference.tiling import Progress
from models.pretrained import find, names, releases, resolve_weights
from utils.device import device_name
from utils.image_io import ImageReadError, PixelLimitError, read_rgb8, write_png_atomic

REPO = Path(__file__).resolve().parents[1]
MAX_PIXELS = 4096 * 4096  # the page's limit: 256 windows of 256x256, about 13 minutes for NeRD-Rain-S on 2 CPU cores
DEMO_WEIGHTS = Path("demo/experiment/model_best.pth")  # what `bash demo.sh` trains, under REPO
KEEP_RESULTS_S = 3600  # the page's own copies (gradio's cache) are deleted after an hour too


class InputError(ValueError):
    """Something wrong with what was uploaded or chosen, worded for the person at the page."""


class Upload(NamedTuple):
    """An uploaded file: where the server keeps it, and its name on the person's machine."""

    path: Path
    name: str


class Result(NamedTuple):
    """A finished job: the input and the result as PNG files, a line on how it went, PSNR/SSIM if scored."""

    input_png: Path
    output_png: Path
    summary: str
    scores: tuple[float, float] | None


def weight_choices(weights: list[str] | None) -> dict[str, str]:
    """The weights the page offers, {label: file or released name}: each --weights file or released name,
    the demo model when `bash demo.sh` has made one, then every released name (downloaded on first use).
    ValueError when a --weights value is neither a file nor a released name."""
    choices: dict[str, str] = {}
    for given in weights or []:
        path = Path(given).expanduser()
        if path.is_file():
            choices.setdefault(given, str(path.resolve()))
        elif release := find(given):
            choices.setdefault(release.name, release.name)
        else:
            raise ValueError(f"--weights {given}: no such file, nor a released name ({', '.join(names())})")
    demo = REPO / DEMO_WEIGHTS
    if demo.is_file() and str(demo.resolve()) not in choices.values():
        choices[f"demo model ({DEMO_WEIGHTS})"] = str(demo.resolve())
    for release in releases():
        if release.name not in choices.values():
            cached = "" if release.path.is_file() else ", downloaded on first use"
            choices[f"{release.name} (the authors' weights{cached})"] = release.name
    return choices


def read_upload(upload: Upload, max_pixels: int) -> tuple[np.ndarray, str | None]:
    """The file's pixels and conversion note as read_rgb8 gives them, or InputError: not an image, or
    more than `max_pixels` pixels (read_rgb8 checks the header first, so a huge image is never decoded)."""
    try:
        return read_rgb8(upload.path, max_pixels)
    except PixelLimitError as err:
        raise InputError(f"{upload.name} is {err.size}; this app takes images of at most {max_pixels:,} pixels "
                         "(--max_pixels).") from None
    except ImageReadError as err:
        raise InputError(f"Cannot read {upload.name}: {err.reason}.") from None


class Networks:
    """The networks loaded so far on one device, one per weights file; a file that changed is loaded anew.
    `window`: the window size they tile images with."""

    def __init__(self, device: torch.device, window: int = WINDOW):
        self.device, self.window = device, window
        self.loaded: dict[str, tuple[int, DerainingNetwork]] = {}  # file -> (its mtime in ns, the network)

    def get(self, weights: str) -> DerainingNetwork:
        """The network in `weights` (a file or a released name), loaded as test.py loads it
        (inference.network.load_network), or InputError."""
        try:
            path = resolve_weights(weights)  # a released name: its cached file, downloaded the first time
            mtime = os.stat(path).st_mtime_ns
            if weights in self.loaded and self.loaded[weights][0] == mtime:
                return self.loaded[weights][1]
            self.loaded.pop(weights, None)  # free the old network before loading the new one
            network = load_network(path, self.device, window=self.window)
        except Exception as err:  # noqa: BLE001 - whatever fails to load, the page says so and goes on
            label = weights if find(weights) else Path(weights).name
            raise InputError(f"Cannot load the weights {label}: {err}") from None
        self.loaded[weights] = (mtime, network)
        return network


class Deraining:
    """Derains uploaded files one at a time as test.py does with its default options (the same loading,
    windows of `window` and chunks), writing the input and the result as PNGs into job folders under `out_dir`."""

    def __init__(self, choices: dict[str, str], device: torch.device, out_dir: Path, max_pixels: int = MAX_PIXELS,
                 window: int = WINDOW):
        self.choices, self.device, self.out_dir, self.max_pixels = choices, device, out_dir, max_pixels
        self.networks = Networks(device, window)
        self.lock = threading.Lock()  # the page's queue runs one job at a time; this holds for any caller

    def __call__(self, image: Upload, weights: str, target: Upload | None = None, protocol: str = "A",
                 progress: Progress | None = None) -> Result:
        """Derains `image` with the weights file `weights` (one of the choices); with a clean `target`,
        also scores the result (evaluations.metrics.psnr_ssim under `protocol`). InputError for bad input."""
        if weights not in self.choices.values():
            raise InputError(f"Unknown weights {weights!r}: choose one of the list.")
        if target is not None:
            try:
                protocol = resolve_protocol(protocol)
            except ValueError as err:
                raise InputError(str(err)) from None
        rgb, note = read_upload(image, self.max_pixels)
        clean = read_upload(target, self.max_pixels)[0] if target is not None else None
        if clean is not None and clean.shape != rgb.shape:
            raise InputError(f"The clean target {target.name} is {clean.shape[1]}x{clean.shape[0]}, the image "
                             f"{rgb.shape[1]}x{rgb.shape[0]}: they must be the same size.")
        with self.lock:
            network = self.networks.get(weights)
            start = time.perf_counter()
            try:
                result = derain(network.network, rgb, network.window, BATCH_WINDOWS, progress=progress)
            except torch.OutOfMemoryError:
                torch.cuda.empty_cache()
                raise InputError(f"Out of memory deraining {image.name} ({rgb.shape[1]}x{rgb.shape[0]}) on "
                                 f"{device_name(self.device)}; try a smaller image.") from None
            seconds = time.perf_counter() - start
        summary = (f"{network.description}: {rgb.shape[1]}x{rgb.shape[0]} in {seconds:.1f} s "
                   f"on {device_name(self.device)}" + (f"; converted to 8-bit RGB ({note})" if note else ""))
        scores = psnr_ssim(result, clean, protocol) if clean is not None else None
        job = self.new_job_folder()
        stem = Path(image.name).stem
        input_png, output_png = job / f"{stem}_input.png", job / f"{stem}_derained.png"
        write_png_atomic(input_png, rgb)
        write_png_atomic(output_png, result)
        return Result(input_png, output_png, summary, scores)

    def new_job_folder(self) -> Path:
        """A fresh folder for one job's PNGs; folders of jobs older than KEEP_RESULTS_S go."""
        cutoff = time.time() - KEEP_RESULTS_S
        for old in self.out_dir.iterdir():
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.out_dir, prefix="job-"))
