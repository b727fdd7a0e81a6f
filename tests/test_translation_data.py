"""Datasets of image-to-image translation: edges2mnist and mnist2mnistm on real MNIST and scikit-image's
photographs, pix2pix / CycleGAN folders built with PIL, and pix2pix's jitter."""
import logging
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gantrain.data import cache as data_cache
from gantrain.data import translation as td
from gantrain.data.images import MNIST
from gantrain.data.base import Dataset, normalize
from gantrain.errors import GantrainError
from gantrain.data.translation import Edges2MNIST, MNIST2MNISTM, PairedFolder, UnpairedFolder, random_jitter
from gantrain.data.outlines import sobel_edges

# ---------------------------------------------------------------------------------------------
# Sets built once per module: MNIST's digits at 32 px, and both synthetic sets in a cache of their own


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """GANTRAIN_CACHE for the module's builds (restored afterwards)."""
    folder = tmp_path_factory.mktemp("translation-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANTRAIN_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def mnist(data_root):
    """The reference: MNIST's train and test digits at 32 px with their labels, read directly."""
    out = {}
    for train in (True, False):
        ds = MNIST(root=str(data_root), image_size=32, download=False, train=train)
        out[train] = (ds.tensor(), ds.labels())
    return out


@pytest.fixture(scope="module")
def edges(cache, data_root):
    """edge_styles=sobel: every outline the one-pixel Sobel maxima (0.7.0's set; the mixed styles: test_edge_styles.py)."""
    sets = {train: Edges2MNIST(root=str(data_root), train=train, download=False, edge_styles="sobel") for train in (True, False)}
    for ds in sets.values():
        ds.tensor()  # built here, in the module's cache
    return sets


@pytest.fixture(scope="module")
def mnistm(cache, data_root):
    ds = MNIST2MNISTM(root=str(data_root), download=False, seed=0)
    ds.domain_a()
    return ds


def no_mnist(*args, **kwargs):
    raise AssertionError("MNIST was read although a cached set should have been used")


# ---------------------------------------------------------------------------------------------
# Edges2MNIST


def test_edges2mnist_pairs_are_outline_and_digit(edges, mnist):
    for train, n in ((True, 60000), (False, 10000)):
        ds = edges[train]
        x = ds.tensor()
        assert x.shape == (n, 2, 32, 32) and x.dtype == torch.uint8 and len(ds) == n
        assert ds.paired is True and (ds.channels_a, ds.channels_b) == (1, 1) and ds.shape == (2, 32, 32)
        assert ds.kind == "image" and ds.num_classes == 10
        digits, labels = mnist[train]
        assert torch.equal(x[:, 1:], digits)  # B is the digit
        assert torch.equal(ds.labels(), labels)
    x = edges[False].tensor()  # the properties of the outlines, on the 10,000 test digits
    e, d = x[:, :1], x[:, 1:]
    assert not torch.equal(e, d)
    assert set(torch.unique(e).tolist()) == {0, 255}  # a line drawing
    ink = (d > 0).float()
    # zero away from the strokes: an edge pixel is at most one pixel from ink
    assert int(e[F.max_pool2d(ink, 3, 1, 1) == 0].count_nonzero()) == 0
    # every digit has an outline, and the outline runs along the whole boundary of the strokes
    assert int((e > 0).flatten(1).sum(1).min()) >= 20
    dark = (d < 128).float()
    boundary = (d >= 128) & (F.max_pool2d(dark, 3, 1, 1) > 0)
    covered = F.max_pool2d((e > 0).float(), 3, 1, 1) > 0
    assert float((covered & boundary).sum() / boundary.sum()) > 0.95
    # an outline, not a filled stroke, and thin: hardly any edge inside a stroke, hardly any 2x2 block of edge
    deep = (d >= 128) & (F.max_pool2d(dark, 5, 1, 2) == 0)
    assert float(((e > 0) & deep).sum() / deep.sum()) < 0.1
    blocks = F.avg_pool2d((e > 0).float(), 2, 1) == 1
    assert float(blocks.sum() / (e > 0).sum()) < 0.02


def test_edges2mnist_is_deterministic_and_splits(edges, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path))  # an empty cache: built again from MNIST
    again = Edges2MNIST(root=str(data_root), train=False, download=False, edge_styles="sobel")
    assert torch.equal(again.tensor(), edges[False].tensor())
    assert (tmp_path / "datasets" / "edges2mnist-32-test.pt").is_file()
    other = edges[True].split(False)
    assert isinstance(other, Edges2MNIST) and other.train is False and other.image_size == 32
    assert other.split(True).train is True


