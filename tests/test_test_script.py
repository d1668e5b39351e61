"""test.py, the deraining command line: outputs, odd and broken inputs, no overwriting, scoring, errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from evaluations.niqe import niqe
from inference import folder
from inference.network import load_network
from utils.image_io import read_rgb8, write_png_atomic

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def weights(tiny_weights) -> Path:
    return tiny_weights


@pytest.fixture
def cli(test_py):
    return test_py


def rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_inputs(folder: Path, sizes: dict[str, tuple[int, int]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = {name: rgb(rng, *size) for name, size in sizes.items()}
    for name, image in images.items():
        write_png_atomic(folder / f"{name}.png", image)
    return images


@pytest.fixture
def run(cli, weights, tmp_path):
    """run(*extra, inputs=None): test.py on tmp_path/in (or `inputs`) into tmp_path/out, windows of 32, CPU."""
    def run(*extra: str, inputs: Path | None = None) -> int:
        args = ["--input_dir", str(inputs or tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                "--weights", str(weights), "--win_size", "32", "--device", "cpu", *extra]
        return cli.main(args)
    return run


def expected_png(weights: Path, image: np.ndarray) -> np.ndarray:
    """What test.py's code path gives for `image`: the network loaded as test.py loads it (on the CPU:
    channels_last and batch invariant), windows of 32 in chunks of the default size."""
    network = load_network(weights, "cpu", window=32)
    return folder.derain(network.network, image, network.window, 8)


def test_restores_every_image_as_png_named_after_it(tmp_path, weights, capsys, run, rng):
    images = make_inputs(tmp_path / "in", {"a": (40, 50), "b": (32, 32)}, rng)
    cv2.imwrite(str(tmp_path / "in" / "c.jpg"), rgb(rng, 20, 36))
    assert run() == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]
    out, note = read_rgb8(tmp_path / "out" / "a.png")
    assert note is None and np.array_equal(out, expected_png(weights, images["a"]))
    printed = capsys.readouterr().out
    assert "3 image(s) written" in printed and "s per image on cpu" in printed


def test_chunking_gives_identical_pngs(tmp_path, weights, cli, rng):
    make_inputs(tmp_path / "in", {"a": (48, 80), "b": (20, 40)}, rng)  # 6 and 2 windows of 32
    results = {}
    for batch_windows in ("0", "2", "5"):
        out = tmp_path / f"out{batch_windows}"
        assert cli.main(["--input", str(tmp_path / "in"), "--output_dir", str(out), "--weights", str(weights),
                         "--win_size", "32", "--device", "cpu", "--batch_windows", batch_windows]) == 0
        results[batch_windows] = {p.name: read_rgb8(p)[0] for p in sorted(out.iterdir())}
    for batch_windows, images in results.items():
        assert images.keys() == results["0"].keys()
        assert all(np.array_equal(images[n], results["0"][n]) for n in images), batch_windows


def test_tiny_and_thin_images_keep_their_size(tmp_path, run, rng):
    sizes = {"tiny": (10, 7), "row": (1, 40), "column": (40, 1), "dot": (1, 1)}
    make_inputs(tmp_path / "in", sizes, rng)
    assert run() == 0
    for name, (height, width) in sizes.items():
        assert read_rgb8(tmp_path / "out" / f"{name}.png")[0].shape == (height, width, 3)


def test_broken_files_are_reported_and_the_rest_is_written(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"good": (40, 40)}, rng)
    ok, data = cv2.imencode(".png", rgb(rng, 40, 40))
    (tmp_path / "in" / "truncated.png").write_bytes(data.tobytes()[: len(data) // 2])
    (tmp_path / "in" / "empty.png").write_bytes(b"")
    (tmp_path / "in" / "notes.png").write_text("not an image")
    assert run() == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]
    printed = capsys.readouterr()
    assert "could not restore 3 file(s)" in printed.out
    for name in ("truncated.png", "empty.png", "notes.png"):
        assert name in printed.out
    assert "Traceback" not in printed.err


def test_images_over_the_pixel_limit_are_skipped_from_their_header(tmp_path, capsys, run, rng, huge_png):
    make_inputs(tmp_path / "in", {"good": (32, 32), "wide": (20, 60)}, rng)
    huge_png(tmp_path / "in" / "bomb.png", 100_000, 100_000)  # as a decompression bomb's header
    huge_png(tmp_path / "in" / "big.png", 10000, 8000)
    assert run("--max_pixels", "1024") == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]
    printed = capsys.readouterr()
    assert "could not restore 3 file(s), skipped:" in printed.out
    for line in ("big.png: 10000x8000 = 80,000,000 pixels, over the limit of 1,024 (--max_pixels)",
                 "bomb.png: more than 178,956,970 pixels, over the limit of 1,024 (--max_pixels)",
                 "wide.png: 60x20 = 1,200 pixels, over the limit of 1,024 (--max_pixels)"):
        assert line in printed.out
    assert "Traceback" not in printed.err
    assert run() == 1  # the default limit, 8192x8192, takes wide.png
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png", "wide.png"]
    assert "big.png: 10000x8000 = 80,000,000 pixels, over the limit of 67,108,864" in capsys.readouterr().out


def test_existing_results_are_never_replaced_without_overwrite(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32), "b": (32, 32)}, rng)
    (tmp_path / "out").mkdir()
    old = rgb(rng, 5, 5)
    write_png_atomic(tmp_path / "out" / "a.png", old)
    assert run() == 0
    assert np.array_equal(read_rgb8(tmp_path / "out" / "a.png")[0], old)
    assert read_rgb8(tmp_path / "out" / "b.png")[0].shape == (32, 32, 3)
    printed = capsys.readouterr().out
    assert "skipped 1 existing result(s)" in printed and "a.png" in printed and "1 skipped" in printed
    assert run("--overwrite") == 0
    assert read_rgb8(tmp_path / "out" / "a.png")[0].shape == (32, 32, 3)


@pytest.mark.parametrize("spelling", ["same", "dot", "link"])
def test_refuses_to_write_into_the_input_folder(tmp_path, weights, capsys, spelling, cli, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    output = {"same": tmp_path / "in", "dot": tmp_path / "in" / ".", "link": tmp_path / "link"}[spelling]
    if spelling == "link":
        output.symlink_to(tmp_path / "in")
    code = cli.main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(output), "--weights", str(weights),
                     "--win_size", "32", "--device", "cpu"])
    assert code == 2
    assert "is the input folder" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "in").iterdir()] == ["a.png"]


@pytest.mark.parametrize("spelling, how", [("same", "is"), ("link", "is"), ("inside", "lies inside"),
                                           ("around", "holds")])
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_refuses_to_write_among_the_targets(tmp_path, capsys, spelling, how, overwrite, run, rng):
    """A run into its --target_dir would replace the clean images and score them against themselves."""
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    targets = tmp_path / "around" / "targets"
    make_inputs(targets, {"a": (32, 32)}, rng)
    before = (targets / "a.png").read_bytes()
    output = {"same": targets, "link": tmp_path / "link", "inside": targets / "results",
              "around": tmp_path / "around"}[spelling]
    if spelling == "link":
        output.symlink_to(targets)
    assert run("--target_dir", str(targets), "--output_dir", str(output), *overwrite) == 2
    err = capsys.readouterr().err
    assert f"--output_dir {output} {how} --target_dir {targets}; results never go among the clean targets" in err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert sorted(p.relative_to(tmp_path / "around").as_posix() for p in (tmp_path / "around").rglob("*")) == [
        "targets", "targets/a.png"]
    assert (targets / "a.png").read_bytes() == before


def test_single_file_input(tmp_path, weights, run, rng):
    images = make_inputs(tmp_path / "in", {"a": (40, 40), "b": (40, 40)}, rng)
    assert run("--input", str(tmp_path / "in" / "b.png")) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.png"]
    assert np.array_equal(read_rgb8(tmp_path / "out" / "b.png")[0], expected_png(weights, images["b"]))


def test_authors_layout_with_an_input_subfolder(tmp_path, run, rng):
    make_inputs(tmp_path / "Rain200L" / "input", {"a": (40, 40)}, rng)
    assert run(inputs=tmp_path / "Rain200L") == 0
    assert (tmp_path / "out" / "a.png").is_file()


def test_target_dir_scores_and_prints_the_table(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32), "b": (20, 40)}, rng)
    assert run("--target_dir", str(tmp_path / "in"), "--protocol", "Rain200L") == 0
    printed = capsys.readouterr().out
    assert "(protocol A)" in printed and "mean (2 images)" in printed
    assert "a.png" in printed.split("(protocol A)")[1]


def test_target_dir_with_rain200l_pairs(tmp_path, fixtures, capsys, run):
    pairs = fixtures / "rain200l"
    for side in ("input", "target"):  # crops keep the test fast
        for path in sorted((pairs / side).iterdir()):
            (tmp_path / side).mkdir(exist_ok=True)
            write_png_atomic(tmp_path / side / path.name, read_rgb8(path)[0][:48, :64].copy())
    assert run("--target_dir", str(tmp_path / "target"), inputs=tmp_path / "input") == 0
    assert "mean (2 images)" in capsys.readouterr().out


def test_scores_only_this_runs_images(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    make_inputs(tmp_path / "targets", {"a": (32, 32), "b": (16, 16)}, rng)  # more targets than inputs
    make_inputs(tmp_path / "out", {"stale": (24, 24)}, rng)  # an older result with no target
    assert run("--target_dir", str(tmp_path / "targets")) == 0
    out = capsys.readouterr().out
    assert "mean (1 images)" in out
    assert "1 image(s) of --target_dir have no input and are not scored" in out  # as evaluate counts them


def test_amp_with_an_onnx_model_is_refused_before_any_note(tmp_path, capsys, run, rng):
    """The PyTorch-only flags are refused before the file is opened: no ONNX export needed."""
    make_inputs(tmp_path / "in", {"a": (20, 20)}, rng)
    assert run("--amp", "--weights", str(tmp_path / "model.onnx")) == 2
    err = capsys.readouterr().err
    onnx = tmp_path / "model.onnx"
    assert f"test.py: error: --amp applies to PyTorch checkpoints, not to the ONNX model {onnx}" in err
    assert "leave it out" in err and "bf16" not in err and err.count("\n") == 1
    assert run("--amp", "--compile", "--weights", str(tmp_path / "model.onnx")) == 2
    assert "--amp, --compile apply to PyTorch checkpoints" in capsys.readouterr().err


def test_unpaired_targets_fail_before_the_first_image(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32), "b": (32, 32)}, rng)
    make_inputs(tmp_path / "targets", {"x": (32, 32), "y": (32, 32)}, rng)
    assert run("--target_dir", str(tmp_path / "targets")) == 2
    err = capsys.readouterr().err
    assert "cannot pair the inputs with --target_dir" in err and "stems only in the inputs: a, b" in err
    assert "--pair_by_order" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())  # nothing derained


def test_pair_by_order_scores_inputs_against_sorted_targets(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32), "b": (32, 32)}, rng)
    make_inputs(tmp_path / "targets", {"x": (32, 32), "y": (32, 32)}, rng)
    assert run("--target_dir", str(tmp_path / "targets"), "--pair_by_order") == 0
    table = capsys.readouterr().out
    assert "a.png" in table and "b.png" in table and "mean (2 images)" in table


def test_scoring_failure_is_reported_with_exit_1(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    make_inputs(tmp_path / "targets", {"a": (40, 40)}, rng)
    assert run("--target_dir", str(tmp_path / "targets")) == 1
    assert "scoring failed" in capsys.readouterr().err
    assert (tmp_path / "out" / "a.png").is_file()


def rainy_crops(fixtures: Path, folder: Path, side: str = "input") -> list[Path]:
    """The two Rain200L pairs of tests/fixtures cropped to 96x192: two NIQE blocks, a quick test."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((fixtures / "rain200l" / side).iterdir()):
        write_png_atomic(folder / f"{path.stem}.png", read_rgb8(path)[0][:96, :192].copy())
    return sorted(folder.iterdir())


