"""The trainer (train.py, train.sh) on a tiny network and tiny generated data, on the CPU."""
import csv
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import models
import train
from losses import MultiScaleLoss
from models import build_model, pretrained
from models.weights import authors_state, load_weights, save_network
from training import trainer
from training.cuda_graph import cuda_graph_problem
from training.experiment import experiment_lock
from training.metrics_log import METRICS_HEADER
from training.options import load_options
from training.scheduler import build_scheduler
from utils.options import REPO_ROOT


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions gain nothing from threads, and on a busy machine spinning OpenMP threads make
    them 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def dataset(train_pairs) -> Path:
    return train_pairs


def run_main(capsys, *argv: str) -> tuple[int, str]:
    code = train.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def full_run(train_pairs, train_options, tmp_path_factory) -> Path:
    """4 epochs without interruption; returns the experiment folder."""
    opt = train_options(train_pairs, tmp_path_factory.mktemp("full") / "opt.yml")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as _one_thread does for the tests: bit-exact comparisons need the same count
    try:
        assert train.main(["--opt", str(opt)]) == 0
    finally:
        torch.set_num_threads(threads)
    return opt.parent / "exp"


def test_writes_the_checkpoints_and_metrics(full_run, epoch_lrs):
    names = sorted(p.name for p in full_run.iterdir())
    assert names == ["metrics.csv", "model_best.pth", "model_epoch_2.pth", "model_epoch_4.pth", "model_latest.pth",
                     "options.yml", "tensorboard"]
    with (full_run / "metrics.csv").open() as f:
        assert f.readline() == "epoch,iterations,loss,lr,val_psnr,best_psnr,seconds\n"
        rows = list(csv.DictReader(f, fieldnames=METRICS_HEADER))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and [int(r["iterations"]) for r in rows] == [2, 4, 6, 8]
    assert [float(r["lr"]) for r in rows] == pytest.approx(epoch_lrs(4, 1e-3, 1), rel=1e-6)
    psnrs = [float(r["val_psnr"]) for r in rows]
    assert [float(r["best_psnr"]) for r in rows] == pytest.approx(np.maximum.accumulate(psnrs).tolist())
    assert all(float(r["loss"]) > 0 and float(r["seconds"]) > 0 for r in rows)
    best = torch.load(full_run / "model_best.pth", weights_only=True)
    assert best["best_psnr"] == pytest.approx(max(psnrs), abs=1e-4) and best["epoch"] == 1 + int(np.argmax(psnrs))



def tensorboard_events(exp: Path) -> EventAccumulator:
    events = EventAccumulator(str(exp / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_tensorboard_logs_training_and_validation(full_run):
    """By default: the loss, its terms, the rate, seconds per step and peak memory as means over each epoch's
    steps (fewer than train.log_every), and each validation's PSNR (metrics.csv's), SSIM and images."""
    events, rows = tensorboard_events(full_run), metrics_rows(full_run)
    train_tags = {f"train/{name}" for name in ("loss", "char", "fft", "edge", "l1", "lr", "seconds_per_iteration",
                                               "peak_memory_mib")}
    assert set(events.Tags()["scalars"]) == train_tags | {"val/psnr", "val/ssim"}
    for tag in (*train_tags, "val/psnr", "val/ssim"):
        assert [e.step for e in events.Scalars(tag)] == [2, 4, 6, 8], tag  # optimizer steps at each epoch's end
    value = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert value["train/loss"] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)
    assert value["train/lr"] == pytest.approx([float(r["lr"]) for r in rows], rel=1e-5)
    assert value["val/psnr"] == pytest.approx([float(r["val_psnr"]) for r in rows], abs=1e-4)
    assert all(0 < v <= 1 for v in value["val/ssim"]) and all(v > 0 for v in value["train/seconds_per_iteration"])
    assert all(v > 100 for v in value["train/peak_memory_mib"])  # the process's resident set: torch alone is more
    # the two validation images (of 3 asked for), input | output | target side by side, at each validation
    assert events.Tags()["images"] == ["val/image_1", "val/image_2"]
    for tag in events.Tags()["images"]:
        assert [(e.step, e.width, e.height) for e in events.Images(tag)] == [(s, 96, 32) for s in (2, 4, 6, 8)]


def test_tensorboard_every_step_or_off(dataset, tmp_path, capsys, train_options):
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2, save_every=0, log_every=1, tensorboard_images=1)
    code, out = run_main(capsys, "--opt", str(opt))
    assert code == 0, out
    events = tensorboard_events(tmp_path / "exp")
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4] and events.Tags()["images"] == ["val/image_1"]
    assert re.search(r"epoch 1/2: .* run left=~\d+s", out)  # the progress bar's estimate for the whole run
    code, out = run_main(capsys, "--opt", str(opt), "--set", "train.tensorboard=false",
                         f"paths.experiment={tmp_path / 'off'}")
    assert code == 0, out
    assert sorted(p.name for p in (tmp_path / "off").iterdir()) == ["metrics.csv", "model_best.pth",
                                                                   "model_latest.pth", "options.yml"]

