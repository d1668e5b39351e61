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

import numpy as np
import pytest
import torch

import train
from losses import MultiScaleLoss
from models import build_model
from models.weights import load_weights
from training import trainer
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
])
def test_bad_input_exits_2_with_one_message(dataset, tmp_path, capsys, setup, expected, train_options,
                                            tiny_weights):
    opt = train_options(dataset, tmp_path / "opt.yml")
    shutil.copy(tiny_weights, tmp_path / "released.pth")  # weights alone, as a released model is
    code, out = run_main(capsys, "--opt", str(opt), *setup(dataset, tmp_path))
    assert code == train.EXIT_BAD_INPUT, out
    assert re.search(expected, out), out
    assert "Traceback" not in out and out.count("error: ") == 1


def test_bad_yaml_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yml"
    path.write_text("train: [1\n")
    code, out = run_main(capsys, "--opt", str(path))
    assert code == train.EXIT_BAD_INPUT and f"error: {path}: line" in out and "Traceback" not in out


def make_empty(tmp_path: Path) -> Path:
    for side in ("input", "target"):
        (tmp_path / "empty" / side).mkdir(parents=True)
    return tmp_path / "empty"


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
