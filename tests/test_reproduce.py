"""python -m evaluations.reproduce: a small Datasets/ tree from the Rain200L pairs of tests/fixtures, derained
end to end with a tiny checkpoint as test.py derains it, scored with each dataset's protocol, resumed; and
--results_dir."""
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluations import reproduce
from evaluations.metrics import psnr_ssim
from inference import folder
from utils.image_io import read_rgb8, write_png_atomic


def crop_samples(fixtures: Path, input_dir: Path, target_dir: Path, names: tuple[str, str] = ("1", "2")) -> None:
    """The two Rain200L pairs, cropped to 32x32, one window (for speed); inputs named `names`."""
    for folder in (input_dir, target_dir):
        folder.mkdir(parents=True, exist_ok=True)
    for sample, name in zip(("1", "2"), names):
        for side, folder, stem in (("input", input_dir, name), ("target", target_dir, sample)):
            rgb, _ = read_rgb8(fixtures / "rain200l" / side / f"{sample}.png")
            write_png_atomic(folder / f"{stem}.png", rgb[:32, :32])


@pytest.fixture
def datasets(tmp_path, fixtures) -> Path:
    """Datasets/Rain200L (inputs and targets named alike) and DDN-Data (named differently: sorted order)."""
    root = tmp_path / "Datasets"
    for dataset, names in (("Rain200L", ("1", "2")), ("DDN-Data", ("1_1", "2_1"))):
        test = root / dataset / "test"
        crop_samples(fixtures, test / "input", test / "target", names)
    return root


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory, tiny_weights) -> Path:
    """DIR/NeRD-Rain-S/{Rain200L,DDN-Data}.pth: one tiny checkpoint; no NeRD-Rain weights."""
    root = tmp_path_factory.mktemp("weights")
    (root / "NeRD-Rain-S").mkdir()
    for dataset in ("Rain200L", "DDN-Data"):
        shutil.copy(tiny_weights, root / "NeRD-Rain-S" / f"{dataset}.pth")
    return root


def run(datasets: Path, weights_dir: Path, out: Path) -> int:
    return reproduce.main(["--datasets_dir", str(datasets), "--output_dir", str(out), "--weights_dir", str(weights_dir),
                           "--win_size", "32", "--device", "cpu"])


def test_end_to_end_derains_as_test_py_scores_and_resumes(tmp_path, datasets, weights_dir, capsys, monkeypatch,
                                                          test_py):
    out = tmp_path / "table1"
    assert run(datasets, weights_dir, out) == 0
    printed = capsys.readouterr().out
    rows = json.loads((out / "table1.json").read_text())["rows"]
    assert [(r["model"], r["dataset"]) for r in rows] == [(m, d) for m in ("NeRD-Rain", "NeRD-Rain-S") for d in
                                                          ("Rain200L", "Rain200H", "DID-Data", "DDN-Data", "SPA-Data")]
    status = {(r["model"], r["dataset"]): r["status"] for r in rows}
    assert status[("NeRD-Rain", "Rain200L")] == f"skipped: no weights {weights_dir / 'NeRD-Rain' / 'Rain200L.pth'}"
    assert status[("NeRD-Rain-S", "Rain200H")] == f"skipped: no dataset {datasets / 'Rain200H'}"
    done = {r["dataset"]: r for r in rows if r["status"] == "done"}
    assert list(done) == ["Rain200L", "DDN-Data"] and all(r["model"] == "NeRD-Rain-S" for r in done.values())

    # test.py's pixels for the same input and weights
    assert test_py.main(["--input_dir", str(datasets / "Rain200L" / "test" / "input"), "--output_dir",
                     str(tmp_path / "test_py"), "--weights", str(weights_dir / "NeRD-Rain-S" / "Rain200L.pth"),
                     "--win_size", "32", "--device", "cpu"]) == 0
    for name in ("1.png", "2.png"):
        assert np.array_equal(read_rgb8(out / "NeRD-Rain-S" / "Rain200L" / name)[0],
                              read_rgb8(tmp_path / "test_py" / name)[0])

    # each dataset's protocol, and its pairing
    for dataset, protocol, inputs, pairing in (("Rain200L", "A", ("1", "2"), "by name"),
                                              ("DDN-Data", "B", ("1_1", "2_1"), "by sorted order")):
        scores = [psnr_ssim(read_rgb8(out / "NeRD-Rain-S" / dataset / f"{stem}.png")[0],
                            read_rgb8(datasets / dataset / "test" / "target" / f"{target}.png")[0], protocol)
                  for stem, target in zip(inputs, ("1", "2"))]
        row = done[dataset]
        assert (row["protocol"], row["images"], row["pairing"]) == (protocol, 2, pairing)
        assert row["psnr"] == pytest.approx(np.mean([s[0] for s in scores]), abs=1e-12)
        assert row["ssim"] == pytest.approx(np.mean([s[1] for s in scores]), abs=1e-12)
    assert (done["Rain200L"]["paper_psnr"], done["DDN-Data"]["paper_ssim"]) == (41.30, 0.9578)
    assert done["Rain200L"]["network"].startswith("a NeRD-Rain variant (dim 8")

    md = (out / "table1.md").read_text()
    r = done["Rain200L"]
    # the tiny weights are not NeRD-Rain-S: their row is named for them and not compared with the paper
    cell = f"{r['psnr']:.2f} / {r['ssim']:.4f}"
    assert f"| {r['network']} in place of NeRD-Rain-S | {cell} |  |" in md and md.strip() in printed
    assert "\n| NeRD-Rain-S |  | skipped |" in md and "(-" not in md and "(+" not in md

    # a rerun reuses everything; without scores a pair is rescored from its images; a missing image is redone
    def no_network(*args, **kwargs):
        raise AssertionError("the network was loaded")

    monkeypatch.setattr(reproduce, "load_network", no_network)
    (out / "NeRD-Rain-S" / "DDN-Data" / "scores.json").unlink()
    assert run(datasets, weights_dir, out) == 0
    assert json.loads((out / "table1.json").read_text())["rows"] == rows
    monkeypatch.undo()
    (out / "NeRD-Rain-S" / "Rain200L" / "2.png").unlink()
    assert run(datasets, weights_dir, out) == 0
    assert "1 image(s) written" in capsys.readouterr().out
    assert json.loads((out / "table1.json").read_text())["rows"] == rows


