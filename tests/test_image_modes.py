"""Image folders read every PNG the way training needs it: 16-bit grey scaled (not clipped) to 8 bits, a pixel
stream cut short under valid checksums caught when the folder is checked (or named in one line when read),
palette images with transparency read without PIL's warning."""
from __future__ import annotations

import logging
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from gantrain.data.images import ImageFolder
from gantrain.errors import GantrainError


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _truncated_png(path: Path, size: int = 4) -> None:
    """An 8-bit grey PNG whose zlib stream stops after half the rows, every chunk's CRC valid: verify() passes
    it, decoding it raises 'OSError: image file is truncated'."""
    rows = b"".join(b"\x00" + bytes(range(r * size, r * size + size)) for r in range(size // 2))
    deflate = zlib.compressobj()
    stream = deflate.compress(rows) + deflate.flush(zlib.Z_SYNC_FLUSH)  # no final block: the stream just stops
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b""))


def _good_pngs(folder: Path, count: int) -> None:
    from PIL import Image

    for i in range(count):
        Image.new("L", (4, 4), 40 * i).save(folder / f"good{i}.png")


def test_the_truncated_png_fixture_passes_verify_and_fails_to_decode(tmp_path):
    from PIL import Image

    _truncated_png(tmp_path / "cut.png")
    with Image.open(tmp_path / "cut.png") as img:
        img.verify()
    with Image.open(tmp_path / "cut.png") as img, pytest.raises(OSError, match="image file is truncated"):
        img.load()
    # what this file pins: ImageFolder no longer takes such a file as readable
    _good_pngs(tmp_path, 1)
    assert [f.name for f in ImageFolder(str(tmp_path), image_size=4).files] == ["good0.png"]


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_grey_is_scaled_to_8_bits_and_8_bit_modes_load_as_before(tmp_path, channels):
    from PIL import Image

    ramp = np.array([0, 1, 128, 129, 256, 257, 1000, 32767, 32768, 40000, 50000, 60000, 65278, 65279, 65534, 65535],
                    dtype=np.uint16).reshape(4, 4)
    Image.fromarray(ramp).save(tmp_path / "a_ramp16.png")  # mode I;16
    Image.frombytes("I;16B", (4, 4), ramp.astype(">u2").tobytes()).save(tmp_path / "b_ramp16b.png")
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    eight_bit = {
        "c_grey.png": Image.fromarray(rng.integers(0, 256, (4, 4), dtype=np.uint8)),
        "d_rgb.png": rgb,
        "e_palette.png": rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=7),
        "f_bits.png": Image.fromarray(rng.integers(0, 2, (4, 4), dtype=np.uint8) * 255).convert("1"),
        "g_rgba.png": Image.fromarray(rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)),
        "h_rgb.bmp": rgb,
    }
    for name, img in eight_bit.items():
        img.save(tmp_path / name)
    folder = ImageFolder(str(tmp_path), image_size=4, channels=channels)
    assert [f.name for f in folder.files] == ["a_ramp16.png", "b_ramp16b.png", *eight_bit]
    expected = np.array([round(int(v) * 255 / 65535) for v in ramp.flat], dtype=np.uint8).reshape(4, 4)
    assert expected.ravel().tolist()[:4] == [0, 0, 0, 1] and expected[3, 3] == 255 and expected[1, 3] == 127 and expected[2, 0] == 128
    for index in (0, 1):  # both byte orders of 16-bit grey, every channel the scaled grey
        assert folder.item(index).numpy().tolist() == [expected.tolist()] * channels
    target = "RGB" if channels == 3 else "L"
    for index, name in enumerate(eight_bit, start=2):  # exactly what PIL's own conversion gave before
        with Image.open(tmp_path / name) as img:
            before = np.asarray(img.convert(target)).reshape(4, 4, channels).transpose(2, 0, 1)
        assert np.array_equal(folder.item(index).numpy(), before), name


def test_16_bit_grey_in_every_mode_pil_gives_it_is_scaled():
    # older Pillow opens 16-bit grey PNGs as mode "I" (int32); PIL's convert("L") clips each of these at 255
    from PIL import Image

    from gantrain.data import images

    values = np.array([[0, 255, 256, 65535]], dtype=np.uint16)
    for mode, data in (("I;16", values.astype("<u2")), ("I;16L", values.astype("<u2")),
                       ("I;16B", values.astype(">u2")), ("I", values.astype("<i4"))):
        img = Image.frombytes(mode, (4, 1), data.tobytes())
        assert img.mode == mode and np.asarray(img).tolist() == values.tolist()
        assert np.asarray(images._converted(img, 1)).tolist() == [[0, 1, 1, 255]], mode
        assert np.asarray(images._converted(img, 3)).tolist() == [[[v] * 3 for v in (0, 1, 1, 255)]], mode


