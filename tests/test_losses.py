"""Losses against the authors' golden numbers, plus their basic properties."""
import copy

import pytest
import torch

from losses import LOSSES, CharbonnierLoss, EdgeLoss, FFTLoss, MultiScaleLoss, build_loss, target_pyramid
from models.key_map import to_authors_keys
from models.nerd_rain import NeRDRainOutputs


def relative_error(value: torch.Tensor, reference: float) -> float:
    return abs(value.item() - reference) / abs(reference)


def golden_outputs(golden: dict) -> NeRDRainOutputs:
    return NeRDRainOutputs(*golden["outputs"])


def test_loss_terms_match_golden(golden):
    total, terms = MultiScaleLoss()(golden_outputs(golden), golden["target"])
    expected = golden["loss_terms"]
    assert set(terms) == {"char", "fft", "edge", "l1"}
    for name, value in terms.items():
        assert relative_error(value, expected[name]) < 1e-5, name
    assert relative_error(total, expected["total"]) < 1e-5


def test_target_pyramid_matches_golden(golden):
    pyramid = target_pyramid(golden["target"])
    assert len(pyramid) == len(golden["target_pyramid"]) == 3
    for ours, ref in zip(pyramid, golden["target_pyramid"]):
        assert ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels_last"])
def test_gradients_match_golden(golden, golden_network, channels_last):
    """Also in channels_last, as train.py runs on the CPU."""
    model = golden_network
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    total, _ = MultiScaleLoss()(model(golden["input"]), golden["target"])
    assert relative_error(total, golden["loss_terms"]["total"]) < 1e-5
    total.backward()

    grads = to_authors_keys({name: p.grad for name, p in model.named_parameters()})
    unused = {name for name in grads if name.startswith("reduce_chan_level1_max3.")}
    assert unused, "reduce_chan_level1_max3 should exist (it is in the authors' checkpoints)"
    assert set(grads) - unused == set(golden["grads"])
    for name in unused:
        assert grads[name] is None or not grads[name].any(), name
    for name, ref in golden["grads"].items():
        assert grads[name] is not None, f"{name} got no gradient"
        error = (grads[name] - ref).abs().max().item()
        assert error <= 1e-4 * ref.abs().max().item() + 1e-7, f"{name}: max error {error:.3g}"



def test_checkpointed_activations_give_the_plain_gradients(golden, golden_network):
    """NeRDRain.set_checkpoint_activations (train.checkpoint_activations): the forward keeps far less for the
    backward pass, which recomputes the Transformer levels and gets the plain path's gradients."""
    def gradients(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], int]:
        saved = {}

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor
        model.train()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            total, _ = MultiScaleLoss()(model(golden["input"]), golden["target"])
        total.backward()
        return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}, sum(saved.values())

    parameters = sum(p.numel() * p.element_size() for p in golden_network.parameters())
    checkpointed = copy.deepcopy(golden_network).set_checkpoint_activations(True)
    (plain, plain_bytes), (ours, our_bytes) = gradients(golden_network), gradients(checkpointed)
    assert our_bytes - parameters < (plain_bytes - parameters) / 4  # what the levels computed is not kept
    assert plain.keys() == ours.keys()
    for name, ref in plain.items():
        assert (ours[name] - ref).abs().max().item() <= 1e-6 * ref.abs().max().item() + 1e-9, name

def test_edge_loss_of_an_image_with_itself_is_the_charbonnier_floor():
    x = torch.rand(2, 3, 32, 40)
    assert EdgeLoss()(x, x).item() == pytest.approx(1e-3)  # sqrt(0 + 1e-6)
    assert EdgeLoss(eps=0.0)(x, x).item() == 0.0


def test_laplacian_kills_constants_away_from_the_border():
    # The authors' replicate padding of the zero-stuffed map leaves a 2-pixel border response, so only
    # the interior is shift invariant (golden terms depend on this border behaviour). The kernel taps
    # are float32 like the authors', so they sum to 1 only to ~1e-7.
    lap = EdgeLoss().laplacian(torch.full((1, 3, 24, 32), 0.7, dtype=torch.float64))
    assert lap[..., 2:-2, 2:-2].abs().max().item() < 1e-6
    assert lap[..., :2, :].abs().max().item() > 0.1
    x = torch.rand(1, 3, 24, 32, dtype=torch.float64)
    edge = EdgeLoss()
    torch.testing.assert_close((edge.laplacian(x + 0.3) - edge.laplacian(x))[..., 2:-2, 2:-2],
                               torch.zeros(1, 3, 20, 28, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_terms_follow_input_dtype_and_are_detached(golden, dtype):
    outputs = NeRDRainOutputs(*(o.to(dtype).clone().requires_grad_() for o in golden["outputs"]))  # fixture intact
    total, terms = MultiScaleLoss()(outputs, golden["target"].to(dtype))
    assert total.dtype == dtype and total.requires_grad
    for value in terms.values():
        assert value.dtype == dtype and not value.requires_grad and value.dim() == 0
    total.backward()
    assert outputs.mid_input_half.grad is None and outputs.input_small.grad is None  # they carry no loss
    assert all(o.grad is not None for o in (outputs.restored, outputs.restored_mid, outputs.restored_small,
                                            outputs.inr_mid, outputs.inr_small))


def test_weights_scale_the_terms(golden):
    weights = {"char": 0.5, "fft": 2.0, "edge": 3.0, "inr": 0.25}
    total, terms = MultiScaleLoss(**weights)(golden_outputs(golden), golden["target"])
    expected = (0.5 * terms["char"] + 2.0 * terms["fft"] + 3.0 * terms["edge"] + 0.25 * terms["l1"])
    torch.testing.assert_close(total, expected)


def test_single_losses():
    x, y = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(CharbonnierLoss()(x, y), torch.sqrt((x - y) ** 2 + 1e-6).mean())
    torch.testing.assert_close(FFTLoss()(x, y), (torch.fft.fft2(x) - torch.fft.fft2(y)).abs().mean())


def test_build_loss_by_name():
    opt = {"type": "MultiScaleLoss", "char": 1.0, "fft": 0.01, "edge": 0.05, "inr": 0.1}
    loss = build_loss(opt)
    assert isinstance(loss, MultiScaleLoss) and opt["type"] == "MultiScaleLoss"
    assert loss.weights == {"char": 1.0, "fft": 0.01, "edge": 0.05, "l1": 0.1}
    assert isinstance(build_loss({"type": "EdgeLoss"}), EdgeLoss)
    assert set(LOSSES) >= {"MultiScaleLoss", "CharbonnierLoss", "FFTLoss", "EdgeLoss", "L1Loss"}
    with pytest.raises(ValueError, match=r"train\.loss\.type = 'Nope' must be one of CharbonnierLoss"):
        build_loss({"type": "Nope"})
    with pytest.raises(ValueError, match=r"unknown option 'train\.loss\.ssim'.*char, fft, edge, inr"):
        build_loss({"type": "MultiScaleLoss", "ssim": 1.0})
    with pytest.raises(ValueError, match=r"'train\.loss\.fft'.*type, eps"):
        build_loss({"type": "CharbonnierLoss", "fft": 1})
