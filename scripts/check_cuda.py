"""Correctness of the CUDA path on a GPU: the CUDA-graph step against eager steps (conditional games too), bf16,
resume on the GPU.

    python scripts/check_cuda.py [--steps N]

Exits non-zero when a check fails. Needs a CUDA device (without one it says so and exits with 2).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import gantrain  # the installed package, configs included
except ImportError:  # a plain checkout: the source tree
    sys.path.insert(0, str(REPO))
    import gantrain
from gantrain.training.build import build  # noqa: E402


def run_steps(overrides: list[str], steps: int, tmp: Path, tag: str, capture: bool = True):
    """Train `steps` steps; capture=False runs the same (capturable) optimizers eagerly."""
    loop = build(gantrain.compose(overrides), tmp / tag)
    loop.use_graph = loop.use_graph and capture  # capture=False: the same capturable optimizers, eagerly
    if loop.game.schedules:  # both sides read the scheduled rate from a device tensor, as a captured step must
        from gantrain.training.optim import lr_to_device

        for optimizer in loop.game.optimizers.values():
            lr_to_device(optimizer, loop.device)
    loop._prepare_graph()  # with a graph: three eager warm-up steps (real steps of the run), then the capture
    while loop.step < steps:  # both sides run exactly `steps` steps
        loop.run_step()
    torch.cuda.synchronize()
    stats = [v for _, v in sorted(loop.stats.read().items())]
    return loop, stats


def relative_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    num = sum(float((x.float() - y.float()).norm() ** 2) for x, y in zip(a.state_dict().values(), b.state_dict().values()) if x.is_floating_point())
    den = sum(float(x.float().norm() ** 2) for x in a.state_dict().values() if x.is_floating_point())
    return (num / max(den, 1e-30)) ** 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--steps", type=int, default=20, help="steps of each comparison (at least 5)")
    args = parser.parse_args()
    if args.steps < 5:
        parser.error(f"--steps {args.steps}: give at least 5 (three warm-up steps, then the captured ones)")
    if not torch.cuda.is_available():
        print("check_cuda.py: needs a CUDA device, and this machine has none (torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 2
    torch.backends.cudnn.deterministic = True  # the comparison wants the same kernels on both sides
    failures = 0
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for loss, extra in (("nonsaturating", []), ("wgan_gp", []), ("wasserstein", []), ("hinge", ["loss.r1_gamma=1.0"]),
                            ("nonsaturating", ["trainer.ema_decay=0.99", "optimizer=rmsprop"]),
                            ("hinge", ["conditional=true", "discriminator.norm=none", "discriminator.spectral_norm=true"]),
                            ("wgan_gp", ["conditional=true", "condition.discriminator=ac", "discriminator.norm=none",
                                         "condition.fake_labels=data"])):
            base = [f"loss={loss}", "dataset=digits", "dataset.image_size=32", "trainer.device=cuda", "seed=5", *extra]
            eager, s_e = run_steps(base + ["trainer.cuda_graph=true"], args.steps, tmp, f"{loss}-eager", capture=False)
            graph, s_g = run_steps(base + ["trainer.cuda_graph=true"], args.steps, tmp, f"{loss}-graph")
            dg = relative_difference(eager.game.G, graph.game.G)
            dd = relative_difference(eager.game.D, graph.game.D)
            loss_diff = max(abs(a - b) / max(abs(a), 1e-3) for a, b in zip(s_e, s_g))
            ok = graph.graph is not None and dg < 1e-3 and dd < 1e-3 and loss_diff < 1e-2
            failures += not ok
            print(f"{'OK ' if ok else 'BAD'} graph vs eager {loss} {' '.join(extra)}: graph={graph.graph is not None} "
                  f"rel. weight diff G {dg:.2e} D {dd:.2e}, rel. loss-sum diff {loss_diff:.2e}", flush=True)
        # A learning-rate schedule under the graph: the rates written between replays are the ones used.
        base = ["loss=hinge", "dataset=digits", "dataset.image_size=32", "trainer.device=cuda", "seed=5",
                "optimizer.lr_schedule=linear", f"trainer.steps={args.steps}", "trainer.cuda_graph=true"]
        eager, s_e = run_steps(base, args.steps, tmp, "sched-eager", capture=False)
        graph, s_g = run_steps(base, args.steps, tmp, "sched-graph")
        dg = relative_difference(eager.game.G, graph.game.G)
        lr = float(graph.game.optimizers["generator"].param_groups[0]["lr"])
        ok = graph.graph is not None and dg < 1e-3 and lr == 0.0
        failures += not ok
        print(f"{'OK ' if ok else 'BAD'} linear lr schedule under the graph: graph={graph.graph is not None} "
              f"rel. weight diff G {dg:.2e}, final lr {lr}", flush=True)
        # bf16 under the graph trains with finite losses.
        bf16, s_b = run_steps(["loss=wgan_gp", "dataset=digits", "dataset.image_size=32", "trainer.device=cuda",
                               "trainer.precision=bf16"], args.steps, tmp, "bf16")
        ok = bf16.graph is not None and all(torch.isfinite(torch.tensor(s_b)))
        failures += not ok
        print(f"{'OK ' if ok else 'BAD'} bf16 wgan_gp graph={bf16.graph is not None} stats={['%.3g' % v for v in s_b]}")
        # Exact resume on the GPU: 10 + 10 steps against 20 (eager, deterministic kernels).
        common = ["loss=wgan_gp", "dataset=digits", "trainer.device=cuda", "trainer.cuda_graph=false", "trainer.log_every=5",
                  "trainer.ckpt_every=5", "trainer.sample_every=100"]
        gantrain.train(gantrain.compose(common + ["trainer.steps=20"]), tmp / "straight")
        gantrain.train(gantrain.compose(common + ["trainer.steps=10"]), tmp / "split")
        gantrain.train(gantrain.compose(common + ["trainer.steps=20", f"resume={tmp / 'split'}"]), tmp / "split")
        a = gantrain.checkpoint.load_checkpoint(tmp / "straight" / "checkpoints" / "last.pt")
        b = gantrain.checkpoint.load_checkpoint(tmp / "split" / "checkpoints" / "last.pt")
        ga, gb = a["networks"]["generator"], b["networks"]["generator"]
        same = all(torch.equal(ga[k], gb[k]) for k in ga)
        failures += not same
        print(f"{'OK ' if same else 'BAD'} GPU resume 10+10 == 20 bit-identical: {same}")
    print("FAILURES:", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