def test_truncated_png_is_skipped_and_counted_or_refused_in_one_line(tmp_path, caplog):
    _good_pngs(tmp_path, 3)
    _truncated_png(tmp_path / "cut.png")
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        folder = ImageFolder(str(tmp_path), image_size=4)
    assert [f.name for f in folder.files] == ["good0.png", "good1.png", "good2.png"]
    assert folder.tensor().shape == (3, 3, 4, 4)
    records = [r for r in caplog.records if r.name == "gantrain"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "skipped 1 unreadable image(s) of 4" in message and "cut.png" in message and "truncated" in message
    assert "\n" not in message
    with pytest.raises(GantrainError) as refused:
        ImageFolder(str(tmp_path), image_size=4, skip_bad_images=False)
    message = str(refused.value)
    assert message.startswith("1 of 4 images below") and "cut.png" in message and "\n" not in message
    assert "dataset.skip_bad_images=true" in message


def test_a_png_truncated_after_the_check_is_a_one_line_error_naming_it(tmp_path):
    from torch._utils import ExceptionWrapper

    _good_pngs(tmp_path, 2)
    folder = ImageFolder(str(tmp_path), image_size=4)
    _truncated_png(tmp_path / "good1.png")  # broken after the folder was checked
    assert folder.item(0).shape == (3, 4, 4)
    with pytest.raises(GantrainError) as failed:
        folder.item(1)
    message = str(failed.value)
    assert str(tmp_path / "good1.png") in message and "truncated" in message and "\n" not in message
    assert "remove it" in message and "dataset.skip_bad_images=true" in message
    # from a DataLoader worker (streamed folders): torch re-raises the worker's exception type with the
    # worker's traceback as its message; it stays one line
    try:
        folder.item(1)
    except GantrainError:
        wrapped = ExceptionWrapper(sys.exc_info(), where="in DataLoader worker process 0")
    with pytest.raises(GantrainError) as reraised:
        wrapped.reraise()
    assert str(reraised.value) == message


@pytest.mark.parametrize("channels", [1, 3])
def test_palette_png_with_transparency_bytes_reads_without_a_warning(tmp_path, channels):
    from PIL import Image

    img = Image.new("P", (4, 4))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30])
    img.putdata([0, 1, 2, 3] * 4)  # every row: the four colours
    img.save(tmp_path / "pal.png", transparency=bytes([0, 128, 255, 255]))
    with Image.open(tmp_path / "pal.png") as saved:
        assert saved.mode == "P" and isinstance(saved.info["transparency"], bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = ImageFolder(str(tmp_path), image_size=4, channels=channels)
        values = folder.item(0).numpy().tolist()
        folder.tensor()
    assert [str(w.message) for w in caught] == []
    if channels == 3:  # the palette's colours, the alpha dropped
        assert values == [[[255, 0, 0, 10]] * 4, [[0, 255, 0, 20]] * 4, [[0, 0, 255, 30]] * 4]
    else:  # their luminance
        assert values == [[[76, 150, 29, 18]] * 4]


def test_files_found_readable_are_not_decoded_again_until_they_change(tmp_path, monkeypatch):
    import os

    import gantrain.data.images as images

    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    _good_pngs(folder, 3)
    _truncated_png(folder / "cut.png")
    seen = []
    original = images._unreadable
    monkeypatch.setattr(images, "_unreadable", lambda path: seen.append(path.name) or original(path))
    assert [f.name for f in ImageFolder(str(folder), image_size=4).files] == ["good0.png", "good1.png", "good2.png"]
    assert sorted(seen) == ["cut.png", "good0.png", "good1.png", "good2.png"]
    seen.clear()
    assert len(ImageFolder(str(folder), image_size=4).files) == 3  # again: only the unreadable one is decoded
    assert seen == ["cut.png"]
    seen.clear()
    _truncated_png(folder / "good1.png")  # changed since: checked again, and skipped
    stat = (folder / "good1.png").stat()
    os.utime(folder / "good1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert [f.name for f in ImageFolder(str(folder), image_size=4).files] == ["good0.png", "good2.png"]
    assert sorted(seen) == ["cut.png", "good1.png"]
    images._checks_file(folder).write_text("{not json")  # a damaged record: everything is checked again
    seen.clear()
    ImageFolder(str(folder), image_size=4)
    assert len(seen) == 4
