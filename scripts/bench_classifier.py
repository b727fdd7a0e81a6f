"""Training speed of the domain classifier (gantrain-classifier, the feature space of the domain metrics) in
PyTorch's default memory format and in channels-last, which train_classifier uses since 0.12.5: the same network,
optimizer and batches, the two formats alternated in rounds so that a noisy machine slows both alike.

    OMP_NUM_THREADS=1 python scripts/bench_classifier.py                 # MNIST's shape, batch 128, 1 thread
    python scripts/bench_classifier.py --shape 3,32,32 --rounds 5 --steps 40

Prints milliseconds per training step (median over rounds) for each format and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from gantrain.eval.classifier import DomainClassifier


def steps_time(channels_last: bool, shape: tuple[int, ...], batch: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = DomainClassifier(shape).to(device, memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, *shape, device=device).contiguous(memory_format=fmt)
    y = torch.randint(10, (batch,), device=device)
    for i in range(steps + 3):  # 3 to warm up
        if i == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="1,28,28", help="C,H,W of the images (default MNIST's 1,28,28)")
    parser.add_argument("--batch", type=int, default=128, help="the batch train_classifier uses (128)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps a round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    try:
        shape = tuple(int(v) for v in args.shape.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape[1] != shape[2] or shape[1] < 8:
        parser.error(f"--shape {args.shape}: give C,H,W of square images at least 8 pixels wide, e.g. 1,28,28")
    for option in ("batch", "steps", "rounds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} {getattr(args, option)}: give a whole number of at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this machine has no CUDA device; use --device cpu")
    device = torch.device(args.device)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for fmt in (False, True):
            times[fmt].append(steps_time(fmt, shape, args.batch, args.steps, device))
    default, last = statistics.median(times[False]), statistics.median(times[True])
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} thread(s), shape {shape}, batch {args.batch}")
    print(f"default memory format: {default:.1f} ms/step; channels-last: {last:.1f} ms/step; "
          f"channels-last is {default / last:.2f}x as fast")


if __name__ == "__main__":
    main()
