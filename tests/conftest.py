"""Shared fixtures: the files in tests/fixtures, a tiny network, the command-line scripts, and the full
benchmark data in $NERD_SHARED (default ../shared beside the clone) for the tests marked `shared`.

Tests marked `shared` skip with one line when that data is missing, or fail when NERD_REQUIRE_SHARED is
set (as .ci/run sets it), so that CI cannot go green without them.
"""
import importlib.util
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
import torch
import yaml

from models import build_model
from models.weights import infer_network_options, load_weights, save_network

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY_NETWORK = {"type": "NeRDRain", "dim": 8, "num_blocks": [1, 1, 1], "heads": [1, 1, 2]}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared: needs the full benchmark data in $NERD_SHARED (default ../shared)")


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """tests/fixtures (its README says what each file is)."""
    return FIXTURES


@pytest.fixture(scope="session")
def golden() -> dict:
    """The golden fixture made by running the authors' code (tests/fixtures/README.md)."""
    return torch.load(FIXTURES / "golden" / "parity.pt", weights_only=True)


@pytest.fixture(scope="session")
def golden_weights() -> Path:
    """The golden fixture as a checkpoint file (it holds a `state_dict` under the authors' key names)."""
    return FIXTURES / "golden" / "parity.pt"


@pytest.fixture
def golden_network(golden: dict) -> torch.nn.Module:
    """A fresh network with the golden weights (train mode, contiguous, as built)."""
    model = build_model(infer_network_options(golden["state_dict"]))
    load_weights(model, golden["state_dict"])
    return model