def test_a_dataset_laid_out_otherwise_shows_the_expected_layout(tmp_path, datasets, weights_dir, capsys):
    (datasets / "Rain200H" / "rain").mkdir(parents=True)
    (datasets / "Rain200H" / "norain").mkdir()
    assert run(datasets, weights_dir, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{datasets / 'Rain200H'} is not laid out as expected" in err and "the folder holds norain, rain" in err
    assert "Rain200L/test/target/  the clean images" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["--models", "NeRD-Rain-XL"], "unknown model NeRD-Rain-XL; choose from NeRD-Rain, NeRD-Rain-S"),
    (["--datasets", "Rain100H"], "unknown dataset Rain100H"),
    (["--win_size", "24"], "--win_size"),
    (["--device", "cuda"], "CUDA"),
])
def test_bad_arguments_exit_2(tmp_path, datasets, weights_dir, capsys, args, expected):
    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = reproduce.main(["--datasets_dir", str(datasets), "--output_dir", str(tmp_path / "out"),
                           "--weights_dir", str(weights_dir), *args])
    assert code == 2 and expected in capsys.readouterr().err


@pytest.mark.parametrize("where", ["input", "target"])
def test_an_output_dir_among_the_test_images_is_refused(tmp_path, datasets, weights_dir, capsys, where):
    folder = datasets / "Rain200L" / "test" / where
    before = sorted(p.name for p in folder.iterdir())
    assert run(datasets, weights_dir, folder / "table1") == 2
    err = capsys.readouterr().err
    assert f"--output_dir {folder / 'table1'} lies inside the Rain200L test folder {folder}; results and scores" in err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_an_output_dir_that_is_the_results_dir_is_refused(tmp_path, datasets, fixtures, capsys):
    results = tmp_path / "results"
    crop_samples(fixtures, results / "DRSformer" / "Rain200L", tmp_path / "unused")
    assert reproduce.main(["--results_dir", str(results), "--datasets_dir", str(datasets), "--output_dir",
                           str(results)]) == 2
    assert f"--output_dir {results} is --results_dir {results}" in capsys.readouterr().err
    assert not (results / "table1.json").exists()


