"""Training forward and backward replayed as CUDA graphs (the --cuda_graph option)."""
import warnings

import torch
from torch import nn


class _Forward(nn.Module):
    """`net` behind a module of its own: graphing this one leaves `net.forward` eager."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(x)


class CudaGraphed:
    """`net`'s training forward and backward as CUDA graphs (the --cuda_graph option): captured on the
    first call, under the autocast that the training steps use, and replayed for inputs of that shape.
    Inputs of another shape (a smaller last batch) run `net` eagerly.

    A training step of NeRD-Rain launches thousands of small kernels, and at small batches the GPU
    waits on the host to launch them. torch.cuda.make_graphed_callables records them once and
    replays them: each input is copied into a fixed buffer, the parameters are read where they are.
    The outputs of a replay are overwritten by the next one. Call `net` itself for evaluation.
    """

    def __init__(self, net: nn.Module):
        self.net = net
        self.shape: torch.Size | None = None
        self.graphed: nn.Module | None = None

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.graphed is None:
            if x.device.type != "cuda":
                raise ValueError("CUDA graphs need a CUDA device")
            # make_graphed_callables makes the gradient accumulators on its capture stream, so PyTorch warns
            # that their stream differs from the gradients'. The gradients are right (tests/test_cuda.py).
            warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
            self.shape = x.shape
            self.graphed = torch.cuda.make_graphed_callables(_Forward(self.net).train(), (x,),
                                                             allow_unused_input=True)
        return self.graphed(x) if x.shape == self.shape else self.net(x)


def cuda_graph_problem(device: torch.device, processes: int, compiled: bool, checkpointed: bool) -> str | None:
    """Why CUDA graphs cannot be used for this training run, or None."""
    if device.type != "cuda":
        return "it needs a CUDA device (--device cuda)"
    if processes > 1:
        return "it runs on one GPU only (train.sh --gpus 1)"
    if compiled:
        return "torch.compile (train.compile) captures graphs of its own: use one of the two"
    if checkpointed:
        # Recomputing inside a captured backward pass has not been checked on a GPU here; and the graphs buy
        # speed where checkpointing spends it.
        return ("not together with train.checkpoint_activations (untested, and the two pull opposite ways: "
                "speed against memory): use one of the two")
    return None
