"""Released weights by name: names, the cache, downloads through gdown from a local HTTP server (Drive
cannot be reached here), verification, every failure mode with nothing left in the cache, and the CLI."""
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import models
from models import ModelSize, build_model, pretrained
from models.weights import save_network
from utils.image_io import write_png_atomic

# tiny stand-ins for the paper's two sizes: MODELS is patched so that these count as NeRD-Rain-S and NeRD-Rain
TINY_S = {"dim": 8, "num_blocks": [1, 1, 1], "heads": [1, 1, 2]}
TINY = {"dim": 16, "num_blocks": [1, 1, 1], "heads": [1, 1, 2]}


class Files(http.server.BaseHTTPRequestHandler):
    """Serves SERVED[path] = (status, bytes)."""

    served: dict[str, tuple[int, bytes]] = {}

    def do_GET(self):
        status, body = self.served.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, bytes]:
    """The bytes of tiny checkpoints in the authors' format: 'S' (NeRD-Rain-S stand-in), 'L', and 'other'."""
    folder = tmp_path_factory.mktemp("ckpts")
    files = {}
    for key, options in (("S", TINY_S), ("L", TINY), ("other", {**TINY_S, "dim": 12})):
        torch.manual_seed(0)
        save_network(folder / f"{key}.pth", build_model(options), epoch=1)
        files[key] = (folder / f"{key}.pth").read_bytes()
    return files


