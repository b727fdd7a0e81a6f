"""gantrain's StyleGAN2 against NVIDIA's own code (stylegan2-ada-pytorch), imported from a checkout you give.

    python scripts/stylegan2_reference.py compare --nvlabs PATH [--size 32] [--channel-base 1024] [--channel-max 64]
    OMP_NUM_THREADS=1 python scripts/stylegan2_reference.py train --nvlabs PATH --out DIR [--steps 1000]
        [--eval-every 500] [--seed 0] [--batch 32] [--channel-base 1024] [--channel-max 64] [--lr 0.0025]

PATH is a clone of https://github.com/NVlabs/stylegan2-ada-pytorch (nothing of it is copied here; its modules are
imported from PATH and run on the CPU through their reference implementations, without fp16 layers or clamping).

compare: builds gantrain's generator and discriminator and NVIDIA's at the same size and widths, copies gantrain's
weights, biases, noise strengths, constant-noise buffers and w_avg into NVIDIA's (biases and noise strengths first
moved off their initial values so that they count), and prints the largest difference of: the mapping network's w,
the discriminator's logits, and the synthesis network's images. NVIDIA's up-sampling layers convolve (their
weights are flipped against the others, which correlate: a reparametrisation, `flip_weight = (self.up == 1)` in
its SynthesisLayer), so the images are compared twice: with the weights copied as they are, and with the
up-sampling layers' kernels flipped, then layer by layer on the same inputs: with the kernels flipped each
up-sampling layer differs only on its output's border rows and columns (the order of up-sampling and convolution
changes which zeros are padded), every other layer agrees to rounding.

train: trains NVIDIA's networks with NVIDIA's StyleGAN2Loss and its phase schedule (Gmain; Greg every 4 steps;
Dmain; Dreg every 16; learning rates and betas scaled for the lazy intervals; EMA half-life batch x 10 / 32
thousand images with its 5% ramp-up, as its "auto" configuration) on MNIST resized to 32 px, the settings of
gantrain's narrow CPU run in docs/results.md (z and w of 256, two mapping layers, gamma 0.0002 x 32^2 / batch), and
scores the EMA and the raw generator every `eval-every` steps with gantrain's Evaluator (classifier-space FID,
precision, recall, classes; 10,000 samples with each layer's constant noise), one JSON line each in DIR/log.jsonl.
Needs GANTRAIN_DATA to hold MNIST.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

PARAMS = ("weight", "bias", "noise_strength", "affine.weight", "affine.bias")


def _nvlabs(path: str):
    root = Path(path).expanduser()
    if not (root / "training" / "networks.py").is_file():
        raise SystemExit(f"{root} is not a stylegan2-ada-pytorch checkout (no training/networks.py); clone "
                         f"https://github.com/NVlabs/stylegan2-ada-pytorch and pass its folder as --nvlabs")
    sys.path.insert(0, str(root))
    from training import loss, networks

    return networks, loss


def nvlabs_networks(networks, z: int, w: int, size: int, base: int, cmax: int, mapping_layers: int):
    G = networks.Generator(z_dim=z, c_dim=0, w_dim=w, img_resolution=size, img_channels=1,
                           mapping_kwargs=dict(num_layers=mapping_layers),
                           synthesis_kwargs=dict(channel_base=base, channel_max=cmax, num_fp16_res=0, conv_clamp=None))
    D = networks.Discriminator(c_dim=0, img_resolution=size, img_channels=1, architecture="resnet", channel_base=base,
                               channel_max=cmax, num_fp16_res=0, conv_clamp=None,
                               epilogue_kwargs=dict(mbstd_group_size=4))
    return G, D


def generator_names(ours) -> dict[str, str]:
    """gantrain's generator state-dict names -> NVIDIA's."""
    names = {"synthesis.const": "synthesis.b4.const", "mapping.w_avg": "mapping.w_avg"}
    for i in range(len(ours.mapping.layers)):
        names.update({f"mapping.layers.{i}.{k}": f"mapping.fc{i}.{k}" for k in ("weight", "bias")})
    for k in PARAMS + ("noise_const",):
        names[f"synthesis.convs.0.{k}"] = f"synthesis.b4.conv1.{k}"
    for i, r in enumerate(ours.synthesis.resolutions):
        for k in ("weight", "bias", "affine.weight", "affine.bias"):
            names[f"synthesis.to_rgbs.{i}.{k}"] = f"synthesis.b{r}.torgb.{k}"
        if i:
            for j, conv in ((2 * i - 1, "conv0"), (2 * i, "conv1")):
                for k in PARAMS + ("noise_const",):
                    names[f"synthesis.convs.{j}.{k}"] = f"synthesis.b{r}.{conv}.{k}"
    return names


def discriminator_names(ours, size: int) -> dict[str, str]:
    names = {f"from_rgb.{k}": f"b{size}.fromrgb.{k}" for k in ("weight", "bias")}
    for i, r in enumerate(2**k for k in range(int(math.log2(size)), 2, -1)):
        for conv in ("conv0", "conv1"):
            names.update({f"blocks.{i}.{conv}.{k}": f"b{r}.{conv}.{k}" for k in ("weight", "bias")})
        names[f"blocks.{i}.skip.weight"] = f"b{r}.skip.weight"
    for a, b in (("conv", "b4.conv"), ("fc", "b4.fc"), ("out", "b4.out")):
        names.update({f"{a}.{k}": f"{b}.{k}" for k in ("weight", "bias")})
    return names


def copy_into(ours, theirs, names: dict[str, str], flip_up: bool = False) -> None:
    mine, target = ours.state_dict(), theirs.state_dict()
    unmatched = [k for k in target if k not in names.values() and not k.endswith("resample_filter")]
    if unmatched:
        raise SystemExit(f"NVIDIA's networks have entries this script does not map: {unmatched[:5]}")
    for a, b in names.items():
        value = mine[a].clone()
        if flip_up and b.endswith("conv0.weight") and b.startswith("synthesis."):
            value = value.flip([2, 3])
        target[b] = value
    theirs.load_state_dict(target)


def compare(args: argparse.Namespace) -> None:
    from gantrain.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

    networks, _ = _nvlabs(args.nvlabs)
    torch.manual_seed(0)
    size, base, cmax, z_dim = args.size, args.channel_base, args.channel_max, 64
    ours = StyleGAN2Generator((1, size, size), latent_dim=z_dim, w_dim=z_dim, mapping_layers=2, channel_base=base,
                              channel_max=cmax)
    our_d = StyleGAN2Discriminator((1, size, size), channel_base=base, channel_max=cmax)
    with torch.no_grad():
        for net in (ours, our_d):
            for name, p in net.named_parameters():
                if "bias" in name or "noise_strength" in name:
                    p.add_(0.3 * torch.randn_like(p))
    G, D = nvlabs_networks(networks, z_dim, z_dim, size, base, cmax, 2)
    copy_into(our_d, D, discriminator_names(our_d, size))
    z, x, c = torch.randn(8, z_dim), torch.randn(8, 1, size, size), torch.zeros(8, 0)
    with torch.no_grad():
        copy_into(ours, G, generator_names(ours))
        print(f"mapping network, w: max |difference| {(ours.mapping(z) - G.mapping(z, c)[:, 0]).abs().max():.3g}")
        print(f"discriminator, logits: max |difference| {(our_d(x) - D(x, c).flatten()).abs().max():.3g} "
              f"(logits up to {our_d(x).abs().max():.3g})")
        mine = ours(z, noise_mode="const")
        print(f"synthesis, weights as stored: max |difference| {(mine - G(z, c, noise_mode='const')).abs().max():.3g} "
              f"(images up to {mine.abs().max():.3g})")
        copy_into(ours, G, generator_names(ours), flip_up=True)
        print(f"synthesis, up-sampling kernels flipped: max |difference| "
              f"{(mine - G(z, c, noise_mode='const')).abs().max():.3g} (a border difference spreads inward one "
              f"pixel per layer); layer by layer on the same input:")
        ws = ours.truncate_w(ours.mapping(z))
        names = generator_names(ours)
        for j, conv in enumerate(ours.synthesis.convs):
            theirs = G.get_submodule(names[f"synthesis.convs.{j}.weight"].rsplit(".", 1)[0])
            r = conv.resolution // (2 if conv.up else 1)
            h = torch.randn(8, conv.weight.shape[1], r, r)
            diff = (conv(h, ws[:, j], "const") - theirs(h, ws[:, j], noise_mode="const", fused_modconv=False)).abs()
            print(f"  {'up-sampling ' if conv.up else ''}convolution {j} at {conv.resolution} px: max |difference| "
                  f"{diff.max():.3g}, {diff[:, :, 1:-1, 1:-1].max():.3g} inside the one-pixel border")
        for i, to_rgb in enumerate(ours.synthesis.to_rgbs):
            theirs = G.get_submodule(names[f"synthesis.to_rgbs.{i}.weight"].rsplit(".", 1)[0])
            h = torch.randn(8, to_rgb.weight.shape[1], 4, 4)
            diff = (to_rgb(h, ws[:, 0]) - theirs(h, ws[:, 0], fused_modconv=False)).abs().max()
            print(f"  toRGB {i}: max |difference| {diff:.3g}")


def train(args: argparse.Namespace) -> None:
    from gantrain.data.images import MNIST
    from gantrain.eval.evaluator import Evaluator

    networks, loss_module = _nvlabs(args.nvlabs)
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    size, batch, z_dim = 32, args.batch, 256
    G, D = nvlabs_networks(networks, z_dim, z_dim, size, args.channel_base, args.channel_max, 2)
    G_ema = copy.deepcopy(G).eval()
    gamma = 0.0002 * size**2 / batch
    loss = loss_module.StyleGAN2Loss("cpu", G.mapping, G.synthesis, D, r1_gamma=gamma)
    phases = []
    for name, module, interval in (("G", G, 4), ("D", D, 16)):
        ratio = interval / (interval + 1)
        opt = torch.optim.Adam(module.parameters(), lr=args.lr * ratio, betas=(0.0, 0.99**ratio), eps=1e-8)
        phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
    root = os.environ.get("GANTRAIN_DATA", "data")
    data = MNIST(root=root, image_size=size, download=False).tensor()
    evaluator = Evaluator(MNIST(root=root, image_size=size, download=False))

    class Sampled(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        @torch.no_grad()
        def sample(self, n, generator=None):
            z = torch.randn(n, z_dim, generator=generator)
            return self.net(z, torch.zeros(n, 0), noise_mode="const").clamp(-1, 1)

    ema_images = batch * 10 / 32 * 1000
    start, c = time.time(), torch.zeros(batch, 0)
    with open(out / "log.jsonl", "w") as log:
        for step in range(args.steps):
            real = data[torch.randint(len(data), (batch,))].float() / 127.5 - 1
            for name, module, opt, interval in phases:
                if step % interval:
                    continue
                opt.zero_grad(set_to_none=True)
                module.requires_grad_(True)
                loss.accumulate_gradients(phase=name, real_img=real, real_c=c, gen_z=torch.randn(batch, z_dim),
                                          gen_c=c, sync=True, gain=interval)
                module.requires_grad_(False)
                for p in module.parameters():  # as its training loop does
                    if p.grad is not None:
                        torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
                opt.step()
            half_life = min(ema_images, (step + 1) * batch * 0.05)
            beta = 0.5 ** (batch / max(half_life, 1e-8))
            with torch.no_grad():
                for e, p in zip(G_ema.parameters(), G.parameters()):
                    e.copy_(p.lerp(e, beta))
                for e, b in zip(G_ema.buffers(), G.buffers()):
                    e.copy_(b)
            if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
                for which, net in (("ema", G_ema), ("raw", G)):
                    row = {"step": step + 1, "generator": which, "seconds": round(time.time() - start),
                           **evaluator(Sampled(net))}
                    print(json.dumps(row), flush=True)
                    log.write(json.dumps(row) + "\n")
                    log.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("compare", "train"))
    parser.add_argument("--nvlabs", required=True, help="a clone of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--out", help="train: a new folder for log.jsonl")
    parser.add_argument("--size", type=int, default=32, help="compare: the image size")
    parser.add_argument("--channel-base", type=int, default=1024)
    parser.add_argument("--channel-max", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.0025)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.what == "train" and not args.out:
        parser.error("train needs --out DIR")
    compare(args) if args.what == "compare" else train(args)


if __name__ == "__main__":
    main()
