"""Options: defaults, YAML files, overrides, typo protection and validation (utils/options.py)."""
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from models import build_model
from training.options import DEFAULTS, load_options
from utils.options import REPO_ROOT, OptionsError, resolve_path, save_options

OPTION_FILES = sorted(p for p in (REPO_ROOT / "options").glob("*.yml") if p.name != "defaults.yml")
RECIPES = [p for p in OPTION_FILES if not p.name.startswith(("tiny", "demo"))]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "opt.yml"
    path.write_text(text)
    return path


def test_defaults_are_the_authors_recipe():
    opt = load_options(None)
    train, data = opt["train"], opt["datasets"]
    assert (train["lr"], train["betas"], train["eps"]) == (1e-4, [0.9, 0.999], 1e-8)
    assert (train["warmup_epochs"], train["eta_min"], train["schedule"], train["seed"]) == (3, 1e-6, "epoch", 1234)
    assert train["loss"] == {"type": "MultiScaleLoss", "char": 1.0, "fft": 0.01, "edge": 0.05, "inr": 0.1}
    assert (train["amp"], train["compile"], train["val_every"]) == (False, False, 1)
    assert (data["train"]["batch_size"], data["train"]["patch_size"], data["val"]["patch_size"]) == (1, 256, 256)
    assert data["train"]["num_workers"] > 0
    assert data["train"]["dir"] == "Datasets/Rain200L/train" and data["val"]["dir"] == "Datasets/Rain200L/test"
    assert opt == DEFAULTS and opt is not DEFAULTS


def test_defaults_are_options_defaults_yml():
    assert DEFAULTS == yaml.safe_load((REPO_ROOT / "options" / "defaults.yml").read_text())


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_files_state_only_what_differs_from_the_defaults(path):
    def leaves(tree: dict, prefix: str = "") -> dict:
        return {k: v for key, value in tree.items()
                for k, v in (leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value}).items()}

    defaults = leaves(DEFAULTS)
    identity = {"network.type", "datasets.train.dir", "datasets.val.dir", "paths.experiment"}  # always stated
    repeated = [key for key, value in leaves(yaml.safe_load(path.read_text())).items()
                if key not in identity and defaults.get(key) == value]
    assert not repeated


def test_every_dataset_and_size_has_a_file():
    names = {p.stem for p in RECIPES} - {"finetune"}  # finetune.yml: the example of a fine-tuning run
    assert names == {f"{d}{s}" for d in ("rain200l", "rain200h", "did", "ddn", "spa") for s in ("", "_s")}


@pytest.mark.parametrize("path", OPTION_FILES, ids=lambda p: p.name)
def test_option_files_load_and_build(path, fixtures):
    opt = load_options(path)
    with torch.device("meta"):
        model = build_model(opt["network"])
    if path in RECIPES:
        small = path.stem.endswith("_s")
        assert opt["network"]["type"] == ("NeRDRainS" if small else "NeRDRain")
        golden = fixtures / "golden" / f"checkpoint_keys_nerd_rain{'_s' if small else ''}.json"
        keys = json.loads(golden.read_text())
        assert sum(p.numel() for p in model.parameters()) == keys["num_params"]
        assert opt["paths"]["experiment"] == f"experiments/{path.stem}"
        dataset = opt["datasets"]["train"]["dir"].split("/")[1]
        assert opt["datasets"]["train"]["dir"] == f"Datasets/{dataset}/train"
        assert opt["datasets"]["val"]["dir"] == f"Datasets/{dataset}/test"
    elif path.name == "demo.yml":  # demo.sh makes its synthetic data there
        assert [opt["datasets"][s]["dir"] for s in ("train", "val")] == ["demo/data/train", "demo/data/test"]
    else:  # the tiny config reads a small Rain200H sample in Datasets/
        assert [opt["datasets"][s]["dir"] for s in ("train", "val")] == ["Datasets/Rain200H_small/train",
                                                                          "Datasets/Rain200H_small/test"]


def test_file_overrides_defaults_and_keeps_the_rest(tmp_path):
    opt = load_options(write(tmp_path, "train:\n  lr: 2.0e-4\ndatasets:\n  train:\n    patch_size: 128\n"))
    assert opt["train"]["lr"] == 2e-4 and opt["datasets"]["train"]["patch_size"] == 128
    assert opt["train"]["epochs"] == DEFAULTS["train"]["epochs"]
    assert opt["datasets"]["train"]["batch_size"] == DEFAULTS["datasets"]["train"]["batch_size"]


def test_overrides_parse_yaml_values(tmp_path):
    opt = load_options(write(tmp_path, "train:\n  epochs: 10\n"), [
        "train.epochs=20", "train.lr=1e-3", "train.amp=true", "train.betas=[0.8, 0.99]",
        "network.num_blocks=[1,1,1]", "paths.experiment=experiments/x", "train.loss={char: 2}"])
    assert opt["train"]["epochs"] == 20
    assert opt["train"]["lr"] == 1e-3 and isinstance(opt["train"]["lr"], float)  # '1e-3' is a string in YAML
    assert opt["train"]["amp"] is True and opt["train"]["betas"] == [0.8, 0.99]
    assert opt["network"]["num_blocks"] == [1, 1, 1] and opt["paths"]["experiment"] == "experiments/x"
    assert opt["train"]["loss"]["char"] == 2 and opt["train"]["loss"]["fft"] == 0.01


