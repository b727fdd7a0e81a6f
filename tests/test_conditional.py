"""Class-conditional GANs: the conditioning layers, the conditional step against a reference, labelled data,
exact resume, and the refusals."""
import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gantrain
from conftest import run_gantrain
from gantrain.training.build import build
from gantrain.checkpoint import load_checkpoint
from gantrain.data.streaming import DeviceBatches, make_batches
from gantrain.data.images import ImageFolder
from gantrain.errors import GantrainError
from gantrain.nets.base import ConditionalBatchNorm2d
from gantrain.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from gantrain.nets.mlp import MLPDiscriminator, MLPGenerator

TINY = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
        "trainer.batch_size=32", "conditional=true"]


def test_projection_is_the_unconditional_head_plus_the_inner_product():
    torch.manual_seed(0)
    d = DCGANDiscriminator((1, 16, 16), base_channels=8, norm="none", num_classes=4, conditioning="projection")
    x = torch.randn(6, 1, 16, 16)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    h = d.net[:-1](x)
    expected = d.net[-1](h).flatten() + (d.head.embed(y) * h.sum((2, 3))).sum(1)
    torch.testing.assert_close(d(x, y), expected)
    other = d(x, (y + 1) % 4)
    assert not torch.allclose(d(x, y), other)  # the label changes the score
    mlp = MLPDiscriminator((2,), hidden=[8, 8], num_classes=3, conditioning="projection")
    p, labels = torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1])
    features = mlp.net[:-1](p)
    torch.testing.assert_close(mlp(p, labels), mlp.net[-1](features).flatten() + (mlp.head.embed(labels) * features).sum(1))


def test_conditional_batch_norm_with_one_class_is_batch_norm_with_that_affine():
    torch.manual_seed(1)
    cbn, bn = ConditionalBatchNorm2d(5, 1), nn.BatchNorm2d(5)
    assert torch.equal(cbn.scale.weight, torch.ones(1, 5)) and torch.equal(cbn.shift.weight, torch.zeros(1, 5))
    gamma, beta = torch.randn(5), torch.randn(5)
    with torch.no_grad():
        cbn.scale.weight[0], cbn.shift.weight[0] = gamma, beta
        bn.weight.copy_(gamma), bn.bias.copy_(beta)
    x = torch.randn(8, 5, 4, 4) * 3 + 1
    torch.testing.assert_close(cbn(x, torch.zeros(8, dtype=torch.long)), bn(x))
    torch.testing.assert_close(cbn.norm.running_mean, bn.running_mean)  # the same statistics are kept
    cbn.eval(), bn.eval()
    torch.testing.assert_close(cbn(x, torch.zeros(8, dtype=torch.long)), bn(x))


def test_generators_follow_the_label():
    torch.manual_seed(2)
    for g in (DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=8, num_classes=3),
              DCGANGenerator((1, 8, 8), latent_dim=4, base_channels=8, norm="none", num_classes=3),
              MLPGenerator((2,), bounded=False, latent_dim=2, hidden=[8], num_classes=3)):
        with torch.no_grad():  # move the per-class parameters off their initial values
            for name, p in g.named_parameters():
                if "scale" in name or "shift" in name or "embed" in name:
                    p.normal_()
        g.eval()
        z = torch.randn(4, g.latent_dim)
        assert not torch.allclose(g(z, torch.zeros(4, dtype=torch.long)), g(z, torch.ones(4, dtype=torch.long)))
        a = g.sample(4, generator=torch.Generator().manual_seed(3), labels=[2, 2, 1, 0])
        b = g.sample(4, generator=torch.Generator().manual_seed(3), labels=torch.tensor([2, 2, 1, 0]))
        assert torch.equal(a, b) and g.sample(4, labels=1).shape[0] == 4
        with pytest.raises(GantrainError, match=r"label 3 is outside the generator's classes 0\.\.2"):
            g.sample(2, labels=[0, 3])
        with pytest.raises(GantrainError, match="label -1 is outside"):
            g.sample(1, labels=[-1])
        with pytest.raises(GantrainError, match="3 labels for 2 samples"):
            g.sample(2, labels=[0, 1, 2])
        with pytest.raises(GantrainError, match="whole class numbers"):
            g.sample(2, labels=[0.5, 1.0])
    with pytest.raises(GantrainError, match="unconditional"):
        MLPGenerator((2,), bounded=False, hidden=[8]).sample(2, labels=[0, 1])


