"""Training in several processes (train.sh, torchrun, Slurm) on the CPU with gloo: the same model whatever
the layout, exact resuming, and a job that ends when one of its processes dies."""
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch

import train
from models import build_model
from models.weights import load_weights
from training.distributed import Dist, first_host
from training.sampler import GlobalBatchSampler
from utils.options import REPO_ROOT

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
LAUNCH_TIMEOUT = 300  # seconds for one tiny run of a few processes on two busy cores


@pytest.fixture(scope="module")
def four_pairs(train_pairs, tmp_path_factory) -> Path:
    """train_pairs with two more training pairs (flipped copies): 2 global batches of 2 per epoch."""
    root = tmp_path_factory.mktemp("four")
    for split in ("train", "test"):
        for side in ("input", "target"):
            (root / split / side).mkdir(parents=True)
            for src in sorted((train_pairs / split / side).iterdir()):
                img = cv2.imread(str(src))
                cv2.imwrite(str(root / split / side / src.name), img)
                if split == "train":
                    cv2.imwrite(str(root / split / side / f"flip_{src.name}"), cv2.flip(img, 1))
    return root


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_sh(opt: Path, *args: str, env: dict[str, str] = ENV) -> subprocess.Popen:
    return subprocess.Popen(["bash", str(REPO_ROOT / "train.sh"), str(opt), "--device", "cpu", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def train_py(opt: Path, *args: str) -> subprocess.Popen:
    """train.py in one process, without train.sh."""
    return subprocess.Popen([sys.executable, "train.py", "--opt", str(opt), "--device", "cpu", *args], cwd=REPO_ROOT,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def srun_task(opt: Path, task: int, port: int) -> subprocess.Popen:
    """`srun bash train.sh` with 2 tasks on this host, as Slurm sets its variables."""
    slurm = {"SLURM_PROCID": str(task), "SLURM_LOCALID": str(task), "SLURM_STEP_NUM_TASKS": "2", "SLURM_NTASKS": "2",
             "SLURM_STEP_NODELIST": "localhost", "MASTER_PORT": str(port)}
    return train_sh(opt, env={**ENV, **slurm})


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (torchrun starts each rank in a session of its own)."""
    try:
        children = [int(c) for t in Path(f"/proc/{pid}/task").iterdir() for c in (t / "children").read_text().split()]
    except OSError:
        return []
    return children + [d for c in children for d in descendants(c)]


def finish(*procs: subprocess.Popen, timeout: float = LAUNCH_TIMEOUT) -> list[tuple[int, str]]:
    """Exit codes and outputs; kills every process of the launches still running after `timeout` seconds."""
    results, deadline = [], time.monotonic() + timeout
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 1))
            results.append((proc.returncode, out))
    finally:
        for proc in procs:
            for pid in [proc.pid, *descendants(proc.pid)]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=10)
    return results


def max_difference(a: Path, b: Path) -> float:
    wa, wb = (torch.load(path, weights_only=True)["state_dict"] for path in (a, b))
    assert wa.keys() == wb.keys()
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)


def test_every_layout_cuts_the_same_global_batches():
    for size, seed in ((4, 0), (5, 3), (1, 7)):
        one = GlobalBatchSampler(size, 4, world=1, seed=seed)
        ranks = [GlobalBatchSampler(size, 2, world=2, rank=r, seed=seed) for r in range(2)]
        orders = []
        for epoch in (1, 2):
            for sampler in (one, *ranks):
                sampler.set_epoch(epoch)
            whole, parts = list(one), [list(r) for r in ranks]
            assert len(whole) == len(one) == 4 * one.global_batches()
            assert [len(p) for p in parts] == [len(whole) // 2] * 2
            interleaved = [item for g in range(one.global_batches()) for p in parts for item in p[2 * g:2 * g + 2]]
            assert interleaved == whole
            assert {i for i, _ in whole} == set(range(size))  # every pair; a short last batch wraps round
            orders.append(whole)
        assert orders[0] != orders[1]  # a new order and new augmentation seeds every epoch


def test_slurm_environment_gives_rank_world_and_master(monkeypatch):
    env = {"SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "16", "SLURM_NTASKS": "16",
           "SLURM_STEP_NODELIST": "gpu[07-08]", "SLURM_JOB_NODELIST": "gpu[07-08]"}
    monkeypatch.setenv("PATH", "/nonexistent")  # no scontrol: the node list is read here
    assert Dist.from_env(env) == Dist(9, 1, 16, "gpu07:29500")
    assert Dist.from_env({**env, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"}).master == "10.0.0.1:1234"
    assert Dist.from_env({**env, "RANK": "3", "LOCAL_RANK": "3", "WORLD_SIZE": "8"}) == Dist(3, 3, 8)  # torchrun's
    assert Dist.from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) == Dist()  # the batch script, not srun
    assert [first_host(n) for n in ("node1", "a-1,b", "gpu[3,5-6]", "x[001-004],y")] == ["node1", "a-1", "gpu3", "x001"]


def test_bad_launch_flags_exit_2(tmp_path):
    opt = tmp_path / "opt.yml"
    for flags, message in ((["--nnodes", "2"], "--nnodes 2 needs --master_addr"),
                           (["--nnodes", "2", "--node_rank", "2", "--master_addr", "h"],
                            "--node_rank needs a number from 0 to 1"),
                           (["--gpus", "x"], "--gpus needs a number")):
        (code, out), = finish(train_sh(opt, *flags), timeout=60)
        assert code == 2 and f"error: {message}" in out, out


@pytest.fixture(scope="module")
def layouts(four_pairs, tmp_path_factory, train_options, tiny_weights) -> dict[str, Path]:
    """The same training (4 pairs, global batch 2, 3 epochs) as 1 process x 2, 2 processes x 1 (one node),
    2 nodes x 1 process (two train.sh on localhost) and 2 Slurm tasks; and with a global batch of 4, as
    1 process x 4 and 2 processes x 1 accumulating 2, both from the tiny_weights (--init: rank 0 reads them,
    DDP hands them to rank 1). Their experiment folders and outputs."""
    root = tmp_path_factory.mktemp("layouts")
    names = ("1x2", "2x1", "2nodes", "slurm", "1x4", "2x1x2")
    for name in names:
        (root / name).mkdir()
    opts = {name: train_options(four_pairs, root / name / "opt.yml", epochs=3, save_every=1) for name in names}
    port, slurm_port = str(free_port()), free_port()
    procs = [train_py(opts["1x2"], "--set", "datasets.train.batch_size=2"),
             train_sh(opts["2x1"], "--gpus", "2"),
             *(train_sh(opts["2nodes"], "--nnodes", "2", "--node_rank", str(r), "--master_addr", "127.0.0.1",
                        "--master_port", port, "--gpus", "1") for r in (0, 1)),
             *(srun_task(opts["slurm"], task, slurm_port) for task in (0, 1)),
             train_py(opts["1x4"], "--set", "datasets.train.batch_size=4", "--init", str(tiny_weights)),
             train_sh(opts["2x1x2"], "--gpus", "2", "--set", "train.accumulate=2", "--init", str(tiny_weights))]
    results = finish(*procs)
    for code, out in results:
        assert code == 0, out[-3000:]
    outs = dict(zip(("1x2", "2x1", "node0", "node1", "task0", "task1", "1x4", "2x1x2"), (out for _, out in results)))
    return {name: opt.parent / "exp" for name, opt in opts.items()} | {"out": outs}


def test_two_processes_on_one_node(layouts, tiny_options):
    out, exp = layouts["out"]["2x1"], layouts["2x1"]
    assert "train.sh: 2 processes with torchrun" in out
    assert "batch size 1 per process x 2 processes = effective batch size 2" in out
    assert ("no CUDA GPU here, so they share the CPU" in out) == (torch.cuda.device_count() == 0)
    assert sorted(p.name for p in exp.iterdir()) == ["metrics.csv", "model_best.pth", "model_epoch_1.pth",
                                                     "model_epoch_2.pth", "model_epoch_3.pth", "model_latest.pth",
                                                     "options.yml", "tensorboard"]
    latest = torch.load(exp / "model_latest.pth", weights_only=True)
    assert (latest["epoch"], latest["iteration"]) == (3, 6)  # 4 pairs in global batches of 2
    load_weights(build_model(tiny_options), exp / "model_latest.pth")
    assert out.count("val PSNR of the rainy inputs") == 1 and out.count("epoch 3/3 ") == 1  # rank 0 alone
    assert len(list((exp / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0 alone


def test_two_nodes_on_localhost(layouts):
    node0, node1 = layouts["out"]["node0"], layouts["out"]["node1"]
    for node, out in enumerate((node0, node1)):
        assert f"train.sh: node {node} of 2, 1 processes here, 2 in all" in out
    assert "effective batch size 2" in node0 + node1
    assert (layouts["2nodes"] / "model_latest.pth").is_file()


def test_srun_tasks_read_their_place_from_slurm(layouts):
    task0, task1 = layouts["out"]["task0"], layouts["out"]["task1"]
    assert "train.sh: 2 Slurm tasks" in task0 and "effective batch size 2" in task0
    assert "torchrun" not in task0 + task1 and "effective batch size" not in task1  # rank 1 logs nothing
    assert (layouts["slurm"] / "model_latest.pth").is_file()


def test_one_model_whatever_the_layout(layouts, capsys):
    """After 4 steps (epoch 1 runs at rate 0) the weights agree within 1e-5."""
    diffs = {name: max_difference(layouts["1x2"] / "model_latest.pth", layouts[name] / "model_latest.pth")
             for name in ("2x1", "2nodes", "slurm")}
    with capsys.disabled():
        print(f"\nmax weight difference to 1 process x batch 2: {diffs}")
    assert max(diffs.values()) < 1e-5, diffs
    trained = max_difference(layouts["1x2"] / "model_epoch_1.pth", layouts["1x2"] / "model_latest.pth")
    assert trained > 1e-4  # the weights moved: the agreement means something



def test_accumulating_in_two_processes_trains_as_one_batch_of_4(layouts, capsys):
    """2 processes x batch 1 x accumulate 2 (gradients exchanged once a step, after the second micro-batch:
    DDP's no_sync) against 1 process x batch 4: the same two steps (epoch 1 runs at rate 0) from the same
    initial weights."""
    out = layouts["out"]["2x1x2"]
    assert "batch size 1 per process x 2 accumulated (train.accumulate) x 2 processes = effective batch size 4" in out
    assert out.count("(train.init); optimizer, schedule and epochs start afresh") == 1  # rank 0 alone logs
    latest = torch.load(layouts["2x1x2"] / "model_latest.pth", weights_only=True)
    assert (latest["epoch"], latest["iteration"]) == (3, 3)  # one step per epoch of 4 pairs
    difference = max_difference(layouts["1x4"] / "model_latest.pth", layouts["2x1x2"] / "model_latest.pth")
    trained = max_difference(layouts["1x4"] / "model_epoch_1.pth", layouts["1x4"] / "model_latest.pth")
    with capsys.disabled():
        print(f"\nmax weight difference, 2 processes x 1 x accumulate 2 against 1 x 4: {difference:.2e} "
              f"(trained {trained:.2e})")
    assert difference < 1e-5 and trained > 1e-4

def test_resume_with_two_processes_is_bit_exact(layouts, four_pairs, tmp_path, train_options,
                                                assert_same_weights):
    opt = train_options(four_pairs, tmp_path / "opt.yml", epochs=3, save_every=1)
    (code, out), = finish(train_sh(opt, "--gpus", "2", "--resume", str(layouts["2x1"] / "model_epoch_2.pth")))
    assert code == 0, out[-3000:]
    assert "resumed from" in out
    assert_same_weights(tmp_path / "exp" / "model_latest.pth", layouts["2x1"] / "model_latest.pth")


def child_pid(launcher: int, rank: int | None = None, timeout: float = 120) -> int:
    """The pid of a train.py process (of `rank`, if given) that torchrun (pid `launcher`) started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ if rank is not None else any(v.startswith(b"RANK=") for v in environ):
                return int(child)
        time.sleep(0.2)
    raise AssertionError(f"torchrun started no process {'' if rank is None else f'of rank {rank} '}in {timeout} s")


@pytest.mark.parametrize("nodes", [1, 2])
def test_a_killed_rank_ends_the_job_with_a_message_naming_it(train_pairs, tmp_path, nodes, train_options):
    """Rank 1 of 2 processes on one node, or the process of "node" 1 of 2, is killed after an epoch: every
    torchrun ends within a minute and a half, the victim's with a line that names its rank and the signal."""
    opt = train_options(train_pairs, tmp_path / "opt.yml", epochs=10000, val_every=10000, save_every=0)
    metrics = tmp_path / "exp" / "metrics.csv"
    port = str(free_port())
    procs = ([train_sh(opt, "--gpus", "2")] if nodes == 1 else
             [train_sh(opt, "--nnodes", "2", "--node_rank", str(r), "--master_addr", "127.0.0.1",
                       "--master_port", port, "--gpus", "1") for r in (0, 1)])
    try:
        victim = child_pid(procs[-1].pid, 1 if nodes == 1 else None)
        deadline = time.monotonic() + 180
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) > 1):
            assert time.monotonic() < deadline and procs[0].poll() is None, "training did not get through an epoch"
            time.sleep(0.2)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        results = finish(*procs, timeout=90)
    assert time.monotonic() - killed < 90 and all(code != 0 for code, _ in results), results
    victim_line = rf"error: rank \d \(local rank {2 - nodes}, pid {victim}\) failed first: killed by signal 9 "
    assert re.search(victim_line + r"\(SIGKILL\)", results[-1][1]), results[-1][1][-3000:]
    if nodes == 2:  # the survivor names itself and what stopped it
        survivor = results[0][1]
        assert re.search(r"error: rank \d: another process of the job stopped \(.*Connection", survivor), \
            survivor[-3000:]


@pytest.mark.parametrize("check", ["true", "false"])
def test_bad_data_on_one_rank_ends_the_job_with_its_message(train_pairs, tmp_path, check, train_options,
                                                           broken_train_pairs):
    """With the start-up check, rank 0 finds the bad pairs while rank 1 waits for it; without, the rank that
    reads the bad image mid-epoch stops. Either way the job ends at once and the message names the rank."""
    opt = train_options(train_pairs, tmp_path / "opt.yml", epochs=2)
    broken = broken_train_pairs
    (broken / "target" / "img3.png").write_bytes((broken / "target" / "img0.png").read_bytes())  # only img2 is bad
    (code, out), = finish(train_sh(opt, "--gpus", "2", "--set", f"datasets.train.dir={broken}",
                                   f"datasets.train.check={check}"), timeout=180)
    assert code == 2, out[-3000:]
    if check == "true":
        assert f"error: rank 0: datasets.train: {broken} cannot be used: cannot read image" in out
        assert not (tmp_path / "exp").exists()
    else:
        rank = re.search(r"error: rank (\d): cannot read image .*img2\.png", out)
        assert rank, out[-3000:]
        assert f"error: rank {rank[1]} (local rank {rank[1]}," in out and "failed first: exited with code 2" in out
