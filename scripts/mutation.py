"""Mutation testing of one gantrain module with cosmic-ray, on a throw-away copy of the repository.

    python scripts/mutation.py losses                  # or any other name in TARGETS below
    python scripts/mutation.py data --whole            # every function of the module, not only its scope
    python scripts/mutation.py losses --workers 2 --timeout 60 --json out.json
    python scripts/mutation.py text --survivors-of out.json --tests tests/test_text.py -k clip
                                                       # do a fast selection's survivors die under slower tests?

cosmic-ray rewrites the module in place for each mutant and runs a test command; here that happens in
copies of the repository under a temporary folder (one per worker), never in the checkout this script
lives in. For each module only the fast unit tests that exercise it run, stopping at the first failure.
Prints the kill rate and every surviving mutant (line, operator, diff); exits 0 when the run completed.
"""
from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
# Top-level entries of the checkout that are never copied (history, caches, outputs of runs).
SKIP_TOP = {".git", ".hypothesis", ".pytest_cache", ".benchmarks", "outputs", "multirun", "data", "build", "dist",
            "gantrain.egg-info", ".whl", ".gl", ".devdata"}


@dataclass(frozen=True)
class Target:
    """A module to mutate, the pytest arguments that test it, and (optionally) the functions/classes in scope."""

    path: str
    tests: tuple[str, ...]
    scope: Optional[tuple[str, ...]] = None
    note: str = ""


