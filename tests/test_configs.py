"""Every config option composes and builds (in the manner of lightning-hydra-template's tests)."""
from pathlib import Path

import pytest
import torch

import gantrain
from gantrain.build import build, instantiate_component
from gantrain.errors import GantrainError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_every_group_has_options():
    expected = {
        "dataset": {"mnist", "fashion_mnist", "cifar10", "image_folder", "digits", "ring", "grid"},
        "generator": {"dcgan", "mlp"},
        "discriminator": {"dcgan", "mlp"},
        "loss": {"minimax", "nonsaturating", "wasserstein", "wgan_gp", "hinge", "lsgan"},
        "optimizer": {"adam", "adamw", "sgd", "rmsprop"},
        "experiment": {"dcgan_mnist", "wgan_mnist", "wgan_gp_mnist", "ring", "grid"},
    }
    for group, names in expected.items():
        assert names <= set(options(group)), group


@pytest.fixture
def image_folder(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (20 + i, 24), (10 * i, 100, 200)).save(folder / f"{i}.png")
    return folder


def dataset_overrides(name: str, data_root: Path, image_folder: Path) -> list[str]:
    extra = {"mnist": [f"dataset.root={data_root}"], "fashion_mnist": [f"dataset.root={data_root}"],
             "image_folder": [f"dataset.root={image_folder}", "dataset.image_size=16", "trainer.batch_size=4"]}
    return [f"dataset={name}", *extra.get(name, [])]


@pytest.mark.parametrize("name", [n for n in options("dataset") if n != "cifar10"])
def test_every_dataset_builds_and_steps(name, data_root, image_folder, tmp_path):
    gen = "mlp" if name in ("ring", "grid") else "dcgan"
    cfg = gantrain.compose(
        dataset_overrides(name, data_root, image_folder)
        + [f"generator={gen}", f"discriminator={gen}", "generator.hidden=[8]" if gen == "mlp" else "generator.base_channels=4",
           "discriminator.hidden=[8]" if gen == "mlp" else "discriminator.base_channels=4", "trainer.device=cpu",
           "trainer.num_workers=0"]
    )
    trainer = build(cfg, tmp_path / "run")
    raw = trainer.batches.next(1)
    assert raw.shape[:2] == (1, cfg.trainer.batch_size)
    before = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.train_step(raw)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters()))
    assert torch.isfinite(trainer.stats).all()


def test_cifar10_composes_builds_models_and_says_what_is_missing(tmp_path):
    cfg = gantrain.compose(["dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false"])
    dataset = instantiate_component(cfg.dataset, "dataset")
    assert dataset.shape == (3, 32, 32)
    g = instantiate_component(cfg.generator, "generator", out_shape=dataset.shape)
    d = instantiate_component(cfg.discriminator, "discriminator", in_shape=dataset.shape)
    assert d(g(torch.randn(2, g.latent_dim))).shape == (2,)
    with pytest.raises(GantrainError, match="CIFAR-10 not found"):
        dataset.tensor()


@pytest.mark.parametrize("loss", options("loss"))
@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_every_loss_with_every_architecture(loss, arch, tmp_path):
    cfg = gantrain.compose([f"loss={loss}", f"generator={arch}", f"discriminator={arch}", "trainer.device=cpu",
                            "trainer.batch_size=16"])
    trainer = build(cfg, tmp_path)
    trainer.train_step(trainer.batches.next(cfg.trainer.n_critic))
    assert torch.isfinite(trainer.stats).all()
    if loss in ("wasserstein",):
        assert max(p.abs().max().item() for p in trainer.D.parameters()) <= cfg.loss.clip + 1e-9
    assert cfg.trainer.n_critic == (5 if loss in ("wasserstein", "wgan_gp") else 1)


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_and_two_time_scales(optimizer, tmp_path):
    cfg = gantrain.compose([f"optimizer={optimizer}", "optimizer.discriminator.lr=0.0004", "trainer.device=cpu"])
    trainer = build(cfg, tmp_path)
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(4e-4)
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr)
    assert type(trainer.opt_g).__name__.lower() == {"adam": "adam", "adamw": "adamw", "sgd": "sgd", "rmsprop": "rmsprop"}[optimizer]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_builds(experiment, data_root, tmp_path):
    cfg = gantrain.compose([f"experiment={experiment}", f"dataset.root={data_root}", "trainer.device=cpu"]
                           if "mnist" in experiment else [f"experiment={experiment}", "trainer.device=cpu"])
    trainer = build(cfg, tmp_path)
    assert trainer.s.steps > 0


def test_wgan_recipes_carry_their_objective():
    wgan = gantrain.compose(["experiment=wgan_mnist"])
    assert (wgan.optimizer.name, wgan.optimizer.lr, wgan.loss.clip, wgan.trainer.n_critic) == ("rmsprop", 5e-5, 0.01, 5)
    gp = gantrain.compose(["experiment=wgan_gp_mnist"])
    assert (gp.optimizer.lr, list(gp.optimizer.betas), gp.loss.gradient_penalty, gp.trainer.n_critic) == (1e-4, [0.0, 0.9], 10.0, 5)
    plain = gantrain.compose(["loss=wasserstein", "dataset=mnist"])
    assert (plain.loss.clip, plain.trainer.n_critic, plain.discriminator.sigmoid) == (0.01, 5, False)


def test_linear_lr_schedule_decays_to_zero_at_the_last_step(tmp_path):
    cfg = gantrain.compose(["optimizer.lr_schedule=linear", "optimizer.discriminator.lr=0.0004", "trainer.steps=10",
                            "trainer.device=cpu"])
    trainer = build(cfg, tmp_path)
    for _ in range(4):
        trainer._run_step()
    assert trainer.opt_g.param_groups[0]["lr"] == pytest.approx(2e-4 * (1 - 4 / 10))
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(4e-4 * (1 - 4 / 10))
    assert not trainer._use_graph() and "lr_schedule" in trainer.graph_reason or trainer.device.type == "cpu"
    with pytest.raises(GantrainError, match="lr_schedule='cosine' is not one of"):
        build(gantrain.compose(["optimizer.lr_schedule=cosine", "trainer.device=cpu"]), tmp_path / "x")
