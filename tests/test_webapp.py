"""webapp.jobs, what the web app's Derain button does (no gradio, no browser; tests/test_app.py has those):
test.py's pixels, the weights on offer and their loading, the pixel limit and bad files as messages."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from evaluations.metrics import psnr_ssim
from models import pretrained
from utils import image_io
from utils.image_io import read_rgb8, write_png_atomic
from webapp import jobs
from webapp.jobs import Deraining, InputError, Upload, read_upload, weight_choices

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def weights(tiny_weights) -> Path:
    return tiny_weights


@pytest.fixture
def deraining(tmp_path, weights) -> Deraining:
    """With windows of 32 instead of test.py's default 256, for speed (tests/test_app.py runs 256)."""
    broken = tmp_path / "broken.pth"
    broken.write_text("not a checkpoint")
    (tmp_path / "jobs").mkdir()
    return Deraining({"tiny": str(weights), "broken": str(broken)}, torch.device("cpu"), tmp_path / "jobs",
                     max_pixels=300 * 300, window=32)


@pytest.fixture
def image_file(rng):
    """make(path, height, width): a random RGB PNG at `path`, as an Upload."""
    def make(path: Path, height: int, width: int) -> Upload:
        write_png_atomic(path, rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        return Upload(path, path.name)
    return make


def test_result_is_test_py_output_and_progress_counts_windows(tmp_path, weights, deraining, test_py, image_file):
    image = image_file(tmp_path / "rainy.png", 80, 100)  # 3 x 4 windows of 32: chunks of 8 and 4
    seen = []
    done = deraining(image, str(weights), progress=lambda *done_total: seen.append(done_total))
    assert test_py.main(["--input", str(image.path), "--output_dir", str(tmp_path / "cli"), "--weights", str(weights),
                     "--device", "cpu", "--win_size", "32"]) == 0
    assert np.array_equal(read_rgb8(done.output_png)[0], read_rgb8(tmp_path / "cli" / "rainy.png")[0])
    assert np.array_equal(read_rgb8(done.input_png)[0], read_rgb8(image.path)[0])
    assert done.output_png.name == "rainy_derained.png" and done.scores is None
    assert seen == [(8, 12), (12, 12)]
    assert "100x80" in done.summary and "cpu" in done.summary


def test_clean_target_is_scored_with_the_protocol(tmp_path, weights, deraining, image_file):
    image, clean = image_file(tmp_path / "rainy.png", 40, 30), image_file(tmp_path / "clean.png", 40, 30)
    done = deraining(image, str(weights), clean, "B")
    assert done.scores == psnr_ssim(read_rgb8(done.output_png)[0], read_rgb8(clean.path)[0], "B")
    with pytest.raises(InputError, match="The clean target small.png is 30x20, the image 30x40"):
        deraining(image, str(weights), image_file(tmp_path / "small.png", 20, 30))


def test_bad_weights_are_a_message_and_the_next_job_works(tmp_path, weights, deraining, image_file):
    image = image_file(tmp_path / "rainy.png", 20, 20)
    with pytest.raises(InputError, match="Cannot load the weights broken.pth: cannot read checkpoint"):
        deraining(image, deraining.choices["broken"])
    with pytest.raises(InputError, match="Unknown weights"):
        deraining(image, "/etc/passwd")
    assert deraining(image, str(weights)).output_png.is_file()


def test_network_is_loaded_once_and_again_when_the_file_changes(tmp_path, weights, deraining):
    copy = tmp_path / "copy.pth"
    copy.write_bytes(weights.read_bytes())
    first = deraining.networks.get(str(copy))
    assert deraining.networks.get(str(copy)) is first
    os.utime(copy, ns=(0, 0))
    assert deraining.networks.get(str(copy)) is not first


@pytest.mark.parametrize("content, expected", [
    (b"", "Cannot read x.png: empty file."),
    (b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8, "Cannot read x.png: not a decodable image"),
])
def test_undecodable_files_are_a_message(tmp_path, content, expected):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(InputError, match=expected):
        read_upload(Upload(tmp_path / "x.png", "x.png"), 100)


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "wide.png"
    assert cv2.imwrite(str(path), np.zeros((11, 10, 3), np.uint8))
    assert read_upload(Upload(path, "wide.png"), 110)[0].shape == (11, 10, 3)
    monkeypatch.setattr(image_io.cv2, "imdecode", None)  # never reached
    with pytest.raises(InputError, match=r"wide.png is 10x11 = 110 pixels; this app takes images of at most 109 "):
        read_upload(Upload(path, "wide.png"), 109)


def test_odd_formats_are_converted_with_a_note(tmp_path, deraining, weights, rng):
    path = tmp_path / "gray16.png"
    assert cv2.imwrite(str(path), rng.integers(0, 65536, (20, 30), dtype=np.uint16))
    done = deraining(Upload(path, path.name), str(weights))
    assert "converted to 8-bit RGB (16-bit, grayscale)" in done.summary


def test_weight_choices(tmp_path, weights, monkeypatch):
    monkeypatch.setattr(jobs, "REPO", tmp_path)
    monkeypatch.setenv("NERD_RAIN_HOME", str(tmp_path / "home"))
    released = {f"{name} (the authors' weights, downloaded on first use)": name for name in pretrained.names()}
    assert weight_choices(None) == released
    with pytest.raises(ValueError, match="--weights nope.pth: no such file, nor a released name .*NeRD-Rain/SPA-Data"):
        weight_choices(["nope.pth"])
    assert weight_choices([str(weights)]) == {str(weights): str(weights.resolve()), **released}
    demo = tmp_path / jobs.DEMO_WEIGHTS
    demo.parent.mkdir(parents=True)
    demo.write_bytes(weights.read_bytes())
    assert list(weight_choices([str(weights)]).items())[:2] == [(str(weights), str(weights.resolve())),
                                                                (f"demo model ({jobs.DEMO_WEIGHTS})", str(demo.resolve()))]
    assert list(weight_choices([str(demo)]).values())[:2] == [str(demo.resolve()), "NeRD-Rain-S/Rain200L"]  # once
    cached = pretrained.find("NeRD-Rain/Rain200H").path
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.read_bytes())
    choices = weight_choices(["nerd-rain/rain200h"])
    assert list(choices.items())[0] == ("NeRD-Rain/Rain200H", "NeRD-Rain/Rain200H") and len(choices) == 11
    assert "NeRD-Rain/Rain200L (the authors' weights, downloaded on first use)" in choices


