"""Translation between our module names and the authors' flat state_dict names.

Checkpoints on disk always use the authors' names, in the authors' order, so that their code
loads ours and ours loads theirs.
"""
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")

_ENCODER_PARTS = [("encoder_level1", "level1"), ("down1_2", "down1"), ("encoder_level2", "level2"),
                  ("down2_3", "down2"), ("latent", "latent")]
_DECODER_PARTS = [("up3_2", "up2"), ("reduce_chan_level2", "reduce2"), ("decoder_level2", "level2"),
                  ("up2_1", "up1"), ("reduce_chan_level1", "reduce1"), ("decoder_level1", "level1")]
_RESAMPLERS = {"down1_2", "down2_3", "up3_2", "up2_1"}


def _scale_prefixes(scale: str, passes: int) -> list[tuple[str, str]]:
    """(authors, ours) prefixes of one scale, in the authors' order."""

    def ours(kind: str, p: int) -> str:
        return f"{kind}_small" if passes == 1 else f"{kind}_{scale}.{p - 1}"

    def authors(part: str, p: int) -> str:
        if passes == 1:
            return f"{part}_{scale}"
        # Resamplers of the first pass carry no pass number (down1_2_mid, down1_2_mid2).
        return f"{part}_{scale}" if part in _RESAMPLERS and p == 1 else f"{part}_{scale}{p}"

    table = [(f"patch_embed_{scale}.proj", ours("enc", 1) + ".entry")]
    for parts, kind in ((_ENCODER_PARTS, "enc"), (_DECODER_PARTS, "dec")):
        table += [(authors(a, p), f"{ours(kind, p)}.{o}") for a, o in parts for p in range(1, passes + 1)]
    table.append((f"output_{scale}", f"out_{scale}"))
    contexts = {1: [], 2: ["output_mid_context"], 3: ["output_max_context1", "output_max_context2"]}[passes]
    table += [(name, f"{ours('enc', p)}.entry") for p, name in enumerate(contexts, start=2)]
    return table


PREFIXES: list[tuple[str, str]] = [
    *_scale_prefixes("small", 1), ("INR", "inr_small"),
    *_scale_prefixes("mid", 2), ("INR2", "inr_mid"),
    *_scale_prefixes("max", 3),
    ("BF1", "fuse.0"), ("BF2", "fuse.1"), ("BF3", "fuse.2"),
    ("upsmall2mid1", "up_small.0"), ("upsmall2mid2", "up_small.1"),
    ("upmid2max1", "up_mid.0"), ("upmid2max2", "up_mid.1"),
]
_TO_AUTHORS = {o: (a, i) for i, (a, o) in enumerate(PREFIXES)}
_FROM_AUTHORS = {a: (o, i) for i, (a, o) in enumerate(PREFIXES)}


def _rename(state: Mapping[str, T], table: dict[str, tuple[str, int]]) -> dict[str, T]:
    renamed = []
    for n, (key, value) in enumerate(state.items()):
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            hit = table.get(".".join(parts[:cut]))
            if hit is not None:
                renamed.append(((hit[1], n), ".".join([hit[0], *parts[cut:]]), value))
                break
        else:
            renamed.append(((len(table), n), key, value))  # unknown keys pass through, last
    return {key: value for _, key, value in sorted(renamed, key=lambda r: r[0])}


def to_authors_keys(state: Mapping[str, T]) -> dict[str, T]:
    """Our parameter names -> the authors' names, in the authors' order. Unknown keys are kept."""
    return _rename(state, _TO_AUTHORS)


def from_authors_keys(state: Mapping[str, T]) -> dict[str, T]:
    """The authors' names -> ours. Unknown keys are kept."""
    return _rename(state, _FROM_AUTHORS)
