"""gantrain-sample's command line, exactly: every option's value in the Request, the combinations it refuses
(each message word for word), the device names, what `out` names and whether it may be written, and the writing of
pictures, arrays and folders. (test_sample_export.py runs the command on tiny trained runs.)"""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrain.commands import sample as gs
from gantrain.errors import GantrainError


def parsed(*args: str) -> gs.Request:
    path, request = gs.parse_args(["run", *args])
    assert path == Path("run")
    return request


def refused(*args: str) -> str:
    with pytest.raises(GantrainError) as err:
        gs.parse_args(["run", *args])
    return str(err.value)


def test_defaults_and_every_option_read_into_the_request(tmp_path):
    assert parsed() == gs.Request()
    r = parsed("n=5", "seed=7", "out=~/x.png", "labels=[1, 2 ,3,4,5]", "ema=no", "device=cuda:1", "overwrite=on")
    assert (r.n, r.n_given, r.seed, r.out, r.labels, r.ema, r.device, r.overwrite) == (
        5, True, 7, Path("~/x.png").expanduser(), [1, 2, 3, 4, 5], False, "cuda:1", True)
    assert parsed("seed=0").seed == 0 and parsed("n=1").n == 1 and parsed(" n = 12 ").n == 12
    assert parsed(f"seed={2**63 - 1}").seed == 2**63 - 1
    assert parsed("labels=4").labels == 4 and parsed("per_class=TRUE").per_class is True
    assert parsed("per_class=0").per_class is False
    assert (parsed("interpolate=2").interpolate, parsed("truncation=0.7").truncation) == (2, 0.7)
    assert parsed("truncation=0").truncation == 0.0 and parsed("truncation=0.0").truncation == 0.0
    assert parsed("truncation=0.00").truncation == 0.0 and parsed("truncation=.0").truncation == 0.0  # any zero
    assert parsed("truncation=10").truncation == 10.0  # the largest psi
    assert parsed("truncation=0:1:6").strip == (0.0, 1.0, 6) and parsed("truncation=0:1:6").truncation is None
    r = parsed("style_mix=yes", "rows=1", "cols=3", "layers=all")
    assert (r.style_mix, r.rows, r.cols, r.layers) == (True, 1, 3, "all")
    r = parsed("direction=a:b.npz:12", "strength=-1.5:2:1", "latent=~/p.npz")
    assert (r.direction, r.strength, r.latent) == ((Path("a:b.npz"), 12), (-1.5, 2.0, 1), Path("~/p.npz").expanduser())
    assert parsed("direction=d.npz:0").strength == (-3.0, 3.0, 7)
    assert parsed("text='a thick 3'").text == ["a thick 3"] and not parsed("text=x").text_rows
    prompts = tmp_path / "p.txt"
    prompts.write_text("  a one \n\n\ta two\n", encoding="utf-8")
    r = parsed(f"text_file={prompts}")
    assert (r.text, r.text_rows) == (["a one", "a two"], True)
    assert parsed("n=4", "n=4").n == 4  # the same value twice says nothing new
    (tmp_path / "punct.txt").write_text("a thick 3\n\n!!!\n", encoding="utf-8")
    with pytest.raises(GantrainError) as err:
        parsed(f"text_file={tmp_path / 'punct.txt'}")
    assert str(err.value) == (f"text_file={tmp_path / 'punct.txt'}, line 3: '!!!' has no word; give a prompt with at "
                              f"least one word on each line (empty lines are skipped)")
    assert parsed("labels=[1,2]", "n=2").labels == [1, 2]


