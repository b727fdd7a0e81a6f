"""The translation games: pix2pix's L1 and CycleGAN's cycle terms against hand computation, the history
pool, aligned crops, exact resume of a CycleGAN run, the commands on tiny settings, and the one-line errors."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from PIL import Image

import gantrain
from conftest import FAST, run_gantrain
from gantrain.errors import GantrainError
from gantrain.training.games.translation import CycleGAN, ImagePool, Pix2Pix, jitter
from gantrain.nets.translation import Translator, to_channels
from gantrain.training.losses import LeastSquares, NonSaturating
from gantrain.training.optim import LinearDecay
from gantrain.training.stats import Stats
from gantrain.nets.translation import PatchDiscriminator, ResnetGenerator, UNetGenerator

TINY = ["trainer.device=cpu", "trainer.progress=false", "generator.width=8", "discriminator.width=8",
        "trainer.batch_size=4", "trainer.log_every=2", "trainer.sample_every=4", "trainer.ckpt_every=2",
        "trainer.eval_every=0"]


def _optimizers(game, lr: float = 1e-3) -> None:
    game.optimizers = {k: torch.optim.Adam(v.parameters(), lr=lr) for k, v in game.networks.items()}


def test_pix2pix_l1_term_is_the_mean_absolute_error_of_the_step() -> None:
    torch.manual_seed(0)
    t = Translator(UNetGenerator(1, 1, 32, width=4, dropout=False), None, 1, 1, 32)
    d = PatchDiscriminator(2, 32, width=4)
    grid = torch.zeros(2, 1, 32, 32)
    game = Pix2Pix(t, d, NonSaturating(), l1_weight=100.0, load_size=32, flip=False, grid_a=grid, grid_b=grid,
                   stats=Stats(torch.device("cpu")))
    _optimizers(game)
    batch = torch.randint(0, 256, (1, 3, 2, 32, 32), dtype=torch.uint8)
    before = copy.deepcopy(t.ab)
    x = batch[0].float() / 127.5 - 1.0
    expected = (before(x[:, :1]) - x[:, 1:]).abs().mean().item()
    game.step(batch)
    assert game.stats.read()["loss/l1"] == pytest.approx(expected, rel=1e-5)
    assert not torch.equal(next(iter(before.parameters())), next(iter(t.ab.parameters())))  # it trained


def _tiny_cyclegan(seed: int, ca: int = 3, cb: int = 3, g_norm: str = "instance", **options) -> CycleGAN:
    """A CycleGAN of 16 px networks of width 4 (one residual block), LSGAN, cycle weight 10, no flips or crops."""
    torch.manual_seed(seed)
    t = Translator(ResnetGenerator(ca, cb, 16, width=4, n_blocks=1, norm=g_norm),
                   ResnetGenerator(cb, ca, 16, width=4, n_blocks=1, norm=g_norm), ca, cb, 16)
    ds = torch.nn.ModuleDict({"a": PatchDiscriminator(ca, 16, width=4, norm="instance"),
                              "b": PatchDiscriminator(cb, 16, width=4, norm="instance")})
    options = {"identity_weight": 0.5, "pool_size": 4, **options}
    game = CycleGAN(t, ds, LeastSquares(), cycle_weight=10.0, load_size=16, flip=False, grid_a=torch.zeros(1, ca, 16, 16),
                    grid_b=torch.zeros(1, cb, 16, 16), stats=Stats(torch.device("cpu")), **options)
    _optimizers(game)
    return game


def _raw_pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's batches of two 16 px RGB images per domain, as the data gives them, and in [-1, 1]."""
    raw_a = torch.randint(0, 256, (1, 2, 3, 16, 16), dtype=torch.uint8)
    raw_b = torch.randint(0, 256, (1, 2, 3, 16, 16), dtype=torch.uint8)
    return raw_a, raw_b, raw_a[0].float() / 127.5 - 1, raw_b[0].float() / 127.5 - 1


def test_cyclegan_cycle_and_identity_terms_match_hand_computation() -> None:
    game = _tiny_cyclegan(1)
    raw_a, raw_b, a, b = _raw_pair()
    G, F = copy.deepcopy(game.T.ab), copy.deepcopy(game.T.ba)
    cycle = ((F(G(a)) - a).abs().mean() + (G(F(b)) - b).abs().mean()).item()
    identity = ((G(b) - b).abs().mean() + (F(a) - a).abs().mean()).item()
    game.step((raw_a, raw_b))
    values = game.stats.read()
    assert values["loss/cycle"] == pytest.approx(cycle, rel=1e-5)
    assert values["loss/identity"] == pytest.approx(identity, rel=1e-5)
    assert int(game.pools["a"].count) == 2 and int(game.pools["b"].count) == 2