def test_edges2mnist_cache_is_reused(edges, cache, data_root, monkeypatch):
    edges[True].tensor()
    path = cache / "datasets" / "edges2mnist-32-train.pt"
    assert path.is_file() and edges[True].cache_path == path
    monkeypatch.setattr(td, "_digits", no_mnist)
    cached = Edges2MNIST(root=str(data_root), train=True, download=False, edge_styles="sobel")
    assert torch.equal(cached.tensor(), edges[True].tensor())
    assert torch.equal(cached.labels(), edges[True].labels())
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file


def test_edges2mnist_damaged_cache_is_rebuilt(edges, data_root, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path))
    path = tmp_path / "datasets" / "edges2mnist-32-test.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    reads = []
    real = td._digits
    monkeypatch.setattr(td, "_digits", lambda *a: reads.append(a) or real(*a))
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        rebuilt = Edges2MNIST(root=str(data_root), train=False, download=False, edge_styles="sobel").tensor()
    assert len(reads) == 1 and torch.equal(rebuilt, edges[False].tensor())
    assert any("damaged" in r.getMessage() and "edges2mnist-32-test.pt" in r.getMessage() for r in caplog.records)
    # the file was written again, whole: the next build reads it
    monkeypatch.setattr(td, "_digits", no_mnist)
    assert torch.equal(Edges2MNIST(root=str(data_root), train=False, download=False, edge_styles="sobel").tensor(), rebuilt)


def test_edges2mnist_cache_of_another_shape_is_not_used(edges, tmp_path, caplog):
    path = tmp_path / "edges2mnist-32-test.pt"
    good = {"format": data_cache.CACHE_FORMAT, "pairs": torch.zeros(3, 2, 32, 32, dtype=torch.uint8),
            "labels": torch.zeros(3, dtype=torch.int64)}
    torch.save(good, path)
    assert data_cache._read_cache(path, edges[False]._valid) is not None
    wrongs = ({"pairs": torch.zeros(3, 2, 16, 16, dtype=torch.uint8)}, {"labels": torch.zeros(2, dtype=torch.int64)},
              {"labels": torch.full((3,), 10)}, {"format": data_cache.CACHE_FORMAT + 1}, {"pairs": good["pairs"].float()})
    for wrong in wrongs:
        torch.save({**good, **wrong}, path)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gantrain"):
            assert data_cache._read_cache(path, edges[False]._valid) is None, wrong
        assert "damaged" in caplog.text


def test_sobel_edges_of_a_square():
    img = torch.zeros(1, 1, 16, 16, dtype=torch.uint8)
    img[:, :, 4:12, 4:12] = 200
    e = sobel_edges(img)[0, 0] > 0
    inside, outside = torch.zeros(16, 16, dtype=torch.bool), torch.ones(16, 16, dtype=torch.bool)
    inside[6:10, 6:10] = True
    outside[2:14, 2:14] = False
    assert not e[inside].any() and not e[outside].any()  # no edge in the flat middle or far outside
    for i in range(5, 11):  # a closed outline one pixel wide: one edge on each side of every row and column
        assert e[i, 2:7].sum() == 1 and e[i, 9:14].sum() == 1, i
        assert e[2:7, i].sum() == 1 and e[9:14, i].sum() == 1, i
    assert not sobel_edges(torch.zeros(2, 1, 8, 8, dtype=torch.uint8)).any()
    # the threshold is relative to each image's strongest edge: a faint square beside a bright one draws
    # nothing, the same faint square alone draws its outline
    faint = torch.zeros(2, 1, 16, 32, dtype=torch.uint8)
    faint[:, :, 4:12, 20:28] = 12
    faint[0, :, 4:12, 4:12] = 250
    e = sobel_edges(faint)
    assert not e[0, 0, :, 16:].any() and e[0, 0, :, :16].any()
    assert torch.equal(e[1, 0, :, 16:], sobel_edges(img)[0, 0])


# ---------------------------------------------------------------------------------------------
# MNIST2MNISTM


