"""The network against the authors' code: golden outputs, checkpoint keys, loading, odd sizes."""
import copy
import json

import pytest
import torch

from models import build_model, model_name, model_options
from models.nerd_rain import NeRDRainOutputs
from models.summary import count
from models.weights import infer_network_options, load_weights, save_network
from utils.checkpoint import unwrap
from utils.device import prepare_model


def golden_options(golden: dict) -> dict:
    c = golden["config"]
    return {"type": "NeRDRain", "dim": c["dim"], "num_blocks": c["num_blocks"], "heads": c["heads"],
            "ffn_expansion_factor": c["ffn_expansion_factor"], "bias": c["bias"],
            "layernorm_type": c["LayerNorm_type"]}


@pytest.fixture(scope="module")
def golden_model(golden):
    model = build_model(golden_options(golden)).eval()
    load_weights(model, golden["state_dict"])
    return model


def assert_golden_outputs(model, golden):
    with torch.no_grad():
        outputs = model(golden["input"])
    assert isinstance(outputs, NeRDRainOutputs) and len(outputs) == 7
    for i, (ours, theirs) in enumerate(zip(outputs, golden["outputs"], strict=True)):
        assert ours.shape == theirs.shape, i
        assert (ours - theirs).abs().max().item() < 1e-5, f"output {i}"


def test_golden_outputs(golden_model, golden):
    assert_golden_outputs(golden_model, golden)


def test_golden_outputs_as_test_py_runs_on_the_cpu(golden_model, golden):
    """prepare_model puts the network in channels_last on the CPU: still the authors' numbers."""
    model = prepare_model(copy.deepcopy(golden_model), torch.device("cpu"))
    assert model.out_max.weight.is_contiguous(memory_format=torch.channels_last)
    assert_golden_outputs(model, golden)
    assert_golden_outputs(model, {**golden, "input": golden["input"].contiguous(memory_format=torch.channels_last)})


def test_authors_checkpoint_with_module_prefix_loads_and_matches(tmp_path, golden):
    path = tmp_path / "model_best.pth"
    state = {"module." + k: v for k, v in golden["state_dict"].items()}
    torch.save({"epoch": 7, "state_dict": state, "optimizer": {}}, path)
    model = build_model(infer_network_options(torch.load(path)["state_dict"])).eval()
    ckpt = load_weights(model, path)
    assert ckpt["epoch"] == 7
    assert_golden_outputs(model, golden)


def test_infer_network_options_of_golden(golden):
    assert infer_network_options(golden["state_dict"]) == golden_options(golden)


def test_unused_reduce_conv_really_is_unused(golden, golden_model):
    model = build_model(golden_options(golden))
    model.load_state_dict(golden_model.state_dict())
    unused = model.dec_max[2].reduce1.weight
    with torch.no_grad():
        unused.add_(torch.randn_like(unused))
    assert_golden_outputs(model.eval(), golden)
    sum(o.sum() for o in model.train()(golden["input"])).backward()
    assert unused.grad is None
    assert all(p.grad is not None for n, p in model.named_parameters() if p is not unused)


@pytest.mark.parametrize("model_type, name", [("NeRDRain", "nerd_rain"), ("NeRDRainS", "nerd_rain_s")])
def test_full_config_keys_equal_authors(tmp_path, fixtures, model_type, name):
    reference = json.loads((fixtures / "golden" / f"checkpoint_keys_{name}.json").read_text())
    model = build_model({"type": model_type})
    assert sum(p.numel() for p in model.parameters()) == reference["num_params"]
    path = tmp_path / "ckpt.pth"
    save_network(path, model, epoch=1)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert [[k, list(v.shape)] for k, v in saved.items()] == reference["keys"]
    options = infer_network_options(saved)
    assert options["dim"] == reference["config"]["dim"]
    assert options["num_blocks"] == reference["config"]["num_blocks"]
    assert options["heads"] == reference["config"]["heads"]


def test_other_size_loads_after_inference_and_mismatch_is_explained(tmp_path):
    small = build_model({"type": "NeRDRainS"})
    path = tmp_path / "small.pth"
    save_network(path, small)
    with pytest.raises(ValueError, match=r"small\.pth.*looks like NeRD-Rain-S \(dim 32"):
        load_weights(build_model({"type": "NeRDRain"}), path)
    rebuilt = build_model(infer_network_options(torch.load(path)["state_dict"]))
    load_weights(rebuilt, path)
    for a, b in zip(rebuilt.state_dict().values(), small.state_dict().values()):
        assert torch.equal(a, b)


def test_missing_keys_are_named(golden):
    state = dict(golden["state_dict"])
    del state["BF2.gamma1.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing: BF2\.gamma1\.bias.*unexpected: extra\.weight"):
        load_weights(build_model(golden_options(golden)), state)


def test_unreadable_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="bad.pth"):
        load_weights(build_model({"type": "NeRDRainS"}), bad)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_weights(build_model({"type": "NeRDRainS"}), tmp_path / "nope.pth")


def test_wrapped_models_load(golden):
    model = torch.nn.DataParallel(build_model(golden_options(golden)))
    load_weights(model, golden["state_dict"])
    assert_golden_outputs(unwrap(model).eval(), golden)