def test_checkpoints_load_with_weights_only_and_load_weights(full_run, assert_same_weights, tiny_options):
    ckpt = torch.load(full_run / "model_latest.pth", weights_only=True)
    assert {"epoch", "state_dict", "optimizer", "scheduler", "iteration", "best_psnr", "rng", "options"} <= ckpt.keys()
    assert (ckpt["epoch"], ckpt["iteration"], ckpt["batches_done"]) == (4, 8, 0)
    assert "patch_embed_small.proj.weight" in ckpt["state_dict"]  # the authors' key names
    assert ckpt["options"] == load_options(full_run / "options.yml")
    assert ckpt["options"]["network"] == tiny_options
    model = build_model(tiny_options)
    load_weights(model, full_run / "model_epoch_2.pth")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert_same_weights(full_run / "model_latest.pth", full_run / "model_epoch_4.pth")


def test_two_epochs_resume_two_epochs_is_bit_exact(full_run, dataset, tmp_path, capsys, train_options,
                                                   assert_same_weights):
    opt = train_options(dataset, tmp_path / "opt.yml")
    code, out = run_main(capsys, "--opt", str(opt), "--resume", str(full_run / "model_epoch_2.pth"))
    assert code == 0, out
    assert "resumed from" in out and "epoch 2 done" in out
    assert_same_weights(tmp_path / "exp" / "model_latest.pth", full_run / "model_latest.pth")
    with (tmp_path / "exp" / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["3", "4"]


def test_ctrl_c_saves_latest_and_resume_continues_exactly(full_run, dataset, tmp_path, capsys, monkeypatch,
                                                          train_options, assert_same_weights):
    opt = train_options(dataset, tmp_path / "opt.yml")
    calls, step = [], trainer.Trainer.step

    def interrupted(self, batch, epoch):
        calls.append(epoch)
        if len(calls) == 4:  # epoch 2, its second batch: one batch of the epoch is done
            raise KeyboardInterrupt
        return step(self, batch, epoch)

    monkeypatch.setattr(trainer.Trainer, "step", interrupted)
    code, out = run_main(capsys, "--opt", str(opt))
    assert code == train.EXIT_INTERRUPTED and "interrupted" in out and "Traceback" not in out
    latest = torch.load(tmp_path / "exp" / "model_latest.pth", weights_only=True)
    assert (latest["epoch"], latest["batches_done"], latest["iteration"]) == (1, 1, 3)
    monkeypatch.setattr(trainer.Trainer, "step", step)
    code, out = run_main(capsys, "--opt", str(opt), "--resume")
    assert code == 0, out
    assert "1 batches into epoch 2" in out
    assert_same_weights(tmp_path / "exp" / "model_latest.pth", full_run / "model_latest.pth")
    with (tmp_path / "exp" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    with (full_run / "metrics.csv").open() as f:
        full = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["loss"] for r in rows] == [r["loss"] for r in full]  # epoch 2's mean includes the batch before Ctrl-C



@pytest.fixture(scope="module")
def three_pairs(train_pairs, tmp_path_factory) -> Path:
    """train_pairs with a third training pair (img0 flipped): an odd count, so the last step of an epoch
    at batch 2 wraps round to the first pair of the epoch's order."""
    root = tmp_path_factory.mktemp("three")
    shutil.copytree(train_pairs, root, dirs_exist_ok=True)
    for side in ("input", "target"):
        image = cv2.imread(str(train_pairs / "train" / side / "img0.png"))
        cv2.imwrite(str(root / "train" / side / "img2.png"), cv2.flip(image, 1))
    return root


@pytest.fixture(scope="module")
def batch_2_and_accumulated(three_pairs, train_options, tmp_path_factory) -> dict[str, tuple[Path, list, dict]]:
    """3 epochs on three pairs with the per-iteration schedule, as batch 2 and as batch 1 accumulating 2:
    each run's experiment folder, the inputs of every optimizer step and the gradients of the first."""
    runs = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as _one_thread does for the tests: bit-exact comparisons need the same count
    try:
        for name, batch, accumulate in (("batch 2", 2, 1), ("batch 1 x 2", 1, 2)):
            opt = train_options(three_pairs, tmp_path_factory.mktemp("accumulate") / "opt.yml", epochs=3,
                                schedule="iteration", save_every=0, accumulate=accumulate)
            inputs, grads, step = [], {}, trainer.Trainer.step

            def recorded(self, batch, epoch):
                inputs.append(batch["input"].clone())
                result = step(self, batch, epoch)
                grads.update({} if grads else {n: p.grad.clone() for n, p in self.net.named_parameters()
                                               if p.grad is not None})
                return result
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(trainer.Trainer, "step", recorded)
                assert train.main(["--opt", str(opt), "--set", f"datasets.train.batch_size={batch}"]) == 0
            runs[name] = opt.parent / "exp", inputs, grads
    finally:
        torch.set_num_threads(threads)
    return runs


def test_batch_1_accumulating_2_trains_as_batch_2(batch_2_and_accumulated, capsys):
    """The same pairs in every optimizer step (the last of an epoch wraps round, as batch 2 does), the schedule
    counted in optimizer steps (2 per epoch of 3 pairs), the same gradients and weights within float tolerance.

    Float tolerance: on the CPU a batch of 1 and a batch of 2 take other kernels, which round differently
    (docs/architecture.md, "Tiling"); Adam's steps of about lr x sign(gradient) turn that noise, in the few
    gradients near zero, into weight differences of up to 1% of what the weights moved (2.3e-5 of 3.5e-3 here)."""
    (exp2, inputs2, grads2), (exp1, inputs1, grads1) = (batch_2_and_accumulated[name]
                                                        for name in ("batch 2", "batch 1 x 2"))
    assert len(inputs1) == len(inputs2) == 6 and all(torch.equal(a, b) for a, b in zip(inputs1, inputs2))
    assert grads1.keys() == grads2.keys()
    for name, ref in grads2.items():
        assert (grads1[name] - ref).abs().max().item() <= 1e-4 * ref.abs().max().item() + 1e-7, name
    rows2, rows1 = ([r for r in csv.DictReader((exp / "metrics.csv").open())] for exp in (exp2, exp1))
    assert [r["iterations"] for r in rows1] == [r["iterations"] for r in rows2] == ["2", "4", "6"]
    assert [r["lr"] for r in rows1] == [r["lr"] for r in rows2]
    assert [float(r["loss"]) for r in rows1] == pytest.approx([float(r["loss"]) for r in rows2], rel=1e-5)
    a, b = weights(exp1 / "model_latest.pth"), weights(exp2 / "model_latest.pth")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)  # the trainer's seed: the network both runs started from
        start = authors_state(build_model(load_options(exp1 / "options.yml")["network"]))
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    with capsys.disabled():
        print(f"\nmax weight difference, batch 1 x 2 against batch 2: {difference:.2e}, weights moved {moved:.2e}")
    assert difference < 1e-2 * moved


