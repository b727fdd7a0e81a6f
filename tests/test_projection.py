"""Projection (GAN inversion): it recovers images the generator itself made, in w, w_plus and z, and
gantrain-project writes its files, skips unreadable images and refuses impossible requests in one line; with
small networks built here, a few steps of project() equal their computation by hand (draws, distance, noise
regulariser, schedule, jitter, Adam), as do psnr and the regulariser."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import gantrain
from gantrain.errors import GantrainError
from gantrain.eval.projection import noise_regularization, project, psnr
from gantrain.nets.control import synthesize
from gantrain.nets.dcgan import DCGANGenerator
from gantrain.nets.stylegan2 import StyleGAN2Generator
from conftest import run_command

@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return StyleGAN2Generator((1, 16, 16), latent_dim=16, w_dim=16, mapping_layers=2, channel_base=256,
                              channel_max=32).eval()


def test_projection_in_w_recovers_an_image_the_generator_made(G):
    torch.manual_seed(1)
    with torch.no_grad():
        targets = synthesize(G, torch.randn(3, 16))
    found = project(G, targets, space="w", steps=150)
    start = psnr(found.start, targets)
    assert float(start.max()) < 15  # the mean w's image is far from each target
    assert float(found.psnr.min()) > 25  # and the projection reproduces them
    assert found.latents.shape == (3, 16) and len(found.noises) == len(G.synthesis.convs)
    torch.testing.assert_close(found.psnr, psnr(found.images, targets))
    for noise in found.noises:  # the noise maps are kept normalised
        assert torch.allclose(noise.mean((1, 2, 3)), torch.zeros(3), atol=1e-5)
        assert torch.allclose(noise.square().mean((1, 2, 3)), torch.ones(3), atol=1e-4)
    plus = project(G, targets, space="w_plus", steps=60)
    assert plus.latents.shape == (3, G.num_ws, 16) and float((plus.psnr - start).min()) > 5


def test_projection_in_z_works_for_any_generator():
    torch.manual_seed(2)
    dcgan = DCGANGenerator((1, 16, 16), latent_dim=8, base_channels=8, norm="none").eval()
    with torch.no_grad():
        for weight in dcgan.parameters():  # larger than DCGAN's N(0, 0.02) start, so that images differ with z
            weight.normal_(0, 0.3)
        targets = dcgan(torch.randn(2, 8))
    found = project(dcgan, targets, space="z", steps=150, lr=0.05)
    assert found.latents.shape == (2, 8) and found.noises is None
    start = psnr(found.start, targets)
    assert float(start.max()) < 20 and float(found.psnr.min()) > 30
    with pytest.raises(GantrainError, match="use space=z"):
        project(dcgan, targets, space="w")
    with pytest.raises(GantrainError, match="do not fit"):
        project(dcgan, torch.zeros(2, 3, 16, 16), space="z")


def test_noise_regularization_is_zero_for_uncorrelated_and_positive_for_smooth_noise():
    flat = torch.ones(1, 1, 16, 16)
    assert float(noise_regularization([flat])) > 1  # constant maps correlate with their shifts at every scale
    checker = (torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)) % 2 * 2.0 - 1
    # a checkerboard anti-correlates with its one-pixel shifts at 16 px: (-1)^2 per axis, then 0 at 8 px
    assert float(noise_regularization([checker.view(1, 1, 16, 16)])) == pytest.approx(2.0)


def _folder(root, G, n=2):
    root.mkdir()
    with torch.no_grad():
        images = synthesize(G, torch.randn(n, G.latent_dim), torch.arange(n) if G.num_classes else None)
    for i, image in enumerate(images):
        array = ((image[0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(array).resize((28, 28)).save(root / f"{i}.png")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_the_command_projects_a_folder_and_skips_what_it_cannot_read(tmp_path, tiny_stylegan2_runs, capsys):
    run = tiny_stylegan2_runs["conditional"]
    G = gantrain.load_generator(run)
    folder = _folder(tmp_path / "in", G)
    out = tmp_path / "out"
    command = ["gantrain-project", str(run), f"input={folder}", f"out={out}", "steps=40", "labels=1", "perceptual=none"]
    proc = run_command(*command)
    assert proc.returncode == 1, proc.stderr  # one file could not be read: reported, the rest done
    assert "could not read 1 of 3" in proc.stderr and "broken.png" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0.npz", "0.png", "0_strip.png", "1.npz", "1.png", "1_strip.png"]
    saved = np.load(out / "0.npz")
    assert saved["latent"].shape == (8,) and str(saved["space"]) == "w" and int(saved["label"]) == 1
    assert Image.open(out / "0_strip.png").size == (48, 16)  # target | start | projection
    assert "PSNR" in proc.stdout and "perceptual distance: none" in proc.stdout
    from gantrain.commands.project import main

    for args, words in ((["labels=10"], "outside this run's classes 0..9"), (["space=v"], "space=v is not one of"),
                        (["perceptual=lpips"], "perceptual=lpips"), ([], "labels=K"),
                        (["labels=1", "perceptual=classifier"], "no cached domain classifier")):
        with pytest.raises(SystemExit) as stopped:  # in this process: the same main() the console script runs
            main([str(run), f"input={folder}", f"out={tmp_path / 'other'}", "steps=2", "device=cpu", *args])
        err = capsys.readouterr().err
        assert stopped.value.code == 2 and err.count("\n") == 1 and words in err, (args, err)
        assert not (tmp_path / "other").exists()
    again = run_command(*command)
    assert again.returncode == 2 and "overwrite=true" in again.stderr  # nothing replaced without overwrite


@pytest.mark.parametrize("space", ["z", "w", "w_plus"])
def test_a_projection_drawn_again_from_its_latent_file_is_the_projected_image(tmp_path, tiny_stylegan2_runs, space):
    from gantrain.commands.sample import main as sample_main

    run = tiny_stylegan2_runs["plain"]
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)).save(tmp_path / "x.png")
    proc = run_command("gantrain-project", str(run), f"input={tmp_path / 'x.png'}", f"out={tmp_path / 'p'}", "steps=3",
                       f"space={space}", "perceptual=none")
    assert proc.returncode == 0, proc.stderr
    drawn = []
    for name, extra in (("a", []), ("b", []), ("t", ["truncation=0.01"])):
        sample_main([str(run), f"latent={tmp_path / 'p' / 'x.npz'}", f"out={tmp_path / name}.npz", "device=cpu", *extra])
        drawn.append(np.load(tmp_path / f"{name}.npz")["samples"])
    # the same image every time (each layer's fixed noise, or the projection's own noise maps in w and w_plus),
    # and the one gantrain-project wrote, pixel for pixel
    assert np.array_equal(drawn[0], drawn[1])
    projected = np.asarray(Image.open(tmp_path / "p" / "x.png")).astype(np.int64)
    again = np.round((np.clip(drawn[0][0, 0], -1, 1) + 1) * 127.5).astype(np.int64)
    assert np.abs(again - projected).max() <= 1  # (two code paths to the same image: at most a rounding step apart)
    # truncation toward the average image applies in every space (it was dropped in z and w_plus)
    assert not np.allclose(drawn[2], drawn[0], atol=1e-3)


def test_outputs_of_two_inputs_that_would_collide_are_refused_before_anything_is_written(tmp_path, capsys):
    from gantrain.commands.project import main

    run = gantrain.train(gantrain.compose(["dataset=digits", "trainer.steps=1", "trainer.batch_size=8",
                                           "generator.base_channels=4", "discriminator.base_channels=4",
                                           "generator.latent_dim=4", "trainer.device=cpu", "trainer.eval_every=0"]),
                         tmp_path / "run")
    folder = tmp_path / "in"
    folder.mkdir()
    for name, grey in (("x.png", 200), ("x_strip.png", 10)):
        Image.new("L", (8, 8), grey).save(folder / name)
    for extra in ([], ["overwrite=true"]):  # x's strip would be x_strip's projection: refused either way
        with pytest.raises(SystemExit) as stopped:
            main([str(run), f"input={folder}", f"out={tmp_path / 'out'}", "steps=2", "device=cpu", *extra])
        assert stopped.value.code == 2
        assert capsys.readouterr().err == ("gantrain-project: error: x.png and x_strip.png would both be written as "
                                           "x_strip.png; rename one of them or project them into different folders\n")
        assert not (tmp_path / "out").exists()
    (folder / "x_strip.png").unlink()
    with pytest.raises(SystemExit) as stopped:  # a run without w: projected in z without being told
        main([str(run), f"input={folder}", f"out={tmp_path / 'out'}", "steps=2", "device=cpu", "perceptual=none"])
    assert stopped.value.code == 0, capsys.readouterr().err
    assert str(np.load(tmp_path / "out" / "x.npz")["space"]) == "z" and "space=z" in capsys.readouterr().out
    (tmp_path / "out" / "x_strip.png").unlink()
    with pytest.raises(SystemExit) as stopped:  # an output of the same name left there is not replaced
        main([str(run), f"input={folder}", f"out={tmp_path / 'out'}", "steps=2", "device=cpu", "perceptual=none"])
    assert stopped.value.code == 2 and "already holds 2 of the output file(s) (x.png, x.npz)" in capsys.readouterr().err


# --- Exact checks (mutation-testing follow-up): small networks built here, whose projection is recomputed by hand.

def _fresh(text):
    """A str equal to `text` that is not the same object (as the command line's parsed options are not)."""
    return "".join([text, ""])


class _Mapping(torch.nn.Module):
    def __init__(self, classes):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.weight = torch.nn.Parameter(torch.randn(3, 3, generator=g, dtype=torch.float64) * 2)
        self.bias = torch.nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
        self.embed = torch.nn.Parameter(torch.randn(classes, 3, generator=g, dtype=torch.float64)) if classes else None

    def forward(self, z, y=None):
        w = torch.tanh(z.double() @ self.weight) + self.bias
        return w if y is None else w + self.embed[y]  # labels of another length than z do not broadcast


class _Conv(torch.nn.Module):
    def __init__(self, resolution):
        super().__init__()
        self.resolution = resolution


class _Synthesis(torch.nn.Module):
    """ws (N, 2, 3) -> (N, 1, 4, 4): a linear map of each layer's w plus the three noise maps (4x4, 2x2 up-sampled,
    1x1 broadcast); it records the ws it is given."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.weight = torch.nn.Parameter(torch.randn(2, 3, 16, generator=g, dtype=torch.float64) * 0.5)
        self.convs = torch.nn.ModuleList([_Conv(4), _Conv(2), _Conv(1)])
        self.calls = []

    def forward(self, ws, noises):
        assert ws.shape[1:] == (2, 3)
        self.calls.append(ws.detach().clone())
        x = torch.einsum("nld,ldp->np", ws, self.weight).view(-1, 1, 4, 4)
        return x + 0.3 * noises[0] + 0.2 * noises[1].repeat_interleave(2, 2).repeat_interleave(2, 3) + 0.1 * noises[2]


class _Style(torch.nn.Module):
    style_based = True
    latent_dim, w_dim, num_ws, out_shape = 3, 3, 2, (1, 4, 4)

    def __init__(self, classes=0):
        super().__init__()
        self.num_classes = classes or None
        self.mapping, self.synthesis = _Mapping(classes), _Synthesis()


class _Plain(torch.nn.Module):
    """G(z, y) -> (N, 1, 4, 4), conditional, without a w space."""

    latent_dim, out_shape, num_classes = 3, (1, 4, 4), 2

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.weight = torch.nn.Parameter(torch.randn(3, 16, generator=g, dtype=torch.float64))
        self.embed = torch.nn.Parameter(torch.randn(2, 16, generator=g, dtype=torch.float64) * 0.3)

    def forward(self, z, y):
        return torch.tanh(z.double() @ self.weight + self.embed[y]).view(-1, 1, 4, 4)


def _features(x):  # a perceptual feature map (N, 3), not linear
    g = torch.Generator().manual_seed(6)
    return torch.tanh(x.double().flatten(1) @ torch.randn(16, 3, generator=g, dtype=torch.float64))


def _targets(n=2):
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(7)) * 2 - 1


def _penalty(noises):
    """The noise regulariser written out: the squared mean product of each map with its one-pixel shift along
    each axis (circular), at the map's resolution and each halving down to 8 px (2x2 block means)."""
    total = 0
    for n in noises:
        while True:
            h, w = n.shape[2], n.shape[3]
            right = n[:, :, :, [(i - 1) % w for i in range(w)]]
            down = n[:, :, [(i - 1) % h for i in range(h)], :]
            total = total + (n * right).mean() ** 2 + (n * down).mean() ** 2
            if h <= 8:
                break
            n = n.reshape(n.shape[0], n.shape[1], h // 2, 2, w // 2, 2).mean((3, 5))
    return total


def _by_hand(G, targets, space, steps, lr, labels, features, perceptual_weight, noise_weight, seed=0):
    """project() recomputed in float64: the same draws from the seed, Adam written out, the schedule's formula."""
    rng = torch.Generator().manual_seed(seed)
    n = len(targets)
    noises = None
    if space == "z":
        latent, w_std = torch.zeros(n, G.latent_dim, dtype=torch.float64), 0.0
    else:
        probe = torch.randn(n, 256, G.latent_dim, generator=rng)
        ws = torch.stack([G.mapping(probe[i], None if labels is None else labels[i].repeat(256)) for i in range(n)])
        w_mean = ws.mean(1)
        w_std = math.sqrt(float(((ws - w_mean[:, None]) ** 2).sum(2).mean()))  # RMS distance from the mean
        latent = w_mean[:, None].repeat(1, G.num_ws if space == "w_plus" else 1, 1).detach()
        noises = [torch.randn((n, 1, c.resolution, c.resolution), generator=rng).double() for c in G.synthesis.convs]
    params = [latent] + (noises or [])
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]

    def render(x, noise_maps):
        if space == "z":
            return G(x, labels)
        return G.synthesis(x.expand(-1, G.num_ws, -1), noise_maps)

    def distance(images):
        d = ((images.double() - targets.double()) ** 2).flatten(1).mean(1)
        if features is not None:
            d = d + perceptual_weight * ((features(images) - features(targets)) ** 2).sum(1)
        return d

    start = render(latent, noises).detach()
    seen, jitters = [], []
    for step in range(steps):
        t = step / steps
        rate = lr * min(1.0, t / 0.05) * (0.5 - 0.5 * math.cos(math.pi * min(1.0, (1 - t) / 0.25)))
        jitter = w_std * 0.05 * max(0.0, 1 - t / 0.75) ** 2
        jitters.append(jitter)
        leaves = [p.detach().clone().requires_grad_(True) for p in params]
        noisy = leaves[0] + torch.randn(latent.shape, generator=rng) * jitter if jitter > 0 else leaves[0]
        d = distance(render(noisy, leaves[1:] or None))
        seen.append(d.detach())
        loss = d.sum() + (noise_weight * n * _penalty(leaves[1:]) if noises else 0)
        grads = torch.autograd.grad(loss, leaves)
        k = step + 1
        for i, g in enumerate(grads):  # Adam, betas (0.9, 0.999), eps 1e-8
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            params[i] = params[i] - rate * (m[i] / (1 - 0.9**k)) / ((v[i] / (1 - 0.999**k)).sqrt() + 1e-8)
        for i in range(1, len(params)):  # each noise map back to zero mean and unit variance
            c = params[i] - params[i].mean((1, 2, 3), keepdim=True)
            params[i] = c / c.square().mean((1, 2, 3), keepdim=True).sqrt().clamp_min(1e-8)
        latent, noises = params[0], params[1:] or None
    final = render(latent, noises).detach()
    return dict(start=start, images=final, latents=latent[:, 0] if space == "w" else latent, noises=noises,
                distance=distance(final).detach(), seen=seen, jitters=jitters, w_std=w_std)


@pytest.mark.parametrize("space,conditional,steps,noise_weight", [("w", False, 5, 3.0), ("w_plus", True, 5, 0.5),
                                                                   ("w", True, 1, 3.0)])
def test_a_projection_in_w_equals_its_computation_by_hand(space, conditional, steps, noise_weight):
    G = _Style(classes=3 if conditional else 0)
    targets = _targets()
    labels = torch.tensor([2, 0]) if conditional else None
    seen = []
    found = project(G, targets, space=_fresh(space), steps=steps, lr=0.2, labels=labels, features=_features,
                    perceptual_weight=0.5, noise_weight=noise_weight, on_step=lambda step, d: seen.append((step, d)))
    calls = G.synthesis.calls
    G.synthesis.calls = []
    hand = _by_hand(G, targets, space, steps, 0.2, labels, _features, 0.5, noise_weight)
    close = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(found.latents.double(), hand["latents"], **close)
    assert found.latents.shape == ((2, 3) if space == "w" else (2, 2, 3)) and found.space == space
    for noise, expected in zip(found.noises, hand["noises"], strict=True):
        torch.testing.assert_close(noise.double(), expected, **close)
    torch.testing.assert_close(found.start.double(), hand["start"].float().double(), **close)
    torch.testing.assert_close(found.images.double(), hand["images"].float().double(), **close)
    torch.testing.assert_close(found.distance.double(), hand["distance"], **close)
    torch.testing.assert_close(found.psnr, psnr(found.images, targets))
    torch.testing.assert_close(found.psnr, psnr(hand["images"], targets), rtol=1e-4, atol=1e-4)
    assert [s for s, _ in seen] == list(range(steps))
    for (_, d), expected in zip(seen, hand["seen"], strict=True):
        torch.testing.assert_close(d.double(), expected, **close)
    # the ws each step rendered: the start, then w jittered by 5% of w's spread decaying to 0 at 75% of the steps
    assert len(calls) == steps + 2 and len(G.synthesis.calls) == steps + 2
    for got, expected in zip(calls, G.synthesis.calls, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    if steps == 5:
        assert hand["jitters"][-1] == 0 and hand["jitters"][0] == pytest.approx(0.05 * hand["w_std"])
        assert not torch.equal(calls[1], calls[0])  # jittered at the first step
    if labels is not None:
        assert torch.equal(found.labels, labels)
    assert all(not p.requires_grad and p.grad is None for p in G.parameters())  # the generator is left untouched


def test_a_projection_in_z_equals_its_computation_by_hand():
    G = _Plain()
    targets, labels = _targets(), torch.tensor([1, 0])
    found = project(G, targets, space=_fresh("z"), steps=5, lr=0.2, labels=labels, features=_features,
                    perceptual_weight=0.5)
    hand = _by_hand(G, targets, "z", 5, 0.2, labels, _features, 0.5, 3.0)
    close = dict(rtol=1e-5, atol=1e-5)
    assert found.noises is None and found.space == "z" and found.latents.shape == (2, 3)
    torch.testing.assert_close(found.latents.double(), hand["latents"], **close)
    torch.testing.assert_close(found.start.double(), hand["start"].float().double(), **close)
    torch.testing.assert_close(found.images.double(), hand["images"].float().double(), **close)
    torch.testing.assert_close(found.distance.double(), hand["distance"], **close)
    assert torch.equal(found.labels, labels)


def test_the_learning_rate_ramps_up_over_5_percent_and_down_over_the_last_quarter():
    from gantrain.eval.projection import _schedule

    # 0.5 - 0.5 cos(pi r) at r = 1, 0.5, 0.2 (the ramp-down's argument (1 - t) / 0.25): 1, 0.5, 0.0954915028
    for t, expected in ((0.0, 0.0), (0.025, 1.0), (0.05, 2.0), (0.5, 2.0), (0.75, 2.0), (0.875, 1.0),
                        (0.95, 0.1909830056), (1.0, 0.0)):
        assert _schedule(t, 2.0) == pytest.approx(expected, abs=1e-9), t
    assert _schedule(0.95, 0.3) == pytest.approx(0.3 * 0.0954915028, abs=1e-9)
    assert _schedule(0.01, 0.3) == pytest.approx(0.3 * 0.2, abs=1e-12)


def test_psnr_of_images_in_minus_one_to_one_and_its_floor():
    a = torch.zeros(3, 1, 2, 2, dtype=torch.float64)
    b = torch.stack([torch.full((1, 2, 2), 0.3), torch.full((1, 2, 2), -1.0), torch.zeros(1, 2, 2)]).double()
    # MSE 0.09: 10 log10(4 / 0.09) = 16.4781748 dB; MSE 1: 6.0205999 dB; equal images: the MSE floor 1e-12 gives
    # 10 log10(4e12) = 126.0205999 dB, not infinity
    expected = torch.tensor([16.4781748, 6.0205999, 126.0205999])
    torch.testing.assert_close(psnr(a, b), expected, rtol=1e-6, atol=1e-4)


def test_the_noise_regularizer_by_hand():
    # [[1, 2], [3, 4]]: with the horizontal neighbour (1*2 + 2*1 + 3*4 + 4*3) / 4 = 7, with the vertical one
    # (1*3 + 2*4 + 3*1 + 4*2) / 4 = 5.5: 7^2 + 5.5^2
    small = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).view(1, 1, 2, 2)
    assert float(noise_regularization([small])) == pytest.approx(79.25, abs=1e-9)
    # a constant 2 at 16 px and at 8 px (where it stops): 2 scales x 2 axes x (2 * 2)^2
    assert float(noise_regularization([torch.full((1, 1, 16, 16), 2.0, dtype=torch.float64)])) == pytest.approx(64)
    g = torch.Generator().manual_seed(8)
    maps = [torch.randn(2, 1, r, r, generator=g, dtype=torch.float64) + 0.3 for r in (32, 8, 4)]
    torch.testing.assert_close(noise_regularization(maps), _penalty(maps), rtol=1e-9, atol=0)


def test_projection_refuses_impossible_requests_in_one_line():
    G = _Style(classes=3)
    labels = torch.tensor([0, 1])
    for steps in (0, True, 2.5):
        with pytest.raises(GantrainError) as refused:
            project(G, _targets(), steps=steps, labels=labels)
        assert str(refused.value) == f"steps={steps} must be a whole number >= 1"
    for shape in ((2, 1, 2, 2), (2, 3, 4, 4)):
        with pytest.raises(GantrainError) as refused:
            project(G, torch.zeros(shape), steps=1, labels=labels)
        assert str(refused.value) == f"images of shape {shape[1:]} do not fit the generator's (1, 4, 4)"
    with pytest.raises(GantrainError) as refused:
        project(G, _targets(), steps=1)
    assert str(refused.value) == "this generator is conditional: give the images' labels"
    with pytest.raises(GantrainError) as refused:
        project(_Plain(), _targets(), space=_fresh("w"), steps=1, labels=labels)
    assert str(refused.value) == ("space=w needs a style-based run (generator=stylegan2); this run's generator has "
                                  "only z: use space=z")
    with pytest.raises(GantrainError) as refused:
        project(G, _targets(), space="v", labels=labels)
    assert str(refused.value) == "space=v is not one of w, w_plus, z"
    for key, value in (("noise_weight", -1.0), ("perceptual_weight", -0.5), ("lr", float("nan")), ("lr", float("inf")),
                       ("noise_weight", True), ("lr", "0.1")):
        with pytest.raises(GantrainError) as refused:
            project(G, _targets(), steps=1, labels=labels, **{key: value})
        assert str(refused.value) == f"{key}={value!r} must be a number >= 0 (0 turns it off)"
    import numpy as np

    project(G, _targets(), steps=1, labels=labels, lr=np.float32(0.1), noise_weight=0, perceptual_weight=0)
    for bad, message in ((torch.tensor([0, 3]), "labels must be classes 0..2 of this generator; got [0, 3]"),
                         (torch.tensor([-1, 0]), "labels must be classes 0..2 of this generator; got [-1, 0]"),
                         (torch.tensor([0.0, 1.0]), "labels must be 2 whole numbers, one per image, not shape (2,) of "
                                                    "torch.float32"),
                         (torch.tensor([0]), "labels must be 2 whole numbers, one per image, not shape (1,) of torch.int64")):
        with pytest.raises(GantrainError) as refused:
            project(G, _targets(), steps=1, labels=bad)
        assert str(refused.value) == message
    with pytest.raises(GantrainError, match=r"^targets must be a torch tensor of images .*\(torch.from_numpy"):
        project(G, _targets().numpy(), steps=1, labels=labels)
    with pytest.raises(GantrainError, match=r"^targets of shape \(0, 1, 4, 4\): give one image or more"):
        project(G, torch.zeros(0, 1, 4, 4), steps=1, labels=labels[:0])
    with pytest.raises(GantrainError, match=r"^project takes a generator \(gantrain.load_generator\(RUN\)\), not str"):
        project("runs/gp", _targets(), steps=1)


def test_the_defaults_are_the_stylegan2_projectors():
    import inspect

    defaults = {k: p.default for k, p in inspect.signature(project).parameters.items()}
    assert defaults["space"] is None and defaults["steps"] == 1000 and defaults["lr"] == 0.1
    labels = torch.tensor([0, 1])  # space by default: w for a style-based generator, z for any other
    assert project(_Style(classes=3), _targets(), steps=1, labels=labels).space == "w"
    found = project(_Plain(), _targets(), steps=1, labels=labels)
    assert found.space == "z" and found.latents.shape == (2, _Plain.latent_dim)
    assert defaults["perceptual_weight"] == 1.0 and defaults["noise_weight"] == 1e5 and defaults["seed"] == 0
