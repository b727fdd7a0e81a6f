"""Directions in a generator's latent space that change one thing about its samples.

pca (GANSpace, Harkonen et al. 2020): the principal components of sampled latents (w for a style-based
generator, z for the others); labels (InterFaceGAN, Shen et al. 2020): the normal of a linear classifier that
separates sampled latents by the class the domain classifier reads in their images (one class against another,
or each class against the rest). A direction file (.npz) holds `directions` (K, D) of unit length, `std` (K,):
the spread of the sampled latents along each (strengths are in these units), `mean` (D,), `space` (w or z),
`method` and `names`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from gantrain.errors import GantrainError

METHODS = ("pca", "labels")


def sample_latents(generator: nn.Module, n: int, seed: int = 0, device: Union[str, torch.device] = "cpu",
                   chunk: int = 1000) -> tuple[Tensor, Optional[Tensor], str]:
    """(n latents, their labels (conditional generators) or None, the space): w = mapping(z) for a style-based
    generator, else z itself; z drawn from a CPU generator seeded with `seed`."""
    from gantrain.nets.control import is_style_based

    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, int(generator.latent_dim), generator=rng)
    classes = getattr(generator, "num_classes", None)
    y = torch.randint(int(classes), (n,), generator=rng) if classes else None
    if not is_style_based(generator):
        return z, y, "z"
    with torch.no_grad():
        ws = [generator.mapping(z[i:i + chunk].to(device), None if y is None else y[i:i + chunk].to(device)).cpu()
              for i in range(0, n, chunk)]
    return torch.cat(ws), y, "w"


def images_of(generator: nn.Module, latents: Tensor, labels: Optional[Tensor] = None) -> Tensor:
    """The images of latents in the space sample_latents draws them in: w through a style-based generator's
    synthesis network with each layer's fixed noise, z (and labels) through the generator itself."""
    from gantrain.nets.control import is_style_based

    if is_style_based(generator):
        return generator.synthesis(generator.truncate_w(latents), noise_mode="const")
    return generator(latents) if labels is None else generator(latents, labels)


def pca_directions(latents: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """(the first k principal directions (k, D) of unit length, the standard deviation along each, the mean)."""
    x = latents.double()
    mean = x.mean(0)
    _, s, v = torch.linalg.svd(x - mean, full_matrices=False)
    k = min(k, v.shape[0])
    std = s[:k] / (len(x) - 1) ** 0.5
    return v[:k].float(), std.float(), mean.float()


def linear_boundary(latents: Tensor, positive: Tensor, steps: int = 300, lr: float = 0.1) -> Tensor:
    """The unit normal of a logistic-regression boundary separating latents[positive] from the rest (standardised
    latents, full-batch Adam, a small L2 penalty), pointing toward the positive side."""
    x = latents.double()
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-8)
    xs = (x - mean) / scale
    target = positive.double()
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    for _ in range(steps):
        logits = xs @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target) + 1e-3 * weight.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    normal = weight.detach() / scale  # back to the latents' own coordinates
    return (normal / normal.norm().clamp_min(1e-12)).float()


def label_directions(generator: nn.Module, classify: Any, n: int = 5000, classes: Optional[Sequence[int]] = None,
                     seed: int = 0, device: Union[str, torch.device] = "cpu") -> tuple[Tensor, Tensor, Tensor, list[str]]:
    """Directions from the domain classifier's reading of n samples: classes=(a, b): one, from a toward b;
    None: one per class, toward it from the rest. Returns (directions, std along each, mean, names)."""
    latents, y, space = sample_latents(generator, n, seed, device)
    read = []
    with torch.no_grad():
        for i in range(0, n, 500):
            part = latents[i:i + 500].to(device)
            labels = None if y is None else y[i:i + 500].to(device)
            read.append(classify(images_of(generator, part, labels)).argmax(1).cpu())
    predicted = torch.cat(read)
    pairs: list[tuple[Tensor, Tensor, str]] = []
    if classes is not None:
        a, b = classes
        chosen = (predicted == a) | (predicted == b)
        if int((predicted == a).sum()) < 10 or int((predicted == b).sum()) < 10:
            raise GantrainError(f"of {n} samples the classifier reads {int((predicted == a).sum())} as class {a} and "
                                f"{int((predicted == b).sum())} as class {b}; at least 10 of each are needed: raise n=")
        pairs.append((latents[chosen], predicted[chosen] == b, f"{a}->{b}"))
    else:
        counts = {c: int((predicted == c).sum()) for c in sorted(set(predicted.tolist()))}
        for c, count in counts.items():  # a boundary needs at least 10 samples on each side
            if count >= 10 and len(predicted) - count >= 10:
                pairs.append((latents, predicted == c, f"rest->{c}"))
        if not pairs:
            shown = ", ".join(f"{c}: {count}" for c, count in counts.items())
            raise GantrainError(f"of {n} samples the classifier reads no class at least 10 times with at least 10 "
                                f"others beside it (class: count {shown}); a generator that draws one class has no "
                                f"class directions: raise n=, or use method=pca")
    directions = torch.stack([linear_boundary(x, positive) for x, positive, _ in pairs])
    centred = latents - latents.mean(0)
    std = (centred @ directions.t()).std(0)
    return directions, std, latents.mean(0), [name for *_, name in pairs]


def save_directions(path: Union[str, Path], directions: Tensor, std: Tensor, mean: Tensor, space: str, method: str,
                    names: Sequence[str]) -> None:
    """Write a direction file (module docstring)."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, directions=directions.numpy().astype(np.float32), std=std.numpy().astype(np.float32),
             mean=mean.numpy().astype(np.float32), space=np.array(space), method=np.array(method),
             names=np.array(list(names)))
    Path(path).write_bytes(buffer.getvalue())


def load_directions(path: Union[str, Path]) -> dict:
    """A direction file as tensors: directions, std, mean; and space, method, names."""
    if not Path(path).is_file():
        raise GantrainError(f"{path} does not exist; make it with gantrain-directions RUN out={Path(path).name}")
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            found = {k: data[k] for k in data.files}
        out = {"directions": torch.from_numpy(found["directions"]).float(), "std": torch.from_numpy(found["std"]).float(),
               "mean": torch.from_numpy(found["mean"]).float(), "space": str(found["space"]),
               "method": str(found["method"]), "names": [str(s) for s in found["names"]]}
    except Exception:
        name = Path(path).name if Path(path).suffix == ".npz" else "dirs.npz"  # (it writes .npz files only)
        raise GantrainError(f"{path} is not a direction file of gantrain-directions; make one with gantrain-directions "
                            f"RUN out={name}") from None
    if out["directions"].dim() != 2 or len(out["std"]) != len(out["directions"]):
        raise GantrainError(f"{path} is not a direction file of gantrain-directions (its arrays do not fit)")
    return out