def test_ctrl_c_mid_accumulation_resumes_exactly(batch_2_and_accumulated, three_pairs, tmp_path, capsys,
                                                 monkeypatch, train_options, assert_same_weights):
    """Ctrl-C between the two micro-batches of a step: model_latest.pth holds the last whole step, and the
    resumed run redoes the interrupted one, ending bit for bit where the uninterrupted run did."""
    exp = batch_2_and_accumulated["batch 1 x 2"][0]
    opt = train_options(three_pairs, tmp_path / "opt.yml", epochs=3, schedule="iteration", save_every=0,
                        accumulate=2)
    forward, calls = MultiScaleLoss.forward, []

    def interrupted(self, outputs, target):
        calls.append(1)
        if len(calls) == 8:  # epoch 2, the second micro-batch of its second step
            raise KeyboardInterrupt
        return forward(self, outputs, target)

    monkeypatch.setattr(MultiScaleLoss, "forward", interrupted)
    code, out = run_main(capsys, "--opt", str(opt), "--set", "datasets.train.batch_size=1")
    assert code == train.EXIT_INTERRUPTED, out
    latest = torch.load(tmp_path / "exp" / "model_latest.pth", weights_only=True)
    assert (latest["epoch"], latest["batches_done"], latest["iteration"]) == (1, 1, 3)
    monkeypatch.setattr(MultiScaleLoss, "forward", forward)
    code, out = run_main(capsys, "--opt", str(opt), "--set", "datasets.train.batch_size=1", "--resume")
    assert code == 0, out
    assert_same_weights(tmp_path / "exp" / "model_latest.pth", exp / "model_latest.pth")

