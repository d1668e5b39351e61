"""Network weights in checkpoints: the authors' key names, the network a state_dict belongs to, and
strict loading with messages that say what does not fit."""
import os
import re
from typing import Any

from torch import nn

from utils.checkpoint import StateDict, read_checkpoint, save_checkpoint, strip_wrapper_prefixes, unwrap

from . import build_model, model_name
from .key_map import from_authors_keys, to_authors_keys


def network_state(state_dict: StateDict) -> StateDict:
    """A state_dict in our names, whatever wrapper prefixes or naming (authors' or ours) it had."""
    return from_authors_keys(strip_wrapper_prefixes(state_dict))


def authors_state(model: nn.Module) -> StateDict:
    """The network's state_dict under the authors' key names, in their order (what checkpoints hold)."""
    return to_authors_keys(unwrap(model).state_dict())


def infer_network_options(state_dict: StateDict) -> dict[str, Any]:
    """The build_model options (dim, num_blocks, heads, ...) a state_dict was trained with."""
    sd = network_state(state_dict)
    if "enc_small.entry.weight" not in sd:
        raise ValueError("not a NeRD-Rain state_dict: no patch_embed_small.proj.weight")
    dim = sd["enc_small.entry.weight"].shape[0]

    def level(name: str) -> tuple[int, int]:
        blocks = {int(m.group(1)) for k in sd if (m := re.match(rf"enc_small\.{name}\.(\d+)\.", k))}
        return len(blocks), sd[f"enc_small.{name}.0.attn.temperature"].shape[0]

    (n1, h1), (n2, h2), (n3, h3) = level("level1"), level("level2"), level("latent")
    hidden = sd["enc_small.level1.0.ffn.project_in.weight"].shape[0] // 2
    return {
        "type": "NeRDRain", "dim": dim, "num_blocks": [n1, n2, n3], "heads": [h1, h2, h3],
        "ffn_expansion_factor": 2.66 if hidden == int(dim * 2.66) else hidden / dim,
        "bias": "enc_small.level1.0.attn.qkv.bias" in sd,
        "layernorm_type": "WithBias" if "enc_small.level1.0.norm1.body.bias" in sd else "BiasFree",
    }


def describe(options: dict[str, Any]) -> str:
    """'NeRD-Rain-S (dim 32, blocks [2, 3, 3], heads [1, 2, 4])' for a network's full options."""
    name = model_name(options) or "a NeRD-Rain variant"
    return f"{name} (dim {options.get('dim')}, blocks {options.get('num_blocks')}, heads {options.get('heads')})"


def network_options(model: nn.Module) -> dict[str, Any]:
    """The options of a built network, read from its own weights."""
    return infer_network_options(unwrap(model).state_dict())


def load_weights(model: nn.Module, source: str | os.PathLike | StateDict) -> dict[str, Any]:
    """Loads weights strictly from a checkpoint path or a state_dict; returns the checkpoint dict.

    Accepts the authors' checkpoints (with or without `module.`), bare state_dicts and ours.
    """
    ckpt = {"state_dict": source} if isinstance(source, dict) else read_checkpoint(source)
    _load_state(model, ckpt["state_dict"], "state_dict" if isinstance(source, dict) else str(source))
    return ckpt


def _load_state(model: nn.Module, state_dict: StateDict, where: str) -> None:
    sd = network_state(state_dict)
    net = unwrap(model)
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [k for k in expected if k in sd and sd[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        problems = [f"{what}: {', '.join(_authors_names(keys)[:4])}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
                    for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
                    if keys]
        try:
            looks_like = f"; the file looks like {describe(infer_network_options(sd))}"
        except (ValueError, KeyError):
            looks_like = ""
        raise ValueError(f"{where} does not fit the network {describe(network_options(net))}{looks_like}. "
                         + "; ".join(problems) + ". Build the network the checkpoint was trained with "
                         "(leave out --opt: it is inferred from the file).")
    net.load_state_dict(sd)


def _authors_names(keys: list[str]) -> list[str]:
    """Our key names as the authors' (for messages)."""
    return list(to_authors_keys(dict.fromkeys(keys)))


def model_from_checkpoint(path: str | os.PathLike, options: dict[str, Any] | None = None) -> nn.Module:
    """Builds the network a checkpoint was trained with (or `options`) and loads its weights."""
    ckpt = read_checkpoint(path)
    model = build_model(options or infer_network_options(ckpt["state_dict"]))
    _load_state(model, ckpt["state_dict"], str(path))
    return model


def save_network(path: str | os.PathLike, model: nn.Module, **extra: Any) -> None:
    """Writes a checkpoint of `model` in the authors' format: `{**extra, 'state_dict': authors' names}`."""
    save_checkpoint(path, authors_state(model), **extra)
