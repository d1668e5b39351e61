"""Pairing two lists of files (utils/pairing.py): by stem, by sorted order, or either."""
from pathlib import Path

import pytest

from utils.pairing import PairingError, pair_files


def paths(*names: str) -> list[Path]:
    return [Path(name) for name in names]


def test_by_stem_pairs_in_stem_order():
    pairing = pair_files(paths("in/2.png", "in/1.png"), paths("gt/1.jpg", "gt/2.png"))
    assert pairing.pairs == [(Path("in/1.png"), Path("gt/1.jpg")), (Path("in/2.png"), Path("gt/2.png"))]
    assert (pairing.how, pairing.unused) == ("by name", [])


def test_by_stem_names_the_missing_stems_and_leaves_the_hint_to_the_caller():
    with pytest.raises(PairingError) as info:
        pair_files(paths("1.png", "rain_7.png"), paths("1.png", "clean_7.png"))
    message = str(info.value)
    assert "only in input: rain_7" in message and "only in target: clean_7" in message
    assert "order" not in message and info.value.same_count  # a flag or an option: the caller's to name


def test_extra_targets_are_allowed_only_when_asked_and_returned_as_unused():
    first, second = paths("a.png"), paths("a.png", "b.png", "c.png")
    with pytest.raises(PairingError, match="stems only in target: b, c"):
        pair_files(first, second)
    pairing = pair_files(first, second, extra_second=True)
    assert pairing.pairs == [(Path("a.png"), Path("a.png"))] and pairing.unused == paths("b.png", "c.png")
    with pytest.raises(PairingError, match="stems only in input: z"):
        pair_files(paths("z.png"), second, extra_second=True)  # every first file still needs its own


def test_by_order_pairs_the_sorted_listings():
    pairing = pair_files(paths("b.png", "a.png"), paths("y.png", "x.png"), "order")
    assert pairing.pairs == [(Path("a.png"), Path("x.png")), (Path("b.png"), Path("y.png"))]
    assert pairing.how == "by sorted order"
    with pytest.raises(PairingError, match="2 files in input but 1 in target"):
        pair_files(paths("a.png", "b.png"), paths("x.png"), "order")


def test_either_takes_names_where_they_pair_else_the_order():
    assert pair_files(paths("1.png", "2.png"), paths("2.jpg", "1.jpg"), "either").how == "by name"
    pairing = pair_files(paths("1_1.png", "2_1.png"), paths("1.png", "2.png"), "either")
    assert pairing.how == "by sorted order" and pairing.pairs[1] == (Path("2_1.png"), Path("2.png"))
    with pytest.raises(PairingError, match="cannot pair by order"):
        pair_files(paths("1_1.png", "2_1.png"), paths("1.png"), "either")


def test_shared_stems_and_unknown_modes_are_refused():
    with pytest.raises(PairingError, match="two input files share the stem 'a'"):
        pair_files(paths("a.png", "a.jpg"), paths("a.png"))
    with pytest.raises(ValueError, match="unknown pairing mode 'name'"):
        pair_files(paths("a.png"), paths("a.png"), "name")
