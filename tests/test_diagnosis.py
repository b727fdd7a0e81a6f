"""Plain-language warnings: each fires on a run built to fail that way, and none on healthy runs."""
import json
import math

import torch
from torch.utils.tensorboard.writer import SummaryWriter  # noqa: F401  (the logger's writer must be importable)

import gantrain
from gantrain.training.build import build
from gantrain.training.diagnosis import Diagnosis, mean_pairwise_distance
from gantrain.training.periodic import Periodic

RING = ["dataset=ring", "generator=mlp", "discriminator=mlp", "generator.latent_dim=2",
        "optimizer.lr=1e-3", "generator.hidden=[32,32]", "discriminator.hidden=[32,32]", "trainer.device=cpu",
        "trainer.batch_size=64", "trainer.log_every=10", "trainer.ckpt_every=1000", "trainer.sample_every=1000",
        "trainer.eval_every=0", "trainer.best_metric=null", "trainer.progress=false", "trainer.num_samples=256"]


def fit(overrides, run_dir):
    loop = build(gantrain.compose(overrides), run_dir)
    return loop, next(w for w in loop.periodic if w.name == "diagnosis")


def tensorboard_texts(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    if "diagnosis/text_summary" not in events.Tags()["tensors"]:
        return []
    return [e.tensor_proto.string_val[0].decode() for e in events.Tensors("diagnosis/text_summary")]


def test_a_far_stronger_discriminator_under_the_minimax_loss_is_named(tmp_path, caplog):
    loop, diagnosis = fit(RING + ["loss=minimax", "optimizer.discriminator.lr=1e-2", "optimizer.generator.lr=1e-6",
                                  "trainer.steps=120"], tmp_path)
    loop.fit()
    wins = [w for w in diagnosis.warnings if w.startswith("the discriminator wins outright")]
    assert len(wins) == 1, diagnosis.warnings  # once per episode, not at every log
    assert "100.0% of real and 100.0% of generated samples" in wins[0] and "use loss=nonsaturating" in wins[0]
    assert "G's gradient norm fell to" in wins[0] and "it vanishes" in wins[0]
    assert any("the discriminator wins outright" in r.getMessage() for r in caplog.records)  # the console
    assert any("the discriminator wins outright" in t for t in tensorboard_texts(tmp_path))  # TensorBoard's text tab


class Collapse(Periodic):
    """Test fault: at step `at`, G's last layer outputs its bias alone and G stops learning."""

    name = "collapse"
    at_end = False

    def __init__(self, at):
        super().__init__(1)
        self.at = at

    def __call__(self, loop, final=False):
        if loop.step == self.at:
            last = [m for m in loop.game.networks["generator"].modules() if isinstance(m, torch.nn.Linear)][-1]
            with torch.no_grad():
                last.weight.zero_()
            for group in loop.game.optimizers["generator"].param_groups:
                group["lr"] = 0.0


def test_samples_collapsing_to_one_point_are_named(tmp_path):
    loop, diagnosis = fit(RING + ["trainer.steps=170"], tmp_path)
    loop.periodic.insert(0, Collapse(120))
    loop.fit()
    collapse = [w for w in diagnosis.warnings if w.startswith("mode collapse: the generated samples are nearly identical")]
    assert len(collapse) == 1, diagnosis.warnings
    assert "mean pairwise distance 0, 0.0% of the data" in collapse[0]
    assert collapse[0].endswith("or add a penalty (loss.r1_gamma=10), or pack the discriminator's inputs "
                                "(discriminator.pack=2)")  # the MLP discriminator packs; others are not told to
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[3]["diag/diversity"] > 0.2 and rows[-1]["diag/diversity"] == 0.0  # logged beside the losses


def test_a_critic_pulling_away_from_a_stuck_generator_is_named(tmp_path):
    loop, diagnosis = fit(RING + ["loss=wasserstein", "optimizer.name=rmsprop", "optimizer.lr=5e-5",
                                  "optimizer.generator.lr=1e-9", "trainer.n_critic=2", "trainer.log_every=3",
                                  "trainer.steps=60"], tmp_path)
    loop.fit()
    assert any(w.startswith("the Wasserstein estimate rose for 5 logs in a row") for w in diagnosis.warnings), \
        diagnosis.warnings


def test_healthy_runs_get_no_warning(tmp_path):
    for name, overrides in (
        ("ring", RING + ["trainer.steps=300", "trainer.eval_every=100", "trainer.metrics=[modes]"]),
        ("digits", ["dataset=digits", "trainer.device=cpu", "trainer.steps=60", "trainer.log_every=5",
                    "trainer.progress=false"]),
    ):
        loop, diagnosis = fit(overrides, tmp_path / name)
        loop.fit()
        assert diagnosis.warnings == [], (name, diagnosis.warnings)


class Recorder:
    """What a Diagnosis uses of the loop when it only judges numbers: the step, the run's length and the logger."""

    def __init__(self, steps=10**9):
        self.step, self.steps, self.texts = 0, steps, []
        self.logger = self
        self.pending_scalars = {}

    def text(self, tag, text, step):
        self.texts.append((tag, text, step))


def feed(diagnosis, loop, series):
    for step, means in enumerate(series, 1):
        loop.step = step * 10
        loop.read_stats = lambda means=means: means
        diagnosis(loop)


def test_oscillation_is_named_after_the_warmup_and_only_with_wide_swings():
    loop = Recorder()
    calm = [{"d/acc_fake": 0.5 + 0.05 * (-1) ** i, "d/acc_real": 0.6, "loss/d": 1.2} for i in range(30)]
    diagnosis = Diagnosis(10, "nonsaturating", False, None)
    feed(diagnosis, loop, calm)
    assert diagnosis.warnings == []
    swinging = [{"d/acc_fake": 0.95 if i % 2 else 0.05, "d/acc_real": 0.6, "loss/d": 1.2} for i in range(30)]
    early = Diagnosis(10, "nonsaturating", False, None)
    feed(early, loop, swinging[:Diagnosis.WARMUP_LOGS + Diagnosis.SWINGS - 1])
    assert early.warnings == []  # early training swings in every run
    feed(early, loop, swinging[Diagnosis.WARMUP_LOGS + Diagnosis.SWINGS - 1:])
    assert len(early.warnings) == 1 and early.warnings[0].startswith(
        "training oscillates: D's accuracy on generated samples swung between 5% and 95% over the last 8 logs, "
        "crossing 50% 7 times")
    assert loop.texts[-1][0] == "diagnosis"


def test_falling_coverage_is_named_with_its_best_step():
    loop = Recorder()
    diagnosis = Diagnosis(10, "nonsaturating", False, None)
    for step, modes in ((1000, 20.0), (2000, 25.0), (3000, 24.0), (4000, 18.0), (5000, 12.0), (6000, 11.0)):
        loop.step = step
        diagnosis.coverage(loop, {"modes": modes, "high_quality_pct": 50.0})
        if step == 4000:
            assert diagnosis.warnings == []  # one low evaluation: not yet
    assert diagnosis.warnings == ["mode collapse: the modes covered fell from 25 (step 2000) to 12 (step 5000); "
                                  "checkpoints/best.pt keeps the best step when trainer.best_metric=modes; lower the "
                                  "learning rates or add a penalty (loss.r1_gamma=10)"]
    saved = diagnosis.state_dict()
    again = Diagnosis(10, "nonsaturating", False, None)
    again.load_state_dict(saved)
    assert again.best_coverage == {"modes": (25.0, 2000)} and again.active == {"coverage_modes"}
    assert again.coverage_fallen == {"modes": 3}


def test_a_coverage_dip_that_recovers_is_not_a_collapse_but_a_low_last_evaluation_is():
    # grid seed 2 with R1: 24 modes at step 1000, 17 at 2000, 25 from 3000 on (a healthy run)
    loop = Recorder(steps=6000)
    diagnosis = Diagnosis(10, "nonsaturating", False, None)
    for step, modes in ((1000, 24.0), (2000, 17.0), (3000, 25.0), (4000, 25.0), (5000, 24.0)):
        loop.step = step
        diagnosis.coverage(loop, {"modes": modes})
    assert diagnosis.warnings == [] and diagnosis.coverage_fallen == {"modes": 0}
    resumed = Diagnosis(10, "nonsaturating", False, None)  # a resume between two low evaluations still counts both
    loop.step = 4000
    diagnosis.coverage(loop, {"modes": 18.0})
    resumed.load_state_dict(diagnosis.state_dict())
    loop.step = 5000
    resumed.coverage(loop, {"modes": 18.0})
    assert resumed.warnings == ["mode collapse: the modes covered fell from 25 (step 3000) to 18 (step 5000); "
                                "checkpoints/best.pt keeps the best step when trainer.best_metric=modes; lower the "
                                "learning rates or add a penalty (loss.r1_gamma=10)"]
    last = Diagnosis(10, "nonsaturating", False, None)  # the last evaluation has no next one to wait for
    for step, modes in ((5000, 25.0), (6000, 17.0)):
        loop.step = step
        last.coverage(loop, {"modes": modes})
    assert len(last.warnings) == 1 and "fell from 25 (step 5000) to 17 (step 6000)" in last.warnings[0]


def test_mean_pairwise_distance():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    assert math.isclose(mean_pairwise_distance(points), (5 + 5 + 5 + 5) / 6, rel_tol=1e-6)  # ordered pairs of distinct samples
    assert mean_pairwise_distance(points[:1]) == 0.0
