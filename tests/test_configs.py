"""Every config option composes and builds (in the manner of lightning-hydra-template's tests)."""
import math
from pathlib import Path

import pytest
import torch

import gantrain
from gantrain.training.build import build
from gantrain.training.components import build_dataset, instantiate_component
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
    for side in ("paired/train/A", "paired/train/B", "unpaired/trainA", "unpaired/trainB"):  # translation layouts
        (tmp_path / "images" / side).mkdir(parents=True)
        for i in range(6):
            Image.new("L" if side.endswith("B") else "RGB", (20, 20 + i), 30 * i).save(folder / side / f"{i}.png")
    return folder


def dataset_overrides(name: str, data_root: Path, image_folder: Path) -> list[str]:
    small = ["dataset.image_size=16", "trainer.batch_size=4", "generator.width=4", "discriminator.width=4"]
    extra = {"mnist": [f"dataset.root={data_root}"], "fashion_mnist": [f"dataset.root={data_root}"],
             "mnist_captions": [f"dataset.root={data_root}"], "fashion_captions": [f"dataset.root={data_root}"],
             "stacked_mnist": [f"dataset.root={data_root}", "dataset.num_samples=1000"],
             "image_folder": [f"dataset.root={image_folder}", "dataset.image_size=16", "trainer.batch_size=4"],
             # translation sets train with their model
             "edges2mnist": ["model=pix2pix", f"dataset.root={data_root}", *small],
             "mnist2mnistm": ["model=cyclegan", f"dataset.root={data_root}", "translation.channels=3", *small],
             "paired_folder": ["model=pix2pix", f"dataset.root={image_folder / 'paired'}", *small],
             "unpaired_folder": ["model=cyclegan", f"dataset.root={image_folder / 'unpaired'}", *small]}
    return [f"dataset={name}", *extra.get(name, [])]


@pytest.mark.parametrize("name", [n for n in options("dataset") if n != "cifar10"])
def test_every_dataset_builds_and_steps(name, data_root, image_folder, tmp_path):
    gen = "mlp" if name in ("ring", "grid") else "dcgan"
    networks = [] if "model=" in " ".join(dataset_overrides(name, data_root, image_folder)) else [
        f"generator={gen}", f"discriminator={gen}", "generator.hidden=[8]" if gen == "mlp" else "generator.base_channels=4",
        "discriminator.hidden=[8]" if gen == "mlp" else "discriminator.base_channels=4"]
    cfg = gantrain.compose(dataset_overrides(name, data_root, image_folder) + networks
                           + ["trainer.device=cpu", "trainer.num_workers=0"])
    loop = build(cfg, tmp_path / "run")
    raw = loop.batches.next(1)
    for part in (raw if isinstance(raw, tuple) else (raw,)):  # unpaired data: one batch of each domain
        assert part.shape[:2] == (1, cfg.trainer.batch_size)
    generator = loop.game.networks["generator"]
    before = [p.detach().clone() for p in generator.parameters()]
    loop.game.step(raw)
    assert any(not torch.equal(a, b) for a, b in zip(before, generator.parameters()))
    assert all(math.isfinite(v) for v in loop.stats.read().values())