def test_sigterm_to_the_process_group_saves_latest(dataset, tmp_path, train_options):
    """A job scheduler (or `timeout`) sends SIGTERM to every process of the job, DataLoader workers
    included: the run still saves model_latest.pth and exits with one line, no traceback."""
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=10000, val_every=10000, save_every=0)
    metrics = tmp_path / "exp" / "metrics.csv"
    proc = subprocess.Popen([sys.executable, "train.py", "--opt", str(opt), "--device", "cpu"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 3) and proc.poll() is None:
            assert time.monotonic() < deadline, "training did not get through 3 epochs in 2 minutes"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGTERM)  # mid-epoch with live workers, nearly always (no validation)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == train.EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "interrupted" in err
    assert "continue with --resume auto" in out + err
    assert (tmp_path / "exp" / "model_latest.pth").is_file()


def test_sigterm_without_workers_saves_latest_and_exits_130(dataset, tmp_path, capsys, monkeypatch, train_options):
    """num_workers 0: the loader's single-process iterator has no workers to shut down."""
    opt = train_options(dataset, tmp_path / "opt.yml")
    calls, step = [], trainer.Trainer.step

    def terminated(self, batch, epoch):
        calls.append(epoch)
        if len(calls) == 3:  # epoch 2, its first batch
            os.kill(os.getpid(), signal.SIGTERM)  # train.py maps it to KeyboardInterrupt, as a scheduler's
        return step(self, batch, epoch)

    monkeypatch.setattr(trainer.Trainer, "step", terminated)
    code, out = run_main(capsys, "--opt", str(opt), "--set", "datasets.train.num_workers=0")
    assert code == train.EXIT_INTERRUPTED and "error: interrupted" in out and "Traceback" not in out
    assert "continue with --resume auto" in out
    latest = torch.load(tmp_path / "exp" / "model_latest.pth", weights_only=True)
    assert latest["epoch"] == 1 and latest["batches_done"] in (0, 1)


def test_a_full_disk_while_saving_stops_with_the_last_complete_checkpoint(dataset, tmp_path, capsys, train_options,
                                                                          small_disk):
    """A real full disk: torch reports it as "[enforce fail at inline_container.cc...]"; the run names the file,
    the cause and the intact checkpoint, and leaves no temporary file."""
    disk = small_disk("32m")  # 3 checkpoints of 9.3 MB fit: epoch 2's model_latest.pth (a 4th, till replaced) not
    opt = train_options(dataset, tmp_path / "opt.yml", save_every=2)
    code, out = run_main(capsys, "--opt", str(opt), "--set", f"paths.experiment={disk / 'exp'}")
    assert code == train.EXIT_FAILED and "Traceback" not in out and out.count("error: ") == 1
    exp = disk / "exp"
    assert (f"error: cannot write {exp / 'model_latest.pth'}: No space left on device; the last complete checkpoint "
            f"is {exp / 'model_epoch_2.pth'} (epoch 2 done); once there is room, continue with --resume "
            f"{exp / 'model_epoch_2.pth'}") in out, out
    assert torch.load(exp / "model_epoch_2.pth", weights_only=True)["epoch"] == 2
    assert torch.load(exp / "model_latest.pth", weights_only=True)["epoch"] == 1  # the old one, intact
    assert not [p.name for p in exp.iterdir() if p.name.endswith(".tmp")]


