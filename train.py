"""Train NeRD-Rain as the authors do (NERD_RAIN_SPEC.md, "Training as the authors run it").

    python train.py --opt options/rain200l.yml [--set train.lr=2e-4 ...] [--resume [auto|PATH]]
                    [--device auto|cpu|cuda] [--amp] [--compile] [--channels_last] [--cuda_graph]
    bash train.sh options/rain200h.yml [--gpus N] [--nnodes N --node_rank R --master_addr H] [...]  # torchrun
    srun bash train.sh options/rain200h.yml [...]   # Slurm, one task per GPU (README: Multi-node training)

Writes into `paths.experiment`: options.yml, metrics.csv, model_latest.pth (every epoch),
model_best.pth (best validation PSNR) and model_epoch_{e}.pth (every train.save_every epochs), in the
authors' checkpoint format plus what resuming needs. Epoch e's data order and augmentation depend only
on (train.seed, e), not on the number of processes (data/sampler.py), so resuming continues exactly.
Rank 0 alone checks the data, validates, logs and saves. Ctrl-C or SIGTERM saves model_latest.pth
mid-epoch; a non-finite loss stops the run before the step, saving nothing. Exit codes: 0 done,
1 non-finite loss or a lost process, 2 bad input (options, data, checkpoint), 130 interrupted.
"""
import argparse
import itertools
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from data import DataError
from data.loader import (check_datasets, dataset_from_options, loader_from_options, train_loader_from_options,
                         worker_error_message)
from evaluations.metrics import rgb_psnr
from losses import build_loss
from models import build_model
from models.weights import describe, load_weights, network_options, save_network
from utils.cuda_graph import CudaGraphed, cuda_graph_problem
from utils.device import autocast, prepare_model, resolve_device, reuse_freed_cpu_memory, slow_amp_note
from utils.distributed import Dist, PeerStopped, data_parallel, from_main, join, leave, lost_peer, mean_over_processes
from utils.experiment import ExperimentError, MetricsLog, Progress, options_diff, started_experiment
from utils.options import OptionsError, load_options, resolve_path, save_options
from utils.rng import rng_state, set_rng_state
from utils.scheduler import build_scheduler
from utils.signals import sigterm_as_interrupt, signals_ignored

EXIT_NON_FINITE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 1, 2, 130


