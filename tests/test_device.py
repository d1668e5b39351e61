"""utils.device: keeping freed CPU memory for reuse."""
import subprocess
import sys

import pytest
import torch

PAGE_FAULTS_OF_LARGE_TEMPORARIES = """
import resource, sys, torch
from utils.device import reuse_freed_cpu_memory
if sys.argv[1] == "reuse":
    assert reuse_freed_cpu_memory(torch.device("cpu"))
x = torch.ones(2**25)  # 128 MiB: above glibc's largest mmap threshold
x * 2
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    x * 2  # a 128 MiB temporary, freed at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_LARGE_TEMPORARIES, mode],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    default, reuse = page_faults("default"), page_faults("reuse")
    # glibc's default: every temporary is unmapped on free and faulted in anew (64 faults with 2 MiB
    # pages, 32768 with 4 KiB ones).
    assert default >= 20 * 64
    assert reuse < 0.8 * default  # measured: 0.4 to 0.6 of it (glibc's aligned blocks fragment the heap)


def test_freed_memory_reuse_is_for_the_cpu_only():
    from utils.device import reuse_freed_cpu_memory

    assert reuse_freed_cpu_memory(torch.device("cuda")) is False


def test_compile_path_runs_on_cpu():
    """--compile (torch.compile, inductor) on one Transformer block: the numbers of eager mode,
    forward and backward. The whole network takes minutes to compile on two cores."""
    import copy

    import torch

    from models.blocks import TransformerBlock
    from utils.device import prepare_model

    torch.manual_seed(0)
    block = TransformerBlock(8, 2, 2.66, False, "WithBias")
    compiled = prepare_model(copy.deepcopy(block), torch.device("cpu"), compile=True)
    x = torch.rand(2, 8, 16, 16)
    eager_out, compiled_out = block(x), compiled(x)
    eager_out.square().mean().backward()
    compiled_out.square().mean().backward()
    assert (compiled_out - eager_out).abs().max().item() < 1e-5
    for (name, p), q in zip(block.named_parameters(), compiled.parameters()):
        assert (p.grad - q.grad).abs().max().item() < 1e-5 * max(1.0, p.grad.abs().max().item()), name
