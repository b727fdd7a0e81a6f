"""The text-conditioning networks' parts, exactly: each encoder against its definition, conditioning augmentation's
condition and KL term, the generator's split of z, its saved vocabulary, tokenisation and sampling, the exported
program, and the discriminator's projection. (test_text.py trains and resumes real text runs.)"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gantrain.errors import GantrainError
from gantrain.nets.base import truncate
from gantrain.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gantrain.nets.text import (BagEncoder, ConditioningAugmentation, GRUEncoder, PrecomputedEncoder, TextDiscriminator,
                                TextGenerator, TextProgram, make_encoder)

WORDS = ["<pad>", "<unk>", "red", "blue", "big", "small"]


def _generator(augmentation: bool = True, encoder=None, words=WORDS, prompts=("red big",), pool=()) -> TextGenerator:
    torch.manual_seed(0)
    net = DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4, condition_dim=6)
    g = TextGenerator(net, encoder or BagEncoder(len(words), 8), words, 3, augmentation, prompts, pool)
    with torch.no_grad():
        for m in g.net.modules():  # modulation starts at zero: give it weights so that the caption shows
            if hasattr(m, "scale") and isinstance(m.scale, torch.nn.Linear):
                torch.nn.init.normal_(m.scale.weight)
    return g.eval()


def test_bag_and_gru_encoders_average_over_the_words_only():
    torch.manual_seed(0)
    bag = BagEncoder(6, 4)
    tokens = torch.tensor([[2, 3, 0], [5, 0, 0], [0, 0, 0]])
    e = bag(tokens)
    torch.testing.assert_close(e[0], bag.embed.weight[[2, 3]].mean(0))
    torch.testing.assert_close(e[1], bag.embed.weight[5])
    assert torch.equal(e[2], torch.zeros(4)) and bag.dim == 4  # no words: zero, not nan
    assert torch.equal(bag.embed.weight[0], torch.zeros(4))  # padding's row stays zero
    gru = GRUEncoder(6, 4)
    out, _ = gru.gru(gru.embed(tokens))
    torch.testing.assert_close(gru(tokens)[0], out[0, :2].mean(0))
    torch.testing.assert_close(gru(tokens)[1], out[1, 0])
    assert torch.equal(gru(tokens)[2], torch.zeros(4)) and gru.dim == 4 and gru.gru.hidden_size == 2
    with pytest.raises(GantrainError) as err:
        GRUEncoder(6, 5)
    assert str(err.value) == "condition.text_dim=5 must be even for text_encoder=gru (two directions of dim/2)"


def test_precomputed_rows_and_the_encoder_factory():
    table = torch.arange(6.0).view(3, 2).double()
    enc = PrecomputedEncoder(table)
    assert enc.dim == 2 and enc.table.dtype == torch.float32
    assert enc(torch.tensor([[1, 0], [3, 7], [0, 0]])).tolist() == [[0.0, 1.0], [4.0, 5.0], [0.0, 0.0]]
    assert isinstance(make_encoder("bag", 5, 4), BagEncoder) and isinstance(make_encoder("gru", 5, 4), GRUEncoder)
    for kind in ("precomputed", "clip"):
        assert torch.equal(make_encoder(kind, 5, 2, table).table, enc.table)
        with pytest.raises(GantrainError) as err:
            make_encoder(kind, 5, 2)
        assert str(err.value) == ("condition.text_encoder=precomputed needs condition.text_embeddings=FILE.npz "
                                  "(arrays texts and embeddings)")
    with pytest.raises(GantrainError) as err:
        make_encoder("lstm", 5, 4)
    assert str(err.value) == "condition.text_encoder='lstm' is not one of bag, gru, precomputed, clip"


def test_conditioning_augmentation_draws_around_mu_with_the_kl_of_stackgan():
    torch.manual_seed(1)
    ca = ConditioningAugmentation(4, 3)
    assert ca.fc.out_features == 6 and ca.dim == 3
    e, eps = torch.randn(5, 4).double(), torch.randn(5, 3).double()
    ca = ca.double()
    h = F.leaky_relu(e @ ca.fc.weight.T + ca.fc.bias, 0.2)
    mu, logvar = h[:, :3], h[:, 3:]
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).mean()
    c, got_kl = ca(e, eps)
    torch.testing.assert_close(c, mu + eps * torch.exp(logvar / 2))
    torch.testing.assert_close(got_kl, kl)
    c, got_kl = ca(e)
    torch.testing.assert_close(c, mu)
    torch.testing.assert_close(got_kl, kl)
    plain = ConditioningAugmentation(4, 3, enabled=False).double()
    assert plain.fc.out_features == 3
    c, got_kl = plain(e, eps)
    torch.testing.assert_close(c, F.leaky_relu(e @ plain.fc.weight.T + plain.fc.bias, 0.2))
    assert float(got_kl) == 0.0


def test_the_generators_z_ends_with_the_augmentations_noise():
    g = _generator()
    assert (g.latent_dim, g.noise_dim, g.out_shape) == (4 + 6, 6, (1, 8, 8))
    z = torch.randn(3, 10)
    image_z, eps = g.split(z)
    assert torch.equal(image_z, z[:, :4]) and torch.equal(eps, z[:, 4:])
    tokens = torch.tensor([[2, 4, 0], [3, 5, 0], [2, 0, 0]])
    with torch.no_grad():
        c, _ = g.augment(g.encoder(tokens), z[:, 4:])
        torch.testing.assert_close(g(z, tokens), g.net(z[:, :4], c))
        torch.testing.assert_close(TextProgram(g)(z, tokens), g(z, tokens))  # what export traces
        other = z.clone()
        other[:, 4:] += 1.0
        assert not torch.allclose(g(other, tokens), g(z, tokens))  # the noise moves the condition
    plain = _generator(augmentation=False)
    assert (plain.latent_dim, plain.noise_dim) == (4, 0)
    image_z, eps = plain.split(z[:, :4])
    assert eps is None and torch.equal(image_z, z[:, :4])
    with torch.no_grad():
        c, _ = plain.augment(plain.encoder(tokens))
        torch.testing.assert_close(plain(z[:, :4], tokens), plain.net(z[:, :4], c))
        torch.testing.assert_close(TextProgram(plain)(z[:, :4], tokens), plain(z[:, :4], tokens))


def test_the_vocabulary_travels_in_the_state_dict():
    g = _generator(pool=["red", "blue small"])
    g.clip = {"model": "ViT-B-32", "weights": "none"}
    state = g.state_dict()
    fresh = _generator(words=["<pad>", "<unk>", "x", "y", "z", "w"], prompts=())
    fresh.load_state_dict(state)
    assert (fresh.words, fresh.length, fresh.prompts, fresh.pool) == (WORDS, 3, ["red big"], ["red", "blue small"])
    assert fresh.clip == {"model": "ViT-B-32", "weights": "none"}
    assert g.get_extra_state() == {"words": WORDS, "length": 3, "prompts": ["red big"], "pool": ["red", "blue small"],
                                   "clip": {"model": "ViT-B-32", "weights": "none"}}
    old = {k: v for k, v in state.items() if k != "_extra_state"}  # written before pools and CLIP were saved
    old["_extra_state"] = {"words": WORDS, "length": 4, "prompts": []}
    fresh = _generator(pool=["kept?"])
    fresh.load_state_dict(old)
    assert (fresh.length, fresh.prompts, fresh.pool, fresh.clip) == (4, [], [], None)
    assert "clip" not in _generator().get_extra_state()


def test_tokenize_by_the_runs_vocabulary_and_refusals(caplog):
    g = _generator()
    assert g.tokenize(["Red BIG", "small, red blue!"]).tolist() == [[2, 4, 0], [5, 2, 3]]
    with caplog.at_level("WARNING", logger="gantrain"):
        assert g.tokenize(["red sky"]).tolist() == [[2, 1, 0]]
    assert [r.getMessage() for r in caplog.records] == ["words this run never saw (read as unknown): sky"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="gantrain"):  # words past the run's length are named, not dropped silently
        assert g.tokenize(["red big small blue", "blue", "Red big, small blue!"]).tolist() == [[2, 4, 5], [3, 0, 0],
                                                                                             [2, 4, 5]]
    assert [r.getMessage() for r in caplog.records] == [
        "this run reads the first 3 words of a prompt (condition.text_length); left out: blue"]
    with pytest.raises(GantrainError) as err:
        g.tokenize(["red", " ... "])
    assert str(err.value) == "text=' ... ' is empty: give a prompt with at least one word, e.g. text='red big'"
    with pytest.raises(GantrainError) as err:
        _generator(prompts=()).tokenize([""])
    assert str(err.value) == "text='' is empty: give a prompt with at least one word, e.g. text='a thick 3'"


def test_a_precomputed_generator_takes_only_its_captions():
    table = torch.randn(2, 8)
    g = _generator(encoder=PrecomputedEncoder(table), words=["A red one", "the blue"], prompts=["the blue"])
    assert g.precomputed
    assert g.tokenize(["a  RED one", "The blue", "a red one"]).tolist() == [[1], [2], [1]]
    with pytest.raises(GantrainError) as err:
        g.tokenize(["the blue", "a green one", "a green one"])
    assert str(err.value) == ("text='a green one' has no precomputed embedding: a precomputed run generates only the "
                              "captions of its condition.text_embeddings file")


def test_sampling_draws_the_pool_or_the_prompts_and_checks_its_arguments():
    g = _generator(pool=["small", "blue"])
    rng = torch.Generator().manual_seed(3)
    got = g.sample(4, generator=rng)
    rng = torch.Generator().manual_seed(3)
    pick = torch.randint(2, (4,), generator=rng).tolist()
    z = truncate(torch.randn(4, g.latent_dim, generator=rng), None, rng)
    with torch.no_grad():
        torch.testing.assert_close(got, g(z, g.tokenize([["small", "blue"][i] for i in pick])))
    rng = torch.Generator().manual_seed(4)
    got = g.sample(3, generator=rng, text=["red", "blue", "big"], truncation=0.5)
    rng = torch.Generator().manual_seed(4)
    z = truncate(torch.randn(3, g.latent_dim, generator=rng), 0.5, rng)
    with torch.no_grad():
        torch.testing.assert_close(got, g(z, g.tokenize(["red", "blue", "big"])))
    no_pool = _generator(prompts=["big"])
    rng = torch.Generator().manual_seed(5)
    got = no_pool.sample(2, generator=rng)
    rng = torch.Generator().manual_seed(5)
    torch.randint(1, (2,), generator=rng)
    z = torch.randn(2, no_pool.latent_dim, generator=rng)
    with torch.no_grad():
        torch.testing.assert_close(got, no_pool(z, no_pool.tokenize(["big", "big"])))
    assert g.sample(0, text="red").shape == (0, 1, 8, 8)
    assert g.sample(torch.tensor(2), text="red").shape == (2, 1, 8, 8)
    for n in (-1, 2.5, True, "3"):
        with pytest.raises(GantrainError) as err:
            g.sample(n, text="red")
        assert str(err.value) == f"sample(n={n!r}): n must be a whole number >= 0, the number of samples to draw"
    with pytest.raises(GantrainError) as err:
        _generator(prompts=()).sample(2)
    assert str(err.value) == "this text-conditioned generator needs text=... to sample"
    with pytest.raises(GantrainError) as err:
        g.sample(2, text=["red"])
    assert str(err.value) == "1 prompts for 2 samples; give one prompt per sample, or one for all"
    with pytest.raises(GantrainError) as err:
        g.sample(2, labels=[1, 2])
    assert str(err.value) == "labels given, but this generator is conditioned on text: give text='a thick 3'"
    for bad in (5, ["red", 3], [None, "blue"]):
        with pytest.raises(GantrainError) as err:
            g.sample(2, text=bad)
        assert str(err.value) == f"text={bad!r} must be a prompt or a list of prompts, one per sample"
    assert g.sample(2, text=("red", "blue")).shape == (2, 1, 8, 8)  # any sequence of prompts
    from gantrain.nets.dcgan import DCGANGenerator

    with pytest.raises(GantrainError) as err:
        DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4).sample(2, text="a 3")
    assert str(err.value) == ("text given, but this generator is not conditioned on text (a text run trains with "
                              "condition.text_encoder=..., e.g. experiment=text_mnist)")


def test_the_discriminator_adds_the_captions_projection_onto_its_features():
    torch.manual_seed(2)
    net = DCGANDiscriminator((1, 8, 8), base_channels=4, norm="none")
    d = TextDiscriminator(net, BagEncoder(6, 5))
    assert d.project.in_features == 5 and d.project.out_features == net.feature_dim and d.project.bias is None
    assert 0.005 < float(d.project.weight.detach().std()) < 0.05  # N(0, 0.02)
    x, tokens = torch.randn(3, 1, 8, 8), torch.tensor([[2, 3, 0], [4, 0, 0], [5, 5, 2]])
    with torch.no_grad():
        logit, h = net.text_features(x)
        e = d.encoder(tokens)
        torch.testing.assert_close(d(x, tokens), logit + ((e @ d.project.weight.T) * h).sum(1))
        torch.testing.assert_close(d.encode(tokens), e)
    with pytest.raises(GantrainError) as err:
        TextDiscriminator(torch.nn.Linear(2, 2), BagEncoder(6, 5))
    assert str(err.value) == ("discriminator Linear has no text_features(x) to project a caption onto; use "
                              "discriminator=dcgan or stylegan2 for text conditioning")


def test_each_encoder_reads_every_caption_on_its_own():
    """A caption's embedding is the same alone as in any batch (the GRU reads (N, L) batch-first), padding's row
    is zero for the GRU too, and the GRU reads word order."""
    torch.manual_seed(3)
    tokens = torch.tensor([[2, 3, 4], [5, 2, 0], [3, 0, 0], [4, 4, 5]])
    for encoder in (BagEncoder(6, 4), GRUEncoder(6, 4)):
        with torch.no_grad():
            together = encoder(tokens)
            for i in range(len(tokens)):
                torch.testing.assert_close(encoder(tokens[i:i + 1])[0], together[i])
                torch.testing.assert_close(encoder(tokens[[i, (i + 1) % 4]])[0], together[i])
        assert torch.equal(encoder.embed.weight[0], torch.zeros(4))
        assert encoder.embed.padding_idx == 0 and bool((encoder.embed.weight[1:].abs().sum(1) > 0).all())
    gru = GRUEncoder(6, 4)
    with torch.no_grad():
        assert not torch.allclose(gru(torch.tensor([[2, 3, 0]])), gru(torch.tensor([[3, 2, 0]])))


def test_the_factory_refuses_every_kind_it_does_not_know():
    built = ["".join(["b", "a", "g"]), "".join(["g", "r", "u"])]  # as read from a config: not the literal objects
    assert isinstance(make_encoder(built[0], 5, 4), BagEncoder) and isinstance(make_encoder(built[1], 5, 4), GRUEncoder)
    for kind in ("a", "bad", "Bag", "", "zzz"):  # before and after "bag" in sort order
        with pytest.raises(GantrainError) as err:
            make_encoder(kind, 5, 4)
        assert str(err.value) == f"condition.text_encoder={kind!r} is not one of bag, gru, precomputed, clip"


def test_augmentation_is_on_unless_asked_off():
    torch.manual_seed(0)
    net = DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=4, condition_dim=6)
    g = TextGenerator(net, BagEncoder(len(WORDS), 8), WORDS, 3)
    assert g.augment.enabled and (g.noise_dim, g.latent_dim) == (6, 10)


def test_refusals_name_the_first_offending_prompt():
    g = _generator(prompts=("red big", "blue small"))
    with pytest.raises(GantrainError) as err:
        g.tokenize(["?"])
    assert str(err.value) == "text='?' is empty: give a prompt with at least one word, e.g. text='red big'"
    p = _generator(encoder=PrecomputedEncoder(torch.randn(2, 8)), words=["A red one", "the blue"])
    with pytest.raises(GantrainError) as err:
        p.tokenize(["the blue", "a green one", "a pink one", "a green one"])
    assert str(err.value) == ("text='a green one' has no precomputed embedding: a precomputed run generates only the "
                              "captions of its condition.text_embeddings file")


def test_a_clip_run_embeds_new_prompts_once_in_order(monkeypatch):
    """Prompts a CLIP run never saw join its table at the next rows, in the order first given, and are embedded
    once; known prompts never call CLIP. (CLIP itself is replaced by a fixed table here: test_text.py runs
    open_clip's tower.)"""
    import gantrain.nets.text as text_nets

    table = torch.randn(2, 8)
    new_rows = {"a green one": torch.full((8,), 3.0), "a pink one": torch.full((8,), -2.0)}
    calls = []

    def embed(texts, model, weights, device):
        calls.append((list(texts), model, weights))
        return torch.stack([new_rows[t] for t in texts])

    monkeypatch.setattr(text_nets, "clip_embed", embed)
    g = _generator(encoder=PrecomputedEncoder(table), words=["A red one", "the blue"])
    g.clip = {"model": "ViT-B-32", "weights": "laion2b_s34b_b79k"}
    assert g.tokenize(["the blue", "a red one"]).tolist() == [[2], [1]] and calls == []
    tokens = g.tokenize(["a green one", "the blue", "A pink one", "a green one"])
    assert tokens.tolist() == [[3], [2], [4], [3]]
    assert calls == [(["a green one", "a pink one"], "ViT-B-32", "laion2b_s34b_b79k")]
    # the run's own words and table stay as saved; the new prompts are rows of their own after them
    assert g.words == ["A red one", "the blue"] and g.extra_words == ["a green one", "a pink one"]
    with torch.no_grad():
        got = g.encoder(tokens)
    torch.testing.assert_close(got, torch.stack([new_rows["a green one"], table[1], new_rows["a pink one"],
                                                 new_rows["a green one"]]))
    assert g.tokenize(["a pink one"]).tolist() == [[4]] and len(calls) == 1  # embedded once
    assert g.encoder.table.shape == (3, 8) and g.encoder.extra.shape == (2, 8)
    # a TorchScript or ONNX export traced now holds those rows: its vocabulary names them, at their token ids
    import json
    import tempfile
    from pathlib import Path

    from gantrain.commands.export import _write_vocabulary

    with tempfile.TemporaryDirectory() as folder:
        words = json.loads(_write_vocabulary(g, Path(folder) / "g.pt", False).read_text())["words"]
    assert words == ["A red one", "the blue", "a green one", "a pink one"]  # token id = position + 1


def test_sampling_keeps_no_graph_and_wants_one_prompt_per_sample():
    g = _generator(pool=["small", "blue"])
    g.train()
    out = g.sample(2, text="red")
    assert not out.requires_grad and out.grad_fn is None
    for texts in (["red", "blue", "big"], ["red"]):
        with pytest.raises(GantrainError) as err:
            g.sample(2, text=texts)
        assert str(err.value) == f"{len(texts)} prompts for 2 samples; give one prompt per sample, or one for all"


def test_the_discriminators_projection_starts_around_zero():
    torch.manual_seed(4)
    d = TextDiscriminator(DCGANDiscriminator((1, 8, 8), base_channels=4, norm="none"), BagEncoder(6, 512))
    w = d.project.weight.detach()
    assert w.numel() >= 1000 and abs(float(w.mean())) < 0.005  # N(0, 0.02): the mean of 1,000+ draws