def test_label_input_lets_the_8px_dcgan_generator_learn_labels_that_batch_norm_alone_cannot_yet():
    """At 8x8 the DCGAN generator has one hidden layer, so conditional batch norm (per-class scales and shifts
    that start equal, moved by Adam about lr a step) is its only label path: fitted 300 steps to draw each
    class's mean digit, it draws no class-specific image. With the label embedding beside z it draws each one."""
    from gantrain.data.images import Digits

    digits = Digits(8)
    images, labels = digits.tensor().float() / 127.5 - 1, digits.labels()
    means = torch.stack([images[labels == c].mean(0) for c in range(10)])

    def nearest_mean_accuracy(label_input: bool) -> float:
        torch.manual_seed(0)
        g = DCGANGenerator((1, 8, 8), latent_dim=100, base_channels=32, num_classes=10, label_input=label_input)
        opt = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        for _ in range(300):
            y = torch.randint(10, (64,))
            loss = F.mse_loss(g(torch.randn(64, 100), y), means[y])
            opt.zero_grad()
            loss.backward()
            opt.step()
        g.eval()
        y = torch.arange(200) % 10
        with torch.no_grad():
            drawn = g(torch.randn(200, 100), y)
        return (torch.cdist(drawn.flatten(1), means.flatten(1)).argmin(1) == y).float().mean().item()

    assert nearest_mean_accuracy(label_input=True) > 0.9
    assert nearest_mean_accuracy(label_input=False) < 0.4  # near chance (0.1): why label_input exists
    g = DCGANGenerator((1, 8, 8), latent_dim=100, base_channels=32, num_classes=10, label_input=True)
    assert g.embed.weight.shape == (10, 16) and g.net[0].in_channels == 116
    # a run written before label_input existed rebuilds the same network (batch norm alone)
    assert not hasattr(DCGANGenerator((1, 8, 8), latent_dim=100, base_channels=32, num_classes=10), "embed")
    assert not hasattr(DCGANGenerator((1, 8, 8), latent_dim=100, base_channels=32, label_input=True), "embed")


def test_truncation_keeps_z_inside_and_is_refused_when_not_positive():
    g = MLPGenerator((2,), bounded=False, latent_dim=64, hidden=[8])
    from gantrain.nets.base import truncate

    z = truncate(torch.randn(256, 64), 0.5, torch.Generator().manual_seed(0))
    assert z.abs().max() <= 0.5 and z.std() > 0.2
    assert g.sample(8, truncation=0.7).shape == (8, 2)
    for bad in (0, -1.0, float("nan"), True):
        with pytest.raises(GantrainError, match="truncation"):
            g.sample(2, truncation=bad)
    with pytest.raises(GantrainError, match=r"only a style-based generator \(generator=stylegan2\) has a W space"):
        g.sample(2, psi=0.7)