def test_mnist2mnistm_domains_are_disjoint_halves(mnistm, mnist):
    a, b = mnistm.domain_a(), mnistm.domain_b()
    assert isinstance(a, Dataset) and isinstance(b, Dataset) and mnistm.paired is False
    assert (mnistm.channels_a, mnistm.channels_b) == (1, 3)
    xa, xb = a.tensor(), b.tensor()
    assert xa.shape == (30000, 1, 32, 32) and xb.shape == (30000, 3, 32, 32)
    assert xa.dtype == xb.dtype == torch.uint8 and a.shape == (1, 32, 32) and b.shape == (3, 32, 32)
    assert torch.equal(a.index, torch.arange(30000)) and torch.equal(b.index, torch.arange(30000, 60000))
    digits, labels = mnist[True]
    assert torch.equal(xa, digits[:30000])  # A: the first half, unchanged
    assert torch.equal(a.labels(), labels[:30000]) and torch.equal(b.labels(), labels[30000:])
    assert a.num_classes == b.num_classes == 10
    assert "30000 samples of shape (3, 32, 32)" in mnistm.describe()


def test_mnist2mnistm_is_photo_patch_minus_digit(mnistm, mnist):
    import skimage.data

    loaders = {"astronaut": skimage.data.astronaut, "chelsea": skimage.data.chelsea, "coffee": skimage.data.coffee,
               "rocket": skimage.data.rocket, "immunohistochemistry": skimage.data.immunohistochemistry,
               "motorcycle_left": lambda: skimage.data.stereo_motorcycle()[0]}
    photos = [torch.from_numpy(np.asarray(loaders[name]())[:, :, :3].copy()).permute(2, 0, 1).to(torch.int16)
              for name in mnistm.photos]
    crops, xb = mnistm.crops, mnistm.domain_b().tensor()
    digits = mnist[True][0][30000:].to(torch.int16)
    assert crops.shape == (30000, 3)
    assert set(crops[:, 0].tolist()) == set(range(len(photos)))  # every photograph is used
    for i in torch.randperm(30000, generator=torch.Generator().manual_seed(1))[:300].tolist():
        p, top, left = crops[i].tolist()
        patch = photos[p][:, top : top + 32, left : left + 32]
        assert patch.shape == (3, 32, 32)
        assert torch.equal(xb[i], (patch - digits[i]).abs().to(torch.uint8)), i
    # colour: the channels of the MNIST-M digits differ (they would not for grey backgrounds)
    spread = (xb.amax(1).int() - xb.amin(1).int()).float().mean(dim=(1, 2))
    assert float((spread > 5).float().mean()) > 0.9


def test_mnist2mnistm_deterministic_given_seed(mnistm, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "one"))
    first = MNIST2MNISTM(root=str(data_root), download=False, train=False, seed=0)
    xa, xb = first.domain_a().tensor(), first.domain_b().tensor()
    assert xa.shape == (5000, 1, 32, 32) and xb.shape == (5000, 3, 32, 32)
    assert (tmp_path / "one" / "datasets" / "mnist2mnistm-32-test-seed0.pt").is_file()
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "two"))
    again = MNIST2MNISTM(root=str(data_root), download=False, train=False, seed=0)
    assert torch.equal(again.domain_b().tensor(), xb) and torch.equal(again.crops, first.crops)
    other = MNIST2MNISTM(root=str(data_root), download=False, train=False, seed=1)
    assert torch.equal(other.domain_a().tensor(), xa) and not torch.equal(other.domain_b().tensor(), xb)
    assert torch.equal(other.domain_b().labels(), first.domain_b().labels())
    split = mnistm.split(False)
    assert isinstance(split, MNIST2MNISTM) and split.train is False and split.seed == 0
    # read back from the cache: neither MNIST nor scikit-image is needed
    monkeypatch.setattr(td, "_digits", no_mnist)
    monkeypatch.setattr(td, "_load_photos", no_mnist)
    assert torch.equal(MNIST2MNISTM(root=str(data_root), train=False, seed=1).domain_b().tensor(),
                       other.domain_b().tensor())