@pytest.mark.parametrize("args, message", [
    (("n=0",), "n=0 must be a whole number >= 1; the number of samples to draw, e.g. n=64"),
    (("n=2.5",), "n=2.5 must be a whole number >= 1; the number of samples to draw, e.g. n=64"),
    (("n=0x10",), "n=0x10 must be a whole number >= 1; the number of samples to draw, e.g. n=64"),
    (("seed=-1",), "seed=-1 must be a whole number >= 0; e.g. seed=0"),
    ((f"seed={2**63}",), f"seed={2**63} is too large; use a whole number below 2^63"),
    (("out=",), "out= is empty; give out=NAME.png, out=NAME.npz or a folder name"),
    (("per_class=maybe",), "per_class=maybe must be true or false"),
    (("text=a thick 3", "text=a thin 7"), "text= is given twice ('a thick 3' and 'a thin 7'); give it once"),
    (("text_file=",), "text_file= is empty; give the path of a text file with one prompt per line"),
    (("n", "=", "4"), "'n = 4': write an option as key=value with no spaces around '=' (e.g. n=4)"),
    (("n=", "4"), "'n= 4': write an option as key=value with no spaces around '=' (e.g. n=4)"),
    (("n", "=4"), "'n =4': write an option as key=value with no spaces around '=' (e.g. n=4)"),
    (("out=", "x.png", "n=2"), "'out= x.png': write an option as key=value with no spaces around '=' (e.g. out=x.png)"),
    (("text=a", "text_file=f"), "text= and text_file= both give prompts; give one of them"),
    (("text=a", "labels=1"), "text= and text_file= choose what to draw by prompt; leave out labels, per_class, "
                             "interpolate, style_mix, direction and truncation strips"),
    (("text=a", "per_class=true"), "text= and text_file= choose what to draw by prompt; leave out labels, per_class, "
                                   "interpolate, style_mix, direction and truncation strips"),
    (("text=a", "style_mix=false"), "text= and text_file= choose what to draw by prompt; leave out labels, "
                                    "per_class, interpolate, style_mix, direction and truncation strips"),
    (("text=a", "direction=d.npz:0"), "text= and text_file= choose what to draw by prompt; leave out labels, "
                                      "per_class, interpolate, style_mix, direction and truncation strips"),
    (("interpolate=1",), "interpolate=1 must be a whole number >= 2; the steps from one latent point to the other, "
                         "e.g. interpolate=8"),
    (("rows=0", "style_mix=true"), "rows=0 must be a whole number >= 1; the style-mixing figure's rows, e.g. rows=5"),
    (("cols=x", "style_mix=true"), "cols=x must be a whole number >= 1; the style-mixing figure's cols, e.g. cols=5"),
    (("rows=3",), "rows=, cols= and layers= size the style-mixing figure; add style_mix=true"),
    (("layers=0-2", "style_mix=false"), "rows=, cols= and layers= size the style-mixing figure; add style_mix=true"),
    (("direction=d.npz",), "direction=d.npz must be FILE:K, a gantrain-directions file and the index of a direction "
                           "in it, e.g. direction=pca.npz:0"),
    (("direction=:3",), "direction=:3 must be FILE:K, a gantrain-directions file and the index of a direction in it, "
                        "e.g. direction=pca.npz:0"),
    (("direction=d.npz:-1",), "direction=d.npz:-1 must be FILE:K, a gantrain-directions file and the index of a "
                              "direction in it, e.g. direction=pca.npz:0"),
    (("direction=d.npz:0", "strength=1:2"), "strength=1:2 must be FROM:TO:COUNT, each strength from -1000 to 1000, e.g. strength=-3:3:7"),
    (("direction=d.npz:0", "strength=1:2:0"), "strength=1:2:0 must be FROM:TO:COUNT, each strength from -1000 to 1000, e.g. strength=-3:3:7"),
    (("direction=d.npz:0", "strength=1:inf:3"), "strength=1:inf:3 must be FROM:TO:COUNT, each strength from -1000 to 1000, e.g. strength=-3:3:7"),
    (("direction=d.npz:0", "strength=nan:1:3"), "strength=nan:1:3 must be FROM:TO:COUNT, each strength from -1000 to 1000, e.g. strength=-3:3:7"),
    (("direction=d.npz:0", "strength=1:2:3:4"), "strength=1:2:3:4 must be FROM:TO:COUNT, each strength from -1000 to 1000, e.g. strength=-3:3:7"),
    (("strength=1:2:3",), "strength= sets an edit's strengths; add direction=FILE:K"),
    (("labels=[[3]]",), "labels=[[3]] is not a flat list of class numbers; give labels=3 or labels=[3,3,5]"),
    (("labels=[3,[4]]",), "labels=[3,[4]] is not a flat list of class numbers; give labels=3 or labels=[3,3,5]"),
    (("direction=d.npz:0", "strength=-1e39:0:3"), "strength=-1e39:0:3 must be FROM:TO:COUNT, each strength from -1000 "
                                                 "to 1000, e.g. strength=-3:3:7"),
    (("truncation=10.5",), "truncation=10.5 must be a number > 0 and at most 10 (e.g. truncation=0.7; 0 only for a "
                           "style-based run, whose truncation is in W); smaller values trade variety for quality"),
    (("truncation=1e308",), "truncation=1e308 must be a number > 0 and at most 10 (e.g. truncation=0.7; 0 only for a "
                            "style-based run, whose truncation is in W); smaller values trade variety for quality"),
    (("truncation=0:11:3",), "truncation=0:11:3 is not a strip A:B:K (K >= 2 values of psi from A to B, both from 0 to "
                             "10), e.g. truncation=0:1:6"),
    (("style_mix=true", "n=50"), "style_mix=true draws rows x cols sources and cells; set its size with rows= and "
                                 "cols=, and leave n out"),
    (("latent=p.npz", "n=50"), "latent= draws the one image of a gantrain-project latent (a row along direction=); "
                               "leave n out, and give at most one label (labels=K)"),
    (("latent=p.npz", "labels=[3,5]"), "latent= draws the one image of a gantrain-project latent (a row along "
                                       "direction=); leave n out, and give at most one label (labels=K)"),
    (("direction=d.npz:0", "style_mix=true"), "direction= and latent= draw their own rows; leave out style_mix, "
                                              "truncation strips, interpolate and per_class"),
    (("latent=p.npz", "truncation=0:1:3"), "direction= and latent= draw their own rows; leave out style_mix, "
                                           "truncation strips, interpolate and per_class"),
    (("latent=p.npz", "interpolate=3"), "direction= and latent= draw their own rows; leave out style_mix, truncation "
                                        "strips, interpolate and per_class"),
    (("latent=p.npz", "per_class=true"), "direction= and latent= draw their own rows; leave out style_mix, truncation "
                                         "strips, interpolate and per_class"),
    (("style_mix=true", "interpolate=3"), "style_mix=true draws its own figure; leave out interpolate, per_class and "
                                          "truncation strips"),
    (("style_mix=true", "per_class=true"), "style_mix=true draws its own figure; leave out interpolate, per_class and "
                                           "truncation strips"),
    (("style_mix=true", "truncation=0:1:3"), "style_mix=true draws its own figure; leave out interpolate, per_class "
                                             "and truncation strips"),
    (("truncation=0:1:3", "interpolate=3"), "a truncation strip draws its own rows; leave out interpolate and "
                                            "per_class"),
    (("truncation=0:1:3", "per_class=true"), "a truncation strip draws its own rows; leave out interpolate and "
                                             "per_class"),
    (("per_class=true", "labels=1"), "per_class=true and labels=... both choose the classes; give one of them"),
    (("per_class=true", "interpolate=4"), "per_class=true and interpolate=K cannot be combined; use interpolate=K "
                                          "labels=[...] to choose each row's class"),
    (("labels=[1,2]", "n=3"), "labels has 2 values but n=3; give one label per sample, one label for all, or leave "
                              "n out"),
    (("labels=[1,2]", "n=3", "interpolate=4"), "labels has 2 values but n=3 rows; give one label per sample rows, one "
                                               "label for all, or leave n out"),
    (("ema=2",), "ema=2 must be true or false"),
    (("overwrite=",), "overwrite= must be true or false"),
    (("nn=3",), "unknown option nn; did you mean n=? valid options: " + "=, ".join(gs.OPTIONS)
                + "= (see gantrain-sample --help)"),
    (("-v",), "unknown option -v; valid options: " + "=, ".join(gs.OPTIONS) + "= (see gantrain-sample --help)"),
    (("other",), "give exactly one run folder or checkpoint file (got 2): gantrain-sample RUN_OR_CHECKPOINT "
                 "[key=value ...]; see gantrain-sample --help"),
])
def test_every_mistake_is_refused_word_for_word(args, message):
    assert refused(*args) == message


