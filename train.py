"""Train NeRD-Rain as the authors do (NERD_RAIN_SPEC.md, "Training as the authors run it").

    python train.py --opt options/rain200l.yml [--set train.lr=2e-4 ...] [--resume [auto|PATH]]
                    [--device auto|cpu|cuda] [--amp] [--compile] [--channels_last] [--cuda_graph]
    bash train.sh options/rain200h.yml [--gpus N] [...]   # several GPUs: torchrun + DistributedDataParallel

Writes into `paths.experiment`: options.yml (the resolved options), metrics.csv, model_latest.pth
(every epoch), model_best.pth (best validation PSNR), model_epoch_{e}.pth (every train.save_every
epochs). Checkpoints are the authors' `{'epoch', 'state_dict', 'optimizer'}` plus what resuming
needs; all load with torch.load(weights_only=True) and utils.checkpoint.load_weights.

Resuming (--resume auto: model_latest.pth of the experiment) continues exactly: the data order and
augmentation of epoch e depend only on (train.seed, e, process rank), and the optimizer and
scheduler states are restored, so 2 epochs + resume + 2 epochs equals 4 epochs (bit for bit on the
CPU; keep num_workers and the number of processes). Ctrl-C (or SIGTERM, e.g. from torchrun or a
job scheduler) saves model_latest.pth with the weights after the last finished iteration and how
many batches of the epoch were done; resuming from it replays that epoch's data stream, skipping
those batches, and goes on as if never stopped (unless the interrupt landed inside an optimizer
step, which may then be partly applied). A non-finite loss stops the run before the step, saving
nothing: model_latest.pth keeps the last finished epoch.

Exit codes: 0 done, 1 non-finite loss, 2 bad input (options, data, checkpoint), 130 interrupted.
"""
import argparse
import contextlib
import csv
import io
import itertools
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm import tqdm

from data import DataError, build_dataset
from evaluations.metrics import rgb_psnr
from losses import build_loss
from models import build_model
from utils.checkpoint import describe, load_weights, network_options, read_checkpoint, save_checkpoint
from utils.device import CudaGraphed, autocast, prepare_model, resolve_device, reuse_freed_cpu_memory, slow_amp_note
from utils.image_io import atomic_save
from utils.options import OptionsError, load_options, resolve_path, save_options
from utils.scheduler import build_scheduler

METRICS_HEADER = ("epoch", "iterations", "loss", "lr", "val_psnr", "best_psnr", "seconds")
EXIT_NON_FINITE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
_LOADER_KEYS = ("batch_size", "num_workers")