def test_cifar10_composes_builds_models_and_says_what_is_missing(tmp_path):
    cfg = gantrain.compose(["dataset=cifar10", f"dataset.root={tmp_path}", "dataset.download=false"])
    dataset = build_dataset(cfg.dataset)
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
    loop = build(cfg, tmp_path)
    loop.game.step(loop.batches.next(cfg.trainer.n_critic))
    means = loop.stats.read()
    assert all(math.isfinite(v) for v in means.values()) and {"loss/d", "loss/g", "d/real", "d/fake"} <= set(means)
    if loss in ("wasserstein",):
        assert max(p.abs().max().item() for p in loop.game.D.parameters()) <= cfg.loss.clip + 1e-9
    assert cfg.trainer.n_critic == (5 if loss in ("wasserstein", "wgan_gp") else 1)


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_and_two_time_scales(optimizer, tmp_path):
    cfg = gantrain.compose([f"optimizer={optimizer}", "optimizer.discriminator.lr=0.0004", "trainer.device=cpu"])
    optimizers = build(cfg, tmp_path).game.optimizers
    assert optimizers["discriminator"].param_groups[0]["lr"] == pytest.approx(4e-4)
    assert optimizers["generator"].param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr)
    assert type(optimizers["generator"]).__name__.lower() == {"adam": "adam", "adamw": "adamw", "sgd": "sgd", "rmsprop": "rmsprop"}[optimizer]


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_builds(experiment, data_root, tmp_path):
    cfg = gantrain.compose([f"experiment={experiment}", f"dataset.root={data_root}", "trainer.device=cpu"]
                           + (["dataset.num_samples=1000"] if "stacked" in experiment else [])  # not 128,000
                           if "mnist" in experiment or "fashion" in experiment
                           else [f"experiment={experiment}", "trainer.device=cpu"])
    if "stylegan2" in experiment:  # the preset's networks at a batch of 4: one step of 64 takes a minute on a CPU
        cfg.trainer.batch_size = 4
    if cfg.dataset._target_ == "gantrain.data.images.ImageFolder":  # your own images: a few made here
        from PIL import Image

        folder = tmp_path / "images"
        folder.mkdir()
        for i in range(cfg.trainer.batch_size):
            Image.new("RGB", (40, 30), (8 * i, 255 - 8 * i, 100)).save(folder / f"{i}.png")
        cfg = gantrain.compose([f"experiment={experiment}", f"dataset.root={folder}", "trainer.device=cpu",
                                f"trainer.batch_size={cfg.trainer.batch_size}"])
    if cfg.dataset._target_ == "gantrain.data.images.CIFAR10":  # not here offline: its settings and networks, no data
        check_preset_without_data(cfg)
        return
    loop = build(cfg, tmp_path)
    game = loop.game
    if cfg.translation is not None:  # a translation preset: its networks, loss and weights
        first_d = game.D["a"] if cfg.translation.kind == "cyclegan" else game.D
        for obj, node in ((game.T.ab, cfg.generator), (first_d, cfg.discriminator), (game.loss, cfg.loss)):
            assert f"{type(obj).__module__}.{type(obj).__name__}" == node._target_
        assert game.name == cfg.translation.kind and loop.steps == cfg.trainer.steps
        assert game.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(cfg.optimizer.lr)
        assert set(game.schedules) == {"generator", "discriminator"} and game.schedules["generator"].hold == cfg.trainer.steps // 2
        loop.game.step(loop.batches.next(1))
        assert all(math.isfinite(v) for v in loop.stats.read().values())
        return
    # the built objects are the ones the preset names, with its settings
    g, d = (game.G.net, game.D.net) if game.name == "text" else (game.G, game.D)  # a text run wraps them
    for obj, node in ((g, cfg.generator), (d, cfg.discriminator), (game.loss, cfg.loss)):
        assert f"{type(obj).__module__}.{type(obj).__name__}" == node._target_
    streamed = cfg.dataset._target_ == "gantrain.data.images.ImageFolder" and not cfg.dataset.on_device  # from files
    assert streamed or type(loop.batches.data).__name__ == "Tensor"
    assert loop.batches.batch_size == cfg.trainer.batch_size
    assert (loop.steps, game.n_critic, g.latent_dim) == (cfg.trainer.steps, cfg.trainer.n_critic, cfg.generator.latent_dim)
    own = {who: cfg.optimizer.get(who) or {} for who in ("generator", "discriminator")}  # per-network overrides
    assert game.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(own["generator"].get("lr") or cfg.optimizer.lr)
    betas = own["discriminator"].get("betas") or cfg.optimizer.betas
    assert tuple(game.optimizers["discriminator"].defaults.get("betas", ())) == (
        tuple(betas) if cfg.optimizer.name in ("adam", "adamw") else ())
    assert game.loss.clip == cfg.loss.clip and game.loss.gp_weight == cfg.loss.gradient_penalty
    every = {type(w).__name__: w.every for w in loop.periodic}
    assert every["ScalarLog"] == cfg.trainer.log_every and every["Checkpointing"] == cfg.trainer.ckpt_every
    assert ("Evaluation" in every) == (cfg.trainer.eval_every > 0)
    loop.game.step(loop.batches.next(cfg.trainer.n_critic))  # and it trains
    assert all(math.isfinite(v) for v in loop.stats.read().values())