TARGETS: dict[str, Target] = {
    "losses": Target("gantrain/training/losses.py", ("tests/test_losses.py", "tests/test_properties.py", "-k",
                                            "not fid and not precision and not epoch")),
    "metrics": Target("gantrain/eval/metrics.py", (
        "tests/test_metrics.py", "tests/test_data.py", "tests/test_properties.py", "-k",
        "test_fid or test_precision_recall or test_inception_score or mixture_metrics or class_histogram",
    )),
    "data": Target(
        "gantrain/data/streaming.py",
        ("tests/test_data.py", "tests/test_properties.py", "-k", "batch or epoch or processes"),
        scope=("epoch_permutation", "BatchStream", "DeviceBatches", "StreamedBatches"),
        note="the data-order code only (epoch_permutation and the batch streams); datasets are out of scope",
    ),
    "checkpoint": Target(
        "gantrain/checkpoint.py",
        ("tests/test_atomic.py", "tests/test_checkpoint_files.py"),
        scope=("_fsync_dir", "atomic_save", "_atomic_write", "_atomic_link", "load_checkpoint", "step_checkpoints",
               "newest_good", "run_folder_of", "open_run_or_checkpoint", "CheckpointWriter"),
        note="the file handling; the format-1 migration (migrate, _migrate_v1, migrate_config_v1) is out of scope",
    ),
    "migration": Target(
        "gantrain/checkpoint.py", ("tests/test_migrate.py",),
        scope=("migrate", "_migrate_v1", "migrate_config_v1"),
        note="the format-1 (gantrain 0.1.0) migration",
    ),
    "gan": Target("gantrain/training/games/gan.py",
                  ("tests/test_trainer_step.py", "tests/test_conditional.py", "-k",
                   "not presets and not one_line and not resume and not image_folder and not labelled"),
                  scope=("GAN", "ConditionalGAN"), note="the GAN games' update phases, sample grids and reports"),
    "game": Target("gantrain/training/games/__init__.py", ("tests/test_trainer_step.py",),
                   scope=("Game",), note="the shared update, EMA and schedule stepping of every game"),
    "optim": Target("gantrain/training/optim.py",
                    ("tests/test_combinations.py", "tests/test_translation_game.py", "-k",
                     "betas or rollback or schedule or optimizer_name or one_step_hold or held_as_tensors"),
                    note="optimizer factory (per-network rates and betas) and the linear schedules, with rollbacks"),
    "translation": Target("gantrain/training/games/translation.py",
                          ("tests/test_combinations.py", "tests/test_translation_game.py", "-k",
                           "pix2pix_step or pool or paired or pix2pix_l1 or jitter_crops or pix2pix_with_r1"),
                          scope=("jitter", "ImagePool", "Pix2Pix"),
                          note="pix2pix's step, its jitter and the CycleGAN history pool"),
    "periodic": Target("gantrain/training/periodic.py",
                       ("tests/test_combinations.py", "tests/test_divergence.py", "tests/test_divergence_rules.py",
                        "-k", "rollback or divergence"),
                       scope=("DivergenceCheck",), note="the divergence guard and its rollbacks"),
    "stylegan2": Target("gantrain/training/games/stylegan2.py",
                        ("tests/test_stylegan2.py", "-k", "lazy_r1 or path_length or style_mixing or ema_half_life or "
                                                   "settings_from or own_penalty or zero_weight or exactly_and or "
                                                   "fixed_noise or whole_step or at_the_threshold or below_one or "
                                                   "python_defaults or build_refuses or conditional_games_grid"),
                        scope=("StyleGAN2",), note="the stylegan2 game's phases, intervals, style mixing and EMA"),
    "text": Target("gantrain/training/games/text.py",
                   ("tests/test_text.py", "tests/test_text_game_build.py", "-k",
                    "hand_comput or matching_aware_penalty_on or grid_shows or text_game"),
                   scope=("TextGAN",), note="the text game's step: captions, mismatch, KL, penalty"),
    "tokens": Target("gantrain/tokens.py",
                     ("tests/test_text.py", "-k", "tokens_round_trip or folder_captions or sampling_by_text or "
                                                 "precomputed_embeddings"),
                     note="tokenisation and the vocabulary of text runs"),
    "text_scores": Target("gantrain/eval/text.py", ("tests/test_text.py", "-k", "text_scores_read"),
                          scope=("spearman", "text_scores"), note="the text scores (class agreement, Spearman)"),
    "folder_captions": Target("gantrain/data/text.py",
                              ("tests/test_text.py", "-k", "folder_captions or folder_without_captions or "
                                                          "precomputed_embeddings"),
                              note="captions of an image_folder (metadata.jsonl, .txt files)"),
    "control": Target("gantrain/nets/control.py", ("tests/test_control.py", "-k", "not console_script"),
                      note="W truncation, the layers of styles and style mixing"),
    "directions": Target("gantrain/eval/directions.py", ("tests/test_directions.py", "-k", "not console_scripts"),
                         note="PCA and label directions and the direction file"),
    "projection": Target("gantrain/eval/projection.py", ("tests/test_projection.py", "-k", "not command"),
                         note="projection of images into z, w or w+ and the noise regulariser"),
    "stylegan2_nets": Target("gantrain/nets/stylegan2.py",
                             ("tests/test_stylegan2.py", "-k", "modulated or demodulated or equalised or filters or "
                                                         "minibatch or networks_build or w_avg or style_mixing or "
                                                         "hand_computations_with or leaky_relu or down_sampling or "
                                                         "initial_biases"),
                             scope=("normalize_2nd_moment", "blur", "_upsample1d", "upsample2d", "downsample2d",
                                    "EqualLinear", "EqualConv2d", "modulated_conv2d", "ModulatedConv", "ToRGB",
                                    "minibatch_stddev"),
                             note="StyleGAN2's layers: modulation, demodulation, filters, equalised rates, mbstd"),
    "sample_parse": Target("gantrain/commands/sample.py",
                           ("tests/test_sample_export.py", "-k", "slerp or truncation_keeps or sample_mistakes or "
                                                               "conditional_mistakes or conditional_labels or "
                                                               "per_class_grid or conditional_default or slerp_between or "
                                                               "sample_syntax or plan_labels_sizes"),
                           scope=("_labels", "_truncation", "_strip", "truncated_normal", "slerp", "plan_labels"),
                           note="gantrain-sample's label, truncation and strip syntax, truncated z, slerp, labels"),
    "sweep_report": Target("gantrain/commands/sweep.py",
                           ("tests/test_sweep_report.py", "tests/test_sweep.py::test_a_parallel_job_gets_its_own_gpu",
                            "tests/test_sweep.py::test_job_identity_leaves_out_what_a_resume_may_change",
                            "tests/test_sweep.py::test_the_report_reads_a_killed_job_as_interrupted_and_skips_cut_lines"),
                           scope=("read_status", "write_status", "job_identity", "is_busy", "one_line", "last_values",
                                  "metric_value", "_number", "_overrides_of", "job_rows", "_varying", "_value_columns",
                                  "_shown", "summary_tables", "markdown", "_write_csv", "report", "check_metric",
                                  "natural_direction", "device_for_job"),
                           note="a sweep's summary: job status, logged values, the tables, the best job, directions"),
    "export": Target("gantrain/commands/export.py",
                     ("tests/test_export_units.py", "tests/test_sample_export.py", "-k", "test_export or load_exported"),
                     note="gantrain-export: safetensors, TorchScript, ONNX, the JSON beside them, load_exported"),
    "captions": Target("gantrain/data/captions.py",
                       ("tests/test_captions.py",
                        "tests/test_text.py::test_measured_attributes_match_hand_computed_values_on_constructed_digits"),
                       scope=("_ink", "stroke_thickness", "slant", "ink_box_area", "brightness", "ink_area", "thirds",
                              "levels", "CaptionScheme"),
                       note="the offline caption sets' measured attributes, thirds, levels and phrasings"),
    "text_nets": Target("gantrain/nets/text.py",
                        ("tests/test_text_nets.py",
                         "tests/test_text.py::test_encoders_ignore_padding_and_the_caption_changes_the_image",
                         "tests/test_text.py::test_sampling_by_text_refuses_empty_prompts_and_names_unknown_words"),
                        scope=("BagEncoder", "GRUEncoder", "PrecomputedEncoder", "make_encoder",
                               "ConditioningAugmentation", "TextGenerator", "TextProgram", "TextDiscriminator"),
                        note="the text encoders, conditioning augmentation, the text generator and discriminator"),
    "moved": Target("gantrain/moved.py",
                    ("tests/test_layout_compat.py", "-k", "old_module_name or every_target or python_m or leaves_what or "
                                                          "install_once"),
                    note="the module names and _target_ paths of earlier versions"),
    "sample_cli": Target("gantrain/commands/sample.py", ("tests/test_sample_args.py",),
                         scope=("_whole", "_flag", "resolve_device", "output_kind", "check_writable",
                                "split_command_line", "parse_args", "check_new", "write_bytes", "write", "to_uint8"),
                         note="gantrain-sample's command line, its out= checks and the writing of its files"),
    "gan_build": Target("gantrain/training/games/gan.py",
                        ("tests/test_gan_build.py", "tests/test_text_game_build.py"),
                        scope=("cuda_image_layout", "GAN.build", "GAN.make_networks", "GAN.keeps_ema", "GAN.variants",
                               "GAN.own_arguments"),
                        note="the shared build of the GAN games: game class, settings, EMA, labels, augmentation"),
    "stylegan2_networks": Target("gantrain/nets/stylegan2.py",
                                 ("tests/test_stylegan2_networks.py", "tests/test_stylegan2.py", "tests/test_sample_draw.py",
                                  "tests/test_control.py", "-k",
                                  "not console_script and not resumed and not presets_train and not folder_preset and "
                                  "not conditional_generator_obeys"),
                                 scope=("_whole", "_square_power_of_two", "channels_at", "MappingNetwork",
                                        "SynthesisNetwork", "StyleGAN2Generator", "_DBlock", "StyleGAN2Discriminator"),
                                 note="StyleGAN2's networks: sizes and widths, mapping, synthesis, the residual D"),
    "sample_draw": Target("gantrain/commands/sample.py",
                          ("tests/test_sample_draw.py", "tests/test_control.py", "-k", "not console_script"),
                          scope=("num_classes_of", "generate", "_text_batch", "_row_latents", "_start_latents", "_edit",
                                 "_style_mix_figure"),
                          note="what gantrain-sample draws: noise, labels, interpolation, strips, edits, style mixing, text"),
    "augment": Target("gantrain/training/augment.py", ("tests/test_augment.py",),
                      note="DiffAugment's transforms and ADA's adjustment of p"),
}