class InputError(Exception):
    """Bad input the user can fix: reported in one line, exit code 2."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun launch (rank 0 of 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Dist":
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1)))


@dataclass
class Progress:
    """Where training stands: `epoch` finished epochs, then `batches_done` batches into the next."""

    epoch: int = 0
    iteration: int = 0
    best_psnr: float = 0.0
    best_epoch: int = 0
    batches_done: int = 0
    loss_sum: float = 0.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train NeRD-Rain.", epilog="Exit codes: 0 done, 1 non-finite "
                                "loss, 2 bad input, 130 interrupted (model_latest.pth saved).")
    p.add_argument("--opt", required=True, help="options YAML, e.g. options/rain200l.yml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override options, e.g. --set train.lr=2e-4 datasets.train.batch_size=4")
    p.add_argument("--resume", nargs="?", const="auto", metavar="auto|PATH",
                   help="continue a run: 'auto' (the default value) takes model_latest.pth of paths.experiment")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--amp", action="store_true", help="bf16 autocast (sets train.amp)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (sets train.compile)")
    p.add_argument("--channels_last", action="store_true",
                   help="channels_last memory format on a GPU (sets train.channels_last; always on for the CPU)")
    p.add_argument("--cuda_graph", action="store_true",
                   help="replay the network's forward and backward as CUDA graphs, one GPU (sets train.cuda_graph)")
    return p.parse_args(argv)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one process's data order and augmentation in one epoch."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def init_worker(worker_id: int) -> None:
    """DataLoader worker init: seeds the generators the augmentation draws from (Python's and
    NumPy's) from the worker's torch seed, which the loader derives from the epoch's seed; and
    ignores SIGTERM (see Loader)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # also drops one that came while the worker started
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class Loader(DataLoader):
    """A DataLoader whose workers live through a SIGTERM sent to the whole job.

    Job schedulers (and `timeout`) send SIGTERM to every process of the job. A worker killed by it
    would end the main process with a DataLoader error before it saves model_latest.pth; so workers
    start with SIGTERM blocked and ignore it from init_worker on, and the main process, which gets
    the signal too, shuts them down itself, as after Ctrl-C.
    """

    def __iter__(self) -> Any:
        if not hasattr(signal, "pthread_sigmask"):  # not POSIX
            return super().__iter__()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            return super().__iter__()  # starts the workers
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch generator states, in types torch.load(weights_only=True) accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": random.getstate(), "numpy": [name, keys.tolist(), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restores what rng_state saved."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _flatten(opt: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in opt.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def options_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'key: old -> new' for every option that differs."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def resume_path(resume: str | None, exp_dir: Path) -> Path | None:
    """The checkpoint to resume from; refuses to start over an experiment that has checkpoints."""
    existing = sorted(p.name for p in exp_dir.glob("model_*.pth"))
    if resume is None:
        if existing:
            raise InputError(f"{exp_dir} already holds checkpoints ({', '.join(existing[:4])}"
                             f"{' ...' if len(existing) > 4 else ''}): continue that run with --resume auto, or "
                             "start a new one in another folder with --set paths.experiment=experiments/NEW_NAME")
        return None
    if resume == "auto":
        latest = exp_dir / "model_latest.pth"
        if latest.is_file():
            return latest
        if existing:
            raise InputError(f"--resume auto: no model_latest.pth in {exp_dir} (found {', '.join(existing[:4])}); "
                             "name one with --resume PATH")
        return None
    path = Path(resume)
    if not path.is_file():
        raise InputError(f"--resume {resume}: no such checkpoint file")
    return path


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (torchrun's shutdown, job schedulers) raises KeyboardInterrupt, as Ctrl-C does."""
    if not _in_main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done (used while saving after an interrupt)."""
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def scheduler_warnings_off() -> Iterator[None]:
    """Silences torch's warning that warmup-scheduler 0.3 triggers on every step (it calls get_lr())."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="To get the last learning rate computed by the scheduler")
        yield


def tensorboard_writer(log_dir: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


class Trainer:
    """One training run: data, network, optimizer, schedule, checkpoints and logs."""

    def __init__(self, opt: dict[str, Any], device: torch.device, dist: Dist):
        self.opt, self.device, self.dist = opt, device, dist
        self.cfg = opt["train"]
        self._check_cuda_graph()
        self.exp_dir = resolve_path(opt["paths"]["experiment"])
        self.train_set = self._dataset("train", "PairedTrain")
        self.val_set = self._dataset("val", "PairedVal")
        self.generator = torch.Generator()
        self.train_loader = self._train_loader()
        self.val_loader = self._loader(self.val_set, "val", sampler=None, generator=torch.Generator())

        torch.manual_seed(self.cfg["seed"])
        try:
            network = build_model(opt["network"])
        except ValueError as err:
            raise InputError(f"network options: {err}") from None
        self.num_params = sum(p.numel() for p in network.parameters())
        self.net = prepare_model(network, device, self.cfg["channels_last"], self.cfg["compile"])
        self.model: nn.Module = self.net
        if dist.world > 1:
            # static_graph: the same parameters go unused every step (reduce_chan_level1_max3, as the authors')
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            # (depthwise conv weight gradients differ only in the stride of a size-1 dimension: harmless)
            self.model = DistributedDataParallel(self.net, device_ids=[device.index] if device.type == "cuda" else None,
                                                 static_graph=True)
        # The training forward; with train.cuda_graph, replayed from graphs captured on the first batch.
        self.train_forward = CudaGraphed(self.net) if self.cfg["cuda_graph"] else self.model
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.cfg["lr"], betas=tuple(self.cfg["betas"]),
                                          eps=self.cfg["eps"])
        with scheduler_warnings_off():
            self.scheduler = build_scheduler(self.optimizer, self.cfg["epochs"], self.cfg["warmup_epochs"],
                                             self.cfg["eta_min"], self.cfg["schedule"], len(self.train_loader))
        self.loss = build_loss(self.cfg["loss"]).to(device)
        self.progress = Progress()
        self.tensorboard = None

    def _check_cuda_graph(self) -> None:
        if not self.cfg["cuda_graph"]:
            return
        problem = ("it needs a CUDA device (--device cuda)" if self.device.type != "cuda"
                   else "it runs on one GPU only (train.sh --gpus 1)" if self.dist.world > 1
                   else "torch.compile (train.compile) captures graphs of its own: use one of the two"
                   if self.cfg["compile"] else None)
        if problem:
            raise InputError(f"train.cuda_graph (--cuda_graph): {problem}")

    # ---- data
    def _dataset(self, split: str, kind: str) -> Any:
        section = self.opt["datasets"][split]
        args = {k: v for k, v in section.items() if k not in _LOADER_KEYS}
        args["dir"] = resolve_path(args["dir"])
        try:
            return build_dataset({"type": kind, **args})
        except DataError as err:
            raise DataError(f"datasets.{split}: {err} (datasets.{split}.dir = {section['dir']}; relative paths "
                            "start at the repository root)") from None

    def _train_loader(self) -> DataLoader:
        if self.dist.world > 1:
            sampler = DistributedSampler(self.train_set, self.dist.world, self.dist.rank, shuffle=True,
                                         seed=self.cfg["seed"])
        else:
            sampler = RandomSampler(self.train_set, generator=self.generator)
        return self._loader(self.train_set, "train", sampler, self.generator)

    def _loader(self, dataset: Any, split: str, sampler: Any, generator: torch.Generator) -> DataLoader:
        section = self.opt["datasets"][split]
        return Loader(dataset, batch_size=section["batch_size"], sampler=sampler,
                          num_workers=section["num_workers"], worker_init_fn=init_worker, generator=generator,
                          pin_memory=self.device.type == "cuda")

    def _seed_epoch(self, epoch: int) -> None:
        """Makes the epoch's data order and augmentation a function of (seed, epoch, rank)."""
        seed = epoch_seed(self.cfg["seed"], epoch, self.dist.rank)
        self.generator.manual_seed(seed)  # the sampler's order and the workers' seeds
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(epoch)
        random.seed(seed)  # augmentation in this process when num_workers is 0
        np.random.seed(seed)

    # ---- logging
    def log(self, message: str) -> None:
        if self.dist.main:
            tqdm.write(message)

    def start_metrics(self) -> None:
        """metrics.csv: a new file, or on resume the rows up to the resumed epoch."""
        path = self.exp_dir / "metrics.csv"
        rows = []
        if self.progress.epoch and path.is_file():
            with path.open(newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= self.progress.epoch]
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows([METRICS_HEADER, *rows])
        atomic_save(path, lambda tmp: Path(tmp).write_text(text.getvalue()))

    def write_metrics(self, row: dict[str, Any]) -> None:
        with (self.exp_dir / "metrics.csv").open("a", newline="") as f:
            csv.writer(f, lineterminator="\n").writerow([row[k] for k in METRICS_HEADER])
        if self.tensorboard is not None:
            for key in ("loss", "lr", "val_psnr"):
                if row[key] != "":
                    self.tensorboard.add_scalar(key, float(row[key]), row["epoch"])
            self.tensorboard.flush()

    # ---- checkpoints
    def save(self, name: str) -> None:
        p = self.progress
        save_checkpoint(self.exp_dir / name, self.net, epoch=p.epoch, optimizer=self.optimizer.state_dict(),
                        scheduler=self.scheduler.state_dict(), iteration=p.iteration, best_psnr=p.best_psnr,
                        best_epoch=p.best_epoch, batches_done=p.batches_done, loss_sum=p.loss_sum,
                        rng=rng_state(), options=self.opt)

    def resume(self, path: Path) -> None:
        """Restores weights, optimizer, scheduler, progress and generator states from a checkpoint."""
        try:
            ckpt = read_checkpoint(path)
        except (FileNotFoundError, ValueError) as err:
            raise InputError(str(err)) from None
        missing = [k for k in ("epoch", "optimizer", "scheduler", "iteration", "rng") if k not in ckpt]
        if missing:
            raise InputError(f"{path} cannot be resumed: it lacks {', '.join(missing)} (not written by this "
                             "train.py, e.g. a released model)")
        try:
            load_weights(self.net, ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{path} does not fit these options ({str(err).splitlines()[0]}); resume with the "
                             "options it was trained with (its 'options' entry)") from None
        self.progress = Progress(ckpt["epoch"], ckpt["iteration"], ckpt.get("best_psnr", 0.0),
                                 ckpt.get("best_epoch", 0), ckpt.get("batches_done", 0), ckpt.get("loss_sum", 0.0))
        set_rng_state(ckpt["rng"])
        changed = options_diff(ckpt.get("options", {}), self.opt)
        p = self.progress
        self.log(f"resumed from {path}: epoch {p.epoch} done" + (f", {p.batches_done} batches into epoch "
                 f"{p.epoch + 1}" if p.batches_done else "") + f", best val PSNR {p.best_psnr:.2f} dB")
        if changed:
            self.log("note: options differ from the checkpoint's (the optimizer and learning-rate schedule go on "
                     "from its saved state): " + "; ".join(changed))

    # ---- training
    def mean_psnr(self, restore: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """Mean over validation images of the authors' RGB PSNR of restore(input) vs target."""
        total, count = 0.0, 0
        for batch in self.val_loader:
            inp, tar = batch["input"].to(self.device), batch["target"].to(self.device)
            total += rgb_psnr(restore(inp), tar) * len(inp)
            count += len(inp)
        return total / count

    @torch.no_grad()
    def validate(self) -> float:
        self.net.eval()
        try:
            def restore(inp: torch.Tensor) -> torch.Tensor:
                with autocast(self.device, self.cfg["amp"]):
                    return self.net(inp)[0].float()
            return self.mean_psnr(restore)
        finally:
            self.net.train()

    def _mean_loss(self, loss: torch.Tensor) -> float:
        """The loss averaged over processes (a NaN anywhere makes it NaN everywhere)."""
        value = loss.detach()
        if self.dist.world > 1:
            value = value.clone()
            torch_dist.all_reduce(value)
            value /= self.dist.world
        return value.item()

    def step(self, batch: dict[str, Any], epoch: int) -> float:
        """One optimizer step on a batch; returns the loss. Raises NonFiniteLossError before stepping."""
        inp = batch["input"].to(self.device, non_blocking=True)
        tar = batch["target"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.cfg["amp"]):
            outputs = self.train_forward(inp)
        loss, _ = self.loss([o.float() for o in outputs], tar)
        value = self._mean_loss(loss)
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
        self._seed_epoch(epoch)
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
                self._scheduler_step()
            p.iteration, p.batches_done, p.loss_sum = p.iteration + 1, p.batches_done + 1, p.loss_sum + value
            bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}", refresh=False)
        return lr

    def _scheduler_step(self) -> None:
        with scheduler_warnings_off():
            self.scheduler.step()

    def end_epoch(self, epoch: int, lr: float, start: float) -> None:
        """Validation, the epoch-wise schedule step, checkpoints and the log line of a finished epoch."""
        p = self.progress
        loss = p.loss_sum / max(p.batches_done, 1)
        psnr = self.validate() if self.dist.main and epoch % self.cfg["val_every"] == 0 else None
        if self.cfg["schedule"] == "epoch":
            self._scheduler_step()
        p.epoch, p.batches_done, p.loss_sum = epoch, 0, 0.0
        improved = psnr is not None and psnr > p.best_psnr
        if improved:
            p.best_psnr, p.best_epoch = psnr, epoch
        if not self.dist.main:
            return
        if improved:
            self.save("model_best.pth")
        if self.cfg["save_every"] and epoch % self.cfg["save_every"] == 0:
            self.save(f"model_epoch_{epoch}.pth")
        self.save("model_latest.pth")
        seconds = time.time() - start
        self.write_metrics({"epoch": epoch, "iterations": p.iteration, "loss": f"{loss:.6f}", "lr": f"{lr:.6e}",
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
                lr = self.train_epoch(epoch)
                self.end_epoch(epoch, lr, start)
        except (KeyboardInterrupt, DataError):
            if self.dist.main:
                with signals_ignored():
                    self.save("model_latest.pth")
                p = self.progress
                self.log(f"saved {self.exp_dir / 'model_latest.pth'} (epoch {p.epoch} done, {p.batches_done} "
                         f"batches into epoch {p.epoch + 1}); continue with --resume auto")
            raise

    def describe_run(self) -> None:
        """The startup summary: network, data, batch sizes, device, and the rainy inputs' PSNR."""
        data, d = self.opt["datasets"], self.dist
        batch = data["train"]["batch_size"]
        self.log(f"network: {describe(network_options(self.net))}, {self.num_params / 1e6:.2f} M parameters")
        self.log(f"train: {len(self.train_set)} pairs in {data['train']['dir']}, patch {data['train']['patch_size']}, "
                 f"{len(self.train_loader)} iterations per epoch; val: {len(self.val_set)} pairs in "
                 f"{data['val']['dir']}, centre crop {data['val']['patch_size']}")
        self.log(f"batch size {batch} per process x {d.world} process{'es' if d.world > 1 else ''} = "
                 f"effective batch size {batch * d.world}")
        self.log(f"device {self.device}, amp {self.cfg['amp']}, compile {self.cfg['compile']}, "
                 f"cuda_graph {self.cfg['cuda_graph']}; "
                 f"experiment {self.exp_dir}")
        if note := slow_amp_note(self.device, self.cfg["amp"]):
            self.log(note)
        if d.main:
            with torch.no_grad():
                self.log(f"val PSNR of the rainy inputs: {self.mean_psnr(lambda inp: inp):.2f} dB")


def _last_line(err: BaseException) -> str:
    """The message of an error; for one re-raised from a DataLoader worker, its original message."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught "):
        return lines[-1].split(": ", 1)[-1]
    return " ".join(lines) or type(err).__name__


def setup_device(name: str, dist: Dist) -> torch.device:
    """The device of this process; joins the process group under torchrun (NCCL on GPUs, else gloo)."""
    try:
        device = resolve_device(name)
    except (ValueError, RuntimeError) as err:
        raise InputError(str(err)) from None
    if device.type == "cuda" and dist.world > 1:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if dist.world > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def run(args: argparse.Namespace, dist: Dist) -> None:
    overrides = [*args.overrides, *(["train.amp=true"] if args.amp else []),
                 *(["train.compile=true"] if args.compile else []),
                 *(["train.channels_last=true"] if args.channels_last else []),
                 *(["train.cuda_graph=true"] if args.cuda_graph else [])]
    opt = load_options(args.opt, overrides)
    exp_dir = resolve_path(opt["paths"]["experiment"])
    checkpoint = resume_path(args.resume, exp_dir)
    if args.resume and checkpoint is None and dist.main:
        print(f"--resume auto: no checkpoint in {exp_dir} yet, starting a new run")
    device = setup_device(args.device, dist)
    reuse_freed_cpu_memory(device)  # same numbers, same peak; 1.05x to 1.24x per CPU iteration (bench/RESULTS.md)
    trainer = Trainer(opt, device, dist)
    if checkpoint is not None:
        trainer.resume(checkpoint)
    if dist.main:
        exp_dir.mkdir(parents=True, exist_ok=True)
        save_options(opt, exp_dir / "options.yml")
        trainer.start_metrics()
        trainer.tensorboard = tensorboard_writer(exp_dir / "tensorboard")
    if trainer.progress.epoch >= opt["train"]["epochs"]:
        trainer.log(f"nothing to do: {trainer.progress.epoch} of {opt['train']['epochs']} epochs are done")
        return
    trainer.describe_run()
    trainer.fit()
    p = trainer.progress
    trainer.log(f"done: best val PSNR {p.best_psnr:.2f} dB at epoch {p.best_epoch}; checkpoints in {exp_dir}")
    if trainer.tensorboard is not None:
        trainer.tensorboard.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    dist = Dist.from_env()

    def report(message: str) -> None:
        if dist.main:
            print(f"error: {message}", file=sys.stderr)

    try:
        with sigterm_as_interrupt():
            run(args, dist)
        return 0
    except (OptionsError, DataError, InputError) as err:
        report(_last_line(err))
        return EXIT_BAD_INPUT
    except NonFiniteLossError as err:
        report(str(err))
        return EXIT_NON_FINITE
    except KeyboardInterrupt:
        report("interrupted")
        return EXIT_INTERRUPTED
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
