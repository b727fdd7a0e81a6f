"""Benchmark gantrain's trainer against the plain PyTorch loop the tutorials write, on the same models.

    python scripts/bench.py                       # every workload on the default device
    python scripts/bench.py --device cpu --workloads dcgan32 --seconds 20
    python scripts/bench.py --precision fp32,bf16 --markdown docs/benchmarks.md
    python scripts/bench.py --workloads pix2pix128,cyclegan128,cyclegan256 --batches 1,16

Workloads (iterations = generator updates): dcgan32 (DCGAN 32 px, batch 64, non-saturating),
wgan_gp32 (32 px, batch 64, WGAN-GP, n_critic 5), dcgan64 (64 px, batch 128, non-saturating),
cgan32 (32 px, batch 64, class-conditional: conditional batch norm in G, projection D with spectral
norm, hinge loss).
Data: MNIST from --data (torchvision layout, default ../shared/data), else random images of the same
shape. The plain loop reads a torchvision MNIST dataset with per-item PIL transforms through a
DataLoader, in fp32, calling .item() on the losses every step. Both sides get the same generator and
discriminator classes and sizes, batch size, optimizer and loss.

Translation workloads (iterations = training steps: one generator and one discriminator update):
pix2pix128 (model=pix2pix: U-Net, PatchGAN on pairs, GAN + 100 x L1) and cyclegan128 (model=cyclegan:
two ResNet generators, two PatchGANs, LSGAN, cycle and identity terms, 50-image pools), each at batch
1 (as the reference trains) and 16; cyclegan256 at batch 1, whose row is read for its peak GPU memory
(every translation row reports it: torch.cuda.max_memory_allocated over the run, "n/a" on the CPU);
cyclegan32 at batch 1 and 8, digit-sized as experiment=cyclegan_mnist2mnistm (networks of width 64).
Data: synthetic JPEG folders written once to a temporary folder (--images per domain, 256 px; pix2pix
gets A|B side-by-side files), read by gantrain as dataset=paired_folder / unpaired_folder at
dataset.image_size 128 or 256. The plain loop (scripts/bench_translation_reference.py) decodes the same
files in DataLoader workers with per-item PIL transforms (resize to 286/256 of the size, random crop,
flip), steps eagerly and reads every loss back with .item() each step.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import gzip
import os
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
from gantrain.training.build import build  # noqa: E402
from gantrain.data.streaming import DeviceBatches, StreamedBatches  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_translation_reference as reference  # noqa: E402

WORKLOADS = {
    "dcgan32": dict(size=32, batch=64, loss="nonsaturating"),
    "wgan_gp32": dict(size=32, batch=64, loss="wgan_gp"),
    "dcgan64": dict(size=64, batch=128, loss="nonsaturating"),
    "cgan32": dict(size=32, batch=64, loss="hinge", conditional=True),
}
# Image-to-image translation: model, image size, batch sizes (--batches overrides them).
TRANSLATION = {
    "pix2pix128": dict(kind="pix2pix", size=128, batches=(1, 16)),
    "cyclegan128": dict(kind="cyclegan", size=128, batches=(1, 16)),
    "cyclegan256": dict(kind="cyclegan", size=256, batches=(1,)),  # the memory row
    "cyclegan32": dict(kind="cyclegan", size=32, batches=(1, 8)),  # digit-sized, as experiment=cyclegan_mnist2mnistm
}
CONDITIONAL = ["conditional=true", "condition.discriminator=projection", "discriminator.norm=none",
               "discriminator.spectral_norm=true"]
# Dense peak FLOP/s by card: (TF32 tensor cores, which fp32 convolutions use by default; bf16).
PEAKS = {"H100": (494e12, 989e12), "H200": (494e12, 989e12), "A100": (156e12, 312e12)}


CUDNN_BENCHMARK = torch.backends.cudnn.benchmark  # as a fresh process starts


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(run, device: torch.device, seconds: float, steps: int | None, chunk: int) -> float:
    """Iterations per second of run(n) (n iterations per call, `chunk` at a time): exactly `steps`
    iterations when given, else at least `seconds` and at least 5 iterations."""
    sync(device)
    done, start = 0, time.perf_counter()
    if steps:
        while done < steps:
            n = min(chunk, steps - done)
            run(n)
            done += n
    else:
        while time.perf_counter() - start < seconds or done < 5:
            run(chunk)
            done += chunk
            sync(device)
    sync(device)
    return done / (time.perf_counter() - start)


class PeakMemory:
    """Peak GPU memory allocated inside the block, over what was allocated when it began (MiB; None off CUDA)."""

    def __init__(self, device: torch.device):
        self.device, self.mib = device, None

    def __enter__(self):
        if self.device.type == "cuda":
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        return False


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
                  labels: torch.Tensor | None = None, warmup: int = 3, steps: int | None = None):
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
    loop.train_steps(warmup)  # captures the CUDA graph first when planned (three warm-up steps), then `warmup` steps
    rate = measure(loop.train_steps, device, seconds, steps, 10)
    return rate, flops, loop.graph is not None


def plain_rate(w: dict, device: torch.device, seconds: float, mnist_root: Path | None, latent_dim: int = 100,
               warmup: int = 3, steps: int | None = None):
    """it/s of the tutorial loop: torchvision dataset + per-item transforms + DataLoader, fp32, .item() each step."""
    import torchvision
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, TensorDataset

    from gantrain.nets.dcgan import DCGANDiscriminator, DCGANGenerator

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

    def run(n: int) -> None:
        for _ in range(n):
            step()

    run(warmup)
    return measure(run, device, seconds, steps, 1)


def gantrain_translation_rate(w: dict, batch: int, device: torch.device, precision: str, seconds: float, root: Path,
                              run_dir: Path, on_device: str, warmup: int = 3, steps: int | None = None):
    """(it/s, FLOPs per step, whether a CUDA graph ran, where the data came from) of a gantrain pix2pix or
    CycleGAN run on an image folder, built as `gantrain model=... dataset=..._folder` builds it."""
    torch.backends.cudnn.benchmark = CUDNN_BENCHMARK  # what gantrain's translation build itself decides
    dataset = "paired_folder" if w["kind"] == "pix2pix" else "unpaired_folder"
    overrides = [f"model={w['kind']}", f"dataset={dataset}", f"dataset.root='{root}'", f"dataset.image_size={w['size']}",
                 f"dataset.on_device={on_device}", f"trainer.batch_size={batch}", f"trainer.device={device}",
                 f"trainer.precision={precision}", "trainer.log_every=1000000", "trainer.sample_every=1000000",
                 "trainer.ckpt_every=1000000", "trainer.steps=1000000000"]
    loop = build(gantrain.compose(overrides), run_dir)
    try:
        source = getattr(loop.batches, "a", loop.batches)
        data = "streamed" if isinstance(source, StreamedBatches) else "on device"
        k = loop.game.batches_per_step()
        with FlopCount() as counter:
            loop.game.step(loop.batches.next(k))
        flops = counter.total
        loop.train_steps(warmup)  # captures the CUDA graph first when planned
        rate = measure(loop.train_steps, device, seconds, steps, 10 if device.type == "cuda" else 1)
        return rate, flops, loop.graph is not None, data
    finally:
        loop.close()


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, of: {', '.join([*WORKLOADS, *TRANSLATION])}")
    parser.add_argument("--precision", default="fp32", help="comma-separated: fp32,bf16 (bf16: CUDA only)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per measurement")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed iterations per measurement (instead of --seconds)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations before each measurement")
    parser.add_argument("--batches", default=None,
                        help="comma-separated batch sizes of the translation workloads (default: 1,16; cyclegan256: 1)")
    parser.add_argument("--images", type=int, default=400,
                        help="images per domain in the synthetic translation folders")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the translation plain loop (default: 4, fewer on fewer cores)")
    parser.add_argument("--on-device", default="auto", choices=("auto", "true", "false"),
                        help="gantrain's dataset.on_device for the translation folders")
    parser.add_argument("--data", default=os.environ.get("GANTRAIN_DATA") or str(REPO.parent / "shared" / "data"),
                        help="where MNIST is (torchvision's layout; default $GANTRAIN_DATA, else ../shared/data); "
                             "without it the dcgan/cgan workloads time random images")
    parser.add_argument("--markdown", default=None, help="append the result table to this file")
    args = parser.parse_args()
    names = [n for n in args.workloads.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS and n not in TRANSLATION]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join([*WORKLOADS, *TRANSLATION])}")
    try:
        batches = [int(b) for b in args.batches.split(",")] if args.batches else None
    except ValueError:
        parser.error(f"--batches {args.batches}: give whole numbers separated by commas, e.g. 1,16")
    if batches is not None and min(batches) < 1:
        parser.error(f"--batches {args.batches}: every batch size must be at least 1")
    for option, value in (("--steps", args.steps), ("--seconds", args.seconds), ("--images", args.images)):
        if value is not None and value <= 0:
            parser.error(f"{option} {value}: give a positive number")
    if args.warmup < 0 or (args.workers is not None and args.workers < 0):
        parser.error("--warmup and --workers must be 0 or more")
    try:
        device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    except RuntimeError:
        parser.error(f"--device {args.device} is not a device; give auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this machine has no CUDA device; use --device cpu")
    skipped = [p for p in args.precision.split(",") if p and p != "fp32" and device.type != "cuda"]
    if skipped and not [p for p in args.precision.split(",") if p == "fp32"]:
        parser.error(f"--precision {args.precision} is measured on CUDA only; on the CPU give --precision fp32")
    if [p for p in args.precision.split(",") if p not in ("fp32", "bf16", "fp16", "")]:
        parser.error(f"--precision {args.precision}: give fp32, bf16 or fp16, comma-separated")
    seconds = args.seconds or (5.0 if device.type == "cuda" else 15.0)
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    peak = next((p for name, p in PEAKS.items() if name in card), None)
    precisions = [p for p in args.precision.split(",") if p == "fp32" or device.type == "cuda"]
    timing = dict(warmup=args.warmup, steps=args.steps)
    rows, translation_rows = [], []
    source = translation_source = None
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        mnist_root = None
        if any(n in WORKLOADS for n in names):
            mnist_root = mnist_copy(Path(args.data), tmp)
            source = "MNIST" if mnist_root else "random images (MNIST not found)"
        if any(n in TRANSLATION for n in names):
            paired, unpaired = reference.write_folders(tmp / "translation", args.images)
            translation_source = f"synthetic JPEG folders ({args.images} images per domain, {reference.IMAGE_SIZE} px)"
        for name in names:
            if name in TRANSLATION:
                w = TRANSLATION[name]
                root = paired if w["kind"] == "pix2pix" else unpaired
                for batch in batches or w["batches"]:
                    with PeakMemory(device) as plain_memory:
                        plain = reference.reference_rate(
                            w["kind"], root, w["size"], batch, device, args.warmup,
                            lambda run: measure(run, device, seconds, args.steps, 1), args.workers)
                    for precision in precisions:
                        with PeakMemory(device) as memory:
                            rate, flops, graphed, data = gantrain_translation_rate(
                                w, batch, device, precision, seconds, root, tmp / f"run-{name}-b{batch}-{precision}",
                                args.on_device, **timing)
                        achieved = flops * rate
                        frac = achieved / peak[1 if precision == "bf16" else 0] if peak else None
                        translation_rows.append((name, batch, precision, "graph" if graphed else "eager", data, plain, rate,
                                                 rate / plain, flops, achieved, frac, plain_memory.mib, memory.mib))
                        print(f"{name:11s} b{batch:<3d} {precision} {translation_rows[-1][3]:5s} plain {plain:8.4g} it/s  "
                              f"gantrain {rate:8.4g} it/s  x{rate / plain:5.2f}  {flops / 1e9:7.2f} GFLOP/step  "
                              f"{achieved / 1e12:7.3f} TFLOP/s  peak GPU MiB plain {_mib(plain_memory.mib)} "
                              f"gantrain {_mib(memory.mib)}  ({data})"
                              + (f"  {100 * frac:5.2f}% of peak" if frac else ""), flush=True)
                continue
            w = WORKLOADS[name]
            data = None
            if mnist_root is not None:
                mnist = gantrain.data.images.MNIST(root=args.data, image_size=w["size"], download=False)
                data, labels = mnist.tensor(), mnist.labels()
            else:
                data = torch.randint(0, 256, (60000, 1, w["size"], w["size"]), dtype=torch.uint8)
                labels = torch.arange(60000) % 10
            plain = plain_rate(w, device, seconds, mnist_root, **timing)
            for precision in precisions:
                rate, flops, graphed = gantrain_rate(w, device, precision, seconds, data, tmp, labels, **timing)
                achieved = flops * rate
                frac = achieved / peak[1 if precision == "bf16" else 0] if peak else None
                rows.append((name, precision, "graph" if graphed else "eager", plain, rate, rate / plain, flops, achieved, frac))
                print(f"{name:10s} {precision} {rows[-1][2]:5s} plain {plain:8.2f} it/s  gantrain {rate:8.2f} it/s  "
                      f"x{rate / plain:5.2f}  {flops / 1e9:7.2f} GFLOP/step  {achieved / 1e12:7.3f} TFLOP/s"
                      + (f"  {100 * frac:5.2f}% of peak" if frac else ""), flush=True)
    measured = f"{args.steps} steps" if args.steps else f"{seconds:g} s"
    table = ""
    if rows:
        header = (f"\n### {card}, torch {torch.__version__}, {datetime.date.today().isoformat()}, data: {source}\n\n"
                  "| workload | precision | gantrain step | plain loop it/s | gantrain it/s | ratio | GFLOP/step | TFLOP/s | of peak |\n"
                  "|---|---|---|---|---|---|---|---|---|\n")
        table += header + "".join(
            f"| {n} | {p} | {m} | {pl:.2f} | {r:.2f} | {x:.2f}x | {f / 1e9:.2f} | {a / 1e12:.3f} | "
            + (f"{100 * fr:.2f}% |" if fr else "n/a |") + "\n"
            for n, p, m, pl, r, x, f, a, fr in rows
        )
    if translation_rows:
        header = (f"\n### Translation, {card}, torch {torch.__version__}, {datetime.date.today().isoformat()}, "
                  f"data: {translation_source}, {measured} per measurement after {args.warmup} warm-up steps\n\n"
                  "| workload | batch | precision | gantrain step | gantrain data | plain loop it/s | gantrain it/s | ratio "
                  "| GFLOP/step | TFLOP/s | of peak | peak GPU MiB, plain | peak GPU MiB, gantrain |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        table += header + "".join(
            f"| {n} | {b} | {p} | {m} | {d} | {pl:.4g} | {r:.4g} | {x:.2f}x | {f / 1e9:.2f} | {a / 1e12:.3f} | "
            + (f"{100 * fr:.2f}%" if fr else "n/a") + f" | {_mib(mp)} | {_mib(mg)} |\n"
            for n, b, p, m, d, pl, r, x, f, a, fr, mp, mg in translation_rows
        )
    print(table)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(table)


if __name__ == "__main__":
    main()
