"""Training on little data: dataset.subset, and augmentation wired into the GAN game (DiffAugment, ADA)."""
import json

import pytest
import torch

import gantrain
from gantrain.training.build import build
from gantrain.training.components import build_dataset
from gantrain.checkpoint import load_checkpoint
from gantrain.data.images import Subset
from gantrain.errors import GantrainError

SMALL = ["dataset=digits", "trainer.device=cpu", "generator.base_channels=8", "discriminator.base_channels=8",
         "trainer.batch_size=16", "trainer.progress=false", "trainer.log_every=5", "trainer.sample_every=1000",
         "trainer.ckpt_every=10", "trainer.diagnose=false"]
ADA = ["augment.policy=[translation,cutout]", "augment.ada=true", "augment.ada_kimg=0.1", "augment.ada_interval=2"]


def test_subset_is_a_seeded_part_of_the_training_set():
    cfg = gantrain.compose(["dataset=digits", "dataset.subset=0.1"])
    full = build_dataset(cfg.dataset)  # without a seed: the whole dataset (what evaluation scores against)
    part = build_dataset(cfg.dataset, seed=3)
    assert isinstance(part, Subset) and len(full) == 1797 and len(part) == 180
    assert torch.equal(part.tensor(), full.tensor()[part.indices]) and torch.equal(part.labels(), full.labels()[part.indices])
    assert torch.equal(build_dataset(cfg.dataset, seed=3).indices, part.indices)  # seeded
    assert not torch.equal(build_dataset(cfg.dataset, seed=4).indices, part.indices)
    assert len(build_dataset(gantrain.compose(["dataset=digits", "dataset.subset=500"]).dataset, seed=0)) == 500
    for bad, message in (("2000", "gives 2000 samples; digits has 1797"), ("-0.5", "must be a fraction in \\(0, 1\\)"),
                         ("true", "must be a fraction"), ("12.5", "whole count")):
        with pytest.raises(GantrainError, match=message):
            build_dataset(gantrain.compose(["dataset=digits", f"dataset.subset={bad}"]).dataset, seed=0)


def test_a_run_on_a_subset_trains_on_it_and_is_scored_against_the_full_set(tmp_path):
    loop = build(gantrain.compose(SMALL + ["dataset.subset=100", "trainer.steps=2", "trainer.eval_every=2",
                                           "trainer.metrics=[classes]"]), tmp_path)
    assert loop.batches.size == 100
    evaluation = next(w for w in loop.periodic if type(w).__name__ == "Evaluation")
    assert len(evaluation.evaluator.dataset) == 1797
    loop.close()


def spy_on_discriminator(loop):
    """Record every batch the discriminator is shown."""
    seen = []
    d = loop.game.networks["discriminator"]
    forward = d.forward

    def recording(x, *args, **kwargs):
        seen.append(x.detach().clone())
        return forward(x, *args, **kwargs)

    d.forward = recording
    return seen


def test_diffaugment_transforms_everything_the_discriminator_sees(tmp_path):
    loop = build(gantrain.compose(SMALL + ["augment.policy=[cutout]", "trainer.steps=1", "dataset.image_size=16"]),
                 tmp_path)
    seen = spy_on_discriminator(loop)
    loop.train_steps(1)
    loop.close()
    assert len(seen) == 3  # D phase: real, generated; G phase: generated
    for batch in seen:
        # a cut-out square is exactly 0 (mid-grey); real pixels k/127.5 - 1 never are, and tanh outputs hardly
        zeros = (batch == 0).flatten(1).sum(1)
        assert (zeros >= 8 * 8 // 4).all(), zeros  # at least a quarter of the 8x8 square is inside the 16x16 image
    plain = build(gantrain.compose(SMALL + ["trainer.steps=1", "dataset.image_size=16"]), tmp_path / "plain")
    seen = spy_on_discriminator(plain)
    plain.train_steps(1)
    plain.close()
    assert all(int((batch == 0).sum()) < 8 for batch in seen)


def test_ada_probability_is_logged_checkpointed_and_resumes_exactly(tmp_path):
    straight = build(gantrain.compose(SMALL + ADA + ["trainer.steps=20"]), tmp_path / "straight")
    straight.fit()
    p = float(straight.game.augment.p)
    rows = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert all("augment/p" in r for r in rows) and any(r["augment/p"] > 0 for r in rows)
    state = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    assert float(state["game_state"]["augment"]["p"]) == p > 0  # D is sure of the real digits early on: p went up from 0

    build(gantrain.compose(SMALL + ADA + ["trainer.steps=10"]), tmp_path / "split").fit()
    resumed = build(gantrain.compose(SMALL + ADA + ["trainer.steps=20"]), tmp_path / "split")
    resumed.load_state_dict(load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt"))
    resumed.fit()
    assert float(resumed.game.augment.p) == p
    for a, b in zip(straight.game.networks["generator"].parameters(), resumed.game.networks["generator"].parameters()):
        assert torch.equal(a, b)


def test_augmentation_settings_are_checked(tmp_path):
    with pytest.raises(GantrainError, match="unknown transform 'flip'"):
        build(gantrain.compose(SMALL + ["augment.policy=[flip]"]), tmp_path)
    with pytest.raises(GantrainError, match="augment.ada=true needs transforms"):
        build(gantrain.compose(SMALL + ["augment.ada=true"]), tmp_path)
    with pytest.raises(GantrainError, match="2D points; set augment.policy=null"):
        build(gantrain.compose(["experiment=ring", "trainer.device=cpu", "augment.policy=[color]"]), tmp_path)
    with pytest.raises(GantrainError, match="augment.ada_target"):
        build(gantrain.compose(SMALL + ADA + ["augment.ada_target=1.5"]), tmp_path)
