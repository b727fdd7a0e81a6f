"""Text conditioning: captions from both folder layouts and the offline builder, tokenisation, measured attributes,
the matching-aware term and penalty against hand computations, exact resume, and the commands on a tiny run."""
import json
import math
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gantrain
from conftest import run_command, run_gantrain
from gantrain.data.captions import DIGIT_SCHEME, CaptionedMNIST, ink_box_area, levels, slant, stroke_thickness
from gantrain.data.text import folder_captions
from gantrain.tokens import Vocabulary, caption_tokens, tokenize
from gantrain.errors import GantrainError
from gantrain.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gantrain.nets.text import BagEncoder, GRUEncoder, TextDiscriminator, TextGenerator
from gantrain.training.games.text import TextGAN
from gantrain.training.losses import Hinge, matching_gradient_penalty
from gantrain.training.stats import Stats


def tiny(data_root, *extra):
    return ["experiment=text_mnist", f"dataset.root={data_root}", "dataset.subset=64", "dataset.image_size=16",
            "generator.base_channels=8", "discriminator.base_channels=8", "condition.text_dim=16",
            "trainer.batch_size=8", "trainer.device=cpu", "trainer.log_every=2", "trainer.sample_every=4",
            "trainer.ckpt_every=2", "trainer.num_samples=20", *extra]


# ---- captions and tokens -----------------------------------------------------------------------------


def test_tokens_round_trip_with_non_ascii_words_unknown_words_and_padding():
    vocabulary = Vocabulary.of(["a thick slanted Seven", "Füße, ärmel and 7"])
    assert tokenize("A T-shirt, 7!") == ["a", "t", "shirt", "7"]
    assert tokenize("Füße und Ärmel") == ["füße", "und", "ärmel"]
    ids = vocabulary.encode(["a thick seven", "füße and ärmel", "a purple 7"], length=5)
    assert ids.shape == (3, 5) and ids.dtype == torch.int64
    assert vocabulary.decode(ids) == ["a thick seven", "füße and ärmel", "a <unk> 7"]
    assert ids[0, 3:].tolist() == [0, 0] and ids[2, 1].item() == 1  # padding, then the unknown word
    assert vocabulary.unknown(["a purple 7", "Purple rain"]) == ["purple", "rain"]
    assert vocabulary.encode(["a thick slanted seven 7"], length=2).tolist() == [vocabulary.encode(["a thick"], 2)[0].tolist()]


def _png(path: Path, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def test_folder_captions_from_metadata_and_text_files(tmp_path, caplog):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for name, value in (("a.png", 10), ("sub/b.png", 100), ("c.png", 200)):
        _png(root / name, value)
    (root / "metadata.jsonl").write_text(
        json.dumps({"file_name": "a.png", "text": ["a red square", "ein rotes Quadrat"]}) + "\n\n"
        + json.dumps({"file_name": "a.png", "text": "crimson"}) + "\n", encoding="utf-8")
    (root / "sub" / "b.txt").write_text("une forêt verte\n\nthe second\n", encoding="utf-8")
    files = sorted(p for p in root.rglob("*.png"))
    texts, missing = folder_captions(root, files)
    assert texts == [["a red square", "ein rotes Quadrat", "crimson"], [], ["une forêt verte", "the second"]]
    assert missing == 1
    dataset = gantrain.data.ImageFolder(str(root), image_size=8)
    with caplog.at_level("WARNING", logger="gantrain"):
        got = dataset.texts()
    assert [r.getMessage() for r in caplog.records if "no caption" in r.getMessage()] == \
        [f"1 of 3 images below {root} have no caption; they train with an empty one"]
    tokens = caption_tokens(got, Vocabulary.of([c for t in got for c in t]), length=4)
    assert tokens.shape == (3, 3, 4)
    assert torch.equal(tokens[2, 2], tokens[2, 0])  # two captions: the first again in the third place
    assert tokens[1].eq(0).all()  # no caption: all padding
    # a null or blank caption in a list is no caption: c.png (and a.png, no longer named) count as missing
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "c.png", "text": [None, "  "]}) + "\n")
    assert folder_captions(root, files) == ([[], [], ["une forêt verte", "the second"]], 2)
    # a line naming a file that is not there: its caption goes unused, and one warning says so
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "text": "red"}) + "\n"
                                         + json.dumps({"file_name": "gone.png", "text": "lost"}) + "\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="gantrain"):
        assert folder_captions(root, files)[0][0] == ["red"]
    assert [r.getMessage() for r in caplog.records] == [
        f"1 file name(s) in {root / 'metadata.jsonl'} match no image read below {root} (gone.png): their captions are "
        f"not used; file_name is the path relative to that folder"]
    (root / "metadata.jsonl").write_text("{not json\n")
    with pytest.raises(GantrainError, match="line 1 is not a JSON object"):
        folder_captions(root, files)
    (root / "metadata.jsonl").write_bytes('{"file_name": "a.png", "text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(GantrainError, match=r"metadata.jsonl is not UTF-8 text; save its captions as UTF-8"):
        folder_captions(root, files)
    # a byte-order mark at the start (as some editors save UTF-8) is not part of the first line, nor of a .txt
    (root / "metadata.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"file_name": "c.png", "text": "bom"}).encode())
    (root / "sub" / "b.txt").write_bytes(b"\xef\xbb\xbfsecond\n")
    assert folder_captions(root, files) == ([[], ["bom"], ["second"]], 1)  # a.png, c.png, sub/b.png
    for text in ({"en": "a red square"}, [["nested"]], True, ["ok", {"x": 1}]):  # not a caption: named, not guessed
        (root / "metadata.jsonl").write_text("\n" + json.dumps({"file_name": "a.png", "text": text}) + "\n")
        with pytest.raises(GantrainError) as err:
            folder_captions(root, files)
        assert str(err.value) == (f"{root / 'metadata.jsonl'} line 2: text must be a caption or a list of captions "
                                  f"(strings), not {json.dumps(text)}")


def test_a_folder_without_captions_is_refused_in_one_line(tmp_path):
    _png(tmp_path / "x.png", 1)
    with pytest.raises(GantrainError, match="no captions found .* metadata.jsonl"):
        gantrain.data.ImageFolder(str(tmp_path), image_size=8).texts()


def _bar(width: int, shear: float = 0.0) -> np.ndarray:
    """A 28x28 vertical bar `width` pixels wide, rows 4..23, its top shifted right by `shear` per row up."""
    image = np.zeros((28, 28), np.uint8)
    for row in range(4, 24):
        left = int(round(12 - width / 2 + shear * (14 - row)))
        image[row, left:left + width] = 255
    return image


def test_measured_attributes_match_hand_computed_values_on_constructed_digits():
    bars = torch.from_numpy(np.stack([_bar(2), _bar(5), _bar(9), _bar(3, shear=0.5)]))
    thick = stroke_thickness(bars)
    # a w x 20 bar (w >= 2): area 20w, boundary 2*20 + 2*(w-2) pixels -> 2 * 20w / (36 + 2w)
    for i, w in enumerate((2, 5, 9)):
        assert thick[i] == pytest.approx(40 * w / (36 + 2 * w))
    assert slant(bars)[:3].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    assert 0.4 < slant(bars)[3] < 0.6  # the top leans right by 0.5 pixel per row
    assert ink_box_area(bars)[:3].tolist() == [40.0, 100.0, 180.0]
    assert stroke_thickness(torch.zeros(1, 28, 28, dtype=torch.uint8)).tolist() == [0.0]
    # a garment's brightness (mean of the pixels above 30) and area
    from gantrain.data.captions import brightness, ink_area

    garment = np.zeros((2, 28, 28), np.uint8)
    garment[0, 2:12, 2:12], garment[0, 20:22, :] = 100, 200
    garment[1, :5, :] = 31
    assert brightness(torch.from_numpy(garment)).tolist() == pytest.approx([(100 * 100 + 56 * 200) / 156, 31.0])
    assert ink_area(torch.from_numpy(garment)).tolist() == [156.0, 140.0]
    # the thick bar is "thick", the thin one "thin", by the thirds of a class
    edges = np.array([[3.0, 5.0]])
    assert levels(thick[:3], np.zeros(3, np.int64), edges).tolist() == [-1, 0, 1]


def test_captions_of_the_offline_set_are_deterministic_and_keep_the_held_out_phrasings_out(data_root, tmp_path,
                                                                                       monkeypatch):
    first = CaptionedMNIST(root=str(data_root))
    texts = first.texts()
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path))  # built again from nothing
    again = CaptionedMNIST(root=str(data_root))
    assert again.texts() == texts and len(texts) == 60000 and all(len(t) == 3 for t in texts)
    assert torch.equal(again.attribute_levels(), first.attribute_levels())
    flat = [c for t in texts for c in t]
    words = "|".join(n[0] for n in DIGIT_SCHEME.classes)
    numerals = "|".join(n[1] for n in DIGIT_SCHEME.classes)
    assert not any(re.fullmatch(rf"an? (\w+ )*({numerals})", c) for c in flat)  # "a thick 7": held out
    assert not any(re.match(rf"({words})(,|$)", c) for c in flat)  # "seven, thin" and "seven": held out
    assert not any(re.fullmatch(rf"(\w+ )*({words})", c) and not re.match(r"(an?|the) ", c) for c in flat)
    order = {w: a for a, (_, _, low, high) in enumerate(DIGIT_SCHEME.attributes) for w in low + high}
    for c in flat[:20000]:  # adjectives always in attribute order
        ranks = [order[w] for w in tokenize(c) if w in order]
        assert ranks == sorted(ranks), c
    assert any(re.fullmatch(rf"an? (\w+ )*({words})", c) for c in flat)  # the training phrasings are there
    # captions name the class and only words of the image's measured levels
    labels, lv = first.labels(), first.attribute_levels()
    for i in random.Random(0).sample(range(60000), 300):
        for c in texts[i]:
            tokens = tokenize(c)
            assert DIGIT_SCHEME.classes[int(labels[i])][0] in tokens or DIGIT_SCHEME.classes[int(labels[i])][1] in tokens
            for a, (_, _, low, high) in enumerate(DIGIT_SCHEME.attributes):
                level = int(lv[i, a])
                assert not set(tokens) & set(low if level >= 0 else []) and not set(tokens) & set(high if level <= 0 else [])
    held = [DIGIT_SCHEME.held_out_phrase(k, 7, ["thick", "slanted"]) for k in range(3)]
    assert held == ["a thick slanted 7", "seven, thick and slanted", "a slanted thick seven"]
    # every held-out prompt the scores draw is new as a string, and kinds 0 and 1 as a bag of words too
    bags = {frozenset(tokenize(c)) for c in flat}
    rng = random.Random(0)
    for k in range(3):
        for adjectives in ([], ["thin"], ["bold", "italic"], ["heavy", "leaning", "wide"]):
            prompt = DIGIT_SCHEME.held_out_phrase(k, rng.randrange(10), adjectives)
            assert prompt not in set(flat), prompt
            assert k == 2 and len(adjectives) > 1 or frozenset(tokenize(prompt)) not in bags, prompt