def test_mnistm_blend_and_small_photographs():
    photo = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    big = td._at_least(photo, 16)
    assert big.shape == (3, 16, 32) and big.dtype == torch.uint8  # enlarged until a crop fits, shape kept
    assert td._at_least(photo, 8).shape == (3, 10, 20)
    as_tensor = torch.from_numpy(photo).permute(2, 0, 1)
    digits = torch.tensor([[[[0, 255], [100, 7]]], [[[9, 9], [9, 9]]]], dtype=torch.uint8)
    crops = torch.tensor([[0, 3, 5], [1, 0, 0]])
    out = td.mnistm_blend(digits, [as_tensor, torch.full((3, 4, 4), 200, dtype=torch.uint8)], crops)
    assert torch.equal(out[0], (as_tensor[:, 3:5, 5:7].int() - digits[0].int()).abs().to(torch.uint8))
    assert torch.equal(out[1], torch.full((3, 2, 2), 191, dtype=torch.uint8))


def test_mnist2mnistm_without_scikit_image_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(GantrainError) as err:
        td._load_photos()
    assert "pip install 'gantrain[translation]'" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# Image folders

MODES = ("L", "RGB", "RGBA")


def colour(k: int, side: str) -> tuple[int, int, int]:
    """The uniform colour of pair k's image on one side: A and B both encode k."""
    v = 20 + 30 * k if side == "A" else 230 - 30 * k
    return (v, 255 - v, (7 * v) % 256)


def image(mode: str, size: tuple[int, int], rgb: tuple[int, int, int]):
    from PIL import Image

    if mode == "L":
        return Image.new("L", size, rgb[0])
    if mode == "RGBA":
        return Image.new("RGBA", size, (*rgb, 60))  # the colour stays, the alpha goes
    return Image.new("RGB", size, rgb)


def expected(mode: str, rgb: tuple[int, int, int], channels: int) -> list[int]:
    values = [rgb[0]] * 3 if mode == "L" else list(rgb)
    if channels == 1:
        r, g, b = values
        return [round(0.299 * r + 0.587 * g + 0.114 * b)]
    return values


def side_by_side(folder, n: int = 6) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for k in range(n):
        mode, w, h = MODES[k % 3], 10 + 3 * k, 8 + 2 * k
        whole = Image.new("RGB", (2 * w, h))
        whole.paste(image("RGB", (w, h), colour(k, "A")), (0, 0))
        whole.paste(image("RGB", (w, h), colour(k, "B")), (w, 0))
        if mode == "L":
            whole = whole.getchannel(0)  # grey: the red value of both colours
        elif mode == "RGBA":
            whole.putalpha(60)
        whole.save(folder / f"{k:03d}.png")


def ab_folders(folder, n: int = 6) -> None:
    (folder / "A").mkdir(parents=True)
    (folder / "B").mkdir(parents=True)
    for k in range(n):
        image(MODES[k % 3], (12 + k, 9 + 2 * k), colour(k, "A")).save(folder / "A" / f"{k:03d}.png")
        # B in another format and mode, matched by the name without its extension
        mode_b = MODES[(k + 1) % 3]
        image(mode_b if mode_b != "RGBA" else "RGB", (20, 10 + k), colour(k, "B")).save(folder / "B" / f"{k:03d}.bmp")


def check_pairs(ds: PairedFolder, modes_a, modes_b, n: int = 6, size: int = 8) -> None:
    x = ds.tensor()
    ca, cb = ds.channels_a, ds.channels_b
    assert x.shape == (n, ca + cb, size, size) and x.dtype == torch.uint8 and ds.shape == (ca + cb, size, size)
    for k in range(n):
        a = x[k, :ca].flatten(1)
        b = x[k, ca:].flatten(1)
        assert (a == a[:, :1]).all() and (b == b[:, :1]).all()  # uniform colours stay uniform
        for got, want in ((a[:, 0], expected(modes_a(k), colour(k, "A"), ca)),
                          (b[:, 0], expected(modes_b(k), colour(k, "B"), cb))):
            # PIL's luminance rounds in fixed point: within 1 of 0.299 R + 0.587 G + 0.114 B
            assert (got.int() - torch.tensor(want)).abs().max() <= (1 if len(want) == 1 else 0), (k, got, want)
        assert torch.equal(ds.item(k), x[k])