def test_a_released_name_loads_its_cached_file(tmp_path, weights, deraining, monkeypatch, rng):
    monkeypatch.setenv("NERD_RAIN_HOME", str(tmp_path / "home"))
    cached = pretrained.find("NeRD-Rain-S/Rain200L").path
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.read_bytes())
    deraining.choices["NeRD-Rain-S/Rain200L"] = "NeRD-Rain-S/Rain200L"
    image = tmp_path / "rain.png"
    write_png_atomic(image, rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    assert deraining(Upload(image, image.name), "NeRD-Rain-S/Rain200L").output_png.is_file()
    monkeypatch.setattr(pretrained, "DOWNLOAD_URL", "http://127.0.0.1:9/{}")  # refused: as offline
    deraining.choices["NeRD-Rain/SPA-Data"] = "NeRD-Rain/SPA-Data"
    with pytest.raises(InputError, match="Cannot load the weights NeRD-Rain/SPA-Data: Cannot get the weights "
                                         "NeRD-Rain/SPA-Data: the download failed .* save it as "):
        deraining(Upload(image, image.name), "NeRD-Rain/SPA-Data")
    assert not pretrained.find("NeRD-Rain/SPA-Data").path.exists()


@pytest.mark.parametrize("args, expected", [
    (["--weights", "nope.pth"], "--weights nope.pth: no such file"),
    (["--host", "192.0.2.1"], r"cannot serve on 192.0.2.1:7860 \(--host, --port\): Cannot assign"),  # TEST-NET-1
    (["--port", "BUSY"], r"--port \d+: the port is in use on 127.0.0.1 \(another server\?\); choose another with "
                         "--port N"),
])
def test_app_refuses_bad_arguments(args, expected, app_py):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        args = [str(busy.getsockname()[1]) if arg == "BUSY" else arg for arg in args]
        with pytest.raises(ValueError, match=expected):
            app_py.setup(app_py.parse_args(args))


@pytest.mark.parametrize("args, expected", [
    (["--port", "99999"], "argument --port: a port is 1 to 65535, got 99999"),
    (["--port", "0"], "argument --port: a port is 1 to 65535, got 0"),
    (["--max_pixels", "0"], "argument --max_pixels: must be at least 1, got 0"),
])
def test_app_argument_errors_are_usage_errors(args, expected, app_py, capsys):
    assert app_py.main(args) == 2
    err = capsys.readouterr().err
    assert f"error: {expected}" in err and "Traceback" not in err


def test_app_without_gradio_says_how_to_install_it(weights):
    hide_gradio = ("import runpy, sys; sys.modules['gradio'] = None; sys.argv[0] = 'app.py'; "
                   "runpy.run_path('app.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", hide_gradio, "--weights", str(weights)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "pip install -r requirements-app.txt" in done.stderr and "Traceback" not in done.stderr