# ---- networks, the matching-aware term and penalty --------------------------------------------------


def _networks(encoder=BagEncoder, vocab=12, dim=8):
    torch.manual_seed(0)
    g = TextGenerator(DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4, condition_dim=dim),
                      encoder(vocab, dim), [f"w{i}" for i in range(vocab)], 4, True, ["w2 w3"])
    d = TextDiscriminator(DCGANDiscriminator((1, 8, 8), base_channels=4, norm="none"), encoder(vocab, dim))
    return g, d


@pytest.mark.parametrize("encoder", [BagEncoder, GRUEncoder])
def test_encoders_ignore_padding_and_the_caption_changes_the_image(encoder):
    g, d = _networks(encoder)
    tokens = torch.tensor([[2, 3, 0, 0], [5, 0, 0, 0]])
    if encoder is BagEncoder:  # the mean of the words' embeddings
        torch.testing.assert_close(g.encoder(tokens)[0], g.encoder.embed.weight[[2, 3]].mean(0))
    g.eval()
    z = torch.randn(1, g.latent_dim).repeat(2, 1)
    with torch.no_grad():
        for p in g.net.modules():  # modulation starts at zero: give it weights so the caption shows
            if hasattr(p, "scale") and isinstance(p.scale, torch.nn.Linear):
                torch.nn.init.normal_(p.scale.weight)
        out = g(z, tokens)
    assert not torch.allclose(out[0], out[1])
    assert d(torch.randn(2, 1, 8, 8), tokens).shape == (2,)


def test_the_matching_aware_penalty_equals_its_hand_computation():
    w, v = torch.randn(1 * 4 * 4), torch.randn(3)

    def judge(x, e):  # linear: grad_x = w, grad_e = v for every sample
        return x.flatten(1) @ w + e @ v

    x, e = torch.randn(5, 1, 4, 4), torch.randn(5, 3)
    expected = (w.square().sum() + v.square().sum()).sqrt() ** 6
    torch.testing.assert_close(matching_gradient_penalty(judge, x, e, 6.0), expected)
    torch.testing.assert_close(matching_gradient_penalty(judge, x, e, 2.0), w.square().sum() + v.square().sum())


def _game(mismatch=True, kl_weight=0.5, batch=4, n_critic=1, **loss):
    g, d = _networks()
    game = TextGAN(g, d, Hinge(**loss), n_critic=n_critic, batch_size=batch, num_samples=4, seed=0,
                   stats=Stats(torch.device("cpu")), mismatch=mismatch, kl_weight=kl_weight,
                   grid_tokens=g.tokenize(g.prompts))
    game.optimizers = {k: torch.optim.SGD(n.parameters(), lr=0.0) for k, n in game.networks.items()}
    return game


