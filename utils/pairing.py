"""Pairing two lists of files, e.g. rainy images with their clean ones: by file stem, by position in
the sorted listings, or by stem where every stem pairs and else by order."""
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path
from typing import NamedTuple

MODES = ("stem", "order", "either")
HOW = {"stem": "by name", "order": "by sorted order"}


class PairingError(ValueError):
    """The files do not pair; `same_count` says whether pairing by sorted order could (for the caller's hint)."""

    def __init__(self, message: str, same_count: bool):
        super().__init__(message)
        self.same_count = same_count


class Pairing(NamedTuple):
    """(first, second) file pairs, how they were paired ("by name" or "by sorted order"), and the files of
    the second list that no first file took (only where `extra_second` allowed them)."""

    pairs: list[tuple[Path, Path]]
    how: str
    unused: list[Path]


def pair_files(first: Sequence[Path], second: Sequence[Path], mode: str = "stem",
               sides: tuple[str, str] = ("input", "target"), extra_second: bool = False) -> Pairing:
    """Pairs `first` with `second` in one of MODES; PairingError names what does not pair.

    'stem': files with the same stem, in stem order; every stem of `first` must be in `second`, and with
    `extra_second` the second list may hold more (they are returned as `unused`). 'order': the two sorted
    listings by position (same length). 'either': by stem when that pairs, else by order. `sides` names
    the two lists in messages; the hint to the other mode is the caller's (a flag or an option).
    """
    if mode not in MODES:
        raise ValueError(f"unknown pairing mode {mode!r}; choose one of {', '.join(MODES)}")
    if mode != "order":
        try:
            return _by_stem(first, second, sides, extra_second)
        except PairingError:
            if mode == "stem":
                raise
    return _by_order(first, second, sides)


def _stems(files: Sequence[Path], side: str) -> dict[str, Path]:
    by_stem: dict[str, Path] = {}
    for f in files:
        if f.stem in by_stem:
            raise PairingError(f"two {side} files share the stem {f.stem!r}: {by_stem[f.stem].name}, {f.name}", False)
        by_stem[f.stem] = f
    return by_stem


def few(names: Sequence[str], shown: int = 5) -> str:
    """Up to `shown` names, comma-joined, and how many more there are (for messages)."""
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _by_stem(first: Sequence[Path], second: Sequence[Path], sides: tuple[str, str], extra_second: bool) -> Pairing:
    a, b = _stems(first, sides[0]), _stems(second, sides[1])
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or (only_b and not extra_second):
        missing = [f"stems only in {side}: {few(names)}" for side, names in zip(sides, (only_a, only_b)) if names]
        raise PairingError("; ".join(missing), len(first) == len(second))
    return Pairing([(a[s], b[s]) for s in sorted(a)], HOW["stem"], [b[s] for s in only_b])


def _by_order(first: Sequence[Path], second: Sequence[Path], sides: tuple[str, str]) -> Pairing:
    if len(first) != len(second):
        raise PairingError(f"cannot pair by order: {len(first)} files in {sides[0]} but {len(second)} in {sides[1]}",
                           False)
    by_name = attrgetter("name")
    return Pairing(list(zip(sorted(first, key=by_name), sorted(second, key=by_name))), HOW["order"], [])