@pytest.fixture
def cache(tmp_path, monkeypatch, server) -> Path:
    """$NERD_RAIN_HOME in tmp_path, Drive ids served from the local server, the tiny sizes as the paper's."""
    monkeypatch.setenv("NERD_RAIN_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pretrained, "DOWNLOAD_URL", f"http://127.0.0.1:{server.server_port}/{{}}")
    monkeypatch.setitem(models.MODELS, "NeRDRainS", ModelSize("NeRD-Rain-S", TINY_S))
    monkeypatch.setitem(models.MODELS, "NeRDRain", ModelSize("NeRD-Rain", TINY))
    Files.served = {}
    return tmp_path / "home" / "weights"


def serve(name: str, body: bytes, status: int = 200) -> pretrained.Release:
    release = pretrained.find(name)
    Files.served[f"/{release.google_drive_id}"] = (status, body)
    return release


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.shared
def test_shipped_links_are_the_authors(shared_dir):
    assert json.loads(pretrained.RELEASES.read_text()) == json.loads((shared_dir / "paper" / "weights.json").read_text())


def test_ten_releases_named_as_in_table_1():
    assert pretrained.names() == [f"{m}/{d}" for m in ("NeRD-Rain-S", "NeRD-Rain")
                                  for d in ("Rain200L", "Rain200H", "DID-Data", "DDN-Data", "SPA-Data")]
    release = pretrained.find("nerd-rain/rain200h")
    assert (release.model, release.dataset) == ("NeRD-Rain", "Rain200H")
    assert release.drive_url == "https://drive.google.com/uc?id=1MOG3ZrXQxH-o13O1QWB6EiZhJsXOlUXs"
    assert pretrained.find("NeRD-Rain/Rain100H") is None and pretrained.find("model_best.pth") is None


@pytest.mark.parametrize("model, golden", [("NeRD-Rain-S", "checkpoint_keys_nerd_rain_s.json"),
                                           ("NeRD-Rain", "checkpoint_keys_nerd_rain.json")])
def test_expected_keys_are_the_authors_list(fixtures, model, golden):
    authors = [name for name, _ in json.loads((fixtures / "golden" / golden).read_text())["keys"]]
    assert pretrained.authors_keys(model) == authors


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("NERD_RAIN_HOME", str(tmp_path))
    assert pretrained.find("NeRD-Rain-S/SPA-Data").path == tmp_path / "weights" / "NeRD-Rain-S" / "SPA-Data.pth"
    monkeypatch.delenv("NERD_RAIN_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert pretrained.cache_dir() == tmp_path / "user" / ".cache" / "nerd_rain" / "weights"


def test_download_verifies_and_caches_once(cache, checkpoints):
    release = serve("NeRD-Rain-S/Rain200L", checkpoints["S"])
    path = pretrained.resolve_weights("nerd-rain-s/RAIN200L")
    assert path == cache / "NeRD-Rain-S" / "Rain200L.pth" and path.read_bytes() == checkpoints["S"]
    assert files_in(cache) == ["NeRD-Rain-S", "NeRD-Rain-S/Rain200L.pth"]
    Files.served.clear()  # a second use reads the cache: no download
    assert pretrained.fetch(release) == path


def test_an_existing_path_wins_over_a_name(cache, tmp_path, checkpoints, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("NeRD-Rain-S").mkdir()
    Path("NeRD-Rain-S/Rain200L").write_bytes(checkpoints["S"])
    assert pretrained.resolve_weights("NeRD-Rain-S/Rain200L") == Path("NeRD-Rain-S/Rain200L")
    assert pretrained.resolve_weights("nope.pth") == Path("nope.pth")  # the caller says it is not found
    assert files_in(cache) == []


@pytest.mark.parametrize("body, status, expected", [
    (None, 404, "the download failed (HTTPError: 404"),
    (b"<!DOCTYPE html><html><body>Google Drive - Virus scan warning</body></html>", 200, "an HTML page"),
    ("truncated", 200, "truncated"),
    ("L", 200, "it holds NeRD-Rain, not NeRD-Rain-S"),
    ("other", 200, "it holds no network of the paper, not NeRD-Rain-S"),
])
def test_failed_downloads_say_how_to_get_the_file_and_leave_nothing(cache, checkpoints, body, status, expected):
    if body == "truncated":
        body = checkpoints["S"][: len(checkpoints["S"]) // 2]
    elif isinstance(body, str):
        body = checkpoints[body]
    release = serve("NeRD-Rain-S/DDN-Data", body or b"", status)
    with pytest.raises(pretrained.DownloadError) as err:
        pretrained.resolve_weights("NeRD-Rain-S/DDN-Data")
    message = str(err.value)
    assert expected in message
    for part in ("https://drive.google.com/uc?id=1oonCvgCEjDQXHuGBRkdZ5DmE33zv6Rt7",
                 "https://pan.baidu.com/s/1I3eLobpDrXPQo7_3JMp0Mw?pwd=10ut", "code 10ut", str(release.path)):
        assert part in message
    assert "\n" not in message and ".pth:" not in message and ".." not in message and files_in(cache) == []


def test_offline_is_a_failed_download(cache, monkeypatch):
    monkeypatch.setattr(pretrained, "DOWNLOAD_URL", "http://127.0.0.1:9/{}")  # the discard port: refused
    with pytest.raises(pretrained.DownloadError, match="the download failed .*Connection"):
        pretrained.resolve_weights("NeRD-Rain/SPA-Data")
    assert files_in(cache) == []


def test_other_keys_are_refused(cache, tmp_path):
    torch.manual_seed(0)
    state = {"state_dict": {**pretrained.authors_state(build_model(TINY_S)), "extra.weight": torch.zeros(1)}}
    torch.save(state, tmp_path / "extra.pth")
    serve("NeRD-Rain-S/Rain200H", (tmp_path / "extra.pth").read_bytes())
    with pytest.raises(pretrained.DownloadError, match="keys differ from the authors' NeRD-Rain-S in 1 names"):
        pretrained.resolve_weights("NeRD-Rain-S/Rain200H")
    assert files_in(cache) == []


def test_cli_list_and_download(cache, checkpoints, capsys):
    serve("NeRD-Rain/DID-Data", checkpoints["L"])
    assert pretrained.main(["download", "NeRD-Rain/DID-Data"]) == 0
    assert capsys.readouterr().out.strip() == f"NeRD-Rain/DID-Data: {cache / 'NeRD-Rain' / 'DID-Data.pth'}"
    assert pretrained.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10
    assert lines[7].split() == ["NeRD-Rain/DID-Data", "cached", str(cache / "NeRD-Rain" / "DID-Data.pth")]
    assert lines[0].split()[:2] == ["NeRD-Rain-S/Rain200L", "missing"]
    assert pretrained.main(["download", "all"]) == 2  # the other nine are not served
    assert capsys.readouterr().err.count("models.pretrained: error: Cannot get the weights") == 9
    assert files_in(cache) == ["NeRD-Rain", "NeRD-Rain/DID-Data.pth"]
    assert pretrained.main(["download", "NeRD-Rain/Rain100H"]) == 2
    assert "unknown name(s) NeRD-Rain/Rain100H; choose from NeRD-Rain-S/Rain200L" in capsys.readouterr().err


def test_test_py_takes_a_name(cache, checkpoints, tmp_path, capsys, test_py):
    cli = test_py
    serve("NeRD-Rain-S/Rain200L", checkpoints["S"])
    write_png_atomic(tmp_path / "1.png", np.random.default_rng(0).integers(0, 256, (40, 24, 3), dtype=np.uint8))
    args = ["--input_dir", str(tmp_path / "1.png"),
            "--output_dir", str(tmp_path / "out"), "--win_size", "32", "--device", "cpu", "--weights"]
    assert cli.main([*args, "NeRD-Rain-S/Rain200L"]) == 0
    assert (tmp_path / "out" / "1.png").is_file() and "NeRD-Rain-S (dim 8" in capsys.readouterr().out
    assert cli.main([*args, "NeRD-Rain-S/DDN-Data"]) == 2  # not served: a failed download
    assert "test.py: error: Cannot get the weights NeRD-Rain-S/DDN-Data" in capsys.readouterr().err
    assert cli.main([*args, "nope.pth"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found: nope.pth" in err and "NeRD-Rain/SPA-Data" in err
