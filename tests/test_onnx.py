"""ONNX export (inference/export_onnx.py) and test.py on ONNX Runtime (inference/onnx_runtime.py): parity with
the golden outputs and PyTorch, the same PNGs as the checkpoint gives, and the errors."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from inference import export_onnx
from inference.onnx_runtime import OnnxNetwork
from inference.tiling import tiled_forward
from models.nerd_rain import NeRDRainOutputs
from models.weights import infer_network_options, model_from_checkpoint
from utils.image_io import list_images, read_rgb8, write_png_atomic

REPO = Path(__file__).resolve().parents[1]
WINDOW = 64  # the golden tiled output's window


@pytest.fixture
def cli(test_py):
    return test_py


@pytest.fixture(scope="session")
def exported(tmp_path_factory, golden_weights) -> Path:
    """The golden weights exported once, all seven outputs, windows of 64 (about 50 s on 2 cores)."""
    path = tmp_path_factory.mktemp("onnx") / "golden.onnx"
    assert export_onnx.main(["--weights", str(golden_weights), "--output", str(path), "--win_size", str(WINDOW),
                             "--outputs", "all"]) == 0
    return path


def test_onnx_runtime_matches_the_golden_tiled_output_and_pytorch(exported, golden, golden_weights):
    network = OnnxNetwork(exported)
    assert (network.window, network.outputs, network.source) == (WINDOW, "all", str(golden_weights))
    assert network.options == infer_network_options(golden["state_dict"])
    assert golden["tile_window"] == WINDOW
    tiled = tiled_forward(network, golden["tiled_input"], WINDOW, batch_windows=2)
    assert (tiled - golden["tiled_output"]).abs().max().item() <= 1e-5
    # a batch size other than the export's 2: the batch axis is dynamic
    batch = torch.rand(3, 3, WINDOW, WINDOW, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model_from_checkpoint(golden_weights).eval()(batch)
    got = network(batch)
    assert isinstance(got, NeRDRainOutputs)
    for e, g in zip(expected, got, strict=True):
        assert g.shape == e.shape and (g - e).abs().max().item() <= 1e-5


def rain100h_crops(fixtures: Path, folder: Path) -> None:
    """Three Rain100H inputs cropped: 100x150 (6 windows of 64), 70x90 (4), 40x50 (smaller than a window)."""
    folder.mkdir()
    inputs = list_images(fixtures / "rain100h" / "input")[:3]
    for path, (height, width) in zip(inputs, [(100, 150), (70, 90), (40, 50)], strict=True):
        write_png_atomic(folder / f"{path.stem}.png", read_rgb8(path)[0][:height, :width])


def test_test_py_gives_the_checkpoints_pngs(tmp_path, exported, golden_weights, fixtures, capsys, cli):
    rain100h_crops(fixtures, tmp_path / "in")
    common = ["--input_dir", str(tmp_path / "in"), "--device", "cpu"]
    assert cli.main([*common, "--output_dir", str(tmp_path / "pth"), "--weights", str(golden_weights),
                     "--win_size", str(WINDOW)]) == 0
    assert cli.main([*common, "--output_dir", str(tmp_path / "onnx"), "--weights", str(exported),
                     "--batch_windows", "2"]) == 0  # the window comes from the model
    assert f"in ONNX Runtime, windows of {WINDOW}" in capsys.readouterr().out
    names = [p.name for p in list_images(tmp_path / "pth")]
    assert len(names) == 3 and names == [p.name for p in list_images(tmp_path / "onnx")]
    for name in names:
        pth, onnx = (read_rgb8(tmp_path / folder / name)[0].astype(int) for folder in ("pth", "onnx"))
        source = read_rgb8(tmp_path / "in" / name)[0]
        assert pth.shape == onnx.shape == source.shape
        assert np.abs(pth - onnx).max() <= 1, name
        assert np.abs(pth - source).max() > 1  # the network changed the image: the comparison means something


@pytest.mark.parametrize("extra, expected", [
    (["--win_size", "32"], "--win_size 32 does not match"),
    (["--amp", "--channels_last"], "--amp, --channels_last apply to PyTorch checkpoints"),
])
def test_options_that_do_not_fit_the_onnx_model_are_usage_errors(tmp_path, exported, capsys, extra, expected, cli):
    write_png_atomic(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    assert cli.main(["--input_dir", str(tmp_path / "a.png"), "--output_dir", str(tmp_path / "out"),
                     "--weights", str(exported), "--device", "cpu", *extra]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(exported) in err and (extra[0] != "--win_size" or f"windows of {WINDOW}" in err)
    assert not (tmp_path / "out").exists()


def test_missing_packages_name_the_install_command(tmp_path, exported, golden_weights, monkeypatch, capsys, cli):
    write_png_atomic(tmp_path / "a.png", np.zeros((20, 20, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert cli.main(["--input_dir", str(tmp_path / "a.png"), "--output_dir", str(tmp_path / "out"),
                     "--weights", str(exported), "--device", "cpu"]) == 2
    assert "onnxruntime is not installed" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert export_onnx.main(["--weights", str(golden_weights), "--output", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "onnxscript is not installed" in err and "pip install -r requirements-deploy.txt" in err
    assert not (tmp_path / "x.onnx").exists()


def test_a_failed_check_writes_nothing(tmp_path, exported, golden_weights, monkeypatch, capsys):
    class Program:  # stands in for torch.onnx.export's result, to skip a second export
        model = type("Model", (), {"metadata_props": {}})()

        def save(self, path: str) -> None:
            shutil.copy(exported, path)

    monkeypatch.setattr(export_onnx.torch.onnx, "export", lambda *args, **kwargs: Program())
    monkeypatch.setattr(export_onnx, "_max_difference", lambda *args: 3e-3)
    output = tmp_path / "out.onnx"
    assert export_onnx.main(["--weights", str(golden_weights), "--output", str(output)]) == 1
    assert "0.003 off PyTorch's" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the model nor a temp file


def test_onnx_packages_are_imported_only_when_used():
    code = ("import sys, inference.export_onnx, inference.onnx_runtime, inference.network, webapp.jobs, "
            "evaluations.evaluate; "
            "print(sorted(m for m in ('onnx', 'onnxscript', 'onnxruntime') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