def test_paired_folder_side_by_side(tmp_path, caplog):
    side_by_side(tmp_path / "train")
    from PIL import Image

    (tmp_path / "train" / ".ipynb_checkpoints").mkdir()  # hidden files and folders are no part of the data
    Image.new("RGB", (16, 8)).save(tmp_path / "train" / ".ipynb_checkpoints" / "0-checkpoint.png")
    (tmp_path / "train" / "._0.png").write_bytes(b"\x00\x05\x16\x07")  # a macOS AppleDouble file
    with caplog.at_level("WARNING", logger="gantrain"):
        ds = PairedFolder(str(tmp_path), image_size=8)
    assert not [r for r in caplog.records if "twice as wide" in r.getMessage()]
    assert ds.paired and ds.kind == "image" and ds.side_by_side and len(ds) == 6 and ds.streamed
    mode = lambda k: MODES[k % 3]  # noqa: E731
    check_pairs(ds, mode, mode)
    grey_a = PairedFolder(str(tmp_path), image_size=8, channels_a=1, channels_b=3)
    check_pairs(grey_a, mode, mode)
    swapped = PairedFolder(str(tmp_path), image_size=8, channels_a=3, channels_b=1, direction="BtoA")
    assert torch.equal(swapped.tensor(), torch.cat([grey_a.tensor()[:, 1:], grey_a.tensor()[:, :1]], 1))
    with pytest.raises(GantrainError, match="direction='AB' must be AtoB or BtoA"):
        PairedFolder(str(tmp_path), image_size=8, direction="AB")
    square = tmp_path / "square"  # aligned pairs saved as single square images: split anyway, with a warning
    (square / "train").mkdir(parents=True)
    for k in range(2):
        Image.new("RGB", (12, 12)).save(square / "train" / f"{k}.png")
    caplog.clear()
    with caplog.at_level("WARNING", logger="gantrain"):
        PairedFolder(str(square), image_size=8)
    assert [r.getMessage() for r in caplog.records] == [
        f"2 of 2 images in {square / 'train'} are not about twice as wide as high (0.png is 12x12), yet each is split "
        f"down the middle into A | B: for pairs kept in two files, put them in {square / 'train' / 'A'} and "
        f"{square / 'train' / 'B'} under the same names"]
    with pytest.raises(GantrainError, match="channels_b=2 must be 1"):
        PairedFolder(str(tmp_path), image_size=8, channels_b=2)


def test_paired_folder_a_and_b_folders(tmp_path):
    ab_folders(tmp_path / "train")
    ab_folders(tmp_path / "val", n=4)  # pix2pix's edges2shoes has val/ and no test/
    ds = PairedFolder(str(tmp_path), image_size=8, channels_a=3, channels_b=1)
    assert not ds.side_by_side and len(ds) == 6
    check_pairs(ds, lambda k: MODES[k % 3], lambda k: MODES[(k + 1) % 3] if (k + 1) % 3 != 2 else "RGB")
    test = ds.split(False)
    assert test.folder == tmp_path / "val" and len(test) == 4 and test.channels_b == 1
    swapped = PairedFolder(str(tmp_path), image_size=8, channels_a=1, channels_b=3, direction="BtoA")
    assert torch.equal(swapped.tensor(), torch.cat([ds.tensor()[:, 3:], ds.tensor()[:, :3]], 1))
    # root/A and root/B without a split folder: the training split, and no test split
    flat = tmp_path / "flat"
    ab_folders(flat)
    check_pairs(PairedFolder(str(flat), image_size=8, channels_a=3, channels_b=1),
                lambda k: MODES[k % 3], lambda k: MODES[(k + 1) % 3] if (k + 1) % 3 != 2 else "RGB")
    with pytest.raises(GantrainError, match="no test split .*root/test/ or root/val/"):
        PairedFolder(str(flat), image_size=8, train=False)


