"""The stylegan2 game's training step against a loop written the way the NVlabs StyleGAN2-ADA code runs it, side
by side in one process, on the same networks and data.

    OMP_NUM_THREADS=1 python scripts/bench_stylegan2.py [--steps 64] [--device cpu] [--size 32] [--batch 32]
                                                        [--channel-base 4096] [--channel-max 256] [--repeats 3]

gantrain: the run's Loop (built by gantrain.training.build from experiment=stylegan2_mnist at the given size and
width) training `steps` steps with no periodic work. Reference: the same networks (fresh copies with the same
weights), an eager loop whose four phases (Gmain, Greg every 4 steps, Dmain, Dreg every 16) are separate Python
calls, each building its loss, calling backward and stepping its optimizer, the losses read back with .item()
after each phase (the NVlabs training loop's logging), the same Adam settings, style mixing, path-length
penalty and R1. The two alternate `repeats` times (warm-up first); the script prints steps per second of each and
their ratio. No quality is measured here.
"""
from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def reference_steps(G, D, opt_g, opt_d, reals: torch.Tensor, steps: int, batch: int, start: int) -> None:
    """`steps` steps the NVlabs way (phases as separate calls, .item() after each)."""
    pl_mean = torch.zeros((), device=reals.device)
    logs = []
    for k in range(start, start + steps):
        real = reals[(k * batch) % (len(reals) - batch):][:batch]

        def mapped(n: int):
            z = torch.randn(n, G.latent_dim, device=real.device)
            ws = G.truncate_w(G.mapping(z))
            cutoff = int(torch.randint(1, G.num_ws, ()).item())
            if float(torch.rand(())) < 0.9:
                ws[:, cutoff:] = G.mapping(torch.randn_like(z)).unsqueeze(1)
            return ws

        # Gmain
        D.requires_grad_(False)
        fake = G.synthesis(mapped(batch))
        loss = F.softplus(-D(fake)).mean()
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        logs.append(loss.item())
        D.requires_grad_(True)
        # Greg
        if k % 4 == 0:
            ws = mapped(batch // 2)
            img = G.synthesis(ws)
            noise = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
            (grad,) = torch.autograd.grad((img * noise).sum(), ws, create_graph=True)
            lengths = grad.square().sum(2).mean(1).sqrt()
            pl_mean = pl_mean.lerp(lengths.mean(), 0.01).detach()
            penalty = (lengths - pl_mean).square().mean() * 2.0 * 4
            opt_g.zero_grad(set_to_none=True)
            penalty.backward()
            opt_g.step()
            logs.append(penalty.item())
        # Dmain
        with torch.no_grad():
            fake = G.synthesis(mapped(batch))
        loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        logs.append(loss.item())
        # Dreg
        if k % 16 == 0:
            x = real.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
            r1 = grad.square().sum((1, 2, 3)).mean() * (0.0032 / 2) * 16
            opt_d.zero_grad(set_to_none=True)
            r1.backward()
            opt_d.step()
            logs.append(r1.item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--channel-base", type=int, default=4096)
    parser.add_argument("--channel-max", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for option in ("steps", "batch", "repeats", "channel_base", "channel_max"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} {getattr(args, option)}: give a whole number of at least 1")
    if args.size not in [2 ** k for k in range(3, 11)]:
        parser.error(f"--size {args.size}: StyleGAN2 takes a power of two from 8 to 1024")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this machine has no CUDA device; use --device cpu")

    import gantrain
    from gantrain.data.base import normalize
    from gantrain.training.build import build

    widths = [f"{net}.channel_base={args.channel_base}" for net in ("generator", "discriminator")] + \
             [f"{net}.channel_max={args.channel_max}" for net in ("generator", "discriminator")]
    cfg = gantrain.compose(["experiment=stylegan2_mnist", f"dataset.image_size={args.size}", *widths,
                            f"trainer.batch_size={args.batch}", f"trainer.device={args.device}",
                            "trainer.steps=1000000", "trainer.eval_every=0", "stylegan2.ema_kimg=null",
                            "trainer.ema_decay=0.999"])
    with tempfile.TemporaryDirectory() as run:
        loop = build(cfg, Path(run))
        game = loop.game
        G_ref, D_ref = copy.deepcopy(game.G), copy.deepcopy(game.D)
        opt_g = torch.optim.Adam(G_ref.parameters(), lr=0.002, betas=(0.0, 0.991991))
        opt_d = torch.optim.Adam(D_ref.parameters(), lr=0.00235294, betas=(0.0, 0.990585))
        device = torch.device(args.device)
        reals = normalize(loop.batches.next(args.steps * args.repeats)[:, :].flatten(0, 1)).to(device)
        sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
        results = {"gantrain": [], "reference": []}
        for repeat in range(args.repeats + 1):  # the first round warms both up and is not counted
            sync()
            t = time.perf_counter()
            loop.train_steps(args.steps)
            sync()
            if repeat:
                results["gantrain"].append(args.steps / (time.perf_counter() - t))
            t = time.perf_counter()
            reference_steps(G_ref, D_ref, opt_g, opt_d, reals, args.steps, args.batch, repeat * args.steps)
            sync()
            if repeat:
                results["reference"].append(args.steps / (time.perf_counter() - t))
    best = {k: max(v) for k, v in results.items()}
    print(f"stylegan2 {args.size} px, batch {args.batch}, widths {args.channel_base}/{args.channel_max}, "
          f"{args.device}: {args.steps} steps x {args.repeats}")
    for name, values in results.items():
        print(f"  {name:10s} steps/s best {best[name]:.3f}  (all: {', '.join(f'{v:.3f}' for v in values)})")
    print(f"  ratio gantrain / reference: {best['gantrain'] / best['reference']:.2f}")


if __name__ == "__main__":
    from gantrain.errors import GantrainError

    try:
        main()
    except GantrainError as exc:  # the data or a setting the build refuses, in one line
        raise SystemExit(f"bench_stylegan2.py: {exc}") from None