def test_ac_classifier_loss_falls_on_a_separable_toy():
    torch.manual_seed(3)
    d = MLPDiscriminator((2,), hidden=[16], num_classes=2, conditioning="ac")
    x = torch.cat([torch.randn(64, 2) * 0.3 + 2, torch.randn(64, 2) * 0.3 - 2])
    y = torch.cat([torch.zeros(64, dtype=torch.long), torch.ones(64, dtype=torch.long)])
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        logits, classes = d(x, y, classes=True)
        assert logits.shape == (128,) and classes.shape == (128, 2)
        loss = F.cross_entropy(classes, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert (d(x, y, classes=True)[1].argmax(1) == y).float().mean() == 1.0


@pytest.mark.parametrize("conditioning", ["projection", "concat", "ac"])
def test_conditional_step_matches_a_reference(conditioning, tmp_path):
    """One step of the conditional game against one written out here: real labels to D on real images, drawn
    labels to G and to D on generated images, the AC cross-entropy where asked (SGD: every factor shows)."""
    cfg = gantrain.compose([*TINY, "loss=hinge", "dataset.image_size=16", f"condition.discriminator={conditioning}",
                            "condition.ac_weight=0.5", "optimizer=sgd", "optimizer.lr=0.05",
                            "condition.fake_labels=data"])
    loop = build(cfg, tmp_path)
    game = loop.game
    G, D = copy.deepcopy(game.G), copy.deepcopy(game.D)
    opt_g, opt_d = torch.optim.SGD(G.parameters(), lr=0.05), torch.optim.SGD(D.parameters(), lr=0.05)
    counts = torch.bincount(gantrain.data.Digits().labels(), minlength=10).float()
    cdf = (counts / counts.sum()).cumsum(0)
    for step in range(2):
        images, labels = loop.batches.next(1)
        real, real_y = images[0].float() / 127.5 - 1, labels[0]
        loop.stats.reset()
        torch.manual_seed(50 + step)
        game.step((images, labels))
        torch.manual_seed(50 + step)
        z = torch.randn(32, G.latent_dim)
        fake_y = torch.searchsorted(cdf, torch.rand(32), right=True).clamp(max=9)
        fake = G(z, fake_y)
        if conditioning == "ac":
            (r, rc), (f, _) = D(real, real_y, classes=True), D(fake.detach(), fake_y, classes=True)
        else:
            (r, rc), (f, _) = (D(real, real_y), None), (D(fake.detach(), fake_y), None)
        d_loss = torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean()
        total = d_loss + (0.5 * F.cross_entropy(rc, real_y) if rc is not None else 0)
        opt_d.zero_grad()
        total.backward()
        opt_d.step()
        D.requires_grad_(False)
        if conditioning == "ac":
            f, fc = D(fake, fake_y, classes=True)
            g_total = -f.mean() + 0.5 * F.cross_entropy(fc, fake_y)
        else:
            g_total = -D(fake, fake_y).mean()
        opt_g.zero_grad()
        g_total.backward()
        opt_g.step()
        D.requires_grad_(True)
        means = loop.stats.read()
        assert means["loss/d"] == pytest.approx(d_loss.item(), rel=1e-4, abs=1e-6)
        assert ("loss/class_d" in means) == ("loss/class_g" in means) == (conditioning == "ac")
        for a, b in ((game.G, G), (game.D, D)):
            for (name, x), ref in zip(a.state_dict().items(), b.state_dict().values()):
                torch.testing.assert_close(x, ref, rtol=1e-4, atol=1e-5, msg=name)


def test_fake_labels_follow_the_data_frequencies(tmp_path):
    loop = build(gantrain.compose([*TINY, "condition.fake_labels=data"]), tmp_path)
    game = loop.game
    game.batch_size = 20000
    torch.manual_seed(0)
    drawn = torch.bincount(game.fake_labels(torch.device("cpu")), minlength=10).float() / 20000
    truth = torch.bincount(gantrain.data.Digits().labels(), minlength=10).float() / 1797
    assert (drawn - truth).abs().max() < 0.015
    # a cumulative distribution that rounding left short of 1 never yields a label past the last class
    game.label_cdf = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    drawn = game.fake_labels(torch.device("cpu"))
    assert int(drawn.max()) == 9 and (drawn == 9).float().mean() > 0.08
    uniform = build(gantrain.compose(TINY), tmp_path / "u").game
    uniform.batch_size = 20000
    assert (torch.bincount(uniform.fake_labels(torch.device("cpu")), minlength=10) > 0).all()


def test_labelled_batches_keep_images_and_labels_together():
    data = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1)
    labels = torch.arange(40) % 7
    stream = DeviceBatches(data, 8, seed=3, device=torch.device("cpu"), labels=labels)
    images, y = stream.next(3)
    assert images.shape == (3, 8, 1, 1, 1) and y.shape == (3, 8)
    assert torch.equal(images.flatten().long() % 7, y.flatten())
    out = stream.empty(2, torch.device("cpu"))
    stream.next(2, out=out)
    assert torch.equal(out[0].flatten().long() % 7, out[1].flatten())


def write_images(folder, count, colour):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (6, 6), colour).save(folder / f"{i}.png")