def test_an_experiment_folder_that_cannot_be_written_exits_2(dataset, tmp_path, capsys, train_options,
                                                             without_dac_override):
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2)
    (tmp_path / "a_file").write_text("not a folder")
    code, out = run_main(capsys, "--opt", str(opt), "--set", f"paths.experiment={tmp_path / 'a_file'}")
    assert code == train.EXIT_BAD_INPUT and "Traceback" not in out
    assert f"error: cannot train into paths.experiment {tmp_path / 'a_file'}: it is a file, not a folder; " in out
    locked = tmp_path / "read_only"
    locked.mkdir(mode=0o555)
    done = subprocess.run([*without_dac_override, sys.executable, "train.py", "--opt", str(opt), "--device", "cpu",
                           "--set", f"paths.experiment={locked / 'exp'}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == train.EXIT_BAD_INPUT, done.stderr
    assert f"error: cannot train into paths.experiment {locked / 'exp'}: Permission denied;" in done.stderr
    assert "Traceback" not in done.stderr and not any(locked.iterdir())


def test_stale_temporaries_of_an_interrupted_save_are_removed(full_run, tmp_path, capsys):
    exp = tmp_path / "exp"
    shutil.copytree(full_run, exp)
    stale = [exp / ".model_best.pth.0123456789ab.tmp", exp / ".metrics.csv.ba9876543210.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (exp / ".keep.tmp").write_text("not ours")  # not atomic_save's name: kept
    opt = tmp_path / "opt.yml"
    opt.write_text((full_run.parent / "opt.yml").read_text().replace(str(full_run), str(exp)))
    code, out = run_main(capsys, "--opt", str(opt), "--resume")
    assert code == 0, out
    assert (f"note: removed 2 stale temporary file(s) left in {exp} by an interrupted save: "
            ".metrics.csv.ba9876543210.tmp, .model_best.pth.0123456789ab.tmp") in out
    assert not any(path.exists() for path in stale) and (exp / ".keep.tmp").exists()


def test_non_finite_loss_stops_and_saves_nothing(dataset, tmp_path, capsys, monkeypatch, train_options):
    opt = train_options(dataset, tmp_path / "opt.yml")
    forward, calls = MultiScaleLoss.forward, []

    def nan_on_third(self, outputs, target):
        calls.append(1)
        total, terms = forward(self, outputs, target)
        return (total * math.nan if len(calls) == 3 else total), terms

    monkeypatch.setattr(MultiScaleLoss, "forward", nan_on_third)
    code, out = run_main(capsys, "--opt", str(opt))
    assert code == train.EXIT_NON_FINITE and "Traceback" not in out
    assert "the loss is nan at epoch 2, iteration 3 (batch 1 of 2)" in out and "model_latest.pth" in out
    latest = torch.load(tmp_path / "exp" / "model_latest.pth", weights_only=True)
    assert latest["epoch"] == 1 and all(torch.isfinite(v).all() for v in latest["state_dict"].values())
    assert sorted(p.name for p in (tmp_path / "exp").glob("*.pth")) == ["model_best.pth", "model_latest.pth"]


def test_iteration_schedule_without_workers(dataset, tmp_path, capsys, monkeypatch, train_options):
    """The per-iteration schedule; also, on the CPU train.py keeps freed memory for reuse."""
    reuse_calls = []
    monkeypatch.setattr(train, "reuse_freed_cpu_memory", lambda device: reuse_calls.append(device.type) or True)
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2, schedule="iteration", save_every=0)
    code, out = run_main(capsys, "--opt", str(opt), "--set", "datasets.train.num_workers=0")
    assert code == 0, out
    assert reuse_calls == ["cpu"]
    # train_pairs' 48x28 pair: said once, at start-up, from the data check's sizes
    assert out.count("note: datasets.train: 1 of 2 training pair(s) are smaller than the patch of 32 and are "
                     "reflect-padded to it") == 1
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    scheduler = build_scheduler(optimizer, 2, 1, 1e-6, "iteration", iters_per_epoch=2)
    rates = []
    for _ in range(4):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    with (tmp_path / "exp" / "metrics.csv").open() as f:
        assert [float(r["lr"]) for r in csv.DictReader(f)] == pytest.approx([rates[1], rates[3]], rel=1e-6)


def test_fast_options_train_on_cpu(full_run, dataset, tmp_path, capsys, train_options):
    """--channels_last and --amp (bf16 autocast, as on a GPU) train, and land near the exact run."""
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2, save_every=0)
    code, out = run_main(capsys, "--opt", str(opt), "--channels_last", "--amp", "--set",
                         "datasets.train.num_workers=0")
    assert code == 0, out
    assert ("no native bf16 convolutions" in out) == (not torch.ops.mkldnn._is_mkldnn_bf16_supported())
    with (tmp_path / "exp" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert load_options(tmp_path / "exp" / "options.yml")["train"]["channels_last"] is True



def test_checkpointed_activations_train_the_same_weights(full_run, dataset, tmp_path, capsys, train_options,
                                                         assert_same_weights):
    """train.checkpoint_activations recomputes the same numbers in the backward pass: the run's weights are
    the plain run's, bit for bit on the CPU."""
    opt = train_options(dataset, tmp_path / "opt.yml")
    code, out = run_main(capsys, "--opt", str(opt), "--set", "train.checkpoint_activations=true")
    assert code == 0, out
    assert "checkpoint_activations True" in out
    assert_same_weights(tmp_path / "exp" / "model_latest.pth", full_run / "model_latest.pth")


def metrics_rows(exp: Path) -> list[dict[str, str]]:
    with (exp / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_init_starts_from_the_weights_with_a_fresh_schedule(full_run, dataset, tmp_path, capsys, train_options,
                                                            assert_same_weights):
    """train.init in the options: epoch 1 (at rate 0) validates at the starting model's PSNR, not a random
    network's; the iterations and the optimizer start afresh; a resume of that run does not load it again."""
    start = tmp_path / "start.pth"
    shutil.copy(full_run / "model_latest.pth", start)
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2, save_every=1, init=str(start))
    code, out = run_main(capsys, "--opt", str(opt))
    assert code == 0, out
    exp, trained = tmp_path / "exp", metrics_rows(full_run)
    assert f"initial weights: {start} (train.init)" in out
    assert f"val PSNR of the initial weights: {float(trained[-1]['val_psnr']):.2f} dB" in out
    rows = metrics_rows(exp)
    assert rows[0]["val_psnr"] == trained[-1]["val_psnr"] != trained[0]["val_psnr"]  # the start's, not random's
    assert [r["iterations"] for r in rows] == ["2", "4"]
    assert_same_weights(exp / "model_epoch_1.pth", start)  # epoch 1 runs at rate 0
    latest = torch.load(exp / "model_latest.pth", weights_only=True)
    assert {s["step"].item() for s in latest["optimizer"]["state"].values()} == {4.0}  # fresh Adam: 4 steps
    assert latest["options"]["train"]["init"] == str(start)

    shutil.copy(exp / "model_latest.pth", tmp_path / "uninterrupted.pth")
    start.unlink()  # resuming must not need it
    code, out = run_main(capsys, "--opt", str(opt), "--resume", str(exp / "model_epoch_1.pth"))
    assert code == 0, out
    assert f"note: train.init ({start}) is not loaded: the run goes on with model_epoch_1.pth's weights" in out
    assert_same_weights(exp / "model_latest.pth", tmp_path / "uninterrupted.pth")
    assert [e.step for e in tensorboard_events(exp).Scalars("val/psnr")] == [2, 4]  # epoch 2's first try hidden


def test_init_flag_takes_the_authors_checkpoints(full_run, dataset, tmp_path, capsys, train_options):
    """--init with the authors' format (keys prefixed `module.` by DataParallel), recorded in options.yml."""
    state = weights(full_run / "model_latest.pth")
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in state.items()}, "optimizer": {}},
               tmp_path / "authors.pth")
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2, save_every=1)
    code, out = run_main(capsys, "--opt", str(opt), "--init", str(tmp_path / "authors.pth"))
    assert code == 0, out
    loaded = weights(tmp_path / "exp" / "model_epoch_1.pth")
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert load_options(tmp_path / "exp" / "options.yml")["train"]["init"] == str(tmp_path / "authors.pth")