def _batch(n=4):
    torch.manual_seed(1)
    images = torch.randint(0, 256, (1, n, 1, 8, 8), dtype=torch.uint8)
    captions = torch.randint(2, 12, (1, n, 2, 4))
    return images, captions


def _step_and_replay(game, n=4):
    """One step of `game` on _batch(n) from seed 7, its logged statistics, then the step's first draws again by
    hand from the same seed: (statistics, the real images in [-1, 1], the caption tokens picked per image)."""
    images, captions = _batch(n)
    torch.manual_seed(7)
    game.step((images, captions))
    got = game.stats.read()
    torch.manual_seed(7)
    tokens = captions[0][torch.arange(n), torch.randint(2, (n,))]
    return got, images[0].float() / 127.5 - 1.0, tokens


@pytest.mark.parametrize("mismatch", [True, False])
def test_the_discriminator_loss_with_mismatched_captions_equals_its_hand_computation(mismatch):
    game = _game(mismatch)
    # the same draws by hand: the caption picked per image, then z (conditioning augmentation's noise at its end)
    got, real, tokens = _step_and_replay(game)
    g, d = game.G, game.D
    z = torch.randn(4, g.latent_dim)
    assert g.latent_dim == 4 + 8  # the image network's noise, then conditioning augmentation's
    with torch.no_grad():
        c, kl = g.encode(tokens, z[:, 4:])
        fake = g.net(z[:, :4], c)
        torch.testing.assert_close(g(z, tokens), fake)
        e = d.encode(tokens)
        r, f = d.judge(real, e), d.judge(fake, e)
        fake_term = torch.relu(1 + f).mean()
        if mismatch:
            m = d.judge(real, e.roll(1, 0))
            fake_term = torch.relu(1 + torch.cat([f, m])).mean()
            assert got["d/mismatch"] == pytest.approx(m.mean().item(), rel=1e-5, abs=1e-6)
        else:
            assert "d/mismatch" not in got
        expected = torch.relu(1 - r).mean() + fake_term
        g_loss = -d.judge(fake, d.encode(tokens)).mean()
    assert got["loss/d"] == pytest.approx(expected.item(), rel=1e-5, abs=1e-6)
    assert got["loss/g"] == pytest.approx(g_loss.item(), rel=1e-5, abs=1e-6)
    assert got["loss/kl"] == pytest.approx(kl.item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("seeking, kl_weight, n", [(0.0, 0.5, 4), (2.0, 0.5, 4), (0.5, 1.0, 3), (2.0, 0.5, 6),
                                                   (2.0, 0.5, 1)])
def test_one_step_moves_both_networks_by_the_hand_computed_gradients(seeking, kl_weight, n):
    import copy

    game = _game(True, kl_weight=kl_weight, batch=n)
    game.mode_seeking = seeking
    game.optimizers = {k: torch.optim.SGD(n.parameters(), lr=1.0) for k, n in game.networks.items()}
    g0, d0 = copy.deepcopy(game.G), copy.deepcopy(game.D)
    got, real, tokens = _step_and_replay(game, n)
    z = torch.randn(n, g0.latent_dim)
    image_z, eps = g0.split(z)
    c, kl = g0.encode(tokens, eps)
    fake = g0.net(image_z, c)
    e = d0.encode(tokens)
    fake_term = torch.cat([d0.judge(fake.detach(), e), d0.judge(real, e.roll(1, 0))])
    d_loss = torch.relu(1 - d0.judge(real, e)).mean() + torch.relu(1 + fake_term).mean()
    d_grads = torch.autograd.grad(d_loss, list(d0.parameters()), allow_unused=True)
    with torch.no_grad():
        for p, grad in zip(d0.parameters(), d_grads):
            if grad is not None:
                p -= grad
    for name, p in d0.named_parameters():  # D moved by exactly its loss's gradient
        torch.testing.assert_close(p, dict(game.D.named_parameters())[name], msg=name)
    g_loss = -d0(fake, tokens).mean() + kl_weight * kl  # G through the updated D, plus kl_weight x KL
    if seeking:  # MSGAN: the first half's images (at least one) again from fresh image noise, the same condition
        half = max(1, n // 2)
        z2 = torch.randn(half, 4)
        ratio = (fake[:half] - g0.net(z2, c[:half])).abs().mean() / (image_z[:half] - z2).abs().mean()
        g_loss = g_loss + seeking / (ratio + 1e-5)
        assert got["g/diversity"] == pytest.approx(ratio.item(), rel=1e-5)
    else:
        assert "g/diversity" not in got
    g_grads = torch.autograd.grad(g_loss, list(g0.parameters()), allow_unused=True)
    moved = 0
    with torch.no_grad():
        for p, grad in zip(g0.parameters(), g_grads):
            if grad is not None:
                p -= grad
                moved += 1
    assert moved > 0
    for name, p in g0.named_parameters():
        torch.testing.assert_close(p, dict(game.G.named_parameters())[name], msg=name)


def test_the_grid_shows_one_row_per_prompt_with_the_same_noise_down_each_column():
    g, d = _networks()
    prompts = g.tokenize(["w2 w3", "w4", "w5 w6 w7"])
    game = TextGAN(g, d, Hinge(), n_critic=1, batch_size=4, num_samples=7, seed=3, stats=Stats(torch.device("cpu")),
                   grid_tokens=prompts)
    assert game.grid_columns == 2 and game.fixed_z.shape == (6, g.latent_dim)
    assert torch.equal(game.fixed_z[:2], game.fixed_z[2:4]) and torch.equal(game.fixed_z[:2], game.fixed_z[4:])
    assert not torch.equal(game.fixed_z[0], game.fixed_z[1])
    assert torch.equal(game.fixed_labels, prompts.repeat_interleave(2, 0))
    assert game.sample_grid().shape == (6, 1, 8, 8)


def test_the_game_adds_the_matching_aware_penalty_on_real_images_with_their_captions():
    game = _game(True, matching_penalty=2.0, matching_power=6.0)
    got, real, tokens = _step_and_replay(game)
    expected = 2.0 * matching_gradient_penalty(game.D.judge, real, game.D.encode(tokens), 6.0)
    assert got["loss/penalty"] == pytest.approx(expected.item(), rel=1e-4)
    assert expected.item() > 0


def test_sampling_by_text_refuses_empty_prompts_and_names_unknown_words(caplog):
    g, _ = _networks()
    g.eval()
    assert g.sample(3, text="w2 w3").shape == (3, 1, 8, 8)
    assert g.sample(2, text=["w2", "w4 w5"]).shape == (2, 1, 8, 8)
    with caplog.at_level("WARNING", logger="gantrain"):
        g.sample(1, text="w2 blue sky w2")
    assert [r.getMessage() for r in caplog.records] == ["words this run never saw (read as unknown): blue, sky"]
    with pytest.raises(GantrainError, match="is empty"):
        g.sample(1, text=" ?! ")
    with pytest.raises(GantrainError, match="2 prompts for 3 samples"):
        g.sample(3, text=["w2", "w3"])
    with pytest.raises(GantrainError, match="conditioned on text"):
        g.sample(1, labels=[1])
    a = g.sample(2, text="w3", generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, g.sample(2, text="w3", generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(a[0], a[1])  # the noise of z, conditioning augmentation's among it, varies the samples


# ---- runs through the real commands ------------------------------------------------------------------


def _state(run):
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)


def test_a_resumed_text_run_equals_the_straight_run_bit_for_bit(tmp_path, data_root):
    common = tiny(data_root, "trainer.steps=6", "trainer.keep_last=5", "loss.matching_penalty=2.0")
    straight, split = tmp_path / "straight", tmp_path / "split"
    gantrain.train(gantrain.compose(common), straight)
    gantrain.train(gantrain.compose([*common, f"resume={straight / 'checkpoints' / 'step_00000004.pt'}"]), split)
    a, b = _state(straight), _state(split)
    assert a["step"] == b["step"] == 6 and a["game"] == "text"
    for group in ("networks", "ema"):
        for name, tensors in a[group].items():
            for key, value in tensors.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(value, b[group][name][key]), (group, name, key)
    assert a["game_meta"]["text"]["encoder"] == "bag" and "seven" in a["game_meta"]["text"]["words"]
    rows = [json.loads(line) for line in (straight / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(row["loss/kl"]) and row["loss/penalty"] > 0 for row in rows)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, data_root):
    run = tmp_path_factory.mktemp("text") / "run"
    proc = run_gantrain(*tiny(data_root, "trainer.steps=4", "condition.text_encoder=gru"), f"hydra.run.dir={run}",
                        cwd=run.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_gantrain_eval_scores_a_text_run_with_the_prompts_asked_for(tmp_path, data_root, monkeypatch, capsys):
    """gantrain-eval (eval_main, in process) adds the text scores of held-out prompts; text_prompts sets their
    number per class and is recorded with the settings. At 28 px: MNIST's 28 px classifier, which other tests
    train too (one per session, shared)."""
    import gantrain.eval.text as text_eval
    from gantrain.commands.evaluate import eval_main

    run = tmp_path / "run"
    args = [a for a in tiny(data_root, "trainer.steps=2") if not a.startswith("dataset.image_size")]
    proc = run_gantrain(*args, "dataset.image_size=28", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    asked = []
    real = text_eval.text_scores
    monkeypatch.setattr(text_eval, "text_scores", lambda *a, **k: asked.append(a[3]) or real(*a, **k))
    eval_main([str(run), "num_samples=100", "device=cpu", "text_prompts=2", f"dataset.root={data_root}"])
    assert asked == [2]
    report = json.loads((run / "eval.json").read_text())
    assert report["settings"] == {"num_samples": 100, "seed": 0, "text_prompts": 2}
    per_class = report["per_class"]["text_class_agreement_per_class"]
    assert len(per_class) == 10 and all(abs(v * 20 - round(v * 20)) < 1e-9 for v in per_class)  # 2 x 10 samples
    assert report["metrics"]["text_class_agreement"] == pytest.approx(sum(per_class) / 10)
    assert {"text_thickness_spearman", "text_slant_spearman", "text_size_spearman"} <= set(report["metrics"])
    out = capsys.readouterr().out
    assert "text_class_agreement" in out
    for attribute in ("thickness", "slant", "size"):  # a correlation without a value says why, one with a value not
        value = report["metrics"][f"text_{attribute}_spearman"]
        said = f"text_{attribute}_spearman nan: the measured {attribute} of the samples did not change with the " \
               f"{attribute} words within any class"
        assert (said in out) == (value == "nan" or (isinstance(value, float) and math.isnan(value))), (attribute, value)


def test_the_text_floor_classifies_the_test_digits_at_the_runs_size(data_root):
    """At 16 px the classifier reads 16 px test digits (0.12.0 gave it the 28 px ones and failed); the attributes
    are measured at 28 px."""
    from gantrain.eval.text import text_floor

    dataset = CaptionedMNIST(root=str(data_root), image_size=16, download=False)
    test = dataset.split(False)
    seen = []

    class ReadsTheTrueLabel(torch.nn.Module):
        """Returns the true labels of the test digits it is given (matched by their pixels)."""

        index = {bytes(image.numpy()): i for i, image in enumerate(test.tensor())}

        def forward(self, x):
            seen.append(tuple(x.shape[1:]))
            rows = [self.index[bytes(((image + 1) * 127.5).round().to(torch.uint8).numpy())] for image in x]
            return torch.nn.functional.one_hot(test.labels()[rows], 10).float()

    floor = text_floor(dataset, ReadsTheTrueLabel())
    assert set(seen) == {(1, 16, 16)} and floor["text_class_agreement"] == 1.0


def _sample(*args, cwd):
    return run_command("gantrain-sample", *args, cwd=cwd, timeout=300)


def test_gantrain_sample_draws_by_text_through_the_real_command(text_run, tmp_path, capsys, caplog):
    from PIL import Image

    proc = _sample(str(text_run), "text=a thick 3", "n=16", f"out={tmp_path / 'threes.png'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "threes.png").size == (4 * 18 + 2, 4 * 18 + 2)  # 16 px images, a 4 x 4 grid
    (tmp_path / "prompts.txt").write_text("a thin seven\n\nthe digit 2, bold\n")
    proc = _sample(str(text_run), f"text_file={tmp_path / 'prompts.txt'}", "n=5", f"out={tmp_path / 'rows.npz'}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "rows.npz")["samples"].shape == (10, 1, 16, 16)
    proc = _sample(str(text_run), "text= ; ", f"out={tmp_path / 'y.png'}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "gantrain-sample: error: text=';' is empty: give a prompt with at least one word, e.g. text='a zero'"]
    from gantrain.commands.sample import main as sample_main  # the other refusals in-process: the same main()

    for args, words in ((["labels=3"], "conditioned on text"), (["text=a 3", "per_class=true"], "choose what to draw by prompt")):
        with pytest.raises(SystemExit) as stop:
            sample_main([str(text_run), *args, f"out={tmp_path / 'y.png'}"])
        assert stop.value.code == 2 and words in capsys.readouterr().err
        assert not (tmp_path / "y.png").exists()
    with caplog.at_level("WARNING", logger="gantrain"):
        sample_main([str(text_run), "text=a mauve 3", f"out={tmp_path / 'x.png'}"])
    assert "words this run never saw (read as unknown): mauve" in caplog.text and (tmp_path / "x.png").is_file()
    assert gantrain.load_generator(text_run).sample(2, text="a 4").shape == (2, 1, 16, 16)


def test_text_settings_and_data_without_captions_are_refused_in_one_line(tmp_path, data_root):
    from gantrain.training.build import build

    for extra, words in ((["condition.text_encoder=bert"], "condition.text_encoder='bert' is not one of"),
                         (["dataset=mnist"], "needs captions, and MNIST[64 of 60000] has none"),
                         (["condition.text_encoder=precomputed"], "needs condition.text_embeddings"),
                         (["dataset=mnist", "conditional=false", "condition.text_encoder=null", "loss.matching_penalty=2"],
                          "loss.matching_penalty is the matching-aware penalty of text-conditioned runs"),
                         (["conditional=false"], "condition.text_encoder=bag conditions on captions: add conditional=true"),
                         (["game=cgan"], "trains the text game, not game=cgan"),
                         (["condition.text_embeddings=x.npz"], "is read by condition.text_encoder=precomputed only"),
                         (["condition.mode_seeking=-1"], "condition.mode_seeking=-1.0 must be 0 (off) or more"),
                         (["dataset=mnist", "conditional=false", "condition.text_encoder=null", "condition.mode_seeking=1"],
                          "condition.mode_seeking=1 is a term of text-conditioned runs")):
        with pytest.raises(GantrainError, match=re.escape(words)):
            build(gantrain.compose(tiny(data_root, "trainer.steps=1", *extra)), tmp_path / "r")
    # and through the real command: one line, a non-zero exit (a network without a text path)
    args = [a for a in tiny(data_root, "trainer.steps=1", "generator=mlp") if not a.startswith("generator.")]
    proc = run_gantrain(*args, f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "gantrain: error: generator gantrain.nets.mlp.MLPGenerator cannot take a text condition; use generator=dcgan or stylegan2"]


def test_a_text_generator_exports_with_its_encoder_and_onnx_matches_torch(text_run, tmp_path):
    import onnxruntime

    from gantrain.commands.export import export, load_exported

    g = gantrain.load_generator(text_run)
    z = torch.randn(3, g.latent_dim, generator=torch.Generator().manual_seed(1))
    tokens = g.tokenize(["a thick 3", "seven, thin", "the digit 0"])
    with torch.no_grad():
        expected = g(z, tokens)
    files = export(text_run, "safetensors", tmp_path / "g.safetensors")
    assert [f.name for f in files] == ["g.safetensors", "g.json"]
    loaded = load_exported(tmp_path / "g.safetensors")
    assert loaded.words == g.words and loaded.length == g.length
    with torch.no_grad():
        assert torch.equal(loaded(z, tokens), expected)
    assert export(text_run, "torchscript", tmp_path / "t.pt") == [tmp_path / "t.pt", tmp_path / "t.pt.vocab.json"]
    words = json.loads((tmp_path / "t.pt.vocab.json").read_text())["words"]
    assert words == g.words and tokens[0].tolist()[:3] == [words.index(w) for w in ("a", "thick", "3")]
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(tmp_path / "t.pt"))(z, tokens), expected)
    assert export(text_run, "onnx", tmp_path / "o.onnx") == [tmp_path / "o.onnx", tmp_path / "o.onnx.vocab.json"]
    # the three formats side by side under one name: each keeps its own file (the safetensors recipe g.json stays)
    recipe = (tmp_path / "g.json").read_bytes()
    assert export(text_run, "torchscript", tmp_path / "g.pt") == [tmp_path / "g.pt", tmp_path / "g.pt.vocab.json"]
    assert export(text_run, "onnx", tmp_path / "g.onnx") == [tmp_path / "g.onnx", tmp_path / "g.onnx.vocab.json"]
    assert (tmp_path / "g.json").read_bytes() == recipe
    with torch.no_grad():
        assert torch.equal(load_exported(tmp_path / "g.safetensors")(z, tokens), expected)
    (tmp_path / "t.onnx.vocab.json").write_text("{}")
    with pytest.raises(GantrainError) as refused:  # a file where the vocabulary goes is never replaced silently
        export(text_run, "onnx", tmp_path / "t.onnx")
    assert str(refused.value) == (f"{tmp_path / 't.onnx.vocab.json'} exists (a text run's vocabulary goes there); "
                                  "choose another out=..., or overwrite=true to replace it")
    assert not (tmp_path / "t.onnx").exists()
    session = onnxruntime.InferenceSession(str(tmp_path / "o.onnx"))
    assert [i.name for i in session.get_inputs()] == ["z", "tokens"]
    (out,) = session.run(None, {"z": z.numpy(), "tokens": tokens.numpy()})
    np.testing.assert_allclose(out, expected.numpy(), atol=1e-4)


def test_precomputed_embeddings_train_from_a_captioned_folder_and_sample_only_their_captions(tmp_path):
    from PIL import Image

    root = tmp_path / "shapes"
    root.mkdir()
    lines = []
    for i in range(8):
        Image.fromarray(np.full((16, 16), 30 * i, np.uint8)).save(root / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": ["A dark square." if i < 4 else "a light square"]}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    table = tmp_path / "emb.npz"
    np.savez(table, texts=np.array(["a dark square", "a light square", "a grey square"]),
             embeddings=np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32))
    cfg = gantrain.compose(["dataset=image_folder", f"dataset.root={root}", "dataset.image_size=16", "dataset.channels=1",
                            "conditional=true", "condition.text_encoder=precomputed", f"condition.text_embeddings={table}",
                            "generator.base_channels=4", "discriminator.base_channels=4", "trainer.batch_size=4",
                            "trainer.steps=2", "trainer.device=cpu", "trainer.num_workers=0", "trainer.eval_every=0"])
    run = gantrain.train(cfg, tmp_path / "run")
    g = gantrain.load_generator(run)
    assert g.prompts == ["A dark square.", "a light square"]
    assert g.sample(2, text="a grey square").shape == (2, 1, 16, 16)  # a row of the file, unseen in training
    with pytest.raises(GantrainError, match="has no precomputed embedding"):
        g.sample(1, text="a green square")
    np.savez(table, texts=np.array(["a dark square"]), embeddings=np.zeros((1, 6), np.float32))
    with pytest.raises(GantrainError, match="'a light square' has no row in condition.text_embeddings"):
        gantrain.train(cfg, tmp_path / "run2")
    table.write_text("not an archive\n")  # numpy would read it as pickled data, and say so
    with pytest.raises(GantrainError) as info:
        gantrain.train(cfg, tmp_path / "run3")
    assert str(info.value) == (f"condition.text_embeddings={table} is not an .npz file (numpy.savez writes one, with "
                               f"arrays texts (N,) and embeddings (N, D))")


def test_clip_embeds_the_captions_once_and_the_prompts_a_run_never_saw(tmp_path, monkeypatch, caplog):
    """open_clip's real text tower (a small model, untrained weights: no download here) fills the table."""
    from PIL import Image

    from gantrain.nets.text import clip_embed

    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "shapes"
    root.mkdir()
    lines = []
    for i in range(8):
        Image.fromarray(np.full((16, 16), 30 * i, np.uint8)).save(root / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": "A dark square." if i < 4 else "a light square"}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    clip = ["condition.text_encoder=clip", "condition.clip_model=ViT-S-32-alt", "condition.clip_weights=none"]
    args = ["dataset=image_folder", f"dataset.root={root}", "dataset.image_size=16", "dataset.channels=1",
            "conditional=true", "generator.base_channels=4", "discriminator.base_channels=4", "trainer.batch_size=4",
            "trainer.steps=2", "trainer.device=cpu", "trainer.num_workers=0", "trainer.eval_every=0"]
    cfg = gantrain.compose([*args, *clip])
    with caplog.at_level("INFO", logger="gantrain"):
        run = gantrain.train(cfg, tmp_path / "run")
    assert any("embedding 2 distinct captions with CLIP ViT-S-32-alt" in r.getMessage() for r in caplog.records)
    assert any("untrained weights" in r.getMessage() for r in caplog.records)
    assert len(list((tmp_path / "cache" / "clip").glob("ViT-S-32-alt-none-*.pt"))) == 1
    g = gantrain.load_generator(run)
    expected = clip_embed(["A dark square.", "a light square"], "ViT-S-32-alt", "none")
    torch.testing.assert_close(g.encoder.table[1:], expected)  # the saved table: CLIP's rows, row 0 padding
    assert g.clip == {"model": "ViT-S-32-alt", "weights": "none"}
    shapes = [b.shape for b in g.buffers()]
    tokens = g.tokenize(["a light square", "a green circle"])  # the second never seen: CLIP embeds it now
    assert tokens.tolist() == [[2], [3]] and g.tokenize(["a green circle"]).tolist() == [[3]]  # embedded once
    torch.testing.assert_close(g.encoder.extra, clip_embed(["a green circle"], "ViT-S-32-alt", "none"))
    # ... in a row of its own, after the saved table's: the weights and buffers (what is saved, and what an EMA
    # copy is averaged with) keep the shapes the run was built with
    assert [b.shape for b in g.buffers()] == shapes and g.state_dict()["encoder.table"].shape[0] == 3
    assert g.sample(2, text="a green circle").shape == (2, 1, 16, 16)
    # a run of 0.13 saved its table with such rows appended (and their words): it loads as saved
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    for weights in (state["networks"]["generator"], *state.get("ema", {}).values()):
        weights["encoder.table"] = torch.cat([weights["encoder.table"], g.encoder.extra])
        weights["_extra_state"]["words"] = [*weights["_extra_state"]["words"], "a green circle"]
    torch.save(state, run / "checkpoints" / "last.pt")
    old = gantrain.load_generator(run)
    assert len(old.encoder.table) == 4 and old.tokenize(["a green circle"]).tolist() == [[3]] and old.encoder.extra is None
    # weights that cannot be had, and open_clip missing: one line each
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(GantrainError, match=r"CLIP ViT-S-32-alt with weights 'laion400m_e32' could not be loaded .* run once with network"):
        gantrain.train(gantrain.compose([*args, *clip[:2], "condition.clip_weights=laion400m_e32"]), tmp_path / "run2")
    with pytest.raises(GantrainError, match=r"clip_model='ViT-Q-99' is not a model open_clip knows"):
        clip_embed(["x"], "ViT-Q-99", "none")
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if not installed
    with pytest.raises(GantrainError, match=r"needs open_clip: pip install 'gantrain\[clip\]'"):
        gantrain.train(cfg, tmp_path / "run3")


@pytest.mark.slow
def test_a_clip_run_whose_grid_prompts_no_caption_holds_trains_with_ema_and_loads(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    # 16 images' captions hold neither 'a zero' nor 'a three' nor 'a six', the offline set's grid prompts
    cfg = gantrain.compose(["experiment=text_mnist", f"dataset.root={data_root}", "dataset.subset=16",
                            "dataset.image_size=16", "generator.base_channels=4", "discriminator.base_channels=4",
                            "trainer.batch_size=4", "trainer.steps=2", "trainer.device=cpu", "trainer.eval_every=0",
                            "trainer.sample_every=100", "condition.text_encoder=clip", "condition.clip_model=ViT-S-32-alt",
                            "condition.clip_weights=none"])
    assert cfg.trainer.ema_decay > 0
    run = gantrain.train(cfg, tmp_path / "run")  # the EMA copy was averaged with G at every step
    g = gantrain.load_generator(run)
    assert {"a zero", "a three", "a six"} <= set(g.words) and len(g.encoder.table) == len(g.words) + 1
    assert g.sample(3, text=["a zero", "a six", "a purple 3"]).shape == (3, 1, 16, 16)


def test_clip_weights_come_from_the_cache_at_once_when_the_hub_cannot_be_reached(tmp_path, monkeypatch):
    """Offline, the hub's client retries for most of a minute before it looks in its cache: when the hub's host
    cannot be reached gantrain asks the cache only (a cached file loads; a missing one is one line), and no
    connection is tried beyond the one probe."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants, hf_hub_download

    from gantrain.nets.text import _hub_mode, clip_text_tower

    tried = []

    def unreachable(address, *args, **kwargs):
        tried.append(address)
        raise OSError(f"no route to {address[0]}")

    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # this machine's own cache left out
    monkeypatch.setattr(socket, "create_connection", unreachable)
    snapshot = tmp_path / "hub" / "models--someone--tiny" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "weights.bin").write_bytes(b"cached")
    (tmp_path / "hub" / "models--someone--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--someone--tiny" / "refs" / "main").write_text("a" * 40)
    with _hub_mode("openai") as host:
        assert host == urlparse(constants.ENDPOINT).hostname and constants.HF_HUB_OFFLINE is True
        path = hf_hub_download("someone/tiny", "weights.bin")
        assert open(path, "rb").read() == b"cached"
    assert len(tried) == 1 and constants.HF_HUB_OFFLINE is False  # the probe only; the hub's setting given back
    with _hub_mode(None) as host:  # untrained weights: nothing to download, nothing probed
        assert host is False and len(tried) == 1
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # behind a proxy the host is not probed
    with _hub_mode("openai") as host:
        assert host is False and constants.HF_HUB_OFFLINE is False and len(tried) == 1
    monkeypatch.delenv("HTTPS_PROXY")
    with pytest.raises(GantrainError, match=r"^CLIP RN50 with weights 'openai' could not be loaded \(they are not in "
                                            r"the cache and .+ cannot be reached\); the weights download on first use"):
        clip_text_tower("RN50", "openai")
    assert len(tried) == 2 and constants.HF_HUB_OFFLINE is False


def test_a_style_based_generator_takes_the_caption_at_its_mapping_network(tmp_path, data_root):
    from gantrain.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator
    from gantrain.nets.text import BagEncoder

    torch.manual_seed(0)
    net = StyleGAN2Generator((1, 8, 8), latent_dim=4, w_dim=6, mapping_layers=1, channel_base=32, channel_max=4,
                             condition_dim=5)
    z, c = torch.randn(2, 4), torch.randn(2, 5)
    w = net.mapping(z, c)
    x = torch.cat([z / z.square().mean(1, keepdim=True).add(1e-8).sqrt(),
                   (lambda e: e / e.square().mean(1, keepdim=True).add(1e-8).sqrt())(net.mapping.embed_condition(c))], 1)
    torch.testing.assert_close(w, net.mapping.layers(x))  # the condition's embedding joins normalised z
    assert not torch.allclose(net.mapping(z, c), net.mapping(z, c.flip(0)))
    with pytest.raises(GantrainError, match="call it as G\\(z, condition\\)"):
        net(z)
    d = StyleGAN2Discriminator((1, 8, 8), channel_base=32, channel_max=4)
    images = torch.randn(4, 1, 8, 8)
    logit, h = d.text_features(images)
    torch.testing.assert_close(logit, d(images))  # the unconditional logit, and the features under it
    assert h.shape == (4, d.feature_dim)
    text_d = TextDiscriminator(d, BagEncoder(12, 5))
    tokens = torch.tensor([[2, 3, 0, 0]] * 4)
    e = text_d.encode(tokens)
    torch.testing.assert_close(text_d(images, tokens), logit + (text_d.project(e) * h).sum(1))
    # through a run: text_mnist with both StyleGAN2 networks
    cfg = gantrain.compose([a for a in tiny(data_root) if "base_channels" not in a] + [
                           "generator=stylegan2", "discriminator=stylegan2", "~discriminator.norm",
                                "~discriminator.spectral_norm", "dataset.image_size=8", "generator.latent_dim=8",
                                "generator.w_dim=8", "generator.mapping_layers=1", "generator.channel_base=64",
                                "generator.channel_max=8", "discriminator.channel_base=64", "discriminator.channel_max=8",
                                "trainer.steps=2", "trainer.eval_every=0"])
    run = gantrain.train(cfg, tmp_path / "run")
    g = gantrain.load_generator(run)
    assert type(g.net).__name__ == "StyleGAN2Generator" and g.net.condition_dim == 16
    assert g.sample(3, text="a thick 3").shape == (3, 1, 8, 8)


class _Oracle(torch.nn.Module):
    """A 'generator' that draws what each prompt asks for, as a bar: its column says the class (4 + 2 x class),
    its width the thickness word (2, 3, 4 px), its lean the slant word (0.2 px a row), its length the size word
    (10, 14, 18 rows). `wrong`: {class asked for: class drawn}; `reverse`: thickness words drawn backwards."""

    latent_dim = 2

    def __init__(self, wrong=None, reverse=False):
        super().__init__()
        self.texts, self.wrong, self.reverse = [], dict(wrong or {}), reverse

    def tokenize(self, texts):
        self.texts += list(texts)
        return torch.arange(len(self.texts) - len(texts), len(self.texts))[:, None]

    def forward(self, z, tokens):
        from gantrain.data.captions import DIGIT_SCHEME

        assert z.shape == (len(tokens), self.latent_dim)  # one noise per prompt
        out = torch.full((len(tokens), 1, 28, 28), -1.0)
        for n, i in enumerate(tokens[:, 0].tolist()):
            words = set(tokenize(self.texts[i]))
            c = next(k for k, names in enumerate(DIGIT_SCHEME.classes) if words & set(names))
            c = self.wrong.get(c, c)
            lv = [(-1 if words & set(low) else 1 if words & set(high) else 0)
                  for _, _, low, high in DIGIT_SCHEME.attributes]
            width, length = 3 + (-lv[0] if self.reverse else lv[0]), 14 + 4 * lv[2]
            for r in range(14 - length // 2, 14 - length // 2 + length):
                left = 4 + 2 * c - width // 2 + round(0.2 * lv[1] * (14 - r))  # the top leans right when slanted
                out[n, 0, r, left:left + width] = 1.0
        return out


class _ColumnReader(torch.nn.Module):
    """A 'classifier' that reads the class from the ink's mean column."""

    def forward(self, x):
        ink = (x[:, 0] > 0).float()
        column = (ink * torch.arange(28.0)).sum((1, 2)) / ink.sum((1, 2))
        return torch.nn.functional.one_hot(((column - 4) / 2).round().long().clamp(0, 9), 10).float()


def test_text_scores_read_class_and_attributes_as_asked_for_by_a_generator_that_draws_exactly_that():
    from types import SimpleNamespace

    from gantrain.data.captions import DIGIT_SCHEME
    from gantrain.eval.text import spearman, text_scores

    dataset = SimpleNamespace(scheme=DIGIT_SCHEME)
    scores, details = text_scores(_Oracle(), dataset, _ColumnReader(), prompts_per_class=4, samples=2)
    assert scores == pytest.approx({"text_class_agreement": 1.0, "text_thickness_spearman": 1.0,
                                    "text_slant_spearman": 1.0, "text_size_spearman": 1.0}, abs=1e-9)
    # 1,100 samples for agreement: more than one batch of the classifier's (1,000)
    scores, details = text_scores(_Oracle(wrong={2: 5, 7: 1}, reverse=True), dataset, _ColumnReader(),
                                  prompts_per_class=11, samples=10)
    assert scores["text_class_agreement"] == pytest.approx(0.8)  # every 2 drawn as a 5, every 7 as a 1
    assert details["text_class_agreement_per_class"] == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    assert scores["text_thickness_spearman"] == pytest.approx(-1.0) and scores["text_slant_spearman"] == pytest.approx(1.0)
    # Spearman with ties (average ranks), against the closed form on ranks
    a, b = np.array([1.0, 2.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0, 40.0])
    ra, rb = np.array([1.0, 2.5, 2.5, 4.0]), np.array([1.0, 3.0, 2.0, 4.0])
    assert spearman(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])
    assert np.isnan(spearman(a, np.ones(4)))


class _RecordingOracle(_Oracle):
    """The oracle, recording each call's noise and batch size, and that it runs without autograd."""

    def __init__(self):
        super().__init__()
        self.noise, self.batches = [], []

    def forward(self, z, tokens):
        assert not torch.is_grad_enabled()
        self.noise.append(z.clone())
        self.batches.append(len(z))
        return super().forward(z, tokens)


def _protocol_prompts(scheme, prompts_per_class, samples, seed):
    """The prompts text_scores asks for, by hand from random.Random(seed): per class, prompts_per_class prompts
    (each `samples` times) in a held-out phrasing (scheme.held_out_caption), each attribute at a level drawn from
    -1 / 0 / +1 and named by a word drawn from its low or high words (none at 0); then per attribute and class,
    prompts_per_class triples (low word, no word, high word) in one held-out phrasing kind drawn from 0 and 1."""
    rng = random.Random(seed)
    agreement, triples = [], []
    for c in range(len(scheme.classes)):
        for _ in range(prompts_per_class):
            levels = [rng.choice((-1, 0, 1)) for _ in scheme.attributes]
            words = [rng.choice(low if lv < 0 else high)
                     for (_, _, low, high), lv in zip(scheme.attributes, levels) if lv != 0]
            agreement += [scheme.held_out_caption(c, words, rng)] * samples
    for _, _, low, high in scheme.attributes:
        for c in range(len(scheme.classes)):
            for _ in range(prompts_per_class):
                kind = rng.randrange(2)
                triples += [scheme.held_out_phrase(kind, c, [rng.choice(low)]), scheme.held_out_phrase(kind, c, []),
                            scheme.held_out_phrase(kind, c, [rng.choice(high)])]
    return agreement, triples


def test_text_scores_read_prompts_with_every_word_and_phrasing_drawn_as_the_seeded_protocol_says():
    from types import SimpleNamespace

    from gantrain.eval.text import text_scores

    g = _RecordingOracle()
    scores, details = text_scores(g, SimpleNamespace(scheme=DIGIT_SCHEME), _ColumnReader(), prompts_per_class=4,
                                  samples=2, seed=3)
    agreement, triples = _protocol_prompts(DIGIT_SCHEME, 4, 2, 3)
    assert g.texts == agreement + triples and len(agreement) == 80 and len(triples) == 360
    assert details["example_prompts"] == sorted(set(agreement))[:10]
    noise = torch.Generator().manual_seed(3)  # one noise per agreement sample, then one per triple
    expected = [torch.randn(80, 2, generator=noise)]
    expected += [torch.randn(4, 2, generator=noise).repeat_interleave(3, 0) for _ in range(30)]
    torch.testing.assert_close(torch.cat(g.noise), torch.cat(expected), atol=0, rtol=0)
    # what the prompts hold, whatever the order of the draws: the class asked for, each attribute at most once, by
    # each of its six words somewhere and absent elsewhere; the triples in both held-out phrasing kinds
    for k in range(40):
        assert agreement[2 * k] == agreement[2 * k + 1]
        assert set(tokenize(agreement[2 * k])) & set(DIGIT_SCHEME.classes[k // 4])
    for _, _, low, high in DIGIT_SCHEME.attributes:
        used = [[w for w in tokenize(p) if w in low + high] for p in agreement[::2]]
        assert max(len(u) for u in used) == 1 and 0 < sum(len(u) for u in used) < 40
        assert {u[0] for u in used if u} == set(low + high)
    bare = set(triples[1::3])
    assert {"a 7", "seven"} <= bare and {"an 8", "eight"} <= bare  # kind 0 ("a/an <adjective> 7"), kind 1 ("seven")
    for k in range(0, 360, 3):
        low, high = DIGIT_SCHEME.attributes[k // 120][2:]
        extra = [set(tokenize(triples[k + i])) - set(tokenize(triples[k + 1])) - {"a", "an"} for i in (0, 2)]
        assert len(extra[0]) == len(extra[1]) == 1 and extra[0] <= set(low) and extra[1] <= set(high)
    assert scores == pytest.approx({"text_class_agreement": 1.0, "text_thickness_spearman": 1.0,
                                    "text_slant_spearman": 1.0, "text_size_spearman": 1.0}, abs=1e-9)


def test_text_scores_read_20_prompts_a_class_10_samples_each_with_seed_0_by_default():
    from types import SimpleNamespace

    from gantrain.data.captions import CaptionScheme
    from gantrain.eval.text import text_scores

    one = CaptionScheme([DIGIT_SCHEME.classes[0]], [DIGIT_SCHEME.attributes[0]])  # one class, one attribute
    g = _RecordingOracle()
    scores, _ = text_scores(g, SimpleNamespace(scheme=one), _ColumnReader())
    agreement, triples = _protocol_prompts(one, 20, 10, 0)
    assert len(agreement) == 200 and len(triples) == 60 and g.texts == agreement + triples
    noise = torch.Generator().manual_seed(0)
    expected = [torch.randn(200, 2, generator=noise), torch.randn(20, 2, generator=noise).repeat_interleave(3, 0)]
    torch.testing.assert_close(torch.cat(g.noise), torch.cat(expected), atol=0, rtol=0)
    assert scores == pytest.approx({"text_class_agreement": 1.0, "text_thickness_spearman": 1.0}, abs=1e-9)


def test_text_scores_read_the_attribute_prompts_in_batches_of_510():
    from types import SimpleNamespace

    from gantrain.data.captions import CaptionScheme
    from gantrain.eval.text import text_scores

    one = CaptionScheme([DIGIT_SCHEME.classes[0]], [DIGIT_SCHEME.attributes[0]])
    g = _RecordingOracle()  # asserts one noise per prompt in each call
    scores, _ = text_scores(g, SimpleNamespace(scheme=one), _ColumnReader(), prompts_per_class=171, samples=1)
    assert g.batches == [171, 510, 3] and len(g.texts) == 171 + 513
    assert scores == pytest.approx({"text_class_agreement": 1.0, "text_thickness_spearman": 1.0}, abs=1e-9)


def test_text_scores_read_spearman_of_average_ranks_with_a_deviation_of_one_and_no_warning_when_constant():
    import warnings

    from gantrain.eval.text import spearman

    a, b = np.array([1.0, 1.0, 2.0, 2.0]), np.array([1.0, 2.0, 3.0, 4.0])  # a's ranks 0.5, 0.5, 2.5, 2.5: deviation 1
    r = np.corrcoef([0.5, 0.5, 2.5, 2.5], [0.0, 1.0, 2.0, 3.0])[0, 1]
    assert spearman(a, b) == pytest.approx(r, abs=1e-12) and spearman(b, a) == pytest.approx(r, abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the constant side is found before numpy would divide by zero
        for x, y in ((np.ones(4), b), (b, np.ones(4)), (np.ones(4), np.ones(4))):
            assert np.isnan(spearman(x, y))


def test_a_generator_that_ignores_the_attribute_words_scores_nan_without_a_warning():
    import warnings
    from types import SimpleNamespace

    from gantrain.data.captions import CaptionScheme
    from gantrain.eval.text import text_scores

    class Deaf(_Oracle):  # the same picture whatever the words: the measure never varies within a class
        def forward(self, z, tokens):
            return super().forward(z, tokens)[:1].expand(len(z), -1, -1, -1)

    one = CaptionScheme([DIGIT_SCHEME.classes[0]], [DIGIT_SCHEME.attributes[0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would reach the user's terminal
        scores, details = text_scores(Deaf(), SimpleNamespace(scheme=one), _ColumnReader(), prompts_per_class=4,
                                      samples=1)
    assert math.isnan(scores["text_thickness_spearman"]) and all(map(math.isnan, details["text_thickness_spearman_per_class"]))