class InputError(Exception):
    """Bad input the user can fix: reported in one line, exit code 2."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


class Trainer:
    """One training run: data, network, optimizer, schedule, checkpoints and logs."""

    def __init__(self, opt: dict[str, Any], device: torch.device, dist: Dist):
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
        if self.cfg["cuda_graph"] and (problem := cuda_graph_problem(device, dist.world, self.cfg["compile"])):
            raise InputError(f"train.cuda_graph (--cuda_graph): {problem}")
        self.net = prepare_model(network, device, self.cfg["channels_last"], self.cfg["compile"])
        self.model = data_parallel(self.net, device, dist)
        self.train_forward = CudaGraphed(self.net) if self.cfg["cuda_graph"] else self.model
        data = opt["datasets"]
        self.train_set, self.val_set = (dataset_from_options(data, split, check=False) for split in ("train", "val"))
        self.train_loader = train_loader_from_options(self.train_set, data["train"], device, dist, self.cfg["seed"])
        self.val_loader = loader_from_options(self.val_set, data["val"], device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg["lr"], betas=tuple(self.cfg["betas"]),
                                          eps=self.cfg["eps"])
        self.scheduler = build_scheduler(self.optimizer, self.cfg["epochs"], self.cfg["warmup_epochs"],
                                         self.cfg["eta_min"], self.cfg["schedule"], len(self.train_loader))
        self.progress = Progress()
        self.metrics: MetricsLog | None = None

    def log(self, message: str) -> None:
        if self.dist.main:
            tqdm.write(message)

    def save(self, name: str) -> None:
        save_network(self.exp_dir / name, self.net, **self.progress.as_checkpoint(), optimizer=self.optimizer.state_dict(),
                     scheduler=self.scheduler.state_dict(), rng=rng_state(), options=self.opt)

    def resume(self, path: Path, ckpt: dict[str, Any], progress: Progress) -> None:
        """Restores weights, optimizer, scheduler, progress and generator states from read_resume_checkpoint."""
        try:
            load_weights(self.net, ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path} does not fit these options ({str(err).splitlines()[0]}); resume with the "
                             "options it was trained with (its 'options' entry)") from None
        self.progress = progress
        set_rng_state(ckpt["rng"])
        self.log(f"resumed from {path}: {progress}, best val PSNR {progress.best_psnr:.2f} dB")
        if changed := options_diff(ckpt.get("options", {}), self.opt):
            self.log("note: options differ from the checkpoint's (the optimizer and learning-rate schedule go on "
                     "from its saved state): " + "; ".join(changed))

    @torch.no_grad()
    def validate(self, network: bool = True) -> float:
        """Mean over validation images of the authors' RGB PSNR of output 0 (or of the rainy input) vs target."""
        self.net.eval()
        total, count = 0.0, 0
        for batch in self.val_loader:
            inp, tar = batch["input"].to(self.device), batch["target"].to(self.device)
            if network:
                with autocast(self.device, self.cfg["amp"]):
                    inp = self.net(inp)[0].float()
            total, count = total + rgb_psnr(inp, tar) * len(inp), count + len(inp)
        self.net.train()
        return total / count

    def step(self, batch: dict[str, Any], epoch: int) -> float:
        """One optimizer step on a batch; returns the loss. Raises NonFiniteLossError before stepping."""
        inp = batch["input"].to(self.device, non_blocking=True)
        tar = batch["target"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.cfg["amp"]):
            outputs = self.train_forward(inp)
        loss, _ = self.loss([o.float() for o in outputs], tar)
        value = mean_over_processes(loss, self.dist)
        if not math.isfinite(value):
            p = self.progress
            last = (f"the last finished epoch ({p.epoch}) is in {self.exp_dir / 'model_latest.pth'}" if p.epoch
                    else "no epoch finished, so there is no checkpoint")
            raise NonFiniteLossError(
                f"the loss is {value} at epoch {epoch}, iteration {p.iteration + 1} (batch {p.batches_done + 1} "
                f"of {len(self.train_loader)}); stopped before the optimizer step, nothing saved: {last}. "
                "Try a lower train.lr" + (" or without --amp" if self.cfg["amp"] else ""))
        loss.backward()
        self.optimizer.step()
        return value

    def train_epoch(self, epoch: int) -> float:
        """Trains one epoch (or its rest, after an interrupted run); returns the rate it trained with."""
        self.train_loader.sampler.set_epoch(epoch)
        self.model.train()
        p, total = self.progress, len(self.train_loader)
        lr = self.optimizer.param_groups[0]["lr"]
        batches = itertools.islice(self.train_loader, p.batches_done, None) if p.batches_done < total else ()
        bar = tqdm(batches, total=total, initial=p.batches_done, desc=f"epoch {epoch}/{self.cfg['epochs']}",
                   leave=False, dynamic_ncols=True, disable=not self.dist.main)
        for batch in bar:
            lr = self.optimizer.param_groups[0]["lr"]
            value = self.step(batch, epoch)
            if self.cfg["schedule"] == "iteration":
                self.scheduler.step()
            p.iteration, p.batches_done, p.loss_sum = p.iteration + 1, p.batches_done + 1, p.loss_sum + value
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", refresh=False)
        return lr

    def end_epoch(self, epoch: int, lr: float, start: float) -> None:
        """Validation, the epoch-wise schedule step, checkpoints and the log line of a finished epoch."""
        p = self.progress
        loss = p.loss_sum / max(p.batches_done, 1)
        psnr = self.validate() if self.dist.main and epoch % self.cfg["val_every"] == 0 else None
        if self.cfg["schedule"] == "epoch":
            self.scheduler.step()
        p.epoch, p.batches_done, p.loss_sum = epoch, 0, 0.0
        if improved := psnr is not None and psnr > p.best_psnr:
            p.best_psnr, p.best_epoch = psnr, epoch
        if not self.dist.main:
            return
        if improved:
            self.save("model_best.pth")
        if self.cfg["save_every"] and epoch % self.cfg["save_every"] == 0:
            self.save(f"model_epoch_{epoch}.pth")
        self.save("model_latest.pth")
        seconds = time.time() - start
        self.metrics.write({"epoch": epoch, "iterations": p.iteration, "loss": f"{loss:.6f}", "lr": f"{lr:.6e}",
                            "val_psnr": "" if psnr is None else f"{psnr:.4f}", "best_psnr": f"{p.best_psnr:.4f}",
                            "seconds": f"{seconds:.1f}"})
        val = "" if psnr is None else f"  val PSNR {psnr:.2f} dB"
        self.log(f"epoch {epoch}/{self.cfg['epochs']}  {seconds:.1f} s  loss {loss:.4f}  lr {lr:.3e}{val}"
                 f"  best {p.best_psnr:.2f} dB (epoch {p.best_epoch})")

    def fit(self) -> None:
        """Trains from the current progress to the last epoch; on an interrupt saves model_latest.pth."""
        try:
            for epoch in range(self.progress.epoch + 1, self.cfg["epochs"] + 1):
                start = time.time()
                self.end_epoch(epoch, self.train_epoch(epoch), start)
                from_main(None, self.dist)  # the other processes wait for rank 0's validation and checkpoints
        except (KeyboardInterrupt, DataError):
            if self.dist.main:
                with signals_ignored():
                    self.save("model_latest.pth")
                self.log(f"saved {self.exp_dir / 'model_latest.pth'} ({self.progress}); continue with --resume auto")
            raise

    def describe_run(self) -> None:
        """The startup summary: network, data, batch sizes, device, and the rainy inputs' PSNR."""
        data, d, cfg, batch = self.opt["datasets"], self.dist, self.cfg, self.train_loader.batch_size
        params = sum(p.numel() for p in self.net.parameters())
        self.log(f"network: {describe(network_options(self.net))}, {params / 1e6:.2f} M parameters")
        self.log(f"train: {len(self.train_set)} pairs in {data['train']['dir']}, patch {data['train']['patch_size']}, "
                 f"{len(self.train_loader)} iterations per epoch; val: {len(self.val_set)} pairs in "
                 f"{data['val']['dir']}, centre crop {data['val']['patch_size']}")
        self.log(f"batch size {batch} per process x {d.world} process{'es' if d.world > 1 else ''} = "
                 f"effective batch size {batch * d.world} (the global batch of every step)")
        self.log(f"device {self.device}, amp {cfg['amp']}, compile {cfg['compile']}, cuda_graph {cfg['cuda_graph']}; "
                 f"experiment {self.exp_dir}")
        if note := slow_amp_note(self.device, cfg["amp"]):
            self.log(note)
        if d.main:
            self.log(f"val PSNR of the rainy inputs: {self.validate(network=False):.2f} dB")
        from_main(None, d)  # the others wait for that validation


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train NeRD-Rain.", epilog="Exit codes: 0 done, 1 non-finite "
                                "loss or a lost process, 2 bad input, 130 interrupted (model_latest.pth saved).")
    p.add_argument("--opt", required=True, help="options YAML, e.g. options/rain200l.yml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override options, e.g. --set train.lr=2e-4 datasets.train.batch_size=4")
    p.add_argument("--resume", nargs="?", const="auto", metavar="auto|PATH",
                   help="continue a run: 'auto' (the default value) takes model_latest.pth of paths.experiment")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    for flag, what in (("amp", "bf16 autocast"), ("compile", "torch.compile the network"),
                       ("channels_last", "channels_last memory format on a GPU (always on for the CPU)"),
                       ("cuda_graph", "replay the network's forward and backward as CUDA graphs, one GPU")):
        p.add_argument(f"--{flag}", action="store_true", help=f"{what} (sets train.{flag})")
    return p.parse_args(argv)