def test_a_full_disk_stops_the_run_with_one_line(tmp_path, datasets, weights_dir, capsys, monkeypatch):
    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(folder, "write_png_atomic", full)
    assert run(datasets, weights_dir, tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert f"reproduce: error: cannot write {tmp_path / 'out' / 'NeRD-Rain-S'}/" in err
    # the 5 NeRD-Rain pairs, which have no weights, were skipped before
    assert "No space left on device; the run stopped after 5 pair(s)" in err and "Traceback" not in err


def test_results_dir_scores_any_methods_images(tmp_path, datasets, fixtures, capsys):
    results = tmp_path / "results"
    # DRSformer's Rain200L results named otherwise than the targets: paired by sorted order
    crop_samples(fixtures, results / "DRSformer" / "Rain200L", tmp_path / "unused", ("a", "b"))
    # the authors' protocol B folder: N_DR.png beside N_GT.png, no targets needed
    folder = results / "SPDNet" / "DID-Data"
    crop_samples(fixtures, folder, folder, ("1_DR", "2_DR"))
    for n in ("1", "2"):
        (folder / f"{n}.png").rename(folder / f"{n}_GT.png")
    out = tmp_path / "table1"
    assert reproduce.main(["--results_dir", str(results), "--datasets_dir", str(datasets), "--output_dir", str(out),
                           "--datasets", "rain200l", "did-data"]) == 0
    rows = {(r["model"], r["dataset"]): r for r in json.loads((out / "table1.json").read_text())["rows"]}
    assert list(rows) == [("DRSformer", "Rain200L"), ("DRSformer", "DID-Data"), ("SPDNet", "Rain200L"),
                          ("SPDNet", "DID-Data")]
    drs, spd = rows[("DRSformer", "Rain200L")], rows[("SPDNet", "DID-Data")]
    assert (drs["pairing"], drs["protocol"], drs["paper_psnr"], drs["images"]) == ("by sorted order", "A", 41.23, 2)
    expected = np.mean([psnr_ssim(read_rgb8(results / "DRSformer" / "Rain200L" / f"{a}.png")[0],
                                  read_rgb8(datasets / "Rain200L" / "test" / "target" / f"{t}.png")[0], "A")[0]
                        for a, t in (("a", "1"), ("b", "2"))])
    assert drs["psnr"] == pytest.approx(expected, abs=1e-12)
    assert (spd["pairing"], spd["protocol"], spd["paper_psnr"], spd["status"]) == ("N_DR with N_GT", "B", None, "done")
    assert spd["psnr"] == pytest.approx(np.mean([psnr_ssim(read_rgb8(folder / f"{n}_DR.png")[0],
                                                           read_rgb8(folder / f"{n}_GT.png")[0], "B")[0]
                                                 for n in ("1", "2")]), abs=1e-12)
    assert rows[("SPDNet", "Rain200L")]["status"] == f"skipped: no folder {results / 'SPDNet' / 'Rain200L'}"
    md = capsys.readouterr().out
    assert f"| SPDNet | skipped | {spd['psnr']:.2f} / {spd['ssim']:.4f} |" in md


def test_interrupted_run_keeps_finished_pairs_and_goes_on(tmp_path, datasets, weights_dir, capsys, monkeypatch):
    process, calls = reproduce.FolderRun.process, []

    def interrupt_at_the_fourth_image(run, path):
        calls.append(path.name)
        if len(calls) == 4:  # the second image of DDN-Data, after both of Rain200L
            raise KeyboardInterrupt
        process(run, path)

    monkeypatch.setattr(reproduce.FolderRun, "process", interrupt_at_the_fourth_image)
    out = tmp_path / "table1"
    assert run(datasets, weights_dir, out) == 130
    assert "interrupted after 8 pair(s)" in capsys.readouterr().err
    rows = json.loads((out / "table1.json").read_text())["rows"]
    assert len(rows) == 8 and rows[5]["status"] == "done"
    assert sorted(p.name for p in (out / "NeRD-Rain-S" / "DDN-Data").iterdir()) == ["1_1.png"]  # nothing partial
    monkeypatch.undo()
    assert run(datasets, weights_dir, out) == 0
    assert "1 image(s) written to" in capsys.readouterr().out
    rows = json.loads((out / "table1.json").read_text())["rows"]
    assert len(rows) == 10 and (rows[8]["status"], rows[8]["images"]) == ("done", 2)


def test_released_weights_that_cannot_be_downloaded_skip_their_pairs(tmp_path, datasets, capsys, monkeypatch):
    from models import pretrained

    monkeypatch.setenv("NERD_RAIN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pretrained, "DOWNLOAD_URL", "http://127.0.0.1:9/{}")  # refused: as offline
    assert reproduce.main(["--datasets_dir", str(datasets), "--output_dir", str(tmp_path / "out"),
                           "--datasets", "Rain200L", "--device", "cpu"]) == 0
    rows = json.loads((tmp_path / "out" / "table1.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["NeRD-Rain", "NeRD-Rain-S"]
    for row in rows:
        assert row["status"].startswith(f"skipped: Cannot get the weights {row['model']}/Rain200L: the download failed")
        assert str(tmp_path / "home" / "weights" / row["model"] / "Rain200L.pth") in row["status"]
    assert "| NeRD-Rain | skipped |" in capsys.readouterr().out
    assert not [p for p in (tmp_path / "home").rglob("*") if p.is_file()]


def test_markdown_compares_the_named_network_with_the_paper_and_names_a_stand_in():
    row = {"model": "NeRD-Rain-S", "protocol": "A", "images": 2, "paper_psnr": 41.30, "paper_ssim": 0.9895,
           "status": "done", "psnr": 41.0, "ssim": 0.98}
    rows = [{**row, "dataset": "Rain200L", "network": "NeRD-Rain-S (dim 32, blocks [2, 3, 3], heads [1, 2, 4])"},
            {**row, "dataset": "Rain200H", "network": "NeRD-Rain (dim 48, blocks [4, 6, 8], heads [1, 2, 4])"},
            {**row, "dataset": "SPA-Data", "status": "skipped: no dataset Datasets/SPA-Data"}]
    lines = reproduce.markdown(rows).splitlines()
    assert lines[:4] == ["| | Rain200L | Rain200H | SPA-Data |", "|---|---|---|---|",
                         "| NeRD-Rain-S | 41.00 / 0.9800 (-0.30 / -0.0095) |  | skipped |",
                         "| NeRD-Rain (dim 48, blocks [4, 6, 8], heads [1, 2, 4]) in place of NeRD-Rain-S "
                         "|  | 41.00 / 0.9800 |  |"]
    assert lines[-1] == "- NeRD-Rain-S / SPA-Data: skipped: no dataset Datasets/SPA-Data"