def test_niqe_of_inputs_and_results_printed_and_written(tmp_path, fixtures, capsys, run):
    inputs = rainy_crops(fixtures, tmp_path / "in")
    assert run("--niqe", "--json", str(tmp_path / "scores.json")) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "scores.json").read_text())
    assert report["metric"] == "niqe" and len(report["images"]) == len(inputs) == 2
    for image, inp in zip(report["images"], inputs):
        assert image["niqe"] == niqe(read_rgb8(tmp_path / "out" / image["name"])[0])
        assert image["niqe_input"] == niqe(read_rgb8(inp)[0])
    mean = report["mean"]
    assert mean["niqe_input"] == pytest.approx(np.mean([im["niqe_input"] for im in report["images"]]))
    assert f"inputs {mean['niqe_input']:.4f}, results {mean['niqe']:.4f}" in printed
    assert "lower is better" in printed and "NIQE in" in printed


def test_niqe_beside_psnr_ssim(tmp_path, fixtures, run):
    rainy_crops(fixtures, tmp_path / "in")
    rainy_crops(fixtures, tmp_path / "target", "target")
    assert run("--niqe", "--target_dir", str(tmp_path / "target"),
               "--json", str(tmp_path / "scores.json")) == 0
    images = json.loads((tmp_path / "scores.json").read_text())["images"]
    assert all({"psnr", "ssim", "niqe", "niqe_input"} <= image.keys() for image in images)


