"""Awkward image files: each is loaded correctly or skipped and counted, never a traceback."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.tiny_set import load_image_folder
from tests.cli.invoke import FAST_RUN, TINY, assert_clean_error, invoke
from tests.conftest import write_images


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_decompression_bomb(path: Path, side: int = 40000) -> None:
    """A 200-byte PNG that claims 40000 x 40000 RGB pixels (4.8 GB decoded)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _png_chunk(b"IEND", b""))


def write_awkward_images(folder: Path) -> dict[str, Path]:
    """One file of each awkward kind, beside a few ordinary images."""
    write_images(folder, 6)
    rng = np.random.default_rng(3)
    paths = {"bomb": folder / "bomb.png", "deep16": folder / "deep16.png", "cmyk": folder / "cmyk.jpg",
             "animated": folder / "animated.gif", "one_pixel": folder / "one_pixel.png"}
    write_decompression_bomb(paths["bomb"])
    Image.fromarray(np.linspace(0, 65535, 40 * 40).reshape(40, 40).astype(np.uint16)).save(paths["deep16"])
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).convert("CMYK").save(paths["cmyk"])
    frames = [Image.fromarray(np.full((40, 40, 3), v, dtype=np.uint8)) for v in (30, 200, 90)]
    frames[0].save(paths["animated"], save_all=True, append_images=frames[1:])
    Image.fromarray(np.full((1, 1, 3), 128, dtype=np.uint8)).save(paths["one_pixel"])
    os.symlink(folder, folder / "loop")  # a symlink loop
    not_utf8 = os.fsencode(str(folder)) + b"/caf\xe9.png"  # Latin-1 name: not valid UTF-8
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(not_utf8)
    paths["not_utf8"] = Path(os.fsdecode(not_utf8))
    return paths


def test_each_awkward_file_is_loaded_or_counted(tmp_path):
    paths = write_awkward_images(tmp_path / "tiny")
    tiny = load_image_folder(tmp_path / "tiny", 32)
    loaded = {Path(p).name: image for p, image in zip(tiny.paths, tiny.images)}
    assert tiny.summary()["skipped"] == {"too many pixels (decompression bomb guard)": 1}
    assert len(tiny) == 6 + 5  # the ordinary images, 16-bit, CMYK, GIF, 1x1, non-UTF-8 name; the loop read once
    grey = np.asarray(loaded["deep16.png"])[..., 0]
    assert grey.min() <= 5 and grey.max() >= 250 and (grey == 255).mean() < 0.05  # scaled, not clipped to white
    assert loaded["cmyk.jpg"].mode == "RGB" and loaded["animated.gif"].getpixel((0, 0)) == (30, 30, 30)
    assert loaded["one_pixel.png"].size == (1, 1) and paths["not_utf8"].name in loaded


def test_validation_labels_beyond_the_models_classes_are_refused_before_any_work(capsys, tmp_path):
    data = write_images(tmp_path / "tiny", 8)
    val = write_images(tmp_path / "val", 4, seed=1, classes=2)
    (val / "1").rename(val / "15")  # tiny_resnet has 10 classes
    out = tmp_path / "run"
    code, _, err = invoke(capsys, "run", "--model", TINY, *FAST_RUN, "--data", str(data), "--val", str(val),
                          "--out", str(out))
    assert_clean_error(code, err, 2, "classes the model does not have: 15 (the model outputs 10 classes")
    assert not out.exists()