def check_preset_without_data(cfg):
    """What build checks of a preset short of its data: every group's keys, the evaluated metrics, and its
    networks built at its batch size (on the meta device) and run on the dataset's shape (on the CPU)."""
    from gantrain.training.components import (build_dataset, build_discriminator, build_generator, check_combination, estimate_memory, make_evaluator)
    from gantrain.config import check_top_level, condition_settings, optimizer_settings, trainer_settings

    check_top_level(cfg)
    settings, condition = trainer_settings(cfg), condition_settings(cfg)
    assert optimizer_settings(cfg).name == cfg.optimizer.name
    loss = instantiate_component(cfg.loss, "loss")
    check_combination(loss, cfg)
    dataset = build_dataset(cfg.dataset)  # built, not loaded
    if settings.eval_every > 0:
        make_evaluator(dataset, settings, torch.device("cpu"), condition is not None)
    if condition is None:  # build's memory check: both networks at the preset's batch size (conditional: reads labels)
        assert estimate_memory(cfg, dataset, settings)[0] > 0
    g = build_generator(cfg.generator, dataset.shape, dataset.kind, dataset.num_classes if condition else None)
    d = build_discriminator(cfg, dataset, condition)
    for obj, node in ((g, cfg.generator), (d, cfg.discriminator), (loss, cfg.loss)):
        assert f"{type(obj).__module__}.{type(obj).__name__}" == node._target_
    labels = [torch.arange(2) % dataset.num_classes] if condition else []
    x = g(torch.randn(2, g.latent_dim), *labels)
    assert x.shape == (2, *dataset.shape) and d(x, *labels).shape == (2,)


def test_wgan_recipes_carry_their_objective():
    wgan = gantrain.compose(["experiment=wgan_mnist"])
    assert (wgan.optimizer.name, wgan.optimizer.lr, wgan.loss.clip, wgan.trainer.n_critic) == ("rmsprop", 5e-5, 0.01, 5)
    gp = gantrain.compose(["experiment=wgan_gp_mnist"])
    assert (gp.optimizer.lr, list(gp.optimizer.betas), gp.loss.gradient_penalty, gp.trainer.n_critic) == (1e-4, [0.0, 0.9], 10.0, 5)
    plain = gantrain.compose(["loss=wasserstein", "dataset=mnist"])
    assert (plain.loss.clip, plain.trainer.n_critic) == (0.01, 5)


def test_linear_lr_schedule_decays_to_zero_at_the_last_step(tmp_path):
    cfg = gantrain.compose(["optimizer.lr_schedule=linear", "optimizer.discriminator.lr=0.0004", "trainer.steps=10",
                            "trainer.device=cpu"])
    loop = build(cfg, tmp_path)
    opt_g, opt_d = loop.game.optimizers["generator"], loop.game.optimizers["discriminator"]
    rates = []
    for _ in range(10):
        loop.run_step()
        rates.append(opt_g.param_groups[0]["lr"])
        if loop.step == 4:
            assert opt_d.param_groups[0]["lr"] == pytest.approx(4e-4 * (1 - 4 / 10))
    assert rates == pytest.approx([2e-4 * (1 - k / 10) for k in range(1, 11)], abs=1e-12) and rates[-1] == 0.0
    with pytest.raises(GantrainError, match="lr_schedule='cosine' is not one of"):
        build(gantrain.compose(["optimizer.lr_schedule=cosine", "trainer.device=cpu"]), tmp_path / "x")


@pytest.mark.parametrize("name,kernel,fused", [("adam", "auto", True), ("adamw", "auto", True), ("adam", "foreach", False),
                                               ("adam", "fused", True), ("rmsprop", "auto", False), ("sgd", "auto", False)])
def test_optimizer_kernel(name, kernel, fused, tmp_path):
    # auto: Adam/AdamW fused on the CPU as on CUDA (one pass over the weights); foreach keeps 0.6.0's update
    loop = build(gantrain.compose([f"optimizer={name}", f"optimizer.kernel={kernel}", "trainer.device=cpu"]), tmp_path)
    for opt in loop.game.optimizers.values():
        assert bool(opt.defaults.get("fused")) is fused and bool(opt.defaults.get("foreach")) is not fused
    loop.run_step()  # and it steps