def test_niqe_names_an_image_too_small_and_scores_the_rest(tmp_path, fixtures, capsys, run, rng):
    rainy_crops(fixtures, tmp_path / "in")
    make_inputs(tmp_path / "in", {"small": (64, 64)}, rng)
    assert run("--niqe") == 1
    captured = capsys.readouterr()
    assert "NIQE failed for small.png" in captured.err and "mean (2 images)" in captured.out
    assert (tmp_path / "out" / "small.png").is_file()


def test_json_without_scores_is_refused(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    assert run("--json", str(tmp_path / "scores.json")) == 2
    assert "add --target_dir (PSNR/SSIM) or --niqe" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_cleanly_keeps_what_was_written_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32), "b": (32, 32), "c": (32, 32)}, rng)
    writes = []
    real_write = Path.write_bytes

    def interrupted_on_the_second(self, data):
        writes.append(self)
        if len(writes) == 2:  # in the middle of writing b.png's temp file
            real_write(self, data[:10])
            raise KeyboardInterrupt
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", interrupted_on_the_second)
    assert run() == 130
    err = capsys.readouterr().err
    assert "interrupted after 1 of 3 image(s)" in err and "Traceback" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]  # no b.png, no temp file
    monkeypatch.undo()
    assert run() == 0  # goes on: a is skipped
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]