def test_prompt_files_that_cannot_be_used(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n\n", encoding="utf-8")
    assert refused(f"text_file={empty}") == f"text_file={empty} holds no prompt; write one prompt per line"
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00a")
    assert refused(f"text_file={binary}") == (f"text_file={binary} cannot be read (UnicodeDecodeError); give a text "
                                              "file with one prompt per line")
    missing = tmp_path / "none.txt"
    assert refused(f"text_file={missing}") == (f"text_file={missing} cannot be read (FileNotFoundError); give a text "
                                               "file with one prompt per line")
    with pytest.raises(GantrainError, match=r"\(got 0\)"):
        gs.parse_args(["n=3"])


def test_device_names():
    assert gs.resolve_device(" CPU ") == torch.device("cpu")
    assert gs.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for name in ("tpu", "meta", "cuda:x", ""):
        with pytest.raises(GantrainError) as err:
            gs.resolve_device(name)
        assert str(err.value) == f"device={name} is not one of auto, cpu, cuda, cuda:N"


def test_cuda_names_are_checked_against_the_gpus_present(monkeypatch):
    """What device= gives with 0, 1 or 2 GPUs (torch.cuda's two answers set here, so that every machine checks
    every case; nothing is put on a GPU)."""
    for count in (0, 1, 2):
        monkeypatch.setattr(torch.cuda, "is_available", lambda count=count: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda count=count: count)
        assert gs.resolve_device("auto") == torch.device("cuda" if count else "cpu")
        for name in ("cuda", "cuda:0", "cuda:1", "cuda:2", "cuda:3"):
            index = int(name[5:] or 0)
            if count == 0:
                with pytest.raises(GantrainError) as err:
                    gs.resolve_device(name)
                assert str(err.value) == f"device={name} but no CUDA device is available here; use device=cpu or device=auto"
            elif index < count:
                assert gs.resolve_device(name) == torch.device(name), (count, name)
            else:
                with pytest.raises(GantrainError) as err:
                    gs.resolve_device(name)
                assert str(err.value) == f"device={name} but only {count} CUDA device(s) exist", (count, name)


def test_what_out_names_and_whether_it_may_be_written(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    assert gs.output_kind(tmp_path / "d") == "folder" and gs.output_kind(tmp_path / "new") == "folder"
    assert gs.output_kind(tmp_path / "a.PNG") == "png" and gs.output_kind(tmp_path / "a.npz") == "npz"
    for suffix in (".jpg", ".PDF", ".pt"):
        with pytest.raises(GantrainError) as err:
            gs.output_kind(tmp_path / f"a{suffix}")
        assert str(err.value) == (f"out={tmp_path / f'a{suffix}'}: {suffix.lower()} files are not written; use "
                                  "out=NAME.png (a picture), out=NAME.npz (arrays) or a folder name (one PNG per sample)")
    with pytest.raises(GantrainError) as err:
        gs.output_kind(tmp_path / "f")
    assert str(err.value) == (f"out={tmp_path / 'f'} exists and is not a folder; use out=NAME.png, out=NAME.npz or a "
                              "folder name")
    gs.check_writable(tmp_path / "deep" / "er" / "x.png", "png")  # made later; its nearest existing folder is writable
    gs.check_writable(tmp_path / "new", "folder")
    assert not (tmp_path / "deep").exists()
    with pytest.raises(GantrainError) as err:
        gs.check_writable(tmp_path / "f" / "x.png", "png")
    assert str(err.value) == f"out={tmp_path / 'f' / 'x.png'}: {tmp_path / 'f'} is a file, not a folder; choose another out=..."
    with pytest.raises(GantrainError) as err:
        gs.check_writable(tmp_path / "f" / "sub", "folder")
    assert str(err.value).startswith(f"out={tmp_path / 'f' / 'sub'}: {tmp_path / 'f'} is a file")
    (tmp_path / "d" / "one.png").write_bytes(b"")
    (tmp_path / "d" / "two.png").write_bytes(b"")
    with pytest.raises(GantrainError) as err:
        gs.check_new(tmp_path / "d", "folder", overwrite=True)
    assert str(err.value) == (f"out={tmp_path / 'd'} already holds 2 file(s); a folder of samples must be new or empty "
                              "(two sample sets are never mixed): give another folder or empty this one")
    (tmp_path / "empty").mkdir()
    gs.check_new(tmp_path / "empty", "folder", overwrite=False)
    gs.check_new(tmp_path / "f", "png", overwrite=True)
    gs.check_new(tmp_path / "absent.png", "png", overwrite=False)
    with pytest.raises(GantrainError) as err:
        gs.check_new(tmp_path / "f", "png", overwrite=False)
    assert str(err.value) == f"out={tmp_path / 'f'} exists; choose another name, or overwrite=true to replace it"


def test_grids_are_about_square_with_full_rows_where_the_count_allows():
    from gantrain.data.base import grid_columns

    # (n, columns): a divisor of n from ceil(sqrt(n)) to 1.5 times that, else ceil(sqrt(n))
    cases = [(1, 1), (2, 2), (3, 3), (4, 2), (5, 3), (6, 3), (7, 3), (8, 4), (10, 5), (12, 4), (16, 4), (17, 5), (39, 7),
             (64, 8), (68, 9), (100, 10)]
    assert [(n, grid_columns(n)) for n, _ in cases] == cases
    for n in range(1, 300):  # never taller than wide; full rows, or as square as the count allows
        columns = grid_columns(n)
        rows = -(-n // columns)
        assert rows <= columns and (columns * rows == n or columns == math.ceil(math.sqrt(n))), n
        assert columns <= 1.5 * math.ceil(math.sqrt(n)), n  # at most about 2:1 (68 was 17 x 4)
    assert gs.plan_labels(gs.Request(n=8, n_given=True), None)[2] == 4  # 8 samples: 4 x 2, not 2 x 4


def test_written_pictures_arrays_and_folders(tmp_path):
    samples = torch.linspace(-1, 1, 2 * 1 * 4 * 4).view(2, 1, 4, 4)
    batch = gs.Batch(samples=samples, z=torch.arange(6.0).view(2, 3), labels=torch.tensor([1, 0]), nrow=2)
    assert gs.write(batch, tmp_path / "a.npz") == tmp_path / "a.npz"
    with np.load(tmp_path / "a.npz") as arrays:
        assert sorted(arrays) == ["labels", "samples", "z"]
        assert arrays["samples"].dtype == np.float32 and arrays["labels"].dtype == np.int64
        np.testing.assert_array_equal(arrays["samples"], samples.numpy())
        np.testing.assert_array_equal(arrays["z"], batch.z.numpy())
        assert arrays["labels"].tolist() == [1, 0]
    with pytest.raises(GantrainError, match="was written by another process meanwhile"):
        gs.write(batch, tmp_path / "a.npz")  # overwrite=False never replaces
    gs.write(batch, tmp_path / "a.npz", overwrite=True)
    gs.write(gs.Batch(samples=samples, z=batch.z, labels=None, nrow=2), tmp_path / "b.npz")
    with np.load(tmp_path / "b.npz") as arrays:
        assert sorted(arrays) == ["samples", "z"]
    prompted = gs.Batch(samples=samples, z=batch.z, labels=None, nrow=2, texts=["a thick 3", "ein dünner Strich"])
    gs.write(prompted, tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz", allow_pickle=False) as arrays:  # read back without unpickling
        assert sorted(arrays) == ["prompts", "samples", "z"]
        assert arrays["prompts"].tolist() == ["a thick 3", "ein dünner Strich"]
    gs.write(batch, tmp_path / "g.png")
    with Image.open(tmp_path / "g.png") as picture:
        assert picture.size == (2 + 2 * (4 + 2), 2 + 4 + 2)  # two columns, one row, padding 2
    gs.write(batch, tmp_path / "folder", kind="folder")
    names = sorted(p.name for p in (tmp_path / "folder").iterdir())
    assert names == ["000000.png", "000001.png"]
    with Image.open(tmp_path / "folder" / "000001.png") as image:
        assert np.array_equal(np.asarray(image), gs.to_uint8(samples)[1, 0].numpy())
    points = gs.Batch(samples=torch.zeros(5, 2), z=torch.zeros(5, 2), labels=None, nrow=1)
    with pytest.raises(GantrainError) as err:
        gs.write(points, tmp_path / "pts", kind="folder")
    assert str(err.value) == (f"out={tmp_path / 'pts'}: a folder of PNGs needs image samples, but this run's data are "
                              "2D points; use out=NAME.png (a scatter plot) or out=NAME.npz")
    gs.write(points, tmp_path / "pts.png")
    assert Image.open(io.BytesIO((tmp_path / "pts.png").read_bytes())).size[0] > 0


def test_more_refusals_word_for_word():
    assert refused(f"seed={2**64}") == f"seed={2**64} is too large; use a whole number below 2^63"
    for extra in ("truncation=0:1:3", "interpolate=3"):
        assert refused("text=a", extra) == ("text= and text_file= choose what to draw by prompt; leave out labels, "
                                            "per_class, interpolate, style_mix, direction and truncation strips")
    assert refused("labels=[1,2,3]", "n=2") == ("labels has 3 values but n=2; give one label per sample, one label "
                                                "for all, or leave n out")


def test_writability_of_an_existing_file_and_a_folder_that_cannot_be_written(tmp_path, monkeypatch):
    (tmp_path / "f.png").write_bytes(b"old")
    gs.check_writable(tmp_path / "f.png", "png")  # a picture to be replaced: its folder is what must be writable
    with pytest.raises(GantrainError) as err:
        gs.check_writable(tmp_path / "f.png", "folder")  # a folder of samples where a file is
    assert str(err.value) == f"out={tmp_path / 'f.png'}: {tmp_path / 'f.png'} is a file, not a folder; choose another out=..."

    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gs.tempfile, "mkstemp", no_room)
    with pytest.raises(GantrainError) as err:
        gs.check_writable(tmp_path / "x.png", "png")
    assert str(err.value) == f"out={tmp_path / 'x.png'}: cannot write in {tmp_path} (No space left on device); choose another out=..."


def test_writing_into_new_nested_folders_and_never_over_a_sample(tmp_path):
    batch = gs.Batch(samples=torch.zeros(2, 1, 4, 4), z=torch.zeros(2, 3), labels=None, nrow=2)
    gs.write(batch, tmp_path / "a" / "b" / "x.npz")
    gs.write(batch, tmp_path / "c" / "d" / "x.png")
    assert (tmp_path / "a" / "b" / "x.npz").is_file() and (tmp_path / "c" / "d" / "x.png").is_file()
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "000001.png").write_bytes(b"someone else's")
    with pytest.raises(GantrainError) as err:  # a folder's files are never replaced, nor mixed into
        gs.write(batch, tmp_path / "samples", kind="folder", overwrite=True)
    assert str(err.value) == (f"out={tmp_path / 'samples'} received files from elsewhere while the samples were "
                              f"drawn; it is kept as it is: give another folder")
    assert [p.name for p in (tmp_path / "samples").iterdir()] == ["000001.png"]
    assert (tmp_path / "samples" / "000001.png").read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "samples"]  # no partial folder left beside it
    (tmp_path / "file").write_text("x")
    with pytest.raises(GantrainError) as err:
        gs.write(batch, tmp_path / "file" / "x.npz")
    assert str(err.value) == f"out={tmp_path / 'file' / 'x.npz'}: could not write (File exists); choose another out=..."


def test_a_folder_of_samples_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    from gantrain.training import logger

    batch = gs.Batch(samples=torch.zeros(5, 1, 4, 4), z=torch.zeros(5, 3), labels=None, nrow=5)
    calls = []
    real = logger.png_bytes

    def interrupted_at_the_third(image):  # as a Ctrl-C during the writing
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(image)

    monkeypatch.setattr(logger, "png_bytes", interrupted_at_the_third)
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty"):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            gs.write(batch, out, kind="folder")
        assert not out.exists() or not any(out.iterdir())  # nothing of the partial set, under any name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
    monkeypatch.setattr(logger, "png_bytes", real)
    gs.write(batch, tmp_path / "empty", kind="folder")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [f"{i:06d}.png" for i in range(5)]


def test_a_folder_of_samples_keeps_the_folder_given_and_follows_the_umask(tmp_path):
    import os
    import stat

    batch = gs.Batch(samples=torch.zeros(3, 1, 4, 4), z=torch.zeros(3, 3), labels=None, nrow=3)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)  # a group's folder: it stays that folder, with its mode
    before = shared.stat()
    gs.write(batch, shared, kind="folder")
    after = shared.stat()
    assert (after.st_ino, stat.S_IMODE(after.st_mode)) == (before.st_ino, stat.S_IMODE(before.st_mode))
    assert sorted(p.name for p in shared.iterdir()) == ["000000.png", "000001.png", "000002.png"]
    elsewhere = tmp_path / "disk" / "samples"
    elsewhere.mkdir(parents=True)
    (tmp_path / "link").symlink_to(elsewhere)  # a link to an empty folder: the samples go where it points
    gs.write(batch, tmp_path / "link", kind="folder")
    assert (tmp_path / "link").is_symlink() and len(list(elsewhere.iterdir())) == 3
    assert sorted(p.name for p in (tmp_path / "disk").iterdir()) == ["samples"]  # no partial folder left
    umask = os.umask(0o022)
    try:
        gs.write(batch, tmp_path / "new", kind="folder")
        gs.write(batch, shared / "sub", kind="folder")  # in a setgid folder: the group bit passes on, as mkdir's
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "sub").stat().st_mode) == 0o2755


