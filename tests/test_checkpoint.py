"""Files that are not checkpoints: each is named for what it is, with what to do, wherever one is loaded."""
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from utils.checkpoint import read_checkpoint
from utils.image_io import write_png_atomic

DRIVE_PAGE = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body></body></html>"


def make(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\n")
    elif kind == "html":
        path.write_bytes(DRIVE_PAGE)
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("weights/readme.txt", "not a torch file")
    elif kind == "truncated":
        torch.save({"state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "pickled":
        path.write_bytes(pickle.dumps({"state_dict": {"w": Path("an object")}}))
    return path


@pytest.mark.parametrize("kind, says", [
    ("empty", r"the file is empty \(0 bytes\).*Download or copy it again"),
    ("text", r"the file is text, not a checkpoint \(it starts with 'version https://git-lfs"),
    ("html", r"the file is an HTML page, not a checkpoint: what a failed download saves \(Google Drive's quota"),
    ("zip", r"the file is a zip archive but not a PyTorch checkpoint \(it holds weights/readme\.txt\)"),
    ("truncated", r"the file is truncated \(a zip archive without its end\)\. Download or copy it again"),
    ("pickled", r"holds Python objects besides tensors.*never does it\. If you trust its source, save its state_dict"),
])
def test_not_a_checkpoint_says_what_the_file_is(tmp_path, kind, says):
    path = make(tmp_path, kind)
    with pytest.raises(ValueError, match=says) as err:
        read_checkpoint(path)
    assert str(err.value).startswith(f"cannot read checkpoint {path}: ")
    assert "weights_only=False will likely succeed" not in str(err.value)


def test_test_py_and_resume_give_the_message(tmp_path, capsys, test_py):
    html = make(tmp_path, "html")
    (tmp_path / "in").mkdir()
    write_png_atomic(tmp_path / "in" / "a.png", np.zeros((32, 32, 3), np.uint8))
    assert test_py.main(["--input_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out"),
                     "--weights", str(html), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert f"cannot read checkpoint {html}: the file is an HTML page" in err and "Traceback" not in err
    opt = tmp_path / "opt.yml"
    opt.write_text(f"paths: {{experiment: {tmp_path / 'exp'}}}\n")
    assert train.main(["--opt", str(opt), "--resume", str(make(tmp_path, "empty"))]) == train.EXIT_BAD_INPUT
    assert "the file is empty (0 bytes)" in capsys.readouterr().err
