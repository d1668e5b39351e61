"""One training run, as the authors train (docs/architecture.md, "Training recipe and schedule"): data,
network, optimizer, schedule, validation, checkpoints and the log."""
import contextlib
import itertools
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm import tqdm

from data import DataError
from evaluations.metrics import rgb_psnr, rgb_ssim
from losses import build_loss
from models import build_model
from models.pretrained import resolve_weights
from models.weights import describe, infer_network_options, load_weights, network_options
from utils.checkpoint import read_checkpoint, save_checkpoint
from utils.device import autocast, peak_memory_mib, prepare_model, slow_amp_note
from utils.options import resolve_path, save_options
from utils.signals import signals_ignored

from .cuda_graph import CudaGraphed, cuda_graph_problem
from .distributed import Dist, data_parallel, from_main, gradient_sync_skipped, mean_over_processes, start_on_main
from .experiment import options_diff
from .loader import dataset_from_options, loader_from_options, train_loader_from_options
from .metrics_log import MetricsLog
from .scheduler import build_scheduler
from .state import Progress, TrainingState


class InputError(Exception):
    """Bad input the user can fix: reported in one line, exit code 2."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class WriteError(Exception):
    """A file of the experiment that cannot be written (a full disk, say): the message names it, the cause,
    and the last complete checkpoint (atomic writes leave the previous one intact)."""


LATEST = "model_latest.pth"  # the checkpoint `--resume auto` takes


class Validation(NamedTuple):
    """What a validation found: mean RGB PSNR (dB) and SSIM, and (3, H, W) images input | output | target."""

    psnr: float
    ssim: float
    images: list[torch.Tensor]


class Trainer:
    """One training run into the experiment folder of `opt`: `resume` (optionally), then `fit`.

    Rank 0 alone validates, logs and saves; the other processes of a job wait for it. `init` (train.init, for
    a new run): a checkpoint path or a released name whose network weights the run starts from.
    """

    def __init__(self, opt: dict[str, Any], device: torch.device, dist: Dist, init: str = ""):
        self.opt, self.cfg, self.device, self.dist = opt, opt["train"], device, dist
        self.exp_dir = resolve_path(opt["paths"]["experiment"])
        torch.manual_seed(self.cfg["seed"])
        try:
            network = build_model(opt["network"])
        except ValueError as err:
            raise InputError(f"network options: {err}") from None
        try:
            self.loss = build_loss(self.cfg["loss"]).to(device)
        except ValueError as err:
            raise InputError(f"train.loss options: {err}") from None
        network.set_checkpoint_activations(self.cfg["checkpoint_activations"])
        # Rank 0 alone reads (or downloads) the weights: DistributedDataParallel, built below, copies its
        # parameters to the other processes.
        self.init_path = start_on_main(lambda: load_initial_weights(network, init), dist) if init else None
        if self.cfg["cuda_graph"] and (problem := cuda_graph_problem(device, dist.world, self.cfg["compile"],
                                                                     self.cfg["checkpoint_activations"])):
            raise InputError(f"train.cuda_graph (--cuda_graph): {problem}")
        self.net = prepare_model(network, device, self.cfg["channels_last"], self.cfg["compile"])
        self.model = data_parallel(self.net, device, dist, self.cfg["accumulate"])
        self.train_forward = CudaGraphed(self.net) if self.cfg["cuda_graph"] else self.model
        data = opt["datasets"]
        self.train_set, self.val_set = (dataset_from_options(data, split, check=False) for split in ("train", "val"))
        self.train_loader = train_loader_from_options(self.train_set, data["train"], device, dist, self.cfg["seed"],
                                                      self.cfg["accumulate"])
        self.val_loader = loader_from_options(self.val_set, data["val"], device)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg["lr"], betas=tuple(self.cfg["betas"]),
                                     eps=self.cfg["eps"])
        scheduler = build_scheduler(optimizer, self.cfg["epochs"], self.cfg["warmup_epochs"], self.cfg["eta_min"],
                                    self.cfg["schedule"], len(self.train_loader))
        self.state = TrainingState(self.net, optimizer, scheduler)
        self.last_complete: tuple[Path, str] | None = None  # the last checkpoint written whole, and its progress
        self.metrics: MetricsLog | None = None  # rank 0's, while fit runs
        self.session = time.time(), 0  # when this process started training, and at which iteration

    @property
    def progress(self) -> Progress:
        return self.state.progress

    def log(self, message: str) -> None:
        if self.dist.main:
            tqdm.write(message)

    def save(self, name: str) -> None:
        path = self.exp_dir / name
        with self.writing(path):
            save_checkpoint(path, **self.state.state_dict(), options=self.opt)
        self.last_complete = path, str(self.progress)

    @contextlib.contextmanager
    def writing(self, path: Path) -> Iterator[None]:
        """An OSError while writing `path` becomes a WriteError naming it, and what is still intact."""
        try:
            yield
        except OSError as err:
            intact = "no checkpoint was saved yet"
            if self.last_complete:  # every checkpoint holds all that resuming needs (TrainingState)
                last, progress = self.last_complete
                resume = "auto" if last == self.exp_dir / LATEST else str(last)
                intact = (f"the last complete checkpoint is {last} ({progress}); once there is room, continue with "
                          f"--resume {resume}")
            raise WriteError(f"cannot write {path}: {err.strerror or err}; {intact}") from None

    def resume(self, path: Path, checkpoint: dict[str, Any]) -> None:
        """Continues the run saved in `checkpoint` (read from `path`)."""
        self.state.load_state_dict(checkpoint, path)
        p = self.progress
        self.last_complete = path, str(p)
        self.log(f"resumed from {path}: {p}, best val PSNR {p.best_psnr:.2f} dB")
        if self.cfg["init"]:
            self.log(f"note: train.init ({self.cfg['init']}) is not loaded: the run goes on with {path.name}'s weights")
        if changed := options_diff(checkpoint.get("options", {}), self.opt):
            self.log("note: options differ from the checkpoint's (the optimizer and learning-rate schedule go on "
                     "from its saved state): " + "; ".join(changed))

    @torch.no_grad()
    def validate(self, network: bool = True, images: int = 0) -> Validation:
        """The means over validation images of the authors' RGB PSNR and of the RGB SSIM of the restored
        image (or of the rainy input) against the target, and the first `images` of them side by side."""
        self.net.eval()
        psnr, ssim, count, shown = 0.0, 0.0, 0, []
        for batch in self.val_loader:
            inp, tar = batch["input"].to(self.device), batch["target"].to(self.device)
            out = inp
            if network:
                with autocast(self.device, self.cfg["amp"]):
                    out = self.net(inp).restored.float()
            n = len(inp)
            psnr, ssim, count = psnr + rgb_psnr(out, tar) * n, ssim + rgb_ssim(out, tar) * n, count + n
            if len(shown) < images:  # the first ones in the validation set's order: the same ones every time
                shown += [torch.cat(row, dim=-1).cpu() for row in zip(inp, out.clamp(0, 1), tar)][:images - len(shown)]
        self.net.train()
        return Validation(psnr / count, ssim / count, shown)

    def step(self, batch: dict[str, Any], epoch: int) -> tuple[float, dict[str, float]]:
        """One optimizer step on a batch, in train.accumulate micro-batches whose gradients add up; returns
        the loss and its terms (means over the batch's pairs and the processes). Raises NonFiniteLossError
        before stepping."""
        micro = self.cfg["accumulate"]
        optimizer = self.state.optimizer
        optimizer.zero_grad(set_to_none=True)
        sums = 0
        for i, (inp, tar) in enumerate(zip(batch["input"].chunk(micro), batch["target"].chunk(micro))):
            inp, tar = inp.to(self.device, non_blocking=True), tar.to(self.device, non_blocking=True)
            with gradient_sync_skipped(self.model, i < micro - 1):  # processes exchange the sum, once
                with autocast(self.device, self.cfg["amp"]):
                    outputs = self.train_forward(inp)
                loss, terms = self.loss(type(outputs)(*(o.float() for o in outputs)), tar)
                # Each loss is a mean over its micro-batch: the mean over the step's pairs is their mean.
                (loss / micro).backward()
            sums = sums + torch.stack([loss.detach(), *terms.values()])
        value, *parts = mean_over_processes(sums / micro, self.dist)
        if not math.isfinite(value):
            p = self.progress
            last = (f"the last finished epoch ({p.epoch}) is in {self.exp_dir / 'model_latest.pth'}" if p.epoch
                    else "no epoch finished, so there is no checkpoint")
            raise NonFiniteLossError(
                f"the loss is {value} at epoch {epoch}, iteration {p.iteration + 1} (batch {p.batches_done + 1} "
                f"of {len(self.train_loader)}); stopped before the optimizer step, nothing saved: {last}. "
                "Try a lower train.lr" + (" or without --amp" if self.cfg["amp"] else ""))
        optimizer.step()
        return value, dict(zip(terms, parts))

    def train_epoch(self, epoch: int) -> float:
        """Trains one epoch (or its rest, after an interrupted run); returns the rate it trained with."""
        self.train_loader.sampler.set_epoch(epoch)
        self.model.train()
        p, total, optimizer = self.progress, len(self.train_loader), self.state.optimizer
        lr = optimizer.param_groups[0]["lr"]
        batches = itertools.islice(self.train_loader, p.batches_done, None) if p.batches_done < total else ()
        bar = tqdm(batches, total=total, initial=p.batches_done, desc=f"epoch {epoch}/{self.cfg['epochs']}",
                   leave=False, dynamic_ncols=True, disable=not self.dist.main)
        if self.metrics is not None:
            self.metrics.start_steps()
        for batch in bar:
            lr = optimizer.param_groups[0]["lr"]
            value, terms = self.step(batch, epoch)
            if self.cfg["schedule"] == "iteration":
                self.state.scheduler.step()
            p.batch_done(value)
            if self.metrics is not None:
                self.metrics.step(p.iteration, {"loss": value, **terms, "lr": lr})
            bar.set_postfix({"loss": f"{value:.4f}", "lr": f"{lr:.2e}", "run left": self.run_left()}, refresh=False)
        return lr

    def run_left(self) -> str:
        """'~2h13m': the time the run's remaining optimizer steps take at this session's mean time per step so
        far (validations and checkpoints included)."""
        (started, first), done = self.session, self.progress.iteration
        left = self.cfg["epochs"] * len(self.train_loader) - done
        return "~" + duration((time.time() - started) / max(done - first, 1) * left)

    def end_epoch(self, epoch: int, lr: float, start: float) -> None:
        """Validation, the epoch-wise schedule step, checkpoints and the log lines of a finished epoch."""
        p = self.progress
        loss = p.epoch_loss
        validated = self.dist.main and epoch % self.cfg["val_every"] == 0
        images = self.cfg["tensorboard_images"] if self.cfg["tensorboard"] else 0
        result = self.validate(images=images) if validated else None
        psnr = None if result is None else result.psnr
        if self.cfg["schedule"] == "epoch":
            self.state.scheduler.step()
        improved = p.epoch_done(epoch, psnr)
        if not self.dist.main:
            return
        self.metrics.end_steps(p.iteration)
        if result is not None:
            self.metrics.validation(p.iteration, *result)
        if improved:
            self.save("model_best.pth")
        if self.cfg["save_every"] and epoch % self.cfg["save_every"] == 0:
            self.save(f"model_epoch_{epoch}.pth")
        self.save(LATEST)
        seconds = time.time() - start
        with self.writing(self.metrics.path):
            self.metrics.write({"epoch": epoch, "iterations": p.iteration, "loss": f"{loss:.6f}", "lr": f"{lr:.6e}",
                                "val_psnr": "" if psnr is None else f"{psnr:.4f}", "best_psnr": f"{p.best_psnr:.4f}",
                                "seconds": f"{seconds:.1f}"})
        val = "" if result is None else f"  val PSNR {psnr:.2f} dB  SSIM {result.ssim:.4f}"
        self.log(f"epoch {epoch}/{self.cfg['epochs']}  {seconds:.1f} s  loss {loss:.4f}  lr {lr:.3e}{val}"
                 f"  best {p.best_psnr:.2f} dB (epoch {p.best_epoch})")

    def fit(self) -> None:
        """Trains from the current progress to the last epoch. On an interrupt (or bad data mid-epoch)
        saves model_latest.pth and re-raises; the DataLoader workers end in any case. A file that cannot be
        written stops the run with a WriteError."""
        if self.dist.main:
            with self.writing(self.exp_dir / "options.yml"):
                save_options(self.opt, self.exp_dir / "options.yml")
        if self.progress.epoch >= self.cfg["epochs"]:
            self.log(f"nothing to do: {self.progress.epoch} of {self.cfg['epochs']} epochs are done")
            return
        self.describe_run()
        p, cfg = self.progress, self.cfg
        with self.writing(self.exp_dir / "metrics.csv"):
            self.metrics = MetricsLog(self.exp_dir, p.epoch, p.iteration, cfg["tensorboard"], cfg["log_every"],
                                      lambda: peak_memory_mib(self.device)) if self.dist.main else None
        self.session = time.time(), p.iteration
        try:
            with self.metrics or contextlib.nullcontext():
                for epoch in range(self.progress.epoch + 1, self.cfg["epochs"] + 1):
                    start = time.time()
                    self.end_epoch(epoch, self.train_epoch(epoch), start)
                    from_main(None, self.dist)  # the other processes wait for rank 0's validation and checkpoints
        except (KeyboardInterrupt, DataError):
            if self.dist.main:
                with signals_ignored():
                    self.save(LATEST)
                self.log(f"saved {self.exp_dir / LATEST} ({self.progress}); continue with --resume auto")
            raise
        finally:
            self.train_loader.shutdown()
        p = self.progress
        self.log(f"done: best val PSNR {p.best_psnr:.2f} dB at epoch {p.best_epoch}; checkpoints in {self.exp_dir}")

    def describe_run(self) -> None:
        """The startup summary: network, data, batch sizes, device, and the validation PSNR and SSIM of the rainy
        inputs (and of the initial weights)."""
        data, d, cfg = self.opt["datasets"], self.dist, self.cfg
        batch, micro = data["train"]["batch_size"], cfg["accumulate"]
        params = sum(p.numel() for p in self.net.parameters())
        self.log(f"network: {describe(network_options(self.net))}, {params / 1e6:.2f} M parameters")
        self.log(f"train: {len(self.train_set)} pairs in {data['train']['dir']}, patch {data['train']['patch_size']}, "
                 f"{len(self.train_loader)} iterations per epoch; val: {len(self.val_set)} pairs in "
                 f"{data['val']['dir']}, centre crop {data['val']['patch_size']}")
        accumulated = f" x {micro} accumulated (train.accumulate)" if micro > 1 else ""
        self.log(f"batch size {batch} per process{accumulated} x {d.world} process{'es' if d.world > 1 else ''} = "
                 f"effective batch size {batch * micro * d.world} (the global batch of every step)")
        self.log(f"device {self.device}, amp {cfg['amp']}, compile {cfg['compile']}, cuda_graph {cfg['cuda_graph']}, "
                 f"checkpoint_activations {cfg['checkpoint_activations']}; experiment {self.exp_dir}")
        if note := slow_amp_note(self.device, cfg["amp"]):
            self.log(note)
        if self.init_path:
            self.log(f"initial weights: {self.init_path} (train.init); optimizer, schedule and epochs start afresh")
        if d.main:
            for what, result in (("the rainy inputs", self.validate(network=False)),
                                 *((("the initial weights", self.validate()),) if self.init_path else ())):
                self.log(f"val PSNR of {what}: {result.psnr:.2f} dB, SSIM {result.ssim:.4f}")
        from_main(None, d)  # the others wait for that validation


def load_initial_weights(network: nn.Module, given: str) -> Path:
    """Loads the network weights of `given` (train.init: a checkpoint, ours or the authors' with or without
    `module.`, or a released name, downloaded and verified first) into `network`; returns the file.
    InputError in one line when it cannot be read or holds another network, naming both networks."""
    try:
        path = resolve_weights(given)
        state = read_checkpoint(path)["state_dict"]
    except (FileNotFoundError, ValueError) as err:  # a failed download is a ValueError (DownloadError)
        raise InputError(f"train.init (--init): {str(err).splitlines()[0]}; give a checkpoint file or a released "
                         "name (python -m models.pretrained list)") from None
    try:
        load_weights(network, state)
    except ValueError:
        try:
            found = describe(infer_network_options(state))
        except (ValueError, KeyError, IndexError):
            found = "no NeRD-Rain network"
        raise InputError(f"train.init (--init): {path} holds {found}, but the options build "
                         f"{describe(network_options(network))}: set the options' network to the weights' "
                         "(network.type, dim, num_blocks, heads) or start from other weights") from None
    return path


def duration(seconds: float) -> str:
    """'3d04h', '2h13m', '5m07s' or '42s'."""
    s = round(seconds)
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit}{s % size // sub_size:02d}{sub}"
    return f"{s}s"
