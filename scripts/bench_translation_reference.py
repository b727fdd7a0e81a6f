"""The reference loop of scripts/bench.py's translation workloads (pix2pix, CycleGAN), and their image folders.

The loop is written the way the usual image-to-image training script runs: a torch DataLoader over the
image files whose workers decode each file with PIL and transform it on its own (resize to the load size
with bicubic filtering, a random crop of the training size, a random left-right flip, ToTensor,
Normalize to [-1, 1]; the two halves of a paired file share the crop and the flip), batches copied to the
device, an eager step with the reference's update order and loss weights, every loss read back with
.item() after every step, and CycleGAN's history of generated images kept in a Python list.
The networks are gantrain.nets.translation's classes with the sizes gantrain's configs give them.
"""
from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from gantrain.nets.translation import PatchDiscriminator, ResnetGenerator, UNetGenerator

IMAGE_SIZE = 256  # side of the synthetic images on disk (the workloads train at 128 or 256 px)


# ---------------------------------------------------------------------------------------------
# Synthetic image folders


def _picture(rng: np.random.Generator, size: int) -> np.ndarray:
    """An (size, size, 3) uint8 image with structure at several scales: smooth colour fields, stripes and
    discs, and fine grain, so JPEG decoding does the work it does on photographs."""
    from PIL import Image

    coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.03, 0.2)
    stripes = 40 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    base += stripes[..., None] * rng.uniform(-1, 1, 3)
    for _ in range(rng.integers(2, 6)):
        cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 16, size / 4)]
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        base[inside] = 0.4 * base[inside] + 0.6 * rng.integers(0, 256, 3)
    base += rng.normal(0, 6, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_folders(root: Path, count: int, size: int = IMAGE_SIZE, test_count: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """Write the synthetic sets once: (paired root, unpaired root).

    paired/train/*.jpg: A | B side by side (2*size x size, pix2pix's aligned layout), B a recoloured and
    mirrored A; unpaired/trainA/, trainB/: size x size JPEGs of two independent domains. Each has a small
    test split (held-out images for gantrain's sample grids).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    paired, unpaired = root / "paired", root / "unpaired"
    for split, n in (("train", count), ("test", test_count)):
        (paired / split).mkdir(parents=True)
        for side in "AB":
            (unpaired / f"{split}{side}").mkdir(parents=True)
        for i in range(n):
            a = _picture(rng, size)
            b = np.ascontiguousarray(255 - a[:, ::-1, ::-1])
            Image.fromarray(np.concatenate([a, b], 1)).save(paired / split / f"{i:04d}.jpg", quality=90)
            for side in "AB":
                Image.fromarray(_picture(rng, size)).save(unpaired / f"{split}{side}" / f"{i:04d}.jpg", quality=90)
    return paired, unpaired


# ---------------------------------------------------------------------------------------------
# Data: per-item PIL decoding and transforms in DataLoader workers


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _jitter_params(load: int, crop: int) -> tuple[int, int, bool]:
    """(left, top, flip): one random crop window of the resized image and a coin for the flip."""
    return random.randint(0, load - crop), random.randint(0, load - crop), random.random() < 0.5


def _to_tensor(img, load: int, crop: int, where: tuple[int, int, bool]) -> torch.Tensor:
    """A PIL image resized to load x load (bicubic), cropped at `where`, maybe flipped, as a [-1, 1] tensor."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    left, top, flip = where
    img = TF.resize(img, [load, load], InterpolationMode.BICUBIC)
    img = TF.crop(img, top, left, crop, crop)
    if flip:
        img = TF.hflip(img)
    return TF.normalize(TF.to_tensor(img), [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])


class AlignedPairs(Dataset):
    """A | B side-by-side files: both halves get the same crop and flip."""

    def __init__(self, folder: Path, load: int, crop: int):
        self.files, self.load, self.crop = _images(folder), load, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        from PIL import Image

        path = self.files[index]
        both = Image.open(path).convert("RGB")
        w, h = both.size
        a, b = both.crop((0, 0, w // 2, h)), both.crop((w // 2, 0, w, h))
        where = _jitter_params(self.load, self.crop)
        return {"A": _to_tensor(a, self.load, self.crop, where), "B": _to_tensor(b, self.load, self.crop, where),
                "A_paths": str(path), "B_paths": str(path)}


class UnalignedDomains(Dataset):
    """trainA/ and trainB/: A in order, B drawn at random; each image its own crop and flip."""

    def __init__(self, root: Path, load: int, crop: int):
        self.a, self.b = _images(root / "trainA"), _images(root / "trainB")
        self.load, self.crop = load, crop

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def _read(self, path: Path) -> torch.Tensor:
        from PIL import Image

        return _to_tensor(Image.open(path).convert("RGB"), self.load, self.crop, _jitter_params(self.load, self.crop))

    def __getitem__(self, index: int) -> dict:
        path_a = self.a[index % len(self.a)]
        path_b = self.b[random.randint(0, len(self.b) - 1)]
        return {"A": self._read(path_a), "B": self._read(path_b), "A_paths": str(path_a), "B_paths": str(path_b)}


def default_workers() -> int:
    """The reference's 4 loader threads, fewer on a machine with fewer cores."""
    return max(1, min(4, os.cpu_count() or 1))


def _batches(dataset: Dataset, batch: int, workers: int) -> Iterator[dict]:
    """Epoch after epoch of a shuffled DataLoader (a new one each epoch, as a training script's epoch loop)."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers)
    while True:
        yield from loader


# ---------------------------------------------------------------------------------------------
# Losses and the history pool


def _gan_loss(kind: str) -> Callable[[torch.Tensor, bool], torch.Tensor]:
    """criterion(prediction map, is_real): vanilla (BCE on logits) or lsgan (MSE), against a map of 1s or 0s."""
    def criterion(prediction: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(prediction) if real else torch.zeros_like(prediction)
        if kind == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)
    return criterion


class HistoryPool:
    """Up to `capacity` generated images kept in a Python list; once full, each new image is, on a coin
    flip, swapped with a random kept one (which is returned instead)."""

    def __init__(self, capacity: int = 50):
        self.capacity, self.kept = capacity, []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.capacity == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.kept) < self.capacity:
                self.kept.append(image)
                out.append(image)
            elif random.random() < 0.5:
                slot = random.randint(0, self.capacity - 1)
                out.append(self.kept[slot].clone())
                self.kept[slot] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def _requires_grad(nets: list, flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad = flag


# ---------------------------------------------------------------------------------------------
# The two training steps


def pix2pix_step_fn(root: Path, size: int, batch: int, device: torch.device, workers: int) -> Callable[[], dict]:
    """One pix2pix iteration per call: D on (A, B) pairs (real and generated), then G (GAN + 100 x L1)."""
    load = round(size * 286 / 256)
    stream = _batches(AlignedPairs(root / "train", load, size), batch, workers)
    torch.manual_seed(0)
    G = UNetGenerator(3, 3, size, width=64, norm="batch", dropout=True).to(device)
    D = PatchDiscriminator(6, size, width=64, norm="batch").to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    gan = _gan_loss("vanilla")
    G.train()
    D.train()

    def step() -> dict:
        data = next(stream)
        real_a, real_b = data["A"].to(device), data["B"].to(device)
        fake_b = G(real_a)
        _requires_grad([D], True)
        opt_d.zero_grad()
        fake_ab = torch.cat((real_a, fake_b), 1)
        loss_d_fake = gan(D(fake_ab.detach()), False)
        loss_d_real = gan(D(torch.cat((real_a, real_b), 1)), True)
        ((loss_d_fake + loss_d_real) * 0.5).backward()
        opt_d.step()
        _requires_grad([D], False)
        opt_g.zero_grad()
        loss_g_gan = gan(D(fake_ab), True)
        loss_g_l1 = F.l1_loss(fake_b, real_b) * 100.0
        (loss_g_gan + loss_g_l1).backward()
        opt_g.step()
        return {"G_GAN": loss_g_gan.item(), "G_L1": loss_g_l1.item(), "D_real": loss_d_real.item(),
                "D_fake": loss_d_fake.item()}

    return step


def cyclegan_step_fn(root: Path, size: int, batch: int, device: torch.device, workers: int) -> Callable[[], dict]:
    """One CycleGAN iteration per call: both generators (one Adam), then both discriminators (one Adam) on
    real images and pooled generated ones. LSGAN, cycle weight 10, identity 0.5 of it."""
    load = round(size * 286 / 256)
    stream = _batches(UnalignedDomains(root, load, size), batch, workers)
    torch.manual_seed(0)
    G_A = ResnetGenerator(3, 3, size, width=64, norm="instance", dropout=False).to(device)  # A -> B
    G_B = ResnetGenerator(3, 3, size, width=64, norm="instance", dropout=False).to(device)  # B -> A
    D_A = PatchDiscriminator(3, size, width=64, norm="instance").to(device)  # judges domain B
    D_B = PatchDiscriminator(3, size, width=64, norm="instance").to(device)  # judges domain A
    opt_g = torch.optim.Adam(itertools.chain(G_A.parameters(), G_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(itertools.chain(D_A.parameters(), D_B.parameters()), lr=2e-4, betas=(0.5, 0.999))
    gan = _gan_loss("lsgan")
    pool_a, pool_b = HistoryPool(50), HistoryPool(50)
    lambda_a = lambda_b = 10.0
    lambda_idt = 0.5
    for net in (G_A, G_B, D_A, D_B):
        net.train()

    def d_loss(D, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss = (gan(D(real), True) + gan(D(fake.detach()), False)) * 0.5
        loss.backward()
        return loss

    def step() -> dict:
        data = next(stream)
        real_a, real_b = data["A"].to(device), data["B"].to(device)
        fake_b = G_A(real_a)
        rec_a = G_B(fake_b)
        fake_a = G_B(real_b)
        rec_b = G_A(fake_a)
        _requires_grad([D_A, D_B], False)
        opt_g.zero_grad()
        loss_idt_a = F.l1_loss(G_A(real_b), real_b) * lambda_b * lambda_idt
        loss_idt_b = F.l1_loss(G_B(real_a), real_a) * lambda_a * lambda_idt
        loss_g_a = gan(D_A(fake_b), True)
        loss_g_b = gan(D_B(fake_a), True)
        loss_cycle_a = F.l1_loss(rec_a, real_a) * lambda_a
        loss_cycle_b = F.l1_loss(rec_b, real_b) * lambda_b
        (loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b).backward()
        opt_g.step()
        _requires_grad([D_A, D_B], True)
        opt_d.zero_grad()
        loss_d_a = d_loss(D_A, real_b, pool_b(fake_b))
        loss_d_b = d_loss(D_B, real_a, pool_a(fake_a))
        opt_d.step()
        return {"D_A": loss_d_a.item(), "G_A": loss_g_a.item(), "cycle_A": loss_cycle_a.item(),
                "idt_A": loss_idt_a.item(), "D_B": loss_d_b.item(), "G_B": loss_g_b.item(),
                "cycle_B": loss_cycle_b.item(), "idt_B": loss_idt_b.item()}

    return step


def reference_rate(kind: str, root: Path, size: int, batch: int, device: torch.device, warmup: int,
                   timer: Callable[[Callable[[int], None]], float], workers: int | None = None) -> float:
    """it/s of the reference loop after `warmup` iterations; `timer(run)` times run(n) (n iterations)."""
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # the reference turns it on for fixed-size inputs
    try:
        make = pix2pix_step_fn if kind == "pix2pix" else cyclegan_step_fn
        step = make(root, size, batch, device, workers if workers is not None else default_workers())

        def run(n: int) -> None:
            for _ in range(n):
                step()

        run(warmup)
        return timer(run)
    finally:
        torch.backends.cudnn.benchmark = previous


if __name__ == "__main__":  # a module of scripts/bench.py, not a script of its own
    import sys

    print("bench_translation_reference.py is the reference loop scripts/bench.py times; run: python scripts/bench.py "
          "--workloads pix2pix128,cyclegan128 (see --help)", file=sys.stderr)
    sys.exit(2)
