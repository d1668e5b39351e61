"""The web app (python app.py) in a real browser: headless Chromium driven by Playwright.

The app runs in a subprocess on a free port, with a tiny checkpoint; the page is used as a person
would: upload, choose weights, click Derain, read the result. Results must be the pixels test.py writes,
and neither the page nor the server may reach anything but 127.0.0.1. Needs gradio and playwright
(pip install -r requirements-app.txt) and Debian's chromium at /usr/bin/chromium (or $CHROMIUM);
Playwright's own browser download is never used. Without any of them these tests fail, never skip.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest

from evaluations.metrics import psnr_ssim

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser fixture fails and says how to install it
    sync_playwright = None

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As root in a container: no sandbox; no GPU; none of Chromium's own calls home
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT_S = 180  # python + torch + gradio imports on a busy 2-core machine (about 10 s idle)
TIMEOUT_MS = 120_000  # any one wait in the page: a job of 4 windows takes seconds, longer under load
INSTALL = "pip install -r requirements-app.txt"

# Starts app.py with an audit hook that writes every connection or name lookup off the loopback to a file
LAUNCHER = """
import ipaddress, runpy, sys
log = open(sys.argv[1], "a", buffering=1)
def loopback(host):
    try:
        return host in ("localhost", None) or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
def hook(event, args):
    if event == "socket.getaddrinfo" and not loopback(args[0]):
        log.write(f"lookup {args[0]}:{args[1]}\\n")
    elif event == "socket.connect" and isinstance(args[1], tuple) and not loopback(args[1][0]):
        log.write(f"connect {args[1][0]}:{args[1][1]}\\n")
sys.addaudithook(hook)
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def decode_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "not a decodable image"
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def files(tmp_path_factory, fixtures, tiny_weights) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    (d / "broken.pth").write_text("not a checkpoint")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 64)
    rainy = fixtures / "rain100h" / "input" / "norain-1.png"  # 400x300: 4 windows of 256
    small = d / "small.png"  # one window: the cheapest good image
    assert cv2.imwrite(str(small), cv2.imread(str(rainy.with_name("norain-2.png")))[:90, :120])
    assert cv2.imwrite(str(d / "huge.png"), np.zeros((4097, 4096, 3), np.uint8))  # over 4096x4096, 50 KB
    return {"rainy": rainy, "small": small, "broken": d / "broken.png", "huge": d / "huge.png",
            "weights": tiny_weights, "bad_weights": d / "broken.pth"}


@pytest.fixture(scope="module")
def written_by_test_py(test_py):
    """written(image, weights, out_dir): what test.py writes for `image` with its default options."""
    def written(image: Path, weights: Path, out_dir: Path) -> np.ndarray:
        assert test_py.main(["--input", str(image), "--output_dir", str(out_dir), "--weights", str(weights),
                             "--device", "cpu"]) == 0
        return decode_rgb((out_dir / f"{image.stem}.png").read_bytes())
    return written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """app.py in a subprocess; `ready()` waits until it answers."""

    def __init__(self, url: str, proc: subprocess.Popen, log: Path, netlog: Path):
        self.url, self.proc, self.log, self.netlog = url, proc, log, netlog

    def ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the app exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "gradio_api/info", timeout=2) as response:
                    if response.status == 200:
                        return self.url
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        pytest.fail(f"the app did not answer within {START_TIMEOUT_S} s:\n{self.log.read_text()}")

    def outbound(self) -> list[str]:
        return self.netlog.read_text().splitlines()