def test_init_takes_a_released_name(dataset, tmp_path, capsys, monkeypatch, train_options, tiny_options,
                                    tiny_weights):
    """A released name is downloaded (here by a patched downloader), verified and cached, as test.py does; a
    download that fails is one line and exit 2."""
    monkeypatch.setenv("NERD_RAIN_HOME", str(tmp_path / "home"))
    # the tiny network stands in for NeRD-Rain-S, whose released file it then is
    monkeypatch.setitem(models.MODELS, "NeRDRainS", models.ModelSize("NeRD-Rain-S", {
        k: v for k, v in tiny_options.items() if k != "type"}))
    downloads = []
    monkeypatch.setattr(pretrained.gdown, "download",
                        lambda url, output, quiet: downloads.append(url) or shutil.copy(tiny_weights, output))
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2, save_every=1)
    code, out = run_main(capsys, "--opt", str(opt), "--init", "NeRD-Rain-S/Rain200L")
    assert code == 0, out
    cached = tmp_path / "home" / "weights" / "NeRD-Rain-S" / "Rain200L.pth"
    assert f"initial weights: {cached}" in out and len(downloads) == 1
    loaded = weights(tmp_path / "exp" / "model_epoch_1.pth")
    assert all(torch.equal(loaded[k], v) for k, v in weights(cached).items())

    def offline(url, output, quiet):
        raise ConnectionError("no network")
    monkeypatch.setattr(pretrained.gdown, "download", offline)
    code, out = run_main(capsys, "--opt", str(opt), "--set", f"paths.experiment={tmp_path / 'exp2'}",
                         "--init", "NeRD-Rain-S/SPA-Data")
    assert code == train.EXIT_BAD_INPUT and "Traceback" not in out and out.count("error: ") == 1
    assert "error: train.init (--init): Cannot get the weights NeRD-Rain-S/SPA-Data: the download failed" in out