def test_each_domain_has_its_own_cycle_weight() -> None:
    # The generators' gradient is that of g + 10 |F(G(a)) - a| + 2 |G(F(b)) - b| + 0.5 (10 |F(a) - a| + 2 |G(b) - b|).
    # Without a pool (pool_size=0) the discriminators see the generated images as they are, detached.
    game = _tiny_cyclegan(2, cycle_weight_b=2.0, pool_size=0)
    raw_a, raw_b, a, b = _raw_pair()
    T, D = copy.deepcopy(game.T), copy.deepcopy(game.D)
    G, F = T.ab, T.ba
    g = game.g_scale * (game.loss.g_loss(D["b"](G(a)).flatten()) + game.loss.g_loss(D["a"](F(b)).flatten()))
    total = (g + 10.0 * (F(G(a)) - a).abs().mean() + 2.0 * (G(F(b)) - b).abs().mean()
             + 0.5 * (10.0 * (F(a) - a).abs().mean() + 2.0 * (G(b) - b).abs().mean()))
    total.backward()
    game.step((raw_a, raw_b))
    for (name, mine), expected in zip(game.T.named_parameters(), T.parameters()):
        torch.testing.assert_close(mine.grad, expected.grad, rtol=1e-4, atol=1e-4, msg=name)
    assert _tiny_cyclegan(2).cycle_weight_b == 10.0  # null: the same weight for both


@pytest.mark.parametrize("identity,ca,cb", [(0.5, 3, 3), (0.0, 3, 3), (0.0, 1, 3)])
def test_batched_generator_calls_give_the_separate_calls_values(identity: float, ca: int, cb: int) -> None:
    game = _tiny_cyclegan(3, ca, cb, identity_weight=identity)
    assert game.batched  # instance norm: per sample
    a, b = torch.randn(3, ca, 16, 16), torch.randn(2, cb, 16, 16)  # batches of two sizes too
    batched = game.translate_all(a, b)
    game.batched = False
    separate = game.translate_all(a, b)
    names = ("G(a)", "F(b)", "F(G(a))", "G(F(b))", "F(a)", "G(b)")
    for name, x, y in zip(names, batched, separate):
        if identity == 0 and name in ("F(a)", "G(b)"):
            assert x is None and y is None
        else:
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)
    assert not _tiny_cyclegan(3, ca, cb, g_norm="batch", identity_weight=identity).batched
    calls = []
    game.batched = True
    for g in (game.T.ab, game.T.ba):
        g.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    game.translate_all(a, b)
    assert len(calls) == 3  # one call per generator and stage
    calls.clear()
    big = 8192 // (16 * 16) + 1  # past BATCHED_PIXELS: separate calls, as batch norm's
    game.translate_all(torch.randn(big, ca, 16, 16), torch.randn(big, cb, 16, 16))
    assert calls == [big] * (6 if identity else 4)


def test_identity_needs_the_same_channels() -> None:
    t = Translator(ResnetGenerator(1, 3, 16, width=4, n_blocks=1), ResnetGenerator(3, 1, 16, width=4, n_blocks=1), 1, 3, 16)
    ds = torch.nn.ModuleDict({"a": PatchDiscriminator(1, 16, width=4), "b": PatchDiscriminator(3, 16, width=4)})
    with pytest.raises(GantrainError, match="identity_weight=0.5 compares G"):
        CycleGAN(t, ds, LeastSquares(), 10.0, 0.5, 0, 16, False, torch.zeros(1, 1, 16, 16), torch.zeros(1, 3, 16, 16),
                 stats=Stats(torch.device("cpu")))