@pytest.mark.parametrize("shape", [(2, 3, 48, 80), (1, 3, 112, 32)])
def test_odd_sizes_and_what_each_output_is(shape, tiny_options):
    model = build_model(tiny_options).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        outputs = model(x)
    b, c, h, w = shape
    half, quarter = (b, c, h // 2, w // 2), (b, c, h // 4, w // 4)
    assert {name: tuple(o.shape) for name, o in outputs._asdict().items()} == {
        "restored": (b, c, h, w), "restored_mid": half, "restored_small": quarter, "inr_mid": half,
        "mid_input_half": half, "inr_small": quarter, "input_small": quarter}
    assert all(torch.isfinite(o).all() for o in outputs)
    assert torch.equal(outputs.input_small, x[..., ::4, ::4])  # nearest-neighbour quarter of the input
    assert outputs[0] is outputs.restored  # the authors' positional use still works


def test_cpu_never_touches_cuda(monkeypatch, golden):
    def no_cuda(*args, **kwargs):
        raise AssertionError("CUDA used on a CPU run")

    monkeypatch.setattr(torch.Tensor, "cuda", no_cuda)
    monkeypatch.setattr(torch.nn.Module, "cuda", no_cuda)
    monkeypatch.setattr(torch.cuda, "is_available", no_cuda)
    model = build_model(golden_options(golden)).float()
    load_weights(model, golden["state_dict"])
    assert_golden_outputs(model.eval(), golden)


@pytest.mark.parametrize("options, message", [
    ({"type": "Restormer"}, r"network\.type = 'Restormer' must be one of NeRDRain, NeRDRainS"),
    ({"dimm": 8}, r"unknown option 'network\.dimm'.*Did you mean 'dim'.*num_blocks"),
    ({"heads": [1, 2, 5]}, r"level 3 has 192 channels, not divisible by 5 heads"),
    ({"num_blocks": [2, 3]}, r"num_blocks = \[2, 3\] must be 3 positive integers"),
    ({"type": "NeRDRainS", "dim": 0}, r"dim = 0 must be a positive integer"),
])
def test_build_model_errors(options, message):
    with pytest.raises(ValueError, match=message):
        build_model(options)


def test_the_paper_sizes_are_defined_once():
    """NeRDRain's defaults are NeRD-Rain; a size is named from its full options, as checkpoints give them."""
    assert model_name(model_options("NeRDRain")) == "NeRD-Rain"
    assert model_name(model_options("NeRDRainS")) == "NeRD-Rain-S"
    assert model_name({**model_options("NeRDRainS"), "num_blocks": [1, 1, 1]}) is None
    with torch.device("meta"):
        small = build_model({"type": "NeRDRainS"})
    assert infer_network_options(small.state_dict()) == model_options("NeRDRainS")


def test_flops_report():
    params, flops = count("NeRDRain", 256)
    assert params == 22_893_146
    # The authors' 312.6 GFLOPs less three of the four identical INR evaluations (3/4 of 40.6 G), plus
    # 11.3 G for attention products over all channel pairs where there are 2 or 4 heads (models/blocks.py).
    assert abs(flops / 1e9 - (312.6 - 0.75 * 40.6 + 11.3)) < 1.0


@pytest.mark.parametrize("heads, bias, channels_last", [(1, False, True), (2, True, False), (4, False, True),
                                                        (3, True, True)])
def test_attention_and_feed_forward_compute_the_authors_forward(heads, bias, channels_last):
    """Our reordered attention and split feed-forward against Restormer's code, in float64."""
    from bench.baseline import baseline_attention, baseline_feed_forward
    from models.blocks import Attention, FeedForward

    torch.manual_seed(0)
    x = torch.randn(2, 12 * heads, 10, 14, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pairs = ((Attention(12 * heads, heads, bias), baseline_attention),
             (FeedForward(12 * heads, 2.66, bias), baseline_feed_forward))
    for module, authors in pairs:
        module = module.double()
        for p in module.parameters():
            torch.nn.init.normal_(p)  # also the temperature and the biases, which start at 1 and 0
        x.requires_grad_()
        ours, theirs = module(x), authors(module, x)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
        if isinstance(module, FeedForward):  # the CPU goes image by image; GPUs take the whole batch
            torch.testing.assert_close(module.whole_batch(x), theirs, rtol=1e-10, atol=1e-10)
        for g_ours, g_theirs in zip(torch.autograd.grad(ours.square().sum(), [x, *module.parameters()]),
                                    torch.autograd.grad(theirs.square().sum(), [x, *module.parameters()])):
            torch.testing.assert_close(g_ours, g_theirs, rtol=1e-9, atol=1e-9)


def test_batch_invariant_network_gives_each_image_its_own_numbers(tiny_options):
    """On the CPU, a batch's last bits otherwise depend on its size (GELU's vector and scalar code).
    Batches of 2 and 3 here: a batch of one takes other convolution kernels (inference/tiling.py)."""
    torch.manual_seed(0)
    model = prepare_model(build_model(tiny_options).eval(), torch.device("cpu")).set_batch_invariant()
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        three = model(x)[0]
        pairs = torch.cat([model(x[:2])[0], model(x[1:])[0][1:]])
    assert torch.equal(three, pairs)


def test_attention_gradient_reaches_qkv_dwconv_channels_last():
    """In channels_last, no gradient inside the attention needs a layout copy before its convolution."""
    from models.blocks import Attention

    attention = Attention(16, 2, bias=False).to(memory_format=torch.channels_last)
    grads = []

    def keep_output_grad(module, inputs, output):
        output.register_hook(grads.append)
    attention.qkv_dwconv.register_forward_hook(keep_output_grad)
    x = torch.randn(1, 16, 8, 12).contiguous(memory_format=torch.channels_last)
    attention(x).sum().backward()
    assert len(grads) == 1 and grads[0].is_contiguous(memory_format=torch.channels_last)


def test_attention_on_an_all_zero_input_has_finite_gradients():
    """q and k are all zero there: F.normalize's clamp keeps the authors' gradients finite, and so must ours."""
    from models.blocks import Attention

    attention = Attention(16, 2, bias=False)
    x = torch.zeros(1, 16, 8, 12, requires_grad=True)
    attention(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in attention.parameters())