def test_an_interrupted_move_into_an_existing_folder_takes_back_what_it_moved(tmp_path, monkeypatch):
    import os

    batch = gs.Batch(samples=torch.zeros(4, 1, 4, 4), z=torch.zeros(4, 3), labels=None, nrow=4)
    (tmp_path / "out").mkdir()
    real, calls = os.link, []

    def link_then_interrupt(source, target):
        calls.append(target)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real(source, target)

    monkeypatch.setattr(gs.os, "link", link_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        gs.write(batch, tmp_path / "out", kind="folder")
    assert list((tmp_path / "out").iterdir()) == [] and len(calls) == 3


def test_values_with_equals_signs_the_first_unknown_option_and_long_label_lists():
    assert parsed("text=a=b c").text == ["a=b c"]
    assert refused("nn=3", "sed=1").startswith("unknown option nn; did you mean n=? ")
    labels = "[" + ",".join(["1"] * 300) + "]"
    assert parsed(f"labels={labels}", "n=300").labels == [1] * 300  # a count above 256 compared by value


def test_points_are_drawn_over_no_reference_and_folders_nest(tmp_path):
    samples = torch.randn(50, 2, generator=torch.Generator().manual_seed(0))
    samples[-1] = torch.tensor([8.0, -8.0])  # the last point far out: a reference of any subset would differ
    points = gs.Batch(samples=samples, z=torch.zeros(50, 2), labels=None, nrow=1)
    gs.write(points, tmp_path / "alone.png")
    gs.write(points, tmp_path / "empty.png", reference=points.samples[:0])
    assert (tmp_path / "alone.png").read_bytes() == (tmp_path / "empty.png").read_bytes()
    images = gs.Batch(samples=torch.zeros(2, 1, 4, 4), z=torch.zeros(2, 3), labels=None, nrow=2)
    gs.write(images, tmp_path / "x" / "y", kind="folder")
    assert sorted(p.name for p in (tmp_path / "x" / "y").iterdir()) == ["000000.png", "000001.png"]