@pytest.fixture(scope="module")
def server(files, tmp_path_factory):
    """Started here, waited for in the tests (Chromium starts meanwhile)."""
    d = tmp_path_factory.mktemp("server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_"))}  # the app's own defaults
    env.update(GRADIO_TEMP_DIR=str(d / "gradio"), PYTHONUNBUFFERED="1")  # uploads and results stay in tmp
    log, netlog = d / "app.log", d / "outbound.log"
    netlog.touch()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(netlog), "app.py", "--weights", str(files["weights"]),
             "--weights", str(files["bad_weights"]), "--port", str(port), "--device", "cpu"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}/", proc, log, netlog)
    try:
        yield server
    finally:
        proc.terminate()  # the app takes SIGTERM as Ctrl-C and cleans up
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert server.outbound() == []


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail(f"playwright is not installed: {INSTALL}")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set $CHROMIUM)")
    expect.set_options(timeout=TIMEOUT_MS)  # expect() has its own 5 s default; the context's does not apply
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Tab:
    """One browser tab (its own context, so its own gradio session) on the app; records its requests."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.goto(url)
        expect(self.page.locator("#run")).to_be_enabled()

    def upload(self, path: Path, where: str = "#input-image") -> None:
        """Sets the file and waits until the page shows it, i.e. the upload has reached the server."""
        self.page.locator(f"{where} input[type=file]").set_input_files(path)
        expect(self.page.locator(f"{where} img")).to_have_attribute("src", re.compile(re.escape(path.name) + "$"))

    def choose_weights(self, label: str) -> None:
        self.page.locator("#weights input").click()
        self.page.get_by_role("option", name=label, exact=True).click()
        expect(self.page.locator("#weights input")).to_have_value(label)

    def click_derain(self) -> None:
        self.page.locator("#run").click()

    def result(self, stem: str) -> bytes:
        """Waits for the result of the image named `stem`; its PNG bytes as served to the page."""
        img = self.page.locator("#output-image img")
        expect(img).to_have_attribute("src", re.compile(re.escape(f"/{stem}_derained.png") + "$"))
        return self.fetch(img.get_attribute("src"))

    def fetch(self, url: str) -> bytes:
        response = self.page.request.get(url)
        assert response.ok, f"{url}: {response.status}"
        return response.body()

    def expect_message(self, text: str) -> None:
        """The message is shown in the page; then it is closed, as a person would."""
        toast = self.page.get_by_test_id("toast-body").filter(has_text=text)
        expect(toast).to_be_visible()
        toast.get_by_test_id("toast-close").click()
        expect(toast).to_have_count(0)

    def close(self) -> None:
        self.context.close()
        assert [url for url in self.requests if urlparse(url).scheme not in ("data", "blob")
                and urlparse(url).hostname not in ("127.0.0.1", "localhost")] == []


def test_result_is_test_py_output_and_jobs_queue(server, browser, files, tmp_path, written_by_test_py):
    url = server.ready()  # first: torch in two processes at once, on two busy cores, is many times slower
    expected = written_by_test_py(files["rainy"], files["weights"], tmp_path / "test_py")
    first, second = Tab(browser, url), Tab(browser, url)
    try:
        first.upload(files["rainy"])
        # the server got the file as it is: the input preview is served byte for byte
        assert first.fetch(first.page.locator("#input-image img").get_attribute("src")) == files["rainy"].read_bytes()
        second.upload(files["huge"])
        first.click_derain()
        expect(first.page.locator("#output-image")).to_contain_text("processing")
        second.click_derain()
        expect(second.page.locator("#output-image")).to_contain_text("queue: 1/1")

        png = first.result("norain-1")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        np.testing.assert_array_equal(decode_rgb(png), expected)
        expect(first.page.locator("#compare img")).to_have_count(2)  # the before/after slider
        expect(first.page.locator("#summary")).to_contain_text("400x300")
        with first.page.expect_download() as download:
            first.page.locator("#download").click()
        assert download.value.suggested_filename == "norain-1_derained.png"
        assert Path(download.value.path()).read_bytes() == png
        first.page.evaluate("window.scrollTo(0, 0)")
        first.page.screenshot(path=tmp_path / "app.png", full_page=True)
        print(f"screenshot: {tmp_path / 'app.png'}")

        # the queued job ran after the first: an image over the pixel limit, a message with the limit
        second.expect_message("huge.png is 4096x4097 = 16,781,312 pixels; this app takes images of at most "
                              "16,777,216 pixels")
    finally:
        first.close()
        second.close()


def test_bad_input_is_a_message_and_the_page_goes_on_with_scores(server, browser, files):
    tab = Tab(browser, server.ready())
    try:
        tab.upload(files["broken"])
        tab.click_derain()
        tab.expect_message("Cannot read broken.png: not a decodable image")

        tab.upload(files["small"])
        tab.choose_weights(str(files["bad_weights"]))
        tab.click_derain()
        tab.expect_message("Cannot load the weights broken.pth: cannot read checkpoint")

        tab.choose_weights(str(files["weights"]))
        tab.page.get_by_text("Score against a clean target").click()
        tab.upload(files["small"], "#target-image")  # the input as its own target: any image of its size
        tab.click_derain()
        result = decode_rgb(tab.result("small"))
        assert result.shape == (90, 120, 3)
        psnr, ssim = psnr_ssim(result, decode_rgb(files["small"].read_bytes()), "A")
        expect(tab.page.locator("#scores")).to_have_text(f"PSNR {psnr:.4f} dB, SSIM {ssim:.4f} (protocol A)")
    finally:
        tab.close()