def test_a_full_disk_stops_the_run_keeping_the_complete_results(tmp_path, capsys, run, rng, small_disk):
    make_inputs(tmp_path / "in", {"a": (16, 16), "b": (96, 96), "c": (16, 16)}, rng)
    disk = small_disk("16k")  # a.png (under 1 kB) fits, b.png (27 kB of noise) does not
    assert run("--output_dir", str(disk)) == 1
    err = capsys.readouterr().err
    assert (f"test.py: error: cannot write {disk / 'b.png'}: No space left on device; stopped after 1 result(s) "
            "written, all complete (no partial file was left)") in err and "Traceback" not in err
    assert [p.name for p in disk.iterdir()] == ["a.png"]


def test_an_output_dir_that_cannot_be_written_is_refused_before_the_first_image(tmp_path, weights, rng,
                                                                                  without_dac_override):
    make_inputs(tmp_path / "in", {"a": (20, 20)}, rng)
    (tmp_path / "out").mkdir(mode=0o555)
    done = subprocess.run([*without_dac_override, sys.executable, "test.py", "--input_dir", str(tmp_path / "in"),
                           "--output_dir", str(tmp_path / "out"), "--weights", str(weights), "--win_size", "32",
                           "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (f"test.py: error: cannot write to --output_dir {tmp_path / 'out'}: "
                                                    "Permission denied")
    assert "deraining" not in done.stderr and not any((tmp_path / "out").iterdir())


def test_save_comparison(tmp_path, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 40), "b": (24, 30)}, rng)
    make_inputs(tmp_path / "targets", {"a": (32, 40), "b": (20, 20)}, rng)
    # b's target has another size: its comparison has no target panel, and scoring fails (exit 1)
    assert run("--save_comparison", "--target_dir", str(tmp_path / "targets")) == 1
    side_by_side = read_rgb8(tmp_path / "out" / "comparison" / "a.png")[0]
    assert side_by_side.shape == (32, 120, 3)
    assert np.array_equal(side_by_side[:, :40], read_rgb8(tmp_path / "in" / "a.png")[0])
    assert np.array_equal(side_by_side[:, 40:80], read_rgb8(tmp_path / "out" / "a.png")[0])
    assert np.array_equal(side_by_side[:, 80:], read_rgb8(tmp_path / "targets" / "a.png")[0])
    assert read_rgb8(tmp_path / "out" / "comparison" / "b.png")[0].shape == (24, 60, 3)  # input | output


def test_odd_formats_become_rgb_of_the_same_size(tmp_path, capsys, rng, run):
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "gray.png"), rng.integers(0, 256, (30, 20), dtype=np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), rng.integers(0, 256, (21, 33, 4), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), rng.integers(0, 65536, (40, 35, 3), dtype=np.uint16))
    cv2.imwrite(str(folder / "photo.jpg"), rgb(rng, 33, 40))
    assert run() == 0
    for name, shape in (("gray", (30, 20, 3)), ("rgba", (21, 33, 3)), ("deep", (40, 35, 3)), ("photo", (33, 40, 3))):
        out, note = read_rgb8(tmp_path / "out" / f"{name}.png")
        assert note is None and out.shape == shape
    printed = capsys.readouterr().out
    assert "converted to 8-bit RGB: 3 file(s)" in printed
    assert all(kind in printed for kind in ("1 grayscale", "1 alpha dropped", "1 16-bit"))