def test_the_pool_fills_then_swaps_half_the_time_and_resumes_exactly() -> None:
    torch.manual_seed(0)
    pool = ImagePool(5, (1, 2, 2))
    first = torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 2, 2).contiguous()
    assert torch.equal(pool(first), first)  # filling: every image comes back as it is, and is stored
    assert int(pool.count) == 5 and torch.equal(pool.images, first)
    swapped = 0
    trials = 2000
    stored = first[:, 0, 0, 0].tolist()  # the pool's content, replayed: one value per image
    for i in range(trials):
        image = torch.full((1, 1, 2, 2), 100.0 + i)
        state = torch.get_rng_state()  # the pool's draws for this image: a slot, then a coin
        slot, coin = int(torch.randint(0, 5, ())), float(torch.rand(()))
        torch.set_rng_state(state)
        out = pool(image)
        if coin < 0.5:  # swap: the stored image comes back and the new one takes its slot
            swapped += 1
            assert torch.equal(out, torch.full((1, 1, 2, 2), stored[slot])), i
            stored[slot] = 100.0 + i
        else:
            assert torch.equal(out, image), i
        assert pool.images[:, 0, 0, 0].tolist() == stored, i
    assert abs(swapped / trials - 0.5) < 0.05  # binomial sd 0.011
    # resume: a copy loaded from the state, under the same RNG state, answers the same
    twin = ImagePool(5, (1, 2, 2))
    twin.load_state_dict(pool.state_dict())
    probe = torch.randn(8, 1, 2, 2)
    state = torch.get_rng_state()
    expected = pool(probe)
    torch.set_rng_state(state)
    assert torch.equal(twin(probe), expected) and torch.equal(twin.images, pool.images)
    assert torch.equal(ImagePool(0, (1, 2, 2))(probe), probe)  # size 0: no pool


def test_paired_crops_and_flips_stay_aligned() -> None:
    torch.manual_seed(0)
    base = torch.randn(16, 1, 8, 8)
    x = torch.cat([base, base, base], 1)  # A and B of each "pair" identical
    out = jitter(x, 12, flip=True)
    assert out.shape == x.shape
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert not torch.allclose(out, x)  # it changed something
    plain = jitter(x, 8, flip=False)
    assert torch.equal(plain, x)


def test_to_channels() -> None:
    grey = torch.rand(2, 1, 4, 4)
    assert torch.equal(to_channels(grey, 3), grey.expand(-1, 3, -1, -1))
    rgb = torch.rand(2, 3, 4, 4)
    lum = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]
    assert torch.allclose(to_channels(rgb, 1)[:, 0], lum)
    assert torch.equal(to_channels(torch.cat([rgb, grey], 1), 3), rgb)


def test_constant_then_linear_schedule() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = LinearDecay(opt, total=10, hold=5)
    rates = []
    for _ in range(10):
        schedule.step()
        rates.append(opt.param_groups[0]["lr"])
    assert rates == pytest.approx([1.0] * 5 + [0.8, 0.6, 0.4, 0.2, 0.0])