def test_paired_folder_skips_damaged_files(tmp_path, caplog):
    side_by_side(tmp_path / "train")
    whole = (tmp_path / "train" / "001.png").read_bytes()
    (tmp_path / "train" / "zz_truncated.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "train" / "zz_noise.jpg").write_bytes(os.urandom(300))
    from PIL import Image

    Image.new("RGB", (1, 6)).save(tmp_path / "train" / "zz_thin.png")  # no room for two images
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        ds = PairedFolder(str(tmp_path), image_size=8)
    assert len(ds) == 6 and ds.tensor().shape == (6, 6, 8, 8)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 3 unreadable" in warnings[0]
    assert all(name in warnings[0] for name in ("zz_truncated.png", "zz_noise.jpg", "zz_thin.png"))
    # in A/ and B/ folders a damaged file takes its partner with it
    ab_folders(tmp_path / "ab" / "train")
    (tmp_path / "ab" / "train" / "B" / "003.bmp").write_bytes(b"BM" + os.urandom(100))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        pairs = PairedFolder(str(tmp_path / "ab"), image_size=8)
    assert len(pairs) == 5 and all("003" not in str(f) for pair in pairs.pairs for f in pair)
    assert "skipped 1 unreadable image pairs" in caplog.text and "003.bmp" in caplog.text
    # all of them damaged: an error, not an empty set
    bad = tmp_path / "bad" / "train"
    bad.mkdir(parents=True)
    for k in range(3):
        (bad / f"{k}.png").write_bytes(os.urandom(50))
    with pytest.raises(GantrainError, match="none of the 3 images"):
        PairedFolder(str(tmp_path / "bad"), image_size=8)


def test_paired_folder_missing_partner_and_empty_folders(tmp_path):
    ab_folders(tmp_path / "train")
    (tmp_path / "train" / "B" / "002.bmp").unlink()
    with pytest.raises(GantrainError) as err:
        PairedFolder(str(tmp_path), image_size=8)
    message = str(err.value)
    assert "\n" not in message and "1 image(s)" in message and "002" in message and "B" in message
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(GantrainError, match="no images .*side by side.*A/ and .*B/") as err:
        PairedFolder(str(tmp_path / "empty"), image_size=8)
    assert "\n" not in str(err.value)
    with pytest.raises(GantrainError, match="no train split .*side by side"):
        PairedFolder(str(tmp_path / "empty" / "train"), image_size=8)
    with pytest.raises(GantrainError, match="is not a folder"):
        PairedFolder(str(tmp_path / "nowhere"), image_size=8)
    with pytest.raises(GantrainError, match="no test split"):
        PairedFolder(str(tmp_path / "empty"), image_size=8, train=False)


def test_folder_images_of_every_mode(tmp_path):
    """Grey, palette, 1-bit, 16-bit, grey+alpha, CMYK: all load as the declared channels, none crashes."""
    from PIL import Image

    for name in ("trainA", "trainB"):
        (tmp_path / name).mkdir()
    a = tmp_path / "trainA"
    Image.new("L", (9, 7), 90).save(a / "grey.png")
    Image.new("LA", (9, 7), (90, 0)).save(a / "grey_alpha.png")
    Image.new("1", (9, 7), 1).save(a / "one_bit.png")
    Image.new("RGB", (9, 7), (90, 90, 90)).convert("P", palette=Image.ADAPTIVE).save(a / "palette.png")
    Image.fromarray(np.full((7, 9), 90 * 257, dtype=np.uint16)).save(a / "sixteen.png")
    Image.new("CMYK", (9, 7), (0, 0, 0, 255 - 90)).save(a / "cmyk.jpg", quality=100)
    Image.new("RGB", (9, 7), (90, 90, 90)).save(tmp_path / "trainB" / "rgb.webp", lossless=True)
    for channels in (1, 3):
        ds = UnpairedFolder(str(tmp_path), image_size=6, channels_a=channels, channels_b=channels)
        x = ds.domain_a().tensor()
        assert x.shape == (6, channels, 6, 6)
        names = [f.name for f in ds.domain_a().files]
        values = {n: x[i].float().mean().item() for i, n in enumerate(names)}
        assert values["one_bit.png"] == 255
        for name in ("grey.png", "grey_alpha.png", "palette.png", "sixteen.png"):
            assert values[name] == 90, name
        assert abs(values["cmyk.jpg"] - 90) <= 3
        assert ds.domain_b().tensor().shape == (1, channels, 6, 6)


def test_unpaired_folder(tmp_path, caplog):
    from PIL import Image

    for name, n in (("trainA", 3), ("trainB", 5)):
        (tmp_path / name).mkdir()
        for k in range(n):
            mode = MODES[k % 3]
            image(mode, (10 + k, 12), (40 * k,) * 3).save(tmp_path / name / f"{k}.png")
    (tmp_path / "trainB" / "broken.png").write_bytes(os.urandom(64))
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        ds = UnpairedFolder(str(tmp_path), image_size=8, channels_a=3, channels_b=1)
    assert "skipped 1 unreadable images" in caplog.text and "broken.png" in caplog.text
    assert ds.paired is False and (ds.channels_a, ds.channels_b) == (3, 1)
    a, b = ds.domain_a(), ds.domain_b()
    assert isinstance(a, Dataset) and len(a) == 3 and len(b) == 5
    assert a.tensor().shape == (3, 3, 8, 8) and b.tensor().shape == (5, 1, 8, 8) and a.tensor().dtype == torch.uint8
    assert [round(v) for v in b.tensor().float().mean(dim=(1, 2, 3)).tolist()] == [0, 40, 80, 120, 160]
    assert a.streamed and a.item(1).shape == (3, 8, 8)
    with pytest.raises(GantrainError, match="has no labels"):
        a.labels()
    assert "A: 3 samples" in ds.describe() and "B: 5 samples" in ds.describe()
    with pytest.raises(GantrainError, match="no test split .*testA/ and testB/ missing") as err:
        ds.split(False)
    assert "\n" not in str(err.value)
    (tmp_path / "testA").mkdir()
    (tmp_path / "testB").mkdir()
    with pytest.raises(GantrainError, match="no images .* in .*testA"):
        ds.split(False)
    for name in ("testA", "testB"):
        Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / name / "x.png")
    test = ds.split(False)
    assert len(test.domain_a()) == len(test.domain_b()) == 1 and test.domain_b().shape == (1, 8, 8)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(GantrainError, match="trainA/ and trainB/ missing"):
        UnpairedFolder(str(tmp_path / "nothing"))


