"""Train NeRD-Rain as the authors do (docs/architecture.md, "Training recipe and schedule").

    python train.py --opt options/rain200l.yml [--set train.lr=2e-4 ...] [--resume [auto|PATH] | --init WEIGHTS]
                    [--device auto|cpu|cuda] [--amp] [--compile] [--channels_last] [--cuda_graph]
    bash train.sh options/rain200h.yml [--gpus N] [--nnodes N --node_rank R --master_addr H] [...]  # torchrun
    srun bash train.sh options/rain200h.yml [...]   # Slurm, one task per GPU (README: Multi-node training)

Writes into `paths.experiment`: options.yml, metrics.csv, tensorboard/ (train.tensorboard), model_latest.pth
(every epoch), model_best.pth (best validation PSNR) and model_epoch_{e}.pth (every train.save_every epochs),
in the authors' checkpoint format plus what resuming needs. --init starts from released or other network
weights; fine-tuning, train.accumulate and train.checkpoint_activations: docs/training.md. Epoch e's data order and augmentation depend only
on (train.seed, e), not on the number of processes (training/sampler.py), so resuming continues exactly.
Rank 0 alone checks the data, validates, logs and saves. Ctrl-C or SIGTERM saves model_latest.pth
mid-epoch; a non-finite loss stops the run before the step, saving nothing. The run itself is
training/trainer.py; this file is its command line. Exit codes: 0 done, 1 non-finite loss, a lost
process, or a file of the experiment that could not be written (e.g. a full disk; the message names the
last complete checkpoint, which is intact), 2 bad input (options, data, checkpoint, an experiment folder
that cannot be written), 130 interrupted.
"""
import argparse
import json
import sys
from collections.abc import Sequence

from data import DataError
from training.distributed import Dist, PeerStopped, join, leave, lost_peer
from training.experiment import ExperimentError, started_experiment
from training.loader import check_datasets, worker_error_message
from training.options import load_options
from training.state import ResumeError
from training.trainer import InputError, NonFiniteLossError, Trainer, WriteError
from utils.device import resolve_device, reuse_freed_cpu_memory
from utils.options import OptionsError, resolve_path
from utils.signals import sigterm_as_interrupt

EXIT_NON_FINITE, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 1, 2, 130


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train NeRD-Rain.", epilog="Exit codes: 0 done, 1 non-finite "
                                "loss, a lost process or a failed write (a full disk), 2 bad input, 130 interrupted "
                                "(model_latest.pth saved).")
    p.add_argument("--opt", required=True, help="options YAML, e.g. options/rain200l.yml")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override options, e.g. --set train.lr=2e-4 datasets.train.batch_size=4")
    p.add_argument("--resume", nargs="?", const="auto", metavar="auto|PATH",
                   help="continue a run: 'auto' (the default value) takes model_latest.pth of paths.experiment")
    p.add_argument("--init", metavar="WEIGHTS",
                   help="start a new run from these network weights (sets train.init): a checkpoint, ours or the "
                        "authors', or a released name such as NeRD-Rain/SPA-Data; optimizer and schedule start afresh")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    for flag, what in (("amp", "bf16 autocast"), ("compile", "torch.compile the network"),
                       ("channels_last", "channels_last memory format on a GPU (always on for the CPU)"),
                       ("cuda_graph", "replay the network's forward and backward as CUDA graphs, one GPU")):
        p.add_argument(f"--{flag}", action="store_true", help=f"{what} (sets train.{flag})")
    args = p.parse_args(argv)
    if args.init is not None and args.resume is not None:
        p.error("--init starts a new run from weights, --resume continues a run with its own: use one of the two")
    return args


def run(args: argparse.Namespace, dist: Dist) -> None:
    """Trains (or resumes training) into the experiment folder of the options."""
    flags = [f"train.{flag}=true" for flag in ("amp", "compile", "channels_last", "cuda_graph") if getattr(args, flag)]
    if args.init is not None:
        flags.append(f"train.init={json.dumps(args.init)}")  # a JSON string is a YAML string, whatever the path
    opt = load_options(args.opt, [*args.overrides, *flags])  # every process, before joining: all fail alike
    exp_dir = resolve_path(opt["paths"]["experiment"])
    try:
        device = join(resolve_device(args.device), dist)
    except (ValueError, RuntimeError) as err:
        raise InputError(str(err)) from None
    reuse_freed_cpu_memory(device)
    with started_experiment(exp_dir, args.resume, lambda: check_datasets(opt["datasets"]), dist) as (path, checkpoint):
        trainer = Trainer(opt, device, dist, init=opt["train"]["init"] if checkpoint is None else "")  # new runs only
        if checkpoint is not None:
            trainer.resume(path, checkpoint)
        trainer.fit()


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
    except (OptionsError, DataError, ExperimentError, ResumeError, InputError, PeerStopped) as err:
        report(worker_error_message(err), own=isinstance(err, DataError))
        return EXIT_BAD_INPUT
    except NonFiniteLossError as err:
        report(str(err))
        return EXIT_NON_FINITE
    except WriteError as err:
        report(str(err))
        return EXIT_FAILED
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