def test_image_folder_with_class_subfolders_is_labelled(tmp_path):
    write_images(tmp_path / "labelled" / "cats", 3, (255, 0, 0))
    write_images(tmp_path / "labelled" / "dogs", 2, (0, 0, 255))
    # hidden folders and files (a notebook's checkpoints, thumbnails) are neither classes nor data
    write_images(tmp_path / "labelled" / ".ipynb_checkpoints", 2, (0, 0, 0))
    write_images(tmp_path / "labelled" / "dogs" / ".thumbs", 2, (0, 0, 0))
    folder = ImageFolder(str(tmp_path / "labelled"), image_size=4)
    assert folder.num_classes == 2 and folder.classes == ["cats", "dogs"]
    assert folder.labels().tolist() == [0, 0, 0, 1, 1] and "2 classes: 0 cats, 1 dogs)" in folder.describe()
    stream = make_batches(folder, 5, seed=0, device=torch.device("cpu"), num_workers=0, labelled=True)
    images, y = stream.next(1)
    red = images[0, :, 0, 0, 0] > 128  # cats are red
    assert torch.equal(red, y[0] == 0)
    write_images(tmp_path / "flat", 3, (0, 255, 0))
    flat = ImageFolder(str(tmp_path / "flat"), image_size=4)
    assert flat.num_classes is None and flat.no_classes == ""
    with pytest.raises(GantrainError, match="one subfolder per class"):
        flat.labels()
    write_images(tmp_path / "labelled", 1, (0, 255, 0))  # one image beside the class folders: no classes, and why
    assert ImageFolder(str(tmp_path / "labelled"), image_size=4).no_classes == (
        f"1 image(s) lie directly in {tmp_path / 'labelled'} (0.png), so its subfolders are not read as classes")
    write_images(tmp_path / "one" / "cats", 2, (255, 0, 0))
    assert ImageFolder(str(tmp_path / "one"), image_size=4).no_classes == (
        "its images are all in one subfolder (cats): one class")


def test_conditional_run_resumes_exactly(tmp_path):
    common = [*TINY, "loss=wgan_gp", "discriminator.norm=none", "condition.discriminator=ac", "trainer.ema_decay=0.9",
              "trainer.log_every=2", "trainer.ckpt_every=3", "trainer.sample_every=3", "seed=4"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    gantrain.train(gantrain.compose(common + ["trainer.steps=6"]), straight)
    gantrain.train(gantrain.compose(common + ["trainer.steps=3"]), split)
    gantrain.train(gantrain.compose(common + ["trainer.steps=6", f"resume={split}"]), split)
    a, b = (load_checkpoint(run / "checkpoints" / "last.pt") for run in (straight, split))
    assert a["game"] == b["game"] == "cgan" and a["num_classes"] == 10
    for part, net in (("networks", "generator"), ("networks", "discriminator"), ("ema", "generator")):
        for key in a[part][net]:
            assert torch.equal(a[part][net][key], b[part][net][key]), f"{part}.{net}.{key}"
    rows = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3, 4, 6] and all("loss/class_d" in r for r in rows)
    g = gantrain.load_generator(straight)
    assert g.num_classes == 10 and g.sample(3, labels=[1, 2, 3]).shape == (3, 1, 8, 8)
    with pytest.raises(GantrainError, match="cannot resume"):  # an unconditional config cannot continue it
        gantrain.train(gantrain.compose([c for c in common if c != "conditional=true"] + [
            "conditional=false", "trainer.steps=8", f"resume={split}"]), split)
    unconditional = gantrain.compose([c for c in common if c != "conditional=true"] + ["trainer.steps=8",
                                                                                       f"resume={split}"])
    with pytest.raises(GantrainError, match="cannot resume"):  # a config not made by compose: compared as it is
        gantrain.train(unconditional.copy(), split)


def test_runs_written_before_conditioning_existed_still_resume(tmp_path):
    run = tmp_path / "run"
    common = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
              "trainer.batch_size=32", "trainer.ckpt_every=2", "trainer.log_every=2", "trainer.sample_every=100"]
    gantrain.train(gantrain.compose(common + ["trainer.steps=2"]), run)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=False)
    for key in ("conditional", "condition"):  # what gantrain 0.2.0 wrote
        del state["config"][key]
    torch.save(state, last)
    gantrain.train(gantrain.compose(common + ["trainer.steps=4", f"resume={run}"]), run)
    assert load_checkpoint(last)["step"] == 4