# ---------------------------------------------------------------------------------------------
# random_jitter


def windows(resized: torch.Tensor, size: int):
    """Every size x size window of one (C, L, L) image, and its mirror image, with the window's place."""
    load = resized.shape[-1]
    for top in range(load - size + 1):
        for left in range(load - size + 1):
            crop = resized[:, top : top + size, left : left + size]
            yield (top, left, False), crop
            yield (top, left, True), crop.flip(-1)


def test_random_jitter_crops_and_flips_each_sample_as_one():
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(12, 3, 16, 16, generator=gen) * 2 - 1
    x = torch.cat([base, base], 1)  # a "pair": A's channels and B's channels are the same image
    out = random_jitter(x, 20, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out[:, :3], out[:, 3:])  # the same window and flip for all channels of a sample
    resized = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    places = []
    for n in range(len(x)):
        found = [place for place, crop in windows(resized[n], 16) if torch.equal(crop, out[n])]
        assert found, n  # a window of the resized image, maybe mirrored
        places.append(found[0])
    assert len(set(places)) >= 6  # every sample draws its own window and flip
    assert {flipped for _, _, flipped in places} == {False, True}


def test_random_jitter_differs_between_samples_and_repeats_with_its_seed():
    x = torch.rand(1, 2, 16, 16).expand(32, 2, 16, 16).contiguous()  # one image, 32 times
    out = random_jitter(x, 22, torch.Generator().manual_seed(1))
    assert len({tuple(o.flatten().tolist()) for o in out}) >= 10
    assert torch.equal(out, random_jitter(x, 22, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, random_jitter(x, 22, torch.Generator().manual_seed(2)))


def test_random_jitter_at_load_size_only_flips():
    x = torch.rand(200, 1, 8, 8)
    assert torch.equal(random_jitter(x, 8, torch.Generator().manual_seed(0), flip=False), x)
    out = random_jitter(x, 8, torch.Generator().manual_seed(0))
    same = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    assert bool((same | mirrored).all()) and 60 < int(mirrored.sum()) < 140
    with pytest.raises(GantrainError, match="load_size=6 must be"):
        random_jitter(x, 6)


def test_random_jitter_on_a_paired_batch(edges):
    raw = edges[False].tensor()[:64]
    out = random_jitter(normalize(raw), 36, torch.Generator().manual_seed(0))
    assert out.shape == (64, 2, 32, 32) and out.dtype == torch.float32
    # the outline moves with its digit: edges stay next to ink after the jitter
    ink = F.max_pool2d((out[:, 1:] > -0.99).float(), 7, 1, 3) > 0
    assert not bool(((out[:, :1] > 0) & ~ink).any())


def test_an_input_folder_skips_hidden_files(tmp_path):
    from PIL import Image

    from gantrain.commands.translate import input_files

    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07")  # macOS's AppleDouble companion of a.png
    assert input_files(tmp_path) == [tmp_path / "a.png"]