def test_unknown_key_in_file_names_key_file_and_known_keys(tmp_path):
    path = write(tmp_path, "train:\n  lrr: 1.0e-4\n")
    with pytest.raises(OptionsError) as err:
        load_options(path)
    message = str(err.value)
    assert "'train.lrr'" in message and str(path) in message and "Did you mean 'lr'" in message
    assert "epochs" in message and "warmup_epochs" in message


def test_unknown_section_and_override(tmp_path):
    with pytest.raises(OptionsError, match=r"unknown option 'trian'.*top level: datasets, network, paths, train"):
        load_options(write(tmp_path, "trian:\n  lr: 1\n"))
    with pytest.raises(OptionsError, match=r"'datasets\.train\.patch'.*--set datasets\.train\.patch=64.*patch_size"):
        load_options(None, ["datasets.train.patch=64"])
    with pytest.raises(OptionsError, match="expected KEY=VALUE"):
        load_options(None, ["train.lr"])


def test_open_sections_take_the_class_arguments_and_need_a_type_name():
    """Their keys are checked where the class is built (tests/test_model.py, tests/test_losses.py)."""
    assert load_options(None, ["network.dimm=8"])["network"] == {"type": "NeRDRain", "dimm": 8}
    # another loss class drops the default class's weights
    assert load_options(None, ["train.loss={type: CharbonnierLoss, eps: 1.0e-6}"])["train"]["loss"] == {
        "type": "CharbonnierLoss", "eps": 1e-6}
    with pytest.raises(OptionsError, match=r"network\.type = 3 must name a class, e\.g\. NeRDRain"):
        load_options(None, ["network.type=3"])


@pytest.mark.parametrize("override, message", [
    ("datasets.train.patch_size=100", r"datasets\.train\.patch_size = 100 must be a positive multiple of 16"),
    ("datasets.val.patch_size=8", r"datasets\.val\.patch_size = 8 must be a positive multiple of 16"),
    ("train.warmup_epochs=3000", r"train\.warmup_epochs = 3000 must be .* less than train\.epochs = 3000"),
    ("train.epochs=3", r"train\.warmup_epochs = 3 must be .* less than train\.epochs = 3"),
    ("datasets.train.pairing=name", r"pairing = 'name' must be 'stem'"),
    ("train.schedule=step", r"train\.schedule = 'step' must be 'epoch'"),
    ("train.amp=1", r"train\.amp = 1 must be true or false"),
    ("train.epochs=10.5", r"train\.epochs = 10\.5 must be an integer"),
    ("train.lr=fast", r"train\.lr = 'fast' must be a finite number"),
    ("train.lr=.inf", r"train\.lr = inf must be a finite number"),
    ("train.eta_min=.nan", r"train\.eta_min = nan must be a finite number"),
    ("train.lr=-inf", r"train\.lr = '-inf' must be a finite number"),
    ("train.loss.fft=.nan", r"train\.loss\.fft = nan must be a finite number"),
    ("network.ffn_expansion_factor=.inf", r"network\.ffn_expansion_factor = inf must be a finite number"),
    ("train.betas=[0.9, .nan]", r"train\.betas = \[0\.9, nan\] must hold finite numbers"),
    ("train.lr=0", r"train\.lr must be positive"),
    ("datasets.train.batch_size=0", r"batch_size must be at least 1"),
    ("train.accumulate=0", r"train\.accumulate = 0 must be at least 1"),
    ("train.log_every=0", r"train\.log_every = 0 must be at least 1"),
    ("train.tensorboard_images=-1", r"train\.tensorboard_images = -1 must be at least 0"),
    ("train.betas=[0.9]", r"train\.betas = \[0\.9\] must be two numbers"),
    ("train=5", r"train \(in --set train=5\) must be a mapping"),
])
def test_bad_values_are_rejected_naming_the_key_and_source(override, message):
    with pytest.raises(OptionsError, match=message) as err:
        load_options(None, [override])
    assert "--set" in str(err.value)


def test_bad_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: [1, 2\n  epochs: 3\n")
    with pytest.raises(OptionsError, match=rf"{path}: line \d+, column \d+: not valid YAML"):
        load_options(path)
    with pytest.raises(OptionsError, match="expected a mapping of sections"):
        load_options(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(OptionsError, match="options file not found"):
        load_options(tmp_path / "missing.yml")
    assert load_options(write(tmp_path, "")) == DEFAULTS


def test_save_options_round_trips_atomically(tmp_path):
    opt = load_options(OPTION_FILES[0], ["train.lr=3e-4"])
    save_options(opt, tmp_path / "options.yml")
    assert os.listdir(tmp_path) == ["options.yml"]
    assert load_options(tmp_path / "options.yml") == opt
    assert yaml.safe_load((tmp_path / "options.yml").read_text()) == opt


def test_relative_paths_are_from_the_repository_root(tmp_path):
    assert resolve_path("experiments/x") == REPO_ROOT / "experiments" / "x"
    assert resolve_path("../shared/datasets") == REPO_ROOT / ".." / "shared" / "datasets"
    assert resolve_path(tmp_path) == tmp_path
