"""The benchmark's baseline computes what the authors compute, and the benchmark runs."""
import json
import re
import subprocess
import sys
from collections import Counter

import torch

from bench.baseline import BASELINE_FORWARD, authors_baseline
from models import build_model
from models.weights import infer_network_options, load_weights
from utils.device import prepare_model


def test_authors_baseline_gives_golden_outputs(golden):
    model = build_model(infer_network_options(golden["state_dict"]))
    load_weights(model, golden["state_dict"])
    baseline = authors_baseline(prepare_model(model, torch.device("cpu"))).eval()
    assert sum(p.numel() for p in baseline.parameters()) == sum(p.numel() for p in model.parameters())
    assert all(p.is_contiguous() for p in baseline.parameters())
    replaced = Counter(type(m) for m in baseline.modules()
                       if getattr(m.forward, "__func__", None) is BASELINE_FORWARD.get(type(m)))
    assert set(replaced) == set(BASELINE_FORWARD) and all(replaced.values())
    assert not any("forward" in vars(m) for m in model.modules()), "the model itself must stay ours"
    with torch.no_grad():
        outputs = baseline(golden["input"])
    for ours, theirs in zip(outputs, golden["outputs"]):
        assert (ours - theirs).abs().max().item() < 1e-5


def test_speed_benchmark_prints_rows(golden_weights, tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, "-m", "bench.speed", "--what", "train", "--device", "cpu", "--size", "32",
           "--weights", str(golden_weights), "--channels_last",
           "--warmup", "0", "--repeats", "1", "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {r["path"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["authors-style", "exact (default)", "channels_last"]
    assert rows["exact (default)"]["max_abs_diff"] == 0
    assert rows["authors-style"]["max_abs_diff"] < 1e-5
    assert rows["channels_last"]["max_abs_diff"] < 1e-5
    assert all(r["ms"] > 0 and r["peak_mb"] >= 0 for r in rows.values())
    assert "| exact (default) |" in result.stdout



def test_memory_benchmark_prints_rows_with_and_without_checkpointing(tmp_path):
    out = tmp_path / "rows.json"
    cmd = [sys.executable, "-m", "bench.memory", "--types", "NeRDRainS", "--sizes", "32", "--device", "cpu",
           "--repeats", "1", "--json", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    plain, checkpointed = json.loads(out.read_text())["rows"]
    assert (plain["checkpointed"], checkpointed["checkpointed"]) == (False, True)
    assert all(r["ms"] > 0 and r["peak_mib"] > r["added_mib"] > 0 for r in (plain, checkpointed))
    assert checkpointed["added_mib"] < plain["added_mib"]  # even at 32x32, where weights and Adam's moments dominate
    assert "| NeRDRainS | 32x32 | 1 | on |" in result.stdout

def test_fast_rows_on_cpu(golden):
    """The CUDA fast path's pieces (bf16 autocast, channels_last) run on the CPU too."""
    from argparse import Namespace

    from bench.speed import make_row, output0, row_names

    model = build_model(infer_network_options(golden["state_dict"]))
    load_weights(model, golden["state_dict"])
    names = row_names(Namespace(channels_last=True, amp=True, compile=False, cuda_graph=False, combined_only=False,
                                onnx=None))
    assert names == ["authors-style", "exact (default)", "channels_last", "amp", "channels_last + amp"]
    x = golden["input"][:1, :, :32, :32]
    cpu = torch.device("cpu")
    exact = output0(make_row("exact (default)", model), x, cpu)
    for name in names[2:]:
        diff = (output0(make_row(name, model), x, cpu) - exact).abs().max().item()
        assert diff < (0.05 if "amp" in name else 1e-5), name


def test_cuda_graph_option_needs_cuda_training():
    for tool in ("bench.speed", "bench.profile"):
        result = subprocess.run([sys.executable, "-m", tool, "--what", "train", "--device", "cpu", "--cuda_graph"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert "--cuda_graph times training steps on a CUDA device" in result.stderr


def test_profile_prints_the_convolutions_share():
    result = subprocess.run([sys.executable, "-m", "bench.profile", "--what", "train", "--device", "cpu",
                             "--type", "NeRDRainS", "--size", "32", "--warmup", "0", "--repeats", "1", "--top", "5"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    conv_ms, share, total_ms = re.search(r"convolutions, forward and backward: ([\d.]+) ms, (\d+)% of the profiled "
                                         r"step's ([\d.]+) ms of CPU time", result.stdout).groups()
    assert 0 < float(conv_ms) < float(total_ms) and 0 < int(share) < 100
    assert "aten::convolution_backward" in result.stdout