def copy_repo(dest: Path) -> None:
    """Copy the checkout (without history, caches and run outputs) to dest."""

    def ignore(folder: str, names: list[str]) -> list[str]:
        skip = {"__pycache__"} | (SKIP_TOP if Path(folder).resolve() == REPO else set())
        return [n for n in names if n in skip]

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    # gantrain.configs is the top-level configs/ folder (pyproject's package-dir); without this link the copy would
    # import it through the editable install, i.e. from the checkout, which may change during the run
    (dest / "gantrain" / "configs").symlink_to(Path("..") / "configs", target_is_directory=True)


def scope_lines(source: Path, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """1-based inclusive line ranges of the named top-level functions and classes, or of methods named
    `Class.method` (decorators included)."""
    tree = ast.parse(source.read_text())
    ranges = []
    found = set()
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    for node in tree.body:
        if not isinstance(node, kinds):
            continue
        inner = [(f"{node.name}.{sub.name}", sub) for sub in node.body if isinstance(sub, kinds)]
        for name, found_node in [(node.name, node), *inner]:
            if name in names:
                first = min([found_node.lineno] + [d.lineno for d in found_node.decorator_list])
                ranges.append((first, found_node.end_lineno or found_node.lineno))
                found.add(name)
    missing = set(names) - found
    if missing:
        raise SystemExit(f"{source}: no function, class or Class.method {', '.join(sorted(missing))} "
                         f"(update the scope in {__file__})")
    return ranges


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, limit: float = 60.0) -> None:
    """Return once something accepts connections on port; fail if proc exits or the limit passes."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"cosmic-ray http-worker on port {port} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"cosmic-ray http-worker on port {port} did not start")


def worker_env(copy: Path) -> dict[str, str]:
    """The environment of the tests in a copy: its own gantrain first on the path, no plugin autoload."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # saves a second per mutant; hypothesis works without its plugin
    env.setdefault("GANTRAIN_DATA", str(REPO.parent / "shared" / "data"))
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = "1"  # one core per worker
    return env


