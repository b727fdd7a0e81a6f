"""How the GAN games are built from a config (GAN.build, the shared build the conditional, text and style-based games
start from): the game class, the settings it takes, EMA, the conditional variant's labels, augmentation, the
evaluator, the 2D reference points and the diagnosis' real batch, and the refusals. Built through the real
`gantrain.training.build.build` from composed configs; nothing is trained."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import gantrain
from gantrain.errors import GantrainError
from gantrain.training.build import build
from gantrain.training.components import build_dataset, reference_batch
from gantrain.training.games.gan import GAN, ConditionalGAN

GRID = ["experiment=grid", "dataset.num_samples=3000", "trainer.batch_size=16", "trainer.device=cpu",
        "trainer.num_workers=0", "trainer.steps=4"]


def _loop(tmp_path, *overrides: str, evaluate: bool = True, base=GRID):
    cfg = gantrain.compose([*base, *overrides])
    return cfg, build(cfg, tmp_path / "run", evaluate=evaluate)


def _periodic(loop, kind: str) -> list:
    return [p for p in loop.periodic if type(p).__name__ == kind]


def test_a_gan_takes_the_runs_settings(tmp_path):
    from gantrain.training.diagnosis import mean_pairwise_distance

    cfg, loop = _loop(tmp_path, "trainer.n_critic=2", "trainer.num_samples=9", "trainer.ema_decay=0.9", "seed=5",
                      "trainer.eval_every=0", "trainer.diagnose=true")
    game = loop.game
    assert type(game) is GAN and game.augment is None
    assert (game.n_critic, game.batch_size, game.grid_seed, game.ema_decay) == (2, 16, 6, 0.9)
    assert game.fixed_z.shape == (9, game.G.latent_dim) and game.fixed_labels is None
    ema = game.ema["generator"]
    assert ema is not game.G and type(ema) is type(game.G)  # a copy of G, not G itself
    assert ema.state_dict().keys() == game.G.state_dict().keys()
    for name, p in game.G.state_dict().items():
        assert torch.equal(p, ema.state_dict()[name]) and p.data_ptr() != ema.state_dict()[name].data_ptr(), name
    assert {k: loop.meta[k] for k in ("data_shape", "data_kind", "num_classes")} == \
        {"data_shape": [2], "data_kind": "points", "num_classes": None}
    dataset = build_dataset(cfg.dataset, 5)
    (samples,) = _periodic(loop, "Samples")
    assert torch.equal(samples.reference, dataset.tensor()[:2500])
    (diagnosis,) = _periodic(loop, "Diagnosis")
    assert diagnosis.reference_spread == pytest.approx(mean_pairwise_distance(reference_batch(dataset, 5)), rel=1e-6)
    assert _periodic(loop, "Evaluation") == []
    batch = loop.batches.next(1)
    assert isinstance(batch, torch.Tensor) and batch.shape[-2:] == (16, 2)  # unlabelled: samples only


def test_ema_diagnosis_and_evaluation_follow_their_settings(tmp_path):
    _, loop = _loop(tmp_path / "a", "trainer.ema_decay=0", "trainer.diagnose=false", "trainer.eval_every=2",
                    "trainer.best_metric=null")  # evaluation on by itself, not for the preset's best_metric
    assert loop.game.ema == {} and loop.game.ema_decay == 0.0
    assert _periodic(loop, "Diagnosis") == [] and len(_periodic(loop, "Evaluation")) == 1
    _, loop = _loop(tmp_path / "b", "trainer.eval_every=2", evaluate=False)  # built to load weights: no evaluator
    assert _periodic(loop, "Evaluation") == []
    with pytest.raises(GantrainError) as err:  # best_metric is checked even with evaluation off
        _loop(tmp_path / "c", "trainer.eval_every=0", "trainer.best_metric=nonsense")
    assert str(err.value).startswith("trainer.best_metric=nonsense is not among the evaluated metrics (")
    _, loop = _loop(tmp_path / "d", "trainer.eval_every=0", "trainer.best_metric=nonsense", evaluate=False)
    assert _periodic(loop, "Evaluation") == []
    _, loop = _loop(tmp_path / "e", "trainer.eval_every=1", "trainer.best_metric=null")  # every step
    assert [p.every for p in _periodic(loop, "Evaluation")] == [1]
    _, loop = _loop(tmp_path / "f", "trainer.eval_every=0", "trainer.best_metric=null", "trainer.metrics=[nonsense]")  # off: not made
    assert _periodic(loop, "Evaluation") == []
    with pytest.raises(GantrainError, match="nonsense"):  # what the same list does when evaluation is on
        _loop(tmp_path / "g", "trainer.eval_every=1", "trainer.metrics=[nonsense]")


def test_a_conditional_gan_takes_its_labels_and_their_frequencies(tmp_path):
    base = ["experiment=cgan_grid", *GRID[1:]]
    cfg, loop = _loop(tmp_path / "a", "trainer.num_samples=30", "seed=3", base=base)
    game = loop.game
    assert type(game) is ConditionalGAN and loop.meta["num_classes"] == 25
    assert (game.num_classes, game.conditioning, game.ac_weight, game.grid_classes) == (25, "ac", 0.3, 25)
    torch.testing.assert_close(game.label_cdf, torch.arange(1, 26, dtype=torch.float32) / 25)  # uniform
    assert torch.equal(game.fixed_labels, torch.arange(30) % 25)
    batch = loop.batches.next(1)
    samples, labels = batch
    assert samples.shape[-2:] == (16, 2) and labels.shape[-1] == 16 and labels.dtype == torch.int64
    cfg, loop = _loop(tmp_path / "b", "condition.fake_labels=data", "dataset.num_samples=1000", "seed=3", base=base)
    counts = torch.bincount(build_dataset(cfg.dataset, 3).labels(), minlength=25).double()
    assert counts.min() != counts.max()  # drawn: the classes' shares differ, so uniform would not do
    torch.testing.assert_close(loop.game.label_cdf.double(), counts.cumsum(0) / counts.sum(), rtol=0, atol=1e-6)


def test_augmentation_takes_its_settings_and_refuses_points(tmp_path):
    digits = ["dataset=digits", "generator=dcgan", "discriminator=dcgan", "generator.base_channels=4",
              "discriminator.base_channels=4", "trainer.batch_size=8", "trainer.device=cpu", "trainer.num_workers=0",
              "trainer.steps=4", "trainer.eval_every=0"]
    _, loop = _loop(tmp_path / "a", "augment.policy=[translation,cutout]", "augment.p=0.3", base=digits)
    augment = loop.game.augment
    assert augment.policy == ("translation", "cutout") and float(augment.p) == pytest.approx(0.3)
    assert _periodic(loop, "Samples")[0].reference is None  # reference points are for 2D runs only
    weights = [p for net in (loop.game.G, loop.game.D) for p in net.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous() for p in weights)  # channels_last is for CUDA only
    assert torch.backends.cudnn.benchmark is False
    assert augment.ada_target is None and not augment.adaptive and augment.average is None
    _, loop = _loop(tmp_path / "b", "augment.policy=[color]", "augment.p=0.3", "augment.ada=true",
                    "augment.ada_target=0.7", "augment.ada_interval=2", "augment.ada_kimg=50", base=digits)
    augment = loop.game.augment
    assert float(augment.p) == 0.0 and augment.ada_target == pytest.approx(0.7)  # ADA starts at p = 0
    assert (augment.ada_interval, augment.ada_kimg, augment.batch_size) == (2, 50.0, 8)
    with pytest.raises(GantrainError) as err:
        _loop(tmp_path / "c", "augment.policy=[translation]")
    assert str(err.value) == ("augment.policy transforms images and grid holds 2D points; set augment.policy=null")


def test_a_translation_dataset_is_refused_by_the_gan_games(tmp_path):
    from PIL import Image

    root = tmp_path / "pairs"
    (root / "train").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 16, 3), 30 * i, np.uint8)).save(root / "train" / f"{i}.png")
    with pytest.raises(GantrainError) as err:
        _loop(tmp_path, "dataset=paired_folder", f"dataset.root={root}", "dataset.image_size=8",
              base=["trainer.device=cpu", "trainer.num_workers=0", "trainer.steps=1", "trainer.eval_every=0"])
    assert str(err.value).endswith("is for image-to-image translation: add model=pix2pix (paired) or model=cyclegan, "
                                   "or pick another dataset")


def test_under_torchrun_each_process_draws_its_own_noise_and_ada_averages_over_the_processes(monkeypatch):
    """The build's data-parallel wiring, as process 1 of 2 sees it (the collectives stand in: test_distributed.py
    runs the real ones under torchrun): G and D broadcast from process 0, this process's own noise seed, ADA's
    observations averaged over the processes and its step sized for the global batch, no evaluator or diagnosis
    off process 0."""
    import random

    import gantrain.training.distributed as distributed
    from gantrain.config import augment_settings, condition_settings, trainer_settings
    from gantrain.training.components import instantiate_component
    from gantrain.training.games import RunSetup
    from gantrain.training.stats import Stats

    broadcast = []
    monkeypatch.setattr(distributed, "broadcast_state", broadcast.append)
    monkeypatch.setattr(distributed, "all_sum", lambda t: t + 0.5)  # the other process observed 0.5
    cfg = gantrain.compose(["dataset=digits", "generator=dcgan", "discriminator=dcgan", "generator.base_channels=4",
                            "discriminator.base_channels=4", "trainer.batch_size=8", "trainer.device=cpu",
                            "trainer.num_workers=0", "trainer.eval_every=5", "trainer.diagnose=true",
                            "augment.policy=[translation]", "augment.ada=true", "augment.ada_interval=2",
                            "augment.ada_kimg=1"])
    settings = trainer_settings(cfg)
    dist = distributed.Dist(rank=1, world=2)
    setup = RunSetup(cfg=cfg, settings=settings, loss=instantiate_component(cfg.loss, "loss"),
                     dataset=build_dataset(cfg.dataset, 11), seed=11, device=torch.device("cpu"), dist=dist,
                     stats=Stats(torch.device("cpu")), condition=condition_settings(cfg), augment=augment_settings(cfg))
    built = GAN.build(setup)
    drawn = (torch.rand(3), random.random(), float(np.random.rand()))
    torch.manual_seed(11 + 1_000_003)
    assert torch.equal(drawn[0], torch.rand(3))  # the seed of process 1: seed + 1,000,003 x rank
    random.seed(11 + 1_000_003)
    np.random.seed(11 + 1_000_003)
    assert (drawn[1], drawn[2]) == (random.random(), float(np.random.rand()))
    game = built.game
    assert broadcast == [game.G, game.D]
    augment = game.augment
    assert float(augment.average(torch.tensor(0.25))) == pytest.approx(0.375)  # (0.25 + 0.5) / 2
    assert augment.batch_size == 16 and augment.ada_step == pytest.approx(16 * 2 / 1000)  # the global batch
    assert built.evaluator is None and built.diagnosis is None  # process 0 evaluates and diagnoses
    for rank, world in ((0, 2), (2, 3)):  # process 0 keeps the run's seed; process k adds k x 1,000,003
        setup.dist = distributed.Dist(rank=rank, world=world)
        GAN.build(setup)
        drawn = torch.rand(3)
        torch.manual_seed(11 + 1_000_003 * rank)
        assert torch.equal(drawn, torch.rand(3)), rank


def test_image_networks_on_cuda_run_channels_last_with_cudnn_autotuning(monkeypatch):
    # The layout build asks for, by device and kind: read on the CPU modules here (nothing is put on a GPU).
    from gantrain.training.games.gan import cuda_image_layout

    for device, kind, expected in (("cuda", "image", True), ("cuda", "points", False), ("cuda:1", "image", True),
                                   ("cpu", "image", False), ("cpu", "points", False)):
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
        g, d = torch.nn.Conv2d(3, 4, 3), torch.nn.Sequential(torch.nn.Conv2d(4, 2, 3), torch.nn.Conv2d(2, 1, 3))
        cuda_image_layout(torch.device(device), kind, g, d)
        weights = [g.weight, d[0].weight, d[1].weight]
        assert [w.is_contiguous(memory_format=torch.channels_last) for w in weights] == [expected] * 3, (device, kind)
        assert [w.is_contiguous() for w in weights] == [not expected] * 3, (device, kind)
        assert torch.backends.cudnn.benchmark is expected, (device, kind)