def test_network_options_from_opt(tmp_path, weights, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    good, bad = tmp_path / "tiny.yml", tmp_path / "wide.yml"
    good.write_text("network: {type: NeRDRain, dim: 8, num_blocks: [1, 1, 1], heads: [1, 1, 2]}\n")
    bad.write_text("network: {type: NeRDRain, dim: 16, num_blocks: [1, 1, 1], heads: [1, 1, 2]}\n")
    assert run("--opt", str(good)) == 0
    assert run("--opt", str(bad), "--overwrite") == 2
    err = capsys.readouterr().err
    assert "does not fit the network" in err and str(weights) in err


def test_out_of_memory_is_reported_per_image(tmp_path, capsys, monkeypatch, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(folder, "tiled_forward", no_memory)
    assert run("--batch_windows", "4") == 1
    assert "a.png: out of memory (try a smaller --batch_windows" in capsys.readouterr().out


def test_gpus_sets_cuda_visible_devices(tmp_path, monkeypatch, run, rng):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # restored after the test
    make_inputs(tmp_path / "in", {"a": (20, 20)}, rng)
    assert run("--gpus", "0") == 0
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"


def test_amp_and_stem_clash(tmp_path, capsys, run, rng):
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    assert run("--amp") == 0
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), rgb(rng, 40, 40))
    assert run("--output_dir", str(tmp_path / "out2")) == 2
    assert "share stems" in capsys.readouterr().err


def bad_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.pth"
    path.write_text("not a checkpoint")
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing weights", "checkpoint not found"),
    ("unreadable weights", "cannot read checkpoint"),
    ("missing input", "input not found"),
    ("empty input", "no images in"),
    ("window 24", "--win_size"),
    ("window 0", "--win_size"),
    ("batch_windows 1", "--batch_windows"),
    ("bad protocol", "--protocol"),
    ("missing target_dir", "--target_dir"),
    ("missing opt", "options file not found"),
    ("cuda", "no CUDA GPU"),
    ("no weights", "--weights"),
])
def test_bad_input_is_one_clear_message_and_exit_2(tmp_path, weights, capsys, case, expected, run, cli, rng):
    if case == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    make_inputs(tmp_path / "in", {"a": (32, 32)}, rng)
    (tmp_path / "empty").mkdir()
    args = {
        "missing weights": ["--weights", str(tmp_path / "nope.pth")],
        "unreadable weights": ["--weights", str(bad_checkpoint(tmp_path))],
        "missing input": ["--input_dir", str(tmp_path / "nowhere")],
        "empty input": ["--input_dir", str(tmp_path / "empty")],
        "window 24": ["--win_size", "24"],
        "window 0": ["--win_size", "0"],
        "batch_windows 1": ["--batch_windows", "1"],
        "bad protocol": ["--target_dir", str(tmp_path / "in"), "--protocol", "Rain999"],
        "missing target_dir": ["--target_dir", str(tmp_path / "nowhere")],
        "missing opt": ["--opt", str(tmp_path / "nope.yml")],
        "cuda": ["--device", "cuda"],
    }.get(case, [])
    if case == "no weights":
        code = cli.main(["--input_dir", str(tmp_path / "in")])
    else:
        code = run(*args)
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_real_entry_point(tmp_path, weights, rng):
    make_inputs(tmp_path / "in", {"a": (20, 30)}, rng)
    command = [sys.executable, "test.py", "--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
               "--weights", str(weights), "--win_size", "32", "--device", "cpu"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "a.png").is_file()
    bad = subprocess.run([*command[:-4], "--win_size", "100"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--win_size" in bad.stderr and "Traceback" not in bad.stderr


def test_channels_last_and_amp_paths_run_on_cpu(tmp_path, weights, capsys, run, rng):
    images = make_inputs(tmp_path / "in", {"a": (40, 50)}, rng)
    assert run("--channels_last") == 0
    fast = read_rgb8(tmp_path / "out" / "a.png")[0].astype(int)
    assert np.abs(fast - expected_png(weights, images["a"]).astype(int)).max() <= 1
    assert "bf16" not in capsys.readouterr().err
    assert run("--amp", "--overwrite") == 0  # bf16 autocast, as on a GPU
    slow_bf16 = not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    assert ("no native bf16 convolutions" in capsys.readouterr().err) == slow_bf16
    bf16 = read_rgb8(tmp_path / "out" / "a.png")[0].astype(int)
    assert np.abs(bf16 - expected_png(weights, images["a"]).astype(int)).mean() < 3