def run(args: argparse.Namespace, dist: Dist) -> None:
    """Trains (or resumes training) into the experiment folder of the options."""
    flags = [f"train.{flag}=true" for flag in ("amp", "compile", "channels_last", "cuda_graph") if getattr(args, flag)]
    opt = load_options(args.opt, [*args.overrides, *flags])  # every process, before joining: all fail alike
    exp_dir = resolve_path(opt["paths"]["experiment"])
    try:
        device = join(resolve_device(args.device), dist)
    except (ValueError, RuntimeError) as err:
        raise InputError(str(err)) from None
    reuse_freed_cpu_memory(device)
    with started_experiment(exp_dir, args.resume, lambda: check_datasets(opt["datasets"]), dist) as (checkpoint, read):
        trainer = Trainer(opt, device, dist)
        if read is not None:
            trainer.resume(checkpoint, *read)
        if dist.main:
            save_options(opt, exp_dir / "options.yml")
            trainer.metrics = MetricsLog(exp_dir, trainer.progress.epoch)
        if trainer.progress.epoch >= opt["train"]["epochs"]:
            trainer.log(f"nothing to do: {trainer.progress.epoch} of {opt['train']['epochs']} epochs are done")
            return
        trainer.describe_run()
        try:
            trainer.fit()
        finally:
            trainer.train_loader.shutdown()
        p = trainer.progress
        trainer.log(f"done: best val PSNR {p.best_psnr:.2f} dB at epoch {p.best_epoch}; checkpoints in {exp_dir}")
        if trainer.metrics is not None:
            trainer.metrics.close()


def main(argv: Sequence[str] | None = None) -> int:
    args, dist = parse_args(argv), Dist.from_env()

    def report(message: str, own: bool = False) -> None:
        """Rank 0 reports what all processes meet alike; each reports what may be its `own` (its data, its peers)."""
        if dist.main or own:
            print(f"error: {f'rank {dist.rank}: ' if dist.world > 1 else ''}{message}", file=sys.stderr)

    try:
        with sigterm_as_interrupt():
            run(args, dist)
        return 0
    except (OptionsError, DataError, ExperimentError, InputError, PeerStopped) as err:
        report(worker_error_message(err), own=isinstance(err, DataError))
        return EXIT_BAD_INPUT
    except NonFiniteLossError as err:
        report(str(err))
        return EXIT_NON_FINITE
    except RuntimeError as err:
        if not lost_peer(err):
            raise
        report(f"another process of the job stopped ({str(err).splitlines()[0]}); its message says why", own=True)
        return EXIT_FAILED
    except KeyboardInterrupt:
        report("interrupted")
        return EXIT_INTERRUPTED
    finally:
        leave()


if __name__ == "__main__":
    sys.exit(main())
