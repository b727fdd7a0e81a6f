"""Benchmark gantrain's trainer against the plain PyTorch loop the tutorials write, on the same models.

    python scripts/bench.py                       # every workload on the default device
    python scripts/bench.py --device cpu --workloads dcgan32 --seconds 20
    python scripts/bench.py --precision fp32,bf16 --markdown docs/benchmarks.md

Workloads (iterations = generator updates): dcgan32 (DCGAN 32 px, batch 64, non-saturating),
wgan_gp32 (32 px, batch 64, WGAN-GP, n_critic 5), dcgan64 (64 px, batch 128, non-saturating),
cgan32 (32 px, batch 64, class-conditional: conditional batch norm in G, projection D with spectral
norm, hinge loss).
Data: MNIST from --data (torchvision layout, default ../shared/data), else random images of the same
shape. The plain loop reads a torchvision MNIST dataset with per-item PIL transforms through a
DataLoader, in fp32, calling .item() on the losses every step. Both sides get the same generator and
discriminator classes and sizes, batch size, optimizer and loss.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

REPO = Path(__file__).resolve().parents[1]
try:
    import gantrain  # the installed package, configs included
except ImportError:  # a plain checkout: the source tree
    sys.path.insert(0, str(REPO))
    import gantrain
from gantrain.build import build  # noqa: E402
from gantrain.data import DeviceBatches  # noqa: E402

WORKLOADS = {
    "dcgan32": dict(size=32, batch=64, loss="nonsaturating"),
    "wgan_gp32": dict(size=32, batch=64, loss="wgan_gp"),
    "dcgan64": dict(size=64, batch=128, loss="nonsaturating"),
    "cgan32": dict(size=32, batch=64, loss="hinge", conditional=True),
}
CONDITIONAL = ["conditional=true", "condition.discriminator=projection", "discriminator.norm=none",
               "discriminator.spectral_norm=true"]
# Dense peak FLOP/s by card: (TF32 tensor cores, which fp32 convolutions use by default; bf16).
PEAKS = {"H100": (494e12, 989e12), "H200": (494e12, 989e12), "A100": (156e12, 312e12)}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mnist_copy(data_root: Path, tmp: Path) -> Path | None:
    """Decompress the MNIST .gz files into tmp (torchvision's MNIST class reads the raw files)."""
    raw = data_root / "MNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte.gz").is_file():
        return None
    out = tmp / "MNIST" / "raw"
    out.mkdir(parents=True)
    for gz in raw.glob("*.gz"):
        with gzip.open(gz, "rb") as src, open(out / gz.stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


class FlopCount(TorchDispatchMode):
    """FLOPs of the matmuls and convolutions run inside it, by torch.utils.flop_counter's formulas.

    (FlopCounterMode itself tracks modules with hooks that autograd.grad(create_graph=True) rejects.)
    """

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def gantrain_rate(w: dict, device: torch.device, precision: str, seconds: float, data: torch.Tensor | None, tmp: Path,
                  labels: torch.Tensor | None = None):
    """(it/s, FLOPs per step, whether a CUDA graph ran) of gantrain's trainer in steady state."""
    overrides = [f"loss={w['loss']}", "dataset=digits", f"dataset.image_size={w['size']}", f"trainer.batch_size={w['batch']}",
                 f"trainer.device={device}", f"trainer.precision={precision}", "trainer.log_every=1000000",
                 "trainer.sample_every=1000000", "trainer.ckpt_every=1000000", "trainer.steps=1000000000"]
    conditional = w.get("conditional", False)
    loop = build(gantrain.compose(overrides + (CONDITIONAL if conditional else [])),
                 tmp / f"run-{w['loss']}-{w['size']}-{precision}-{conditional}")
    if data is not None:
        loop.batches = DeviceBatches(data, w["batch"], 0, device, labels=labels if conditional else None)
    k = loop.game.batches_per_step()
    with FlopCount() as counter:
        loop.game.step(loop.batches.next(k))
    flops = counter.total
    loop.train_steps(3)  # captures the CUDA graph first when planned (three warm-up steps), then 3 steps
    sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 5:
        loop.train_steps(10)
        steps += 10
        sync(device)
    rate = steps / (time.perf_counter() - start)
    return rate, flops, loop.graph is not None


def plain_rate(w: dict, device: torch.device, seconds: float, mnist_root: Path | None, latent_dim: int = 100):
    """it/s of the tutorial loop: torchvision dataset + per-item transforms + DataLoader, fp32, .item() each step."""
    import torchvision
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, TensorDataset

    from gantrain.models import DCGANDiscriminator, DCGANGenerator

    size, batch = w["size"], w["batch"]
    conditional = w.get("conditional", False)
    transform = T.Compose([T.Resize(size), T.ToTensor(), T.Normalize((0.5,), (0.5,))])
    if mnist_root is not None:
        dataset = torchvision.datasets.MNIST(str(mnist_root), train=True, download=False, transform=transform)
    else:
        images = torch.randint(0, 256, (60000, 1, 28, 28), dtype=torch.uint8)

        class Random(TensorDataset):
            def __getitem__(self, i):
                return transform(T.functional.to_pil_image(images[i])), i % 10

        dataset = Random(images)
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=2, drop_last=True,
                        pin_memory=device.type == "cuda")
    torch.manual_seed(0)
    classes = 10 if conditional else 0
    G = DCGANGenerator((1, size, size), latent_dim=latent_dim, num_classes=classes).to(device)
    gp = w["loss"] == "wgan_gp"
    D = DCGANDiscriminator((1, size, size), norm="none" if gp or conditional else "batch", spectral_norm=conditional,
                           num_classes=classes).to(device)
    lr, betas = (1e-4, (0.0, 0.9)) if gp else (2e-4, (0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    n_critic = 5 if gp else 1
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)

    def batches():
        while True:
            for real, label in loader:
                yield real.to(device, non_blocking=True), label.to(device, non_blocking=True)

    stream = batches()

    def step():
        if conditional:  # hinge loss, labels into G and D
            real, y = next(stream)
            y_fake = torch.randint(10, (batch,), device=device)
            fake = G(torch.randn(batch, latent_dim, device=device), y_fake)
            opt_d.zero_grad()
            d_loss = F.relu(1 - D(real, y)).mean() + F.relu(1 + D(fake.detach(), y_fake)).mean()
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            g_loss = -D(fake, y_fake).mean()
            g_loss.backward()
            opt_g.step()
            return d_loss.item(), g_loss.item()
        if not gp:
            real = next(stream)[0]
            fake = G(torch.randn(batch, latent_dim, device=device))
            opt_d.zero_grad()
            d_loss = F.binary_cross_entropy_with_logits(D(real), ones) + F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
            g_loss.backward()
            opt_g.step()
            return d_loss.item(), g_loss.item()
        for _ in range(n_critic):
            real = next(stream)[0]
            fake = G(torch.randn(batch, latent_dim, device=device)).detach()
            eps = torch.rand(batch, 1, 1, 1, device=device)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
            penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            d_loss = D(fake).mean() - D(real).mean() + 10 * penalty
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            d_value = d_loss.item()
        opt_g.zero_grad()
        g_loss = -D(G(torch.randn(batch, latent_dim, device=device))).mean()
        g_loss.backward()
        opt_g.step()
        return d_value, g_loss.item()

    for _ in range(3):
        step()
    sync(device)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < 5:
        step()
        steps += 1
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workloads", default="dcgan32,wgan_gp32,dcgan64,cgan32")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32,bf16 (bf16: CUDA only)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--markdown", default=None, help="append the result table to this file")
    args = parser.parse_args()

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    seconds = args.seconds or (5.0 if device.type == "cuda" else 15.0)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    peak = next((p for name, p in PEAKS.items() if name in card), None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mnist_root = mnist_copy(Path(args.data), tmp)
        source = "MNIST" if mnist_root else "random images (MNIST not found)"
        for name in args.workloads.split(","):
            w = WORKLOADS[name]
            data = None
            if mnist_root is not None:
                mnist = gantrain.data.MNIST(root=args.data, image_size=w["size"], download=False)
                data, labels = mnist.tensor(), mnist.labels()
            else:
                data = torch.randint(0, 256, (60000, 1, w["size"], w["size"]), dtype=torch.uint8)
                labels = torch.arange(60000) % 10
            plain = plain_rate(w, device, seconds, mnist_root)
            for precision in args.precision.split(","):
                if precision == "bf16" and device.type != "cuda":
                    continue
                rate, flops, graphed = gantrain_rate(w, device, precision, seconds, data, tmp, labels)
                achieved = flops * rate
                frac = achieved / peak[1 if precision == "bf16" else 0] if peak else None
                rows.append((name, precision, "graph" if graphed else "eager", plain, rate, rate / plain, flops, achieved, frac))
                print(f"{name:10s} {precision} {rows[-1][2]:5s} plain {plain:8.2f} it/s  gantrain {rate:8.2f} it/s  "
                      f"x{rate / plain:5.2f}  {flops / 1e9:7.2f} GFLOP/step  {achieved / 1e12:7.3f} TFLOP/s"
                      + (f"  {100 * frac:5.2f}% of peak" if frac else ""), flush=True)
    header = (f"\n### {card}, torch {torch.__version__}, {datetime.date.today().isoformat()}, data: {source}\n\n"
              "| workload | precision | gantrain step | plain loop it/s | gantrain it/s | ratio | GFLOP/step | TFLOP/s | of peak |\n"
              "|---|---|---|---|---|---|---|---|---|\n")
    table = header + "".join(
        f"| {n} | {p} | {m} | {pl:.2f} | {r:.2f} | {x:.2f}x | {f / 1e9:.2f} | {a / 1e12:.3f} | "
        + (f"{100 * fr:.2f}% |" if fr else "n/a |") + "\n"
        for n, p, m, pl, r, x, f, a, fr in rows
    )
    print(table)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(table)


if __name__ == "__main__":
    main()
