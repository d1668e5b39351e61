"""Reading odd image files, writing PNGs atomically, listing the images of a folder."""
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from utils import image_io
from utils.image_io import MAX_PIXELS, ImageReadError, PixelLimitError, list_images, read_rgb8, write_png_atomic

RNG = np.random.default_rng(0)


def test_8bit_rgb_png_round_trip(tmp_path: Path):
    img = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png_atomic(tmp_path / "a.png", img)
    out, note = read_rgb8(tmp_path / "a.png")
    assert note is None and np.array_equal(out, img)


def test_grayscale(tmp_path: Path):
    gray = RNG.integers(0, 256, (5, 7), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    out, note = read_rgb8(tmp_path / "g.png")
    assert note == "grayscale" and out.shape == (5, 7, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[..., c], gray) for c in range(3))


def test_rgba_drops_alpha(tmp_path: Path):
    bgra = RNG.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    out, note = read_rgb8(tmp_path / "a.png")
    assert note == "alpha dropped" and np.array_equal(out, bgra[..., 2::-1])


def test_gray_alpha(tmp_path: Path):
    image = pytest.importorskip("PIL.Image")  # cv2 cannot write 2-channel PNGs
    la = RNG.integers(0, 256, (5, 7, 2), dtype=np.uint8)
    image.fromarray(la, "LA").save(tmp_path / "la.png")
    out, note = read_rgb8(tmp_path / "la.png")
    assert note == "alpha dropped" and np.array_equal(out, np.repeat(la[..., :1], 3, axis=2))


def test_16bit_scaled_with_rounding(tmp_path: Path):
    values = np.array([0, 128, 129, 32896, 65535], dtype=np.uint16)  # v/257: 0, 0.498, 0.502, 128, 255
    bgr16 = np.stack([values, values[::-1], values], axis=-1)[None]
    cv2.imwrite(str(tmp_path / "c.png"), bgr16)
    out, note = read_rgb8(tmp_path / "c.png")
    expected = np.array([0, 0, 1, 128, 255], dtype=np.uint8)
    assert note == "16-bit" and np.array_equal(out[0, :, 0], expected) and np.array_equal(out[0, :, 1], expected[::-1])
    cv2.imwrite(str(tmp_path / "g.png"), values[None])
    out, note = read_rgb8(tmp_path / "g.png")
    assert note == "16-bit, grayscale" and np.array_equal(out[0, :, 2], expected)


def test_jpeg_is_rgb(tmp_path: Path):
    red = np.zeros((16, 16, 3), dtype=np.uint8)
    red[..., 0] = 200
    cv2.imwrite(str(tmp_path / "r.JPG"), red[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    out, note = read_rgb8(tmp_path / "r.JPG")
    assert note is None and out.dtype == np.uint8 and out.shape == (16, 16, 3)
    assert np.abs(out.astype(int) - red).max() <= 3


def _truncated_png(path: Path) -> None:
    ok, data = cv2.imencode(".png", RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(data.tobytes()[: len(data) // 2])


@pytest.mark.parametrize("make", [
    _truncated_png,
    lambda p: p.write_bytes(b""),
    lambda p: p.write_text("this is text, not a PNG"),
    lambda p: None,  # missing
], ids=["truncated", "empty", "text", "missing"])
def test_unreadable_files_raise_naming_the_file(tmp_path: Path, make):
    path = tmp_path / "bad_image.png"
    make(path)
    with pytest.raises(ImageReadError, match="bad_image.png") as info:
        read_rgb8(path)
    assert isinstance(info.value, ValueError) and info.value.path == path


def test_write_png_atomic_refuses_to_overwrite(tmp_path: Path):
    first, second = (RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(2))
    path = tmp_path / "out.png"
    write_png_atomic(path, first)
    with pytest.raises(FileExistsError, match=r"out\.png.*--overwrite"):
        write_png_atomic(path, second)
    assert np.array_equal(read_rgb8(path)[0], first)
    write_png_atomic(path, second, overwrite=True)
    assert np.array_equal(read_rgb8(path)[0], second)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_list_images(tmp_path: Path):
    for name in ["b.PNG", "a.jpeg", "c.tif", "notes.txt", ".a.png.123.tmp", "._d.png"]:
        (tmp_path / name).touch()
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpeg", "b.PNG", "c.tif"]
    with pytest.raises(FileNotFoundError, match="missing"):
        list_images(tmp_path / "missing")


def _black_png(path: Path, width: int, height: int) -> Path:
    """A complete, valid black RGB PNG, compressed row by row: a big image in a few kB, made without
    holding its pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate, row = zlib.compressobj(1), bytes(1 + 3 * width)  # each row: filter type 0, then its pixels
    data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def test_an_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path: Path, monkeypatch, huge_png):
    big = _black_png(tmp_path / "big.png", 10000, 8000)
    assert cv2.imdecode(np.fromfile(big, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape == (1000, 1250)  # a real one
    monkeypatch.setattr(image_io.cv2, "imdecode", None)  # never decoded
    with pytest.raises(PixelLimitError) as info:
        read_rgb8(big)
    assert str(info.value) == (f"cannot read image {big}: 10000x8000 = 80,000,000 pixels, over the limit of "
                               f"{MAX_PIXELS:,} (--max_pixels)") and isinstance(info.value, ImageReadError)
    assert MAX_PIXELS == 8192 * 8192
    bomb = huge_png(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(PixelLimitError, match=r"bomb.png: more than 178,956,970 pixels, over the limit of 1,000 "
                                              r"\(datasets.train.max_pixels\)"):
        read_rgb8(bomb, 1000, "datasets.train.max_pixels")


def test_the_limit_applies_to_what_pil_cannot_size_and_decoder_errors_are_read_errors(tmp_path: Path, monkeypatch,
                                                                                      huge_png):
    # past PIL's own limit the decoder decides: OpenCV's limit (2^30 pixels) is an ImageReadError, no cv2.error
    bomb = huge_png(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(ImageReadError, match=r"bomb.png: the decoder failed \(.*CV_IO_MAX_IMAGE_PIXELS"):
        read_rgb8(bomb, 10**11)
    small = tmp_path / "small.png"
    write_png_atomic(small, RNG.integers(0, 256, (30, 40, 3), dtype=np.uint8))
    assert read_rgb8(small, 1200)[0].shape == (30, 40, 3)
    monkeypatch.setattr(image_io, "header_size", lambda data: None)  # as for a format PIL does not know
    with pytest.raises(PixelLimitError, match=r"40x30 = 1,200 pixels, over the limit of 1,199 \(--max_pixels\)"):
        read_rgb8(small, 1199)
