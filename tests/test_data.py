"""Datasets and the authors' augmentation (data/)."""
import random
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch.utils.data import DataLoader

from data import (GEOMETRIC, DataError, PairedTrainDataset, PairedValDataset, build_dataset, center_crop, find_pairs,
                  pad_to_patch, train_augment)


def authors_augment(inp_img: Image.Image, tar_img: Image.Image, ps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' DataLoaderTrain.__getitem__ (MPRNet's), transcribed, for comparison."""
    w, h = tar_img.size
    padw = ps - w if w < ps else 0
    padh = ps - h if h < ps else 0
    if padw != 0 or padh != 0:
        inp_img = TF.pad(inp_img, (0, 0, padw, padh), padding_mode="reflect")
        tar_img = TF.pad(tar_img, (0, 0, padw, padh), padding_mode="reflect")
    aug = random.randint(0, 2)
    if aug == 1:
        inp_img = TF.adjust_gamma(inp_img, 1)
        tar_img = TF.adjust_gamma(tar_img, 1)
    aug = random.randint(0, 2)
    if aug == 1:
        sat_factor = 1 + (0.2 - 0.4 * np.random.rand())
        inp_img = TF.adjust_saturation(inp_img, sat_factor)
        tar_img = TF.adjust_saturation(tar_img, sat_factor)
    inp_img = TF.to_tensor(inp_img)
    tar_img = TF.to_tensor(tar_img)
    hh, ww = tar_img.shape[1], tar_img.shape[2]
    rr = random.randint(0, hh - ps)
    cc = random.randint(0, ww - ps)
    aug = random.randint(0, 8)
    inp_img = inp_img[:, rr:rr + ps, cc:cc + ps]
    tar_img = tar_img[:, rr:rr + ps, cc:cc + ps]
    if aug == 1:
        inp_img, tar_img = inp_img.flip(1), tar_img.flip(1)
    elif aug == 2:
        inp_img, tar_img = inp_img.flip(2), tar_img.flip(2)
    elif aug == 3:
        inp_img, tar_img = torch.rot90(inp_img, dims=(1, 2)), torch.rot90(tar_img, dims=(1, 2))
    elif aug == 4:
        inp_img, tar_img = torch.rot90(inp_img, dims=(1, 2), k=2), torch.rot90(tar_img, dims=(1, 2), k=2)
    elif aug == 5:
        inp_img, tar_img = torch.rot90(inp_img, dims=(1, 2), k=3), torch.rot90(tar_img, dims=(1, 2), k=3)
    elif aug == 6:
        inp_img, tar_img = torch.rot90(inp_img.flip(1), dims=(1, 2)), torch.rot90(tar_img.flip(1), dims=(1, 2))
    elif aug == 7:
        inp_img, tar_img = torch.rot90(inp_img.flip(2), dims=(1, 2)), torch.rot90(tar_img.flip(2), dims=(1, 2))
    return inp_img, tar_img


def rgb(h: int, w: int, seed: int, gray: bool = False) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 1 if gray else 3), dtype=np.uint8)
    return np.repeat(img, 3, axis=2) if gray else img


def write_pairs(root: Path, stems_in: list[str], stems_out: list[str] | None = None, size=(24, 40)) -> Path:
    for side, stems in (("input", stems_in), ("target", stems_out or stems_in)):
        (root / side).mkdir(parents=True, exist_ok=True)
        for i, stem in enumerate(stems):
            cv2.imwrite(str(root / side / f"{stem}.png"), rgb(*size, seed=i + (side == "target") * 100))
    return root


@pytest.mark.parametrize("size", [(40, 52), (20, 44), (30, 12)])  # larger than, and narrower than the patch
def test_augmentation_matches_the_authors_call_for_call(size):
    inp, tar = Image.fromarray(rgb(*size, 1)), Image.fromarray(rgb(*size, 2))
    for seed in range(40):
        random.seed(seed), np.random.seed(seed)
        ours = train_augment(inp, tar, 32)
        state = random.getstate(), np.random.get_state()
        random.seed(seed), np.random.seed(seed)
        theirs = authors_augment(inp, tar, 32)
        assert torch.equal(ours[0], theirs[0]) and torch.equal(ours[1], theirs[1]), f"seed {seed}"
        # the same draws were made, so the random streams stay in step across samples
        assert random.getstate() == state[0] and np.array_equal(np.random.get_state()[1], state[1][1])
        assert ours[0].shape == (3, 32, 32)


def test_geometric_choices_are_the_spec_transforms():
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4).float()
    a = x.numpy()
    rot = lambda y, k=1: np.rot90(y, k, axes=(1, 2))  # noqa: E731 - counter-clockwise in (H, W)
    expected = [a, a[:, ::-1], a[:, :, ::-1], rot(a), rot(a, 2), rot(a, 3), rot(a[:, ::-1]), rot(a[:, :, ::-1]), a]
    assert len(GEOMETRIC) == 9
    for choice, (transform, want) in enumerate(zip(GEOMETRIC, expected)):
        assert np.array_equal(transform(x).numpy(), want), f"choice {choice}"
    square = torch.rand(1, 5, 5)
    assert len({transform(square).numpy().tobytes() for transform in GEOMETRIC[:8]}) == 8  # the 8 symmetries


def test_geometric_choices_are_equally_likely():
    # gray images: the saturation step cannot change them; patch = image: one crop position
    inp, tar = Image.fromarray(rgb(16, 16, 3, gray=True)), Image.fromarray(rgb(16, 16, 4, gray=True))
    candidates = [(t(TF.to_tensor(inp)), t(TF.to_tensor(tar))) for t in GEOMETRIC[:8]]
    random.seed(1234), np.random.seed(1234)
    n, counts = 2700, Counter()
    for _ in range(n):
        out = train_augment(inp, tar, 16)
        matches = [k for k, (i, t) in enumerate(candidates) if torch.equal(out[0], i) and torch.equal(out[1], t)]
        assert len(matches) == 1
        counts[matches[0]] += 1
    expected = [2 * n / 9] + [n / 9] * 7  # identity is choices 0 and 8
    chi2 = sum((counts[k] - e) ** 2 / e for k, e in enumerate(expected))
    assert chi2 < 24.3, counts  # 7 degrees of freedom, p = 0.001


def test_saturation_one_time_in_three_same_factor_for_both(monkeypatch):
    factors = []

    def spy(img: Image.Image, factor: float) -> Image.Image:
        factors.append(factor)
        return img

    monkeypatch.setattr(TF, "adjust_saturation", spy)
    inp, tar = Image.fromarray(rgb(16, 16, 5)), Image.fromarray(rgb(16, 16, 6))
    random.seed(0), np.random.seed(0)
    n = 3000
    for _ in range(n):
        train_augment(inp, tar, 16)
    pairs = list(zip(factors[::2], factors[1::2]))
    assert all(a == b for a, b in pairs) and len(factors) % 2 == 0
    assert abs(len(pairs) / n - 1 / 3) < 4 * (2 / 9 / n) ** 0.5
    assert all(0.8 < f <= 1.2 for f, _ in pairs) and min(f for f, _ in pairs) < 0.82 and max(f for f, _ in pairs) > 1.18


def test_saturation_changes_colour_images():
    inp = Image.fromarray(rgb(16, 16, 7))
    assert not np.array_equal(np.asarray(TF.adjust_saturation(inp, 1.15)), np.asarray(inp))


def test_small_images_are_reflect_padded_right_and_bottom():
    a = rgb(20, 12, 8)  # h 20, w 12
    padded = pad_to_patch(Image.fromarray(a), 32)
    assert padded.size == (32, 32)
    assert np.array_equal(np.asarray(padded), np.pad(a, ((0, 12), (0, 20), (0, 0)), mode="reflect"))
    big = Image.fromarray(rgb(40, 36, 9))
    assert pad_to_patch(big, 32) is big


def test_val_centre_crop():
    a = rgb(41, 50, 10)
    out = center_crop(Image.fromarray(a), 32)
    top, left = round((41 - 32) / 2), round((50 - 32) / 2)
    assert torch.equal(out, TF.to_tensor(a[top:top + 32, left:left + 32]))


def test_paired_datasets(tmp_path):
    root = write_pairs(tmp_path / "set", ["b", "a", "c"])
    train = build_dataset({"type": "PairedTrain", "dir": root, "patch_size": 16})
    val = build_dataset({"type": "PairedVal", "dir": root, "patch_size": 16})
    assert isinstance(train, PairedTrainDataset) and isinstance(val, PairedValDataset) and len(train) == 3
    item = val[0]
    assert item["name"] == "a" and item["input"].shape == item["target"].shape == (3, 16, 16)
    want = TF.to_tensor(cv2.cvtColor(cv2.imread(str(root / "target" / "a.png")), cv2.COLOR_BGR2RGB)[4:20, 12:28])
    assert torch.equal(item["target"], want)
    assert train[2]["input"].shape == (3, 16, 16) and train[2]["name"] == "c"


def test_unpaired_names_fail_naming_the_stems(tmp_path):
    root = write_pairs(tmp_path / "set", ["rain-1", "rain-2", "x"], ["norain-1", "norain-2", "x"])
    with pytest.raises(DataError, match=r"stems only in input: rain-1, rain-2; stems only in target: "
                                        r"norain-1, norain-2.*pairing: order") as err:
        PairedTrainDataset(root, 16)
    assert "--pair_by_order" not in str(err.value)
    pairs = find_pairs(root, "order")  # the authors' pairing: sorted listings, by position
    assert [(a.name, b.name) for a, b in pairs] == [("rain-1.png", "norain-1.png"), ("rain-2.png", "norain-2.png"),
                                                    ("x.png", "x.png")]
    (root / "target" / "x.png").unlink()
    with pytest.raises(DataError, match="cannot pair by order: 3 files in input but 2 in target"):
        find_pairs(root, "order")


def test_missing_or_empty_folders(tmp_path):
    with pytest.raises(DataError, match=rf"no folder {tmp_path / 'nope' / 'input'}.*input/ \(rainy\) and target/"):
        PairedValDataset(tmp_path / "nope", 16)
    (tmp_path / "set" / "input").mkdir(parents=True)
    (tmp_path / "set" / "target").mkdir()
    (tmp_path / "set" / "input" / "notes.txt").write_text("not an image")
    with pytest.raises(DataError, match=rf"no images in {tmp_path / 'set' / 'input'} \(looked for .bmp"):
        PairedValDataset(tmp_path / "set", 16)
    with pytest.raises(DataError, match=r"dataset\.type = 'Paired' must be one of PairedTrain, PairedVal"):
        build_dataset({"type": "Paired", "dir": tmp_path})


def test_unreadable_and_mismatched_images_are_named(tmp_path):
    root = write_pairs(tmp_path / "set", ["a", "b"])
    (root / "input" / "b.png").write_bytes(b"\x89PNG broken")
    dataset = PairedTrainDataset(root, 16)
    with pytest.raises(DataError, match=rf"cannot read image {root / 'input' / 'b.png'}"):
        dataset[1]
    # from a DataLoader worker the error comes back as a DataError naming the file
    with pytest.raises(DataError, match=r"b\.png"):
        list(DataLoader(dataset, num_workers=1))
    cv2.imwrite(str(root / "input" / "b.png"), rgb(20, 20, 0))
    with pytest.raises(DataError, match=r"b\.png is 20x20 but .*b\.png is 40x24"):
        dataset[1]
