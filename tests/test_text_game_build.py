"""How the text game builds from a captioned folder: the vocabulary, the captions paired with each image (K per
image, repeated in turn), the grid's prompts, the pool sampling draws from, the settings it takes from
`condition`, the precomputed table's rows, its refusals, and the caption each real image is shown with."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import gantrain
from gantrain.errors import GantrainError
from gantrain.tokens import Vocabulary, tokenize
from gantrain.training.build import build

CAPTIONS = [["Red one", "a red thing"], ["?!"], ["blue two"], ["green three", "Green three again", "g 3"],
            ["red one"], ["blue, blue"]]


def _folder(root: Path, captions=CAPTIONS) -> Path:
    from PIL import Image

    root.mkdir(parents=True)
    lines = []
    for i, texts in enumerate(captions):
        Image.fromarray(np.full((8, 8), 20 * i, np.uint8)).save(root / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": texts}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _game(tmp_path: Path, *extra: str, captions=CAPTIONS, batch: int = 4):
    root = _folder(tmp_path / "images", captions)
    cfg = gantrain.compose(["dataset=image_folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1",
                            "conditional=true", "condition.text_encoder=bag", "condition.text_dim=8",
                            "condition.text_length=3", "condition.grid_classes=3", "generator.base_channels=4",
                            "discriminator.base_channels=4", f"trainer.batch_size={batch}", "trainer.steps=1",
                            "trainer.device=cpu", "trainer.num_workers=0", "trainer.eval_every=0",
                            "trainer.num_samples=7", *extra])
    return build(cfg, tmp_path / "run", evaluate=False).game


def test_the_text_game_builds_its_vocabulary_prompts_pool_and_settings(tmp_path):
    game = _game(tmp_path, "condition.kl_weight=0.25", "condition.mismatch=false", "condition.mode_seeking=0.5")
    g = game.G
    flat = [c for texts in CAPTIONS for c in texts]
    assert g.words == Vocabulary.of(flat).words and g.length == 3
    assert g.prompts == ["Red one", "a red thing", "blue two"]  # the first distinct captions with a word
    assert len(g.pool) == 5 and all(tokenize(c) for c in g.pool)  # one per image with a caption with words
    assert set(g.pool) <= set(flat) - {"?!"}
    assert (game.kl_weight, game.mismatch, game.mode_seeking) == (0.25, False, 0.5)
    # the grid: one row per prompt (3), the same noise down each column (7 // 3 = 2 columns)
    assert game.grid_columns == 2 and game.fixed_z.shape == (6, g.latent_dim)
    assert torch.equal(game.fixed_labels, g.tokenize(g.prompts).repeat_interleave(2, 0))
    assert torch.equal(game.fixed_z[:2], game.fixed_z[2:4])
    again = _game(tmp_path / "again", "condition.kl_weight=0.25")
    assert again.G.pool == g.pool and again.mismatch is True and again.kl_weight == 0.25  # the pool follows the seed


def test_the_text_game_build_pairs_k_captions_with_each_image(tmp_path):
    game = _game(tmp_path)
    vocabulary = Vocabulary(game.G.words[2:])
    images, captions = game_batches(tmp_path).next(1)
    assert captions.shape[-2:] == (3, 3)  # K = 3 (the most any image has), 3 tokens each
    for image, tokens in zip(images[0], captions[0]):
        i = int(round(float(image.float().mean()) / 20))  # each image's grey level names it
        texts = CAPTIONS[i]
        assert vocabulary.decode(tokens) == [" ".join(tokenize(texts[j % len(texts)])[:3]) for j in range(3)]


def game_batches(tmp_path: Path):
    root = tmp_path / "images"
    cfg = gantrain.compose(["dataset=image_folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1",
                            "conditional=true", "condition.text_encoder=bag", "condition.text_dim=8",
                            "condition.text_length=3", "generator.base_channels=4", "discriminator.base_channels=4",
                            "trainer.batch_size=6", "trainer.steps=1", "trainer.device=cpu", "trainer.num_workers=0",
                            "trainer.eval_every=0"])
    return build(cfg, tmp_path / "run2", evaluate=False).batches


def test_the_text_game_shows_each_real_image_with_one_of_its_own_captions(tmp_path):
    game = _game(tmp_path)
    images = torch.randint(0, 256, (1, 3, 1, 8, 8), dtype=torch.uint8)
    tokens = torch.arange(1, 3 * 4 * 2 + 1).view(1, 3, 4, 2)  # image b, caption k: distinct ids
    seen = set()
    torch.manual_seed(0)
    for _ in range(40):
        real, picked = game.real((images, tokens), 0)
        torch.testing.assert_close(real, images[0].float() / 127.5 - 1)
        for b in range(3):
            k = [j for j in range(4) if torch.equal(picked[b], tokens[0, b, j])]
            assert len(k) == 1
            seen.add((b, k[0]))
    assert seen == {(b, k) for b in range(3) for k in range(4)}  # every caption of every image is shown


def test_the_text_game_build_refusals(tmp_path):
    root = _folder(tmp_path / "images")
    base = ["dataset=image_folder", f"dataset.root={root}", "dataset.image_size=8", "dataset.channels=1",
            "trainer.device=cpu", "trainer.num_workers=0", "generator.base_channels=4", "discriminator.base_channels=4"]
    with pytest.raises(GantrainError) as err:
        build(gantrain.compose([*base, "game=text"]), tmp_path / "a", evaluate=False)
    assert str(err.value) == ("game=text needs conditional=true and condition.text_encoder (bag, gru, precomputed, "
                              "clip); try experiment=text_mnist")
    with pytest.raises(GantrainError) as err:
        build(gantrain.compose(["experiment=ring", "trainer.device=cpu", "conditional=true",
                                "condition.text_encoder=bag"]), tmp_path / "b", evaluate=False)
    assert str(err.value).startswith("text conditioning is for images; ")
    assert str(err.value).endswith(" holds 2D points")


def test_the_text_game_build_maps_captions_to_precomputed_rows(tmp_path):
    captions = [["A dark square.", "a grey square", "a light square"], ["a light square"], ["a dark   square", "a grey square"]]
    table = tmp_path / "emb.npz"
    embeddings = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.savez(table, texts=np.array(["a light square", "a dark square", "a grey square", "unused"]), embeddings=embeddings)
    game = _game(tmp_path, "condition.text_encoder=precomputed", f"condition.text_embeddings={table}",
                 captions=captions, batch=3)
    g = game.G
    assert g.words == ["a light square", "a dark square", "a grey square", "unused"] and g.length == 1
    assert torch.equal(g.encoder.table[1:], torch.from_numpy(embeddings))
    assert g.tokenize(["A dark square.", "a grey square", "a light square"]).tolist() == [[2], [3], [1]]
    batches = build(gantrain.compose(
        ["dataset=image_folder", f"dataset.root={tmp_path / 'images'}", "dataset.image_size=8", "dataset.channels=1",
         "conditional=true", "condition.text_encoder=precomputed", f"condition.text_embeddings={table}",
         "generator.base_channels=4", "discriminator.base_channels=4", "trainer.batch_size=3", "trainer.steps=1",
         "trainer.device=cpu", "trainer.num_workers=0", "trainer.eval_every=0"]), tmp_path / "run3", evaluate=False).batches
    images, tokens = batches.next(1)
    rows = {0: [[2], [3], [1]], 1: [[1], [1], [1]], 2: [[2], [3], [2]]}  # K = 3: fewer captions repeat in turn
    for image, t in zip(images[0], tokens[0]):
        assert t.tolist() == rows[int(round(float(image.float().mean()) / 20))]
    np.savez(table, texts=np.array(["a dark square"]), embeddings=np.zeros((1, 3), np.float32))
    with pytest.raises(GantrainError) as err:
        _game(tmp_path / "missing", "condition.text_encoder=precomputed", f"condition.text_embeddings={table}",
              captions=[["a dark square", "a grey square"], ["a dark square"], ["a light square"]], batch=3)
    # the first caption without a row is named (here also not the last)
    assert str(err.value) == (f"caption 'a grey square' and 1 more distinct caption have no row in "
                              f"condition.text_embeddings={table}; add a row for each caption of the data")


def test_the_text_game_adds_the_losss_own_penalty_and_the_matching_penalty_to_ds_update():
    from test_text import _game as text_game, _step_and_replay

    seen = {}
    for gp, r1, matching in ((0.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 3.0), (0.0, 2.0, 3.0), (0.0, 0.5, 0.0),
                             (0.0, 0.0, 0.5), (0.5, 0.0, 0.0)):
        game = text_game(True, gradient_penalty=gp, r1_gamma=r1, matching_penalty=matching, matching_power=6.0)
        updates = []
        game.update = lambda network, loss, stat=None, updates=updates: updates.append((network, float(loss.detach())))
        got, _, _ = _step_and_replay(game)
        (network, d_update), (g_network, _) = updates
        assert (network, g_network) == ("discriminator", "generator")
        penalty = got.get("loss/penalty", 0.0)
        assert d_update == pytest.approx(got["loss/d"] + penalty, rel=1e-6)  # D's update is its loss plus the penalties
        assert penalty > 0 if gp or r1 or matching else "loss/penalty" not in got  # none computed when all are off
        seen[gp, r1, matching] = penalty
    assert seen[0, 2.0, 3.0] == pytest.approx(seen[0, 2.0, 0] + seen[0, 0, 3.0], rel=1e-5)  # the two add up
    assert seen[0, 0.5, 0] == pytest.approx(seen[0, 2.0, 0] / 4, rel=1e-5)  # R1 in proportion to gamma
    assert seen[0, 0, 0.5] == pytest.approx(seen[0, 0, 3.0] / 6, rel=1e-5)


def test_the_text_game_trains_d_again_after_gs_update_and_with_two_critic_steps():
    from test_text import _batch, _game as text_game

    for n_critic in (1, 2, 3):
        game = text_game(True, n_critic=n_critic)
        game.optimizers = {k: torch.optim.SGD(n.parameters(), lr=0.1) for k, n in game.networks.items()}
        images, captions = _batch()
        batch = (images.repeat(n_critic, 1, 1, 1, 1), captions.repeat(n_critic, 1, 1, 1))
        snapshots = []
        for _ in range(2):
            game.step(batch)
            snapshots.append(({k: v.detach().clone() for k, v in game.D.named_parameters()},
                              {k: v.detach().clone() for k, v in game.G.named_parameters()}))
        (d1, g1), (d2, g2) = snapshots
        assert any(not torch.equal(d1[k], d2[k]) for k in d1), n_critic  # D moved in the second step too
        assert any(not torch.equal(g1[k], g2[k]) for k in g1), n_critic
        assert all(p.requires_grad for p in game.D.parameters())


def test_the_text_games_python_defaults_are_the_configs():
    import inspect

    from gantrain.config import condition_settings
    from gantrain.training.games.text import TextGAN

    c = condition_settings(gantrain.compose(["experiment=text_mnist"]))
    defaults = {k: p.default for k, p in inspect.signature(TextGAN.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == {"kl_weight": c.kl_weight, "mismatch": c.mismatch, "grid_tokens": None,
                        "mode_seeking": c.mode_seeking}


def test_the_text_game_grid_has_a_column_even_with_fewer_samples_than_prompts():
    from test_text import _networks

    from gantrain.training.games.text import TextGAN
    from gantrain.training.losses import Hinge
    from gantrain.training.stats import Stats

    g, d = _networks()
    prompts = g.tokenize(["w2", "w3", "w4"])
    game = TextGAN(g, d, Hinge(), n_critic=1, batch_size=4, num_samples=2, seed=0, stats=Stats(torch.device("cpu")),
                   grid_tokens=prompts)
    assert game.grid_columns == 1 and game.fixed_z.shape == (3, g.latent_dim)
    assert torch.equal(game.fixed_labels, prompts)