def test_a_one_step_hold_decays_from_the_step_after_it() -> None:
    """hold=1 (constant_linear over 2 or 3 steps): the rate stays for one step, then falls to 0 at `total`."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = LinearDecay(opt, total=3, hold=1)
    rates = []
    for _ in range(3):
        schedule.step()
        rates.append(opt.param_groups[0]["lr"])
    assert rates == pytest.approx([1.0, 0.5, 0.0])


def test_learning_rates_held_as_tensors_come_back_as_floats() -> None:
    """lr_to_device (what a CUDA graph needs) makes every group's rate a tensor that the schedule writes in place;
    lr_to_float gives a state with plain floats again (lr and initial_lr)."""
    from gantrain.training.optim import lr_to_device, lr_to_float

    opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.5},
                           {"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.25}], lr=1.0)
    lr_to_device(opt, torch.device("cpu"))
    tensors = [group["lr"] for group in opt.param_groups]
    assert all(isinstance(t, torch.Tensor) for t in tensors)
    schedule = LinearDecay(opt, total=4)
    schedule.step()
    assert [group["lr"] is t for group, t in zip(opt.param_groups, tensors)] == [True, True]  # written in place
    assert [float(t) for t in tensors] == pytest.approx([0.375, 0.1875])
    state = opt.state_dict()
    for group in state["param_groups"]:
        group["initial_lr"] = torch.tensor(1.0)
    plain = lr_to_float(state)
    assert [type(g["lr"]) for g in plain["param_groups"]] == [float, float]
    assert [g["lr"] for g in plain["param_groups"]] == pytest.approx([0.375, 0.1875])
    assert [type(g["initial_lr"]) for g in plain["param_groups"]] == [float, float]


def _weights(run: Path) -> dict:
    state = torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    return {"networks": state["networks"], "pools": state["game_state"]["pools"], "step": state["step"]}


def test_a_cyclegan_run_resumes_exactly(tmp_path: Path, data_root: Path) -> None:
    common = ["experiment=cyclegan_mnist2mnistm", f"dataset.root={data_root}", *TINY, "translation.pool_size=3",
              "trainer.steps=6"]  # the constant-then-linear schedule of the preset included
    straight = tmp_path / "straight"
    gantrain.train(gantrain.compose(common), straight)
    split = tmp_path / "split"
    middle = straight / "checkpoints" / "step_00000002.pt"
    gantrain.train(gantrain.compose([*common, f"resume={middle}"]), split)  # from step 2 of the same run
    a, b = _weights(straight), _weights(split)
    assert a["step"] == b["step"] == 6
    for group in ("networks", "pools"):
        for name, tensors in a[group].items():
            for key, value in (tensors.items() if isinstance(tensors, dict) else [(name, tensors)]):
                other = b[group][name][key] if isinstance(tensors, dict) else b[group][name]
                assert torch.equal(value, other), (group, name, key)
    assert int(a["pools"]["a.count"]) == 3  # the pool filled and kept going
    translator = gantrain.load_translator(split)
    assert translator.directions == ("AtoB", "BtoA") and translator.channels("BtoA") == (3, 3)


def test_pix2pix_command_on_tiny_settings(tmp_path: Path, data_root: Path) -> None:
    run = tmp_path / "p2p"
    proc = run_gantrain("experiment=pix2pix_edges2mnist", f"dataset.root={data_root}", *TINY, "trainer.steps=4",
                        f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grid = Image.open(run / "samples" / "step_00000004.png")
    # 8 held-out pairs as (input | output | target) triplets, two per row: 4 rows of 6 images of 32 px + padding
    assert grid.size == (6 * 34 + 2, 4 * 34 + 2)
    rows = [line for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert '"loss/l1"' in rows[-1]


def test_cyclegan_command_on_an_unpaired_folder(tmp_path: Path) -> None:
    root = tmp_path / "horse2zebra"
    for side, mode in (("trainA", "RGB"), ("trainB", "L"), ("testA", "RGB"), ("testB", "RGB")):
        (root / side).mkdir(parents=True)
        for i in range(6):
            Image.new(mode, (20 + i, 24), color=(i * 40, 10, 200 - i * 30) if mode == "RGB" else i * 40).save(root / side / f"{i}.png")
    (root / "trainB" / "6.png").write_bytes(b"not a picture")
    run = tmp_path / "cg"
    proc = run_gantrain("model=cyclegan", "dataset=unpaired_folder", f"dataset.root={root}", "dataset.image_size=16",
                        *TINY, "trainer.batch_size=2", "trainer.steps=2", f"hydra.run.dir={run}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6.png" in proc.stdout + proc.stderr  # the damaged file, reported and skipped
    assert (run / "samples" / "step_00000002.png").is_file()


@pytest.mark.parametrize("args, words", [
    (["model=pix2pix", "dataset=mnist2mnistm"], "model=pix2pix needs paired data"),
    (["dataset=edges2mnist"], "is for image-to-image translation: add model=pix2pix"),
    (["model=pix2pix", "dataset=mnist"], "translates images between two domains"),
    (["model=pix2pix", "dataset=edges2mnist", "generator=dcgan"], "does not translate images"),
    (["model=cyclegan", "dataset=mnist2mnistm", "translation.channels=3", "discriminator=mlp"], "cannot judge translated images"),
    (["model=cyclegan", "dataset=mnist2mnistm"], "identity_weight=0.5 compares G(b) with b"),
    (["model=pix2pix", "dataset=edges2mnist", "translation.kind=stargan"], "translation.kind='stargan' is not one of"),
    (["model=pix2pix", "dataset=edges2mnist", "translation.load_size=8"], "translation.load_size=8 is below"),
])
def test_translation_config_errors_are_one_line(args: list[str], words: str, data_root: Path, tmp_path: Path) -> None:
    cfg = gantrain.compose([*args, f"dataset.root={data_root}", *FAST, "trainer.steps=2"])
    with pytest.raises(GantrainError) as error:
        gantrain.train(cfg, tmp_path / "run")
    assert words in str(error.value) and "\n" not in str(error.value)