def test_init_and_resume_together_are_a_usage_error(dataset, tmp_path, capsys, train_options, tiny_weights):
    opt = train_options(dataset, tmp_path / "opt.yml")
    with pytest.raises(SystemExit) as exit_:
        train.main(["--opt", str(opt), "--init", str(tiny_weights), "--resume"])
    assert exit_.value.code == train.EXIT_BAD_INPUT
    assert "--init starts a new run from weights, --resume continues a run with its own" in capsys.readouterr().err

def test_existing_checkpoints_need_resume(full_run, capsys):
    code, out = run_main(capsys, "--opt", str(full_run.parent / "opt.yml"))
    assert code == train.EXIT_BAD_INPUT
    assert f"{full_run} already holds checkpoints" in out and "--resume auto" in out and "paths.experiment" in out
    code, out = run_main(capsys, "--opt", str(full_run.parent / "opt.yml"), "--resume")
    assert code == 0 and "nothing to do: 4 of 4 epochs are done" in out


@pytest.mark.parametrize("setup, expected", [
    (lambda d, t: ["--set", "train.lrr=1"], r"unknown option 'train\.lrr' in --set train\.lrr=1"),
    (lambda d, t: ["--set", f"datasets.train.dir={t / 'nowhere'}"], r"datasets\.train: no folder .*nowhere/input"),
    (lambda d, t: ["--set", f"datasets.val.dir={make_empty(t)}"], r"datasets\.val: no images in .*empty/input"),
    (lambda d, t: ["--set", f"datasets.val.dir={make_unpaired(d, t)}"], r"stems only in input: img0.*pairing: order"),
    (lambda d, t: ["--resume", str(t / "missing.pth")], r"--resume .*missing\.pth: no such checkpoint file"),
    (lambda d, t: ["--resume", str(t / "released.pth")], r"cannot be resumed: it lacks optimizer, scheduler"),
    (lambda d, t: ["--device", "tpu"], r"error: "),
    (lambda d, t: ["--device", "cpu", "--cuda_graph"], r"train\.cuda_graph \(--cuda_graph\): it needs a CUDA device"),
    (lambda d, t: ["--set", "train.lr=.inf"], r"train\.lr = inf must be a finite number \(set in --set train"),
    (lambda d, t: ["--set", "train.eta_min=.nan"], r"train\.eta_min = nan must be a finite number"),
    (lambda d, t: ["--set", "datasets.val.max_pixels=0"], r"datasets\.val\.max_pixels must be at least 1"),
    (lambda d, t: ["--init", str(t / "missing.pth")], r"train\.init \(--init\): checkpoint not found: .*missing\.pth"),
    (lambda d, t: ["--init", str(make_other_network(t))], r"train\.init \(--init\): .*other\.pth holds a NeRD-Rain "
                                                         r"variant \(dim 12, .*but the options build a NeRD-Rain "
                                                         r"variant \(dim 8, blocks \[1, 1, 1\]"),
])
def test_bad_input_exits_2_with_one_message(dataset, tmp_path, capsys, setup, expected, train_options,
                                            tiny_weights):
    opt = train_options(dataset, tmp_path / "opt.yml")
    shutil.copy(tiny_weights, tmp_path / "released.pth")  # weights alone, as a released model is
    code, out = run_main(capsys, "--opt", str(opt), *setup(dataset, tmp_path))
    assert code == train.EXIT_BAD_INPUT, out
    assert re.search(expected, out), out
    assert "Traceback" not in out and out.count("error: ") == 1



def test_cuda_graphs_are_refused_with_checkpointed_activations():
    problem = cuda_graph_problem(torch.device("cuda"), 1, compiled=False, checkpointed=True)
    assert problem and "train.checkpoint_activations" in problem and "use one of the two" in problem
    assert cuda_graph_problem(torch.device("cuda"), 1, compiled=False, checkpointed=False) is None


def test_durations_read_at_a_glance():
    assert [trainer.duration(s) for s in (42.4, 307, 7980, 3 * 86400 + 4 * 3600 + 59)] == ["42s", "5m07s", "2h13m",
                                                                                         "3d04h"]

def test_bad_yaml_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yml"
    path.write_text("train: [1\n")
    code, out = run_main(capsys, "--opt", str(path))
    assert code == train.EXIT_BAD_INPUT and f"error: {path}: line" in out and "Traceback" not in out


def make_empty(tmp_path: Path) -> Path:
    for side in ("input", "target"):
        (tmp_path / "empty" / side).mkdir(parents=True)
    return tmp_path / "empty"