def test_sample_grid_has_one_row_per_class(tmp_path):
    game = build(gantrain.compose([*TINY, "trainer.num_samples=40", "condition.grid_classes=4"]), tmp_path).game
    grid = game.sample_grid()
    assert game.grid_columns == 10 and grid.shape == (40, 1, 8, 8)
    assert not grid.requires_grad  # drawn without autograd, here from G itself (no EMA copy)
    assert game.fixed_labels.tolist() == [c for c in range(4) for _ in range(10)]
    assert torch.equal(game.fixed_z[:10], game.fixed_z[10:20])  # the same noise down each column
    few = build(gantrain.compose([*TINY, "trainer.num_samples=4"]), tmp_path / "few").game  # fewer than the classes
    assert few.grid_columns == 1 and few.sample_grid().shape == (10, 1, 8, 8)
    points = build(gantrain.compose(["experiment=cgan_grid", "trainer.device=cpu", "trainer.num_samples=50"]),
                   tmp_path / "p").game
    assert points.grid_columns is None and points.fixed_labels.tolist() == [i % 25 for i in range(50)]


@pytest.mark.parametrize("args, message", [
    (["dataset=digits", "conditional=true", "condition.discriminator=both"], "condition.discriminator='both' is not one of"),
    (["dataset=digits", "conditional=true", "condition.fake_labels=zipf"], "condition.fake_labels='zipf'"),
    (["dataset=digits", "conditional=yes"], "conditional='yes' must be true or false"),
    (["dataset=digits", "conditional=true", "condition=null"], "must be a group of settings"),
    (["dataset=digits", "optimizer.betas={a: 1}"], "cannot set optimizer.betas={a: 1}: Cannot merge DictConfig"),
])
def test_bad_condition_settings_are_one_line(args, message, tmp_path):
    result = run_gantrain(*args, "trainer.device=cpu", "trainer.steps=1", f"hydra.run.dir={tmp_path / 'run'}",
                          cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("gantrain: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr[-2000:]


def test_unlabelled_data_with_conditional_is_one_line_and_keeps_nothing(tmp_path):
    write_images(tmp_path / "flat", 4, (0, 255, 0))
    run = tmp_path / "run"
    result = run_gantrain("dataset=image_folder", f"dataset.root={tmp_path / 'flat'}", "dataset.image_size=8",
                          "conditional=true", "trainer.device=cpu", "trainer.steps=1", "trainer.batch_size=2",
                          f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "conditional=true needs labels, and image_folder has none" in result.stderr
    assert not run.exists()


def test_conditional_presets_train_from_the_command_line(tmp_path, data_root):
    run = tmp_path / "run"
    result = run_gantrain("experiment=cgan_mnist", f"dataset.root={data_root}", "trainer.device=cpu", "trainer.steps=2",
                          "trainer.batch_size=16", "generator.base_channels=4", "discriminator.base_channels=4",
                          "trainer.eval_every=0", f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["num_classes"] == 10
    grid = run / "grid"
    result = run_gantrain("experiment=cgan_grid", "trainer.device=cpu", "trainer.steps=3", "trainer.eval_every=0",
                          f"hydra.run.dir={grid}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert gantrain.load_generator(grid).num_classes == 25
    fashion = run / "fashion"
    result = run_gantrain("dataset=fashion_mnist", f"dataset.root={data_root}", "conditional=true", "trainer.device=cpu",
                          "trainer.steps=2", "trainer.batch_size=16", "generator.base_channels=4",
                          "discriminator.base_channels=4", f"hydra.run.dir={fashion}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_checkpoint(fashion / "checkpoints" / "last.pt")["num_classes"] == 10


def test_python_config_without_the_conditional_keys_trains_and_resumes(tmp_path):
    from omegaconf import open_dict

    def old_style(steps: int, resume=None):
        cfg = gantrain.compose(["dataset=digits", "trainer.device=cpu", "generator.base_channels=8",
                                "discriminator.base_channels=8", "trainer.batch_size=32", f"trainer.steps={steps}",
                                "trainer.ckpt_every=2", "trainer.sample_every=100"] + ([f"resume={resume}"] if resume else []))
        with open_dict(cfg):  # a config file written before these keys existed
            del cfg["conditional"], cfg["condition"]
        return cfg

    run = tmp_path / "run"
    gantrain.train(old_style(2), run)
    gantrain.train(old_style(4, run), run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4


def test_resume_after_the_classes_changed_is_one_line(tmp_path):
    for name, colour in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        write_images(tmp_path / "data" / name, 4, colour)
    run = tmp_path / "run"
    common = ["dataset=image_folder", f"dataset.root={tmp_path / 'data'}", "dataset.image_size=8", "conditional=true",
              "trainer.device=cpu", "trainer.batch_size=4", "generator.base_channels=4", "discriminator.base_channels=4",
              "trainer.sample_every=100"]
    gantrain.train(gantrain.compose(common + ["trainer.steps=1"]), run)
    import multiprocessing

    # the DataLoader workers of the streamed folder are gone when train returns (forked, they held the run's lock)
    assert multiprocessing.active_children() == []
    write_images(tmp_path / "data" / "birds", 4, (0, 255, 0))
    with pytest.raises(GantrainError, match="trained on 2 classes, the dataset now has 3"):
        gantrain.train(gantrain.compose(common + ["trainer.steps=2", f"resume={run}"]), run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 1
    # as many classes, but a folder renamed: the labels would change meaning
    import shutil

    shutil.rmtree(tmp_path / "data" / "birds")
    (tmp_path / "data" / "dogs").rename(tmp_path / "data" / "apes")
    with pytest.raises(GantrainError) as err:
        gantrain.train(gantrain.compose(common + ["trainer.steps=2", f"resume={run}"]), run)
    assert str(err.value) == ("the class folders differ from those the run was trained on: label 0 was 'cats' and "
                              "would now be 'apes' (a folder renamed?); resume with the folders it was trained on, or "
                              "start a new run")
    g = gantrain.load_generator(run)
    assert g.class_names == ["cats", "dogs"]  # which label is which folder
    torch.manual_seed(0)
    by_name = g.sample(3, labels="dogs")
    torch.manual_seed(0)
    assert torch.equal(by_name, g.sample(3, labels=1))  # a class by its folder's name
    with pytest.raises(GantrainError, match="'birds' is not one of this run's classes: cats, dogs"):
        g.sample(2, labels=["cats", "birds"])
    g.class_names = None  # as a run whose classes have no names (digits, MNIST)
    with pytest.raises(GantrainError, match=r"labels are class numbers 0\.\.1 here \(this run's classes have no names\)"):
        g.sample(1, labels="dogs")


class NoClassifierHead(DCGANDiscriminator):
    """A custom conditional discriminator without the AC head's `classes` argument."""

    def forward(self, x, y=None):
        return super().forward(x, y)


def test_labels_and_heads_a_conditional_run_needs_are_checked(tmp_path):
    from gantrain.training.components import check_labelled
    from gantrain.config import ConditionConfig

    class Custom(gantrain.data.Dataset):
        name, num_classes, shape = "custom", 3, (1, 8, 8)

        def __init__(self, labels):
            self._labels = labels

        def __len__(self):
            return 4

        def labels(self):
            return self._labels

    condition = ConditionConfig()
    assert check_labelled(Custom(torch.tensor([0, 1, 2, 2])), condition) == 3
    assert check_labelled(Custom(torch.tensor([0, 1, 2, 2])), None) is None
    with pytest.raises(GantrainError, match=r"labels run from 0 to 3, outside 0\.\.2"):
        check_labelled(Custom(torch.tensor([0, 1, 2, 3])), condition)
    with pytest.raises(GantrainError, match="one int64 class per sample"):
        check_labelled(Custom(torch.tensor([0, 1, 2], dtype=torch.int32)), condition)
    with pytest.raises(GantrainError, match="one int64 class per sample"):
        check_labelled(Custom(torch.tensor([0, 1, 2])), condition)
    with pytest.raises(GantrainError, match="needs a discriminator with a classifier head"):
        build(gantrain.compose([*TINY, "condition.discriminator=ac",
                                "discriminator._target_=test_conditional.NoClassifierHead"]), tmp_path)