def test_optimizer_kernel_errors(tmp_path):
    with pytest.raises(GantrainError, match="optimizer.kernel='fast' is not one of auto, fused, foreach"):
        build(gantrain.compose(["optimizer.kernel=fast", "trainer.device=cpu"]), tmp_path / "a")
    with pytest.raises(GantrainError, match="gantrain fuses adam and adamw only, not sgd; set optimizer.kernel=auto"):
        build(gantrain.compose(["optimizer=sgd", "optimizer.kernel=fused", "trainer.device=cpu"]), tmp_path / "b")


def test_schedule_writes_into_a_tensor_rate_in_place():
    # What a captured CUDA graph relies on: the schedule changes the value of the tensor the graph reads.
    from gantrain.training.optim import LinearDecay, lr_to_device, lr_to_float

    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([w], lr=0.1, foreach=False)
    schedule = LinearDecay(opt, total=4)
    lr_to_device(opt, torch.device("cpu"))
    tensor = opt.param_groups[0]["lr"]
    for k in range(1, 5):
        w.grad = torch.ones(3)
        opt.step()
        schedule.step()
        assert opt.param_groups[0]["lr"] is tensor and float(tensor) == pytest.approx(0.1 * (1 - k / 4))
    assert lr_to_float(opt.state_dict())["param_groups"][0]["lr"] == 0.0


def test_cuda_graph_is_decided_in_one_place():
    from gantrain.training.build import graph_plan
    from gantrain.config import TrainerConfig
    from gantrain.training.distributed import Dist

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert graph_plan(TrainerConfig(cuda_graph="auto"), cpu, Dist()) == (False, "not a CUDA device")
    assert graph_plan(TrainerConfig(cuda_graph="auto"), cuda, Dist()) == (True, "")
    assert graph_plan(TrainerConfig(cuda_graph="false"), cuda, Dist())[0] is False
    assert graph_plan(TrainerConfig(cuda_graph="auto"), cuda, Dist(0, 2))[0] is False
    for device, dist in ((cpu, Dist()), (cuda, Dist(0, 2))):
        with pytest.raises(GantrainError, match="cuda_graph=true"):
            graph_plan(TrainerConfig(cuda_graph="true"), device, dist)


@pytest.mark.parametrize("norm,layer", [("batch", "BatchNorm2d"), ("layer", "GroupNorm"), ("instance", "InstanceNorm2d"),
                                        ("none", None)])
def test_discriminator_norm_option_builds_that_norm(norm, layer, tmp_path):
    loop = build(gantrain.compose([f"discriminator.norm={norm}", "trainer.device=cpu", "dataset.image_size=16",
                                   "discriminator.base_channels=4"]), tmp_path)
    kinds = {type(m).__name__ for m in loop.game.D.modules()}
    norms = kinds & {"BatchNorm2d", "GroupNorm", "InstanceNorm2d", "LayerNorm"}
    assert norms == ({layer} if layer else set())
    x = torch.randn(6, 1, 16, 16)
    loop.game.D.train()
    if layer:  # the norm acts on the batch: outputs change when the rest of the batch changes (batch norm) or not
        a = loop.game.D(x)[:3]
        b = loop.game.D(torch.cat([x[:3], 5 * x[3:]]))[:3]
        assert torch.allclose(a, b, atol=1e-6) == (norm != "batch")


def test_a_setting_may_refer_to_another_key_of_the_config():
    # `trainer.log_every=${trainer.steps}`: resolved in the whole config, as `gantrain --cfg job --resolve` shows it
    from gantrain.config import trainer_settings

    cfg = gantrain.compose(["trainer.steps=40", "trainer.log_every=${trainer.steps}",
                            "trainer.sample_every=${trainer.batch_size}"])
    settings = trainer_settings(cfg)
    assert (settings.log_every, settings.sample_every) == (40, settings.batch_size)
    with pytest.raises(GantrainError, match="Interpolation key 'trainer.nope' not found"):
        trainer_settings(gantrain.compose(["trainer.log_every=${trainer.nope}"]))