def make_other_network(tmp_path: Path) -> Path:
    save_network(tmp_path / "other.pth", build_model({"type": "NeRDRain", "dim": 12, "num_blocks": [1, 1, 1],
                                                      "heads": [1, 1, 2]}))
    return tmp_path / "other.pth"

def make_unpaired(dataset: Path, tmp_path: Path) -> Path:
    root = tmp_path / "unpaired"
    for side in ("input", "target"):
        (root / side).mkdir(parents=True)
        for src in (dataset / "test" / side).iterdir():
            (root / side / (src.name if side == "input" else "x" + src.name)).write_bytes(src.read_bytes())
    return root



def test_start_up_check_lists_every_unusable_pair(dataset, tmp_path, capsys, train_options, broken_train_pairs):
    opt = train_options(dataset, tmp_path / "opt.yml")
    code, out = run_main(capsys, "--opt", str(opt), "--set", f"datasets.train.dir={broken_train_pairs}")
    assert code == train.EXIT_BAD_INPUT and "Traceback" not in out
    assert f"datasets.train: {broken_train_pairs} cannot be used: " in out  # data.check's message
    assert re.search(r"cannot read image .*img2\.png: not a decodable image", out)
    assert re.search(r"img3\.png is 44x40 but .*img3\.png is 48x28", out)
    assert "--set datasets.train.check=false" in out
    assert not (tmp_path / "exp").exists()  # nothing trained, nothing left behind


def test_an_image_over_the_pixel_limit_is_an_unusable_pair(dataset, tmp_path, capsys, train_options,
                                                           broken_train_pairs, huge_png):
    opt = train_options(dataset, tmp_path / "opt.yml")
    huge_png(broken_train_pairs / "input" / "img4.png", 100_000, 100_000)  # a decompression bomb's header
    (broken_train_pairs / "target" / "img4.png").write_bytes((dataset / "train" / "target" / "img0.png").read_bytes())
    code, out = run_main(capsys, "--opt", str(opt), "--set", f"datasets.train.dir={broken_train_pairs}",
                         "datasets.train.max_pixels=1500")
    assert code == train.EXIT_BAD_INPUT and "Traceback" not in out
    assert f"datasets.train: {broken_train_pairs} cannot be used: " in out
    assert re.search(r"img4\.png: more than 178,956,970 pixels, over the limit of 1,500 "
                     r"\(datasets\.train\.max_pixels\)", out)
    assert re.search(r"img0\.png: 44x40 = 1,760 pixels, over the limit of 1,500 \(datasets\.train\.max_pixels\)", out)
    assert not (tmp_path / "exp").exists()


def test_a_worker_that_cannot_read_an_image_ends_the_job(dataset, tmp_path, train_options, broken_train_pairs):
    """Without the start-up check, the error comes from a DataLoader worker mid-epoch: the job must end
    (it used to wait forever on the other workers) with the message, after saving model_latest.pth."""
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2)
    broken = broken_train_pairs
    (broken / "target" / "img3.png").write_bytes((broken / "target" / "img0.png").read_bytes())  # only img2 is bad
    result = subprocess.run(
        [sys.executable, "train.py", "--opt", str(opt), "--device", "cpu", "--set", f"datasets.train.dir={broken}",
         "datasets.train.check=false", "datasets.train.num_workers=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == train.EXIT_BAD_INPUT, result.stderr[-2000:]
    assert re.search(r"error: cannot read image .*img2\.png", result.stderr) and "Traceback" not in result.stderr
    assert (tmp_path / "exp" / "model_latest.pth").is_file()


def test_a_second_run_into_the_same_experiment_is_refused(dataset, tmp_path, capsys, train_options):
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2)
    exp = tmp_path / "exp"
    with experiment_lock(exp):  # as a run in another process holds it
        code, out = run_main(capsys, "--opt", str(opt))
    assert code == train.EXIT_BAD_INPUT
    assert re.search(rf"{exp} is in use by another training run \(host {socket.gethostname()}, pid {os.getpid()}, "
                     r"since .*\); wait for it to end, or train into another folder", out)
    assert not (exp / "model_latest.pth").exists()


def test_a_lock_left_by_a_dead_run_is_taken_over(dataset, tmp_path, capsys, train_options):
    opt = train_options(dataset, tmp_path / "opt.yml", epochs=2)
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / ".lock").write_text('{"host": "node7", "pid": 4242, "started": "2026-11-30 08:00:00"}')
    code, out = run_main(capsys, "--opt", str(opt))
    assert code == 0
    assert "taking over the lock of" in out and "(host node7, pid 4242, since 2026-11-30 08:00:00)" in out
    assert not (exp / ".lock").exists()  # released on exit