def cosmic_ray(*args: str, cwd: Path, env: dict[str, str]) -> None:
    """Run a cosmic-ray subcommand; raise on failure."""
    subprocess.run([sys.executable, "-m", "cosmic_ray.cli", *args], cwd=cwd, env=env, check=True)


def report(session: Path, source: Path) -> dict:
    """Counts by outcome, the kill rate and the survivors (line, operator, diff) of a finished session."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    lines = source.read_text().splitlines()
    counts = {"killed": 0, "timeout": 0, "survived": 0, "incompetent": 0, "skipped": 0, "no-test": 0, "pending": 0}
    survivors: list[dict] = []
    incompetent: list[dict] = []
    with use_db(str(session), WorkDB.Mode.open) as db:
        results = dict(db.results)
        for item in db.work_items:
            result = results.get(item.job_id)
            if result is None:
                counts["pending"] += 1
                continue
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                counts["skipped"] += 1
            elif result.worker_outcome == WorkerOutcome.NO_TEST:
                counts["no-test"] += 1
            elif result.test_outcome == TestOutcome.SURVIVED:
                counts["survived"] += 1
                m = item.mutations[0]
                survivors.append({
                    "line": m.start_pos[0], "operator": m.operator_name, "occurrence": m.occurrence,
                    "code": lines[m.start_pos[0] - 1].strip(),
                    "diff": "\n".join(d for d in (result.diff or "").splitlines()
                                      if d[:1] in "+-" and not d.startswith(("+++", "---"))),
                })
            elif result.test_outcome == TestOutcome.INCOMPETENT:
                counts["incompetent"] += 1
                m = item.mutations[0]
                incompetent.append({"line": m.start_pos[0], "operator": m.operator_name, "occurrence": m.occurrence,
                                    "output": (result.output or "")[-300:]})
            elif result.output == "timeout":
                counts["timeout"] += 1
            else:
                counts["killed"] += 1
    tested = counts["killed"] + counts["timeout"] + counts["survived"]
    rate = (counts["killed"] + counts["timeout"]) / tested if tested else float("nan")
    return {"counts": counts, "tested": tested, "kill_rate": rate, "survivors": sorted(survivors, key=lambda s: s["line"]),
            "incompetent": incompetent}


def main() -> int:
    """Parse the arguments, run cosmic-ray on copies, print the kill rate and the survivors."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("module", choices=sorted(TARGETS))
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="parallel test runs (default: 2)")
    parser.add_argument("--timeout", type=float, default=0.0,
                        help="seconds per mutant (default: 4x the unmutated test run, at least 20)")
    parser.add_argument("--whole", action="store_true", help="mutate the whole module, ignoring its scope")
    parser.add_argument("--json", type=Path, help="also write the counts and survivors here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies (their path is printed)")
    parser.add_argument("--survivors-of", type=Path, metavar="JSON",
                        help="test only the survivors listed in an earlier --json report (same module source)")
    parser.add_argument("--tests", nargs=argparse.REMAINDER, metavar="PYTEST_ARG",
                        help="pytest arguments in place of the target's selection (last option: all that follows)")
    args = parser.parse_args()
    target = TARGETS[args.module]

    work = Path(tempfile.mkdtemp(prefix=f"gantrain-mutation-{args.module}-")).resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit(f"refusing to work inside the checkout ({work})")
    copies = [work / f"w{i}" for i in range(max(1, args.workers))]
    workers: list[subprocess.Popen] = []
    try:
        for copy in copies:
            copy_repo(copy)
        main_copy = copies[0]
        env = worker_env(main_copy)
        where = subprocess.run([sys.executable, "-c", "import gantrain.losses as m; print(m.__file__)"], cwd=main_copy,
                               env=env, capture_output=True, text=True, check=True).stdout.strip()
        if not Path(where).resolve().is_relative_to(main_copy):
            raise SystemExit(f"the copy imports gantrain from {where}, not from {main_copy}; mutants would not be tested")

        # xdist loaded by hand (plugin autoload is off): pyproject's addopts pass -n, and conftest uses worker_id
        test_command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "xdist.plugin", "-n", "0", "-p", "no:cacheprovider",
                        *(args.tests or target.tests)]
        started = time.monotonic()
        baseline = subprocess.run(test_command, cwd=main_copy, env=env, capture_output=True, text=True)
        baseline_s = time.monotonic() - started
        if baseline.returncode != 0:
            print(baseline.stdout[-4000:], baseline.stderr[-2000:])
            raise SystemExit("the tests fail on the unmutated code; fix that first")
        timeout = args.timeout or max(20.0, 4 * baseline_s)
        print(f"{target.path}: baseline test run {baseline_s:.1f} s, per-mutant timeout {timeout:.0f} s, "
              f"{len(copies)} worker(s), copies under {work}", flush=True)

        ports = [free_port() for _ in copies]
        distributor = (
            f'[cosmic-ray.distributor]\nname = "http"\n\n[cosmic-ray.distributor.http]\n'
            f"worker-urls = {json.dumps([f'http://127.0.0.1:{p}' for p in ports])}\n"
            if len(copies) > 1 else '[cosmic-ray.distributor]\nname = "local"\n'
        )
        config = work / "config.toml"
        config.write_text(
            "[cosmic-ray]\n"
            f'module-path = "{target.path}"\n'
            f"timeout = {timeout:.1f}\n"
            "excluded-modules = []\n"
            f"test-command = {json.dumps(shlex.join(test_command))}\n\n" + distributor
        )
        session = work / "session.sqlite"
        cosmic_ray("init", str(config), str(session), cwd=main_copy, env=env)

        from cosmic_ray.work_db import WorkDB, use_db
        from cosmic_ray.work_item import WorkerOutcome, WorkResult

        source = main_copy / target.path
        if target.scope and not args.whole:

            ranges = scope_lines(source, target.scope)
            with use_db(str(session), WorkDB.Mode.open) as db:
                outside = [item.job_id for item in db.work_items
                           if not any(a <= item.mutations[0].start_pos[0] <= b for a, b in ranges)]
                for job_id in outside:
                    db.set_result(job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
            print(f"scope: {', '.join(target.scope)} ({target.note}); {len(outside)} mutants outside it skipped",
                  flush=True)
        if args.survivors_of:
            earlier = json.loads(args.survivors_of.read_text())
            wanted = {(x["line"], x["operator"], x["occurrence"]) for x in earlier["survivors"]}
            with use_db(str(session), WorkDB.Mode.open) as db:
                pending_items = list(db.pending_work_items)
                keep = {item.job_id for item in pending_items
                        if (item.mutations[0].start_pos[0], item.mutations[0].operator_name,
                            item.mutations[0].occurrence) in wanted}
                for item in pending_items:
                    if item.job_id not in keep:
                        db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
            if len(keep) != len(wanted):
                print(f"warning: {len(wanted) - len(keep)} of the {len(wanted)} earlier survivors not found "
                      f"(the module changed since?)")
        with use_db(str(session), WorkDB.Mode.open) as db:
            pending = sum(1 for _ in db.pending_work_items)
        print(f"{pending} mutants to test, about {pending * baseline_s / len(copies) / 60:.0f} min at most", flush=True)

        if len(copies) > 1:
            for copy, port in zip(copies, ports):
                log = open(work / f"worker-{port}.log", "w")
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "cosmic_ray.cli", "http-worker", "--port", str(port)],
                    cwd=copy, env=worker_env(copy), stdout=log, stderr=subprocess.STDOUT,
                ))
            for proc, port in zip(workers, ports):
                wait_for_port(port, proc)
        started = time.monotonic()
        cosmic_ray("exec", str(config), str(session), cwd=main_copy, env=env)
        elapsed = time.monotonic() - started

        summary = report(session, source)
        for copy in copies:  # cosmic-ray restores each file after its mutant; check it did
            if (copy / target.path).read_text() != (REPO / target.path).read_text():
                print(f"warning: {copy / target.path} differs from the checkout after the run (the checkout changed "
                      f"meanwhile, or a mutant was not reverted)")
        summary.update(module=target.path, scope=None if args.whole else target.scope, seconds=round(elapsed),
                       date=datetime.date.today().isoformat(), command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                       test_command=shlex.join(["python", *test_command[1:]]))
        c = summary["counts"]
        print(f"\n{target.path}: {summary['tested']} mutants tested in {elapsed / 60:.1f} min: "
              f"{c['killed']} killed, {c['timeout']} timed out, {c['survived']} survived "
              f"({c['incompetent']} incompetent, {c['skipped']} skipped, {c['no-test']} not applicable, "
              f"{c['pending']} pending)")
        print(f"kill rate: {100 * summary['kill_rate']:.1f}%")
        for s in summary["survivors"]:
            print(f"\nSURVIVED line {s['line']}: {s['operator']} (occurrence {s['occurrence']})\n    {s['code']}\n{s['diff']}")
        if args.json:
            args.json.write_text(json.dumps(summary, indent=1))
        return 0
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if args.keep:
            print(f"copies kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