@pytest.fixture(scope="session")
def shared_dir(request: pytest.FixtureRequest) -> Path:
    """The full benchmark data (datasets/, samples/, golden/, paper/); for tests marked `shared`."""
    path = Path(os.environ.get("NERD_SHARED", REPO.parent / "shared"))
    if not (path / "datasets").is_dir():
        message = f"needs the benchmark data in {path} (set NERD_SHARED)"
        if os.environ.get("NERD_REQUIRE_SHARED"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def tiny_options() -> dict:
    """The options of a tiny NeRD-Rain (dim 8, one block a level), fast enough for any test (copy to change)."""
    return TINY_NETWORK


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the tiny network with torch's seed-0 initialisation."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    with torch.random.fork_rng(devices=[]):  # leaves the global generator as the tests left it
        torch.manual_seed(0)
        save_network(path, build_model(TINY_NETWORK), epoch=1)
    return path


def load_script(name: str) -> ModuleType:
    """A top-level script (test.py, app.py) as a module, loaded by path: `import test` could find the
    standard library's test package."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def test_py() -> ModuleType:
    """test.py, the deraining command line."""
    return load_script("test")


@pytest.fixture(scope="session")
def app_py() -> ModuleType:
    """app.py, the web app's command line."""
    return load_script("app")


@pytest.fixture(scope="session")
def train_pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny training set in the authors' layout: {train,test}/{input,target}/img{0,1}.png, smooth clean
    images with bright streaks; one training pair is smaller than a patch of 32 (reflect padding)."""
    root, rng = tmp_path_factory.mktemp("train_pairs"), np.random.default_rng(0)
    for split, sizes in (("train", [(40, 44), (28, 48)]), ("test", [(36, 36), (40, 32)])):
        for side in ("input", "target"):
            (root / split / side).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            clean = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
            rainy = np.clip(clean.astype(int) + (rng.random((h, w, 1)) < 0.1) * 120, 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / split / "input" / f"img{i}.png"), rainy)
            cv2.imwrite(str(root / split / "target" / f"img{i}.png"), clean)
    return root


@pytest.fixture
def broken_train_pairs(train_pairs: Path, tmp_path: Path) -> Path:
    """train_pairs' training pairs plus a third whose input is not an image and a fourth whose sizes differ."""
    root, train = tmp_path / "broken", train_pairs / "train"
    for side in ("input", "target"):
        (root / side).mkdir(parents=True)
        for src in (train / side).iterdir():
            (root / side / src.name).write_bytes(src.read_bytes())
    (root / "input" / "img2.png").write_bytes(b"\x89PNG not really")
    (root / "target" / "img2.png").write_bytes((train / "target" / "img0.png").read_bytes())
    (root / "input" / "img3.png").write_bytes((train / "input" / "img0.png").read_bytes())
    (root / "target" / "img3.png").write_bytes((train / "target" / "img1.png").read_bytes())
    return root


@pytest.fixture(scope="session")
def train_options(tiny_options: dict):
    """write(data, path, **train): writes the options of a tiny run on `data` (train/ and test/) into `path`,
    experiment folder path.parent/exp, 4 epochs of patch 32 by default; returns `path`."""
    def write(data: Path, path: Path, **train: object) -> Path:
        opt = {
            "network": tiny_options,
            "datasets": {"train": {"dir": str(data / "train"), "patch_size": 32, "num_workers": 1},
                         "val": {"dir": str(data / "test"), "patch_size": 32, "num_workers": 0}},
            "train": {"epochs": 4, "warmup_epochs": 1, "lr": 1e-3, "save_every": 2, **train},
            "paths": {"experiment": str(path.parent / "exp")},
        }
        path.write_text(yaml.safe_dump(opt))
        return path
    return write


@pytest.fixture(scope="session")
def assert_same_weights():
    """same(a, b): asserts that two checkpoint files hold the same weights, bit for bit."""
    def same(a: Path, b: Path) -> None:
        wa, wb = (torch.load(path, weights_only=True)["state_dict"] for path in (a, b))
        assert wa.keys() == wb.keys()
        assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])][:3]
    return same


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's own id: its draws never depend on which tests ran before."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def epoch_lrs():
    """rates(num_epochs, lr, warmup_epochs=3, eta_min=1e-6): the rate each epoch runs at (index e-1 for
    epoch e) with the authors' scheduler, stepped as the trainer steps it."""
    from training.scheduler import build_scheduler

    def rates(num_epochs: int, lr: float, warmup_epochs: int = 3, eta_min: float = 1e-6) -> list[float]:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        scheduler = build_scheduler(optimizer, num_epochs, warmup_epochs, eta_min)
        result = []
        for _ in range(num_epochs):
            result.append(optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradients: a no-op that keeps torch's step-order check quiet
            scheduler.step()
        return result
    return rates


@pytest.fixture(scope="session")
def huge_png():
    """write(path, width, height): a 69-byte PNG whose header declares width x height 8-bit RGB pixels, its
    pixel data a few zero rows: what a reader must refuse from the header, never decoding it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def write(path: Path, width: int, height: int) -> Path:
        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, no interlacing
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(64)))
                         + chunk(b"IEND", b""))
        return path
    return write


@pytest.fixture(scope="session")
def without_dac_override() -> list[str]:
    """A command prefix under which file modes hold: none for a user, and for root, which ignores them,
    setpriv dropping CAP_DAC_OVERRIDE (util-linux). Skips the test where root cannot drop it."""
    if os.geteuid() != 0:
        return []
    prefix = [shutil.which("setpriv") or "setpriv", "--bounding-set=-dac_override", "--"]
    try:
        subprocess.run([*prefix, "true"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("running as root, which ignores file modes, without setpriv to drop CAP_DAC_OVERRIDE")
    return prefix


@pytest.fixture
def small_disk(tmp_path: Path):
    """mount(size): an empty folder on a tmpfs of `size` (e.g. "32m"), to fill a disk for real; unmounted
    after the test. Skips where this process cannot mount (not root, or a container without the right)."""
    mounted = []

    def mount(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                               capture_output=True).returncode:
            pytest.skip("cannot mount a tmpfs here (needs root) to fill a disk")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(2)
