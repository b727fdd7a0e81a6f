"""The commands: `gantrain`, `gantrain-eval`, `gantrain-classifier`. Parsing and exit codes only;
nothing in gantrain imports this module."""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from .config import register_resolvers
from .errors import GantrainError
from .overrides import check_overrides, check_roots, override_words

log = logging.getLogger("gantrain")


# ---- gantrain --------------------------------------------------------------------------------------


def _remove_rank_folder(folder: Path) -> None:
    """Delete the temporary Hydra folder of a process other than rank 0 (see config.run_dir_for)."""
    import shutil
    import tempfile

    if folder.name.startswith("gantrain-rank") and folder.parent == Path(tempfile.gettempdir()):
        for handler in logging.getLogger().handlers:  # Hydra's log file lives there
            if getattr(handler, "baseFilename", "").startswith(str(folder)):
                handler.close()
                logging.getLogger().removeHandler(handler)
        shutil.rmtree(folder, ignore_errors=True)


# The run folder this launch trains in, as the command line names it, and whether it existed before
# Hydra made it (set by main(); a launch that fails before training removes what it made).
_LAUNCH: dict[str, Any] = {}


def _undo_launch(run_dir: Path, log_size: Optional[int], busy: bool) -> None:
    """Remove what a launch that never trained left in run_dir: the folder itself when this launch made
    it, else its own .hydra record (and, when it held the lock, the log lines it added)."""
    import shutil

    made_here = _LAUNCH.get("fresh") or (_LAUNCH.get("run_dir") == run_dir.resolve() and not _LAUNCH.get("existed", True))
    if made_here and not busy:
        leftovers = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
        if leftovers <= {".hydra", "gantrain.log", ".gantrain.lock"}:
            shutil.rmtree(run_dir, ignore_errors=True)
            return
    if _LAUNCH.get("run_dir") == run_dir.resolve():
        record = run_dir / ".hydra"
        if not _LAUNCH.get("had_record"):  # the folder had no record: this launch wrote the first one
            for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
                (record / name).unlink(missing_ok=True)
        for sub in (record.iterdir() if record.is_dir() else []):  # timestamped records made by this launch
            if sub.is_dir() and sub.name not in _LAUNCH.get("records", ()):
                shutil.rmtree(sub, ignore_errors=True)
        try:
            record.rmdir()  # only when empty
        except OSError:
            pass
    if not busy:
        log_file = run_dir / "gantrain.log"
        if log_size == 0:  # Hydra opened it for this launch
            log_file.unlink(missing_ok=True)
        elif log_size is not None and log_file.is_file() and log_file.stat().st_size > log_size:
            os.truncate(log_file, log_size)
        if not (run_dir / "checkpoints").exists():  # not a run: the lock file came with this launch
            (run_dir / ".gantrain.lock").unlink(missing_ok=True)


def _sweep_job(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Optional[float]:
    """One job of a sweep (`gantrain -m`): skipped when its folder holds it finished, continued from its
    checkpoint when interrupted, recorded in status.json; a failing job fails alone (the sweep goes on).
    Returns the value of `optimized_metric` for Hydra's sweepers (NaN when the job failed)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from . import sweep
    from .loop import Interrupted
    from .run import RunBusy, train

    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(str(hydra_cfg.sweep.dir))
    name = f"job {hydra_cfg.job.num} ({' '.join(overrides) or 'no overrides'})"
    metric = cfg.get("optimized_metric")
    steps = _whole_number(OmegaConf.select(cfg, "trainer.steps", default=0)) or 0  # a bad value fails in train()
    prior = sweep.read_status(run_dir) or {}
    other_job = bool(prior) and sweep.job_identity(prior.get("overrides") or []) != sweep.job_identity(overrides)
    finished = prior.get("status") == "finished" and int(prior.get("step", 0)) >= steps
    if other_job or finished:
        record = str(hydra_cfg.output_subdir or "")
        if record.startswith(".hydra/"):  # the config record Hydra just wrote for a job that will not run
            import shutil

            shutil.rmtree(run_dir / record, ignore_errors=True)
    if other_job:
        print(f"gantrain: error: {run_dir} holds another job ({' '.join(prior.get('overrides') or [])}) than this sweep's "
              f"{name}; re-run the sweep's original command, or give a new hydra.sweep.dir", file=sys.stderr)
        sys.exit(2)
    if sweep.is_busy(run_dir):
        print(f"gantrain: error: {run_dir} is in use by another process; is this sweep running twice?", file=sys.stderr)
        sys.exit(2)
    if finished:
        log.info("%s finished earlier (step %s); skipped", name, prior.get("step"))
        return _job_value(run_dir, metric)
    try:
        every = _whole_number(OmegaConf.select(cfg, "trainer.eval_every", default=0)) or 0
        if metric and not str(metric).startswith(("loss/", "lr/")) and (every <= 0 or steps % every):
            raise GantrainError(f"optimized_metric={metric} is an evaluation metric, but evaluation does not run at the "
                                f"last step (trainer.eval_every={every}, trainer.steps={steps}): set trainer.eval_every "
                                f"to a divisor of trainer.steps")
        with open_dict(cfg):
            if cfg.get("resume") in (None, ""):
                cfg.resume = "auto"  # a re-run of the sweep continues the job from its checkpoint
            gpus = _gpu_count() if str(OmegaConf.select(hydra_cfg, "launcher._target_", default="")).endswith("JoblibLauncher") else 0
            cfg.trainer.device = sweep.device_for_job(cfg.trainer.device, int(hydra_cfg.job.num), gpus)
        sweep.write_status(run_dir, status="running", overrides=overrides, steps=steps, reason="", job=int(hydra_cfg.job.num),
                           started=time.strftime("%Y-%m-%dT%H:%M:%S"), started_at=time.time(), pid=os.getpid())
        loop = train(cfg, run_dir, overrides)
    except Interrupted as stop:
        sweep.write_status(run_dir, status="interrupted", step=stop.step, reason=f"stopped by signal {stop.signum}",
                           ended_at=time.time())
        print(f"gantrain: sweep stopped in {name} at step {stop.step}. Finish it with the same command and "
              f"hydra.sweep.dir={sweep_dir} (finished jobs are skipped, this one continues)", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except RunBusy as exc:
        print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # the job fails alone; its log keeps the traceback of anything unexpected
        reason = sweep.one_line(exc)
        if not isinstance(exc, GantrainError):
            log.exception("%s failed", name)
        log.error("%s failed: %s", name, reason)
        sweep.write_status(run_dir, status="failed", reason=reason, step=sweep.last_values(run_dir)[0], ended_at=time.time())
        sweep.write_hparams(run_dir, overrides, "failed")
        return math.nan
    sweep.write_status(run_dir, status="finished", step=loop.step, steps=loop.steps, reason="", ended_at=time.time())
    sweep.write_hparams(run_dir, overrides, "finished")
    return _job_value(run_dir, metric)


def _whole_number(value: Any) -> Optional[int]:
    """value as an int, or None when it is not a whole number (train() then refuses it in one line)."""
    try:
        return int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _job_value(run_dir: Path, metric: Optional[str]) -> Optional[float]:
    """The value a finished job returns to the sweeper: its last `optimized_metric` (None when unset)."""
    if not metric:
        return None
    from . import sweep

    try:
        return sweep.metric_value(run_dir, str(metric))
    except GantrainError as exc:
        log.error("%s", exc)
        sweep.write_status(run_dir, status="failed", reason=str(exc))
        return math.nan


def _task(cfg: DictConfig) -> Optional[float]:
    """One Hydra job: train (or resume) the composed config in Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from . import distributed
    from .loop import Interrupted
    from .run import BeforeStart, RunBusy, train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    log_file = run_dir / "gantrain.log"
    log_size = log_file.stat().st_size if log_file.is_file() else None
    overrides = list(hydra_cfg.overrides.task)
    dist = distributed.from_env()
    if hydra_cfg.mode == RunMode.MULTIRUN and not dist.enabled:
        return _sweep_job(cfg, run_dir, overrides)
    try:
        if dist.enabled:  # join the job and take rank 0's run folder
            distributed.init(dist, str(cfg.trainer.device))
            own_dir, run_dir = run_dir, Path(distributed.broadcast_object(str(run_dir)))
            if not dist.main:
                logging.getLogger("gantrain").setLevel(logging.WARNING)
                _remove_rank_folder(own_dir)
        train(cfg, run_dir, overrides, dist)
    except Interrupted as stop:
        if dist.main:
            launcher = "torchrun ... -m gantrain.cli" if dist.enabled else "gantrain"
            print(f"gantrain: stopped at step {stop.step}; checkpoint {run_dir / 'checkpoints' / 'last.pt'}. "
                  f"Resume with: {launcher} resume={run_dir}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except GantrainError as exc:
        if dist.main and isinstance(exc, (BeforeStart, RunBusy)):
            _undo_launch(run_dir, log_size, busy=isinstance(exc, RunBusy))
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if dist.main:
            print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.enabled:
            import torch.distributed

            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()


def _argv_value(args: list[str], key: str) -> Optional[str]:
    """The value of the last `key=value` on a command line (quotes stripped), or None."""
    found = None
    for arg in args:
        if arg.lstrip("+~").startswith(f"{key}="):
            found = arg.split("=", 1)[1].strip("'\"")
    return found


#: Hydra plugins of the sweeps extra: (what asks for it, its module)
_PLUGINS = (("hydra/sweeper=optuna", "hydra_plugins.hydra_optuna_sweeper", "the Optuna sweeper"),
            ("hparams_search=", "hydra_plugins.hydra_optuna_sweeper", "the Optuna sweeper"),
            ("hydra/launcher=joblib", "hydra_plugins.hydra_joblib_launcher", "the joblib launcher"),
            ("hydra/launcher=slurm", "hydra_plugins.hydra_submitit_launcher", "the submitit launcher"),
            ("hydra/launcher=submitit", "hydra_plugins.hydra_submitit_launcher", "the submitit launcher"))


def missing_plugin(args: list[str]) -> Optional[str]:
    """One line naming the pip install to run when the command line asks for a Hydra plugin that is not
    installed, else None."""
    import importlib.util

    for arg in args:
        for asks, module, what in _PLUGINS:
            if arg.lstrip("+~").startswith(asks) and not arg.endswith("=null"):
                try:
                    found = importlib.util.find_spec(module) is not None
                except (ImportError, ValueError):
                    found = False
                if not found:
                    return (f"{arg} needs {what}, which is not installed: pip install 'gantrain[sweeps]' "
                            f"(or pip install {module.split('.')[1].replace('_', '-')})")
    return None


def _saved_choices(args: list[str]) -> list[str]:
    """The group choices (experiment=..., dataset=...) of the run that resume= continues, from its
    .hydra/overrides.yaml: a key such as dataset.root is checked against the run's dataset, not the default."""
    resume = _argv_value(args, "resume")
    if resume in (None, "", "null"):
        return []
    from .checkpoint import run_folder_of

    where = _argv_value(args, "hydra.run.dir") if resume == "auto" else resume
    if where is None:
        return []
    path = Path(where).expanduser()
    folder = run_folder_of(path) if path.suffix == ".pt" or path.is_file() else path
    try:
        saved = OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "overrides.yaml"))
    except Exception:  # no record (a run started from Python) or an unreadable one: the defaults
        return []
    return [o for o in saved if isinstance(o, str) and "=" in o and not o.startswith(("+", "~", "hydra", "resume="))
            and "." not in o.split("=", 1)[0]] if isinstance(saved, list) else []


def _check_command_line(args: list[str]) -> None:
    """What Hydra would report with a traceback or wrong advice, as one line: unknown keys (with the
    nearest valid ones), and a run folder that cannot be created or written."""
    import difflib

    from .api import compose
    from .checkpoint import run_folder_of

    if any(a in ("-h", "--help", "--hydra-help") for a in args):
        return
    check_overrides(args)
    words = override_words(args)
    plain = [a for a in words if "=" in a and not a.startswith(("+", "~")) and not a.startswith("hydra")]
    if plain:
        check_roots(plain)
        choices = [a for a in plain if "." not in a.split("=", 1)[0]]
        try:
            cfg = compose(choices)
        except Exception:  # an unknown option of a group: Hydra's own message lists the valid ones
            cfg = None
        if cfg is not None:
            for arg in plain:
                key = arg.split("=", 1)[0]
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(cfg, parent) if parent else cfg
                valid = [str(k) for k in node.keys()] + ([] if parent else ["experiment", "hparams_search", "model"]) if isinstance(node, DictConfig) else []
                if leaf not in valid:
                    near = difflib.get_close_matches(leaf, valid, n=2)
                    hint = f"did you mean {' or '.join((parent + '.' if parent else '') + n for n in near)}? " if near else ""
                    raise GantrainError(f"unknown key {key}; {hint}(`gantrain --help` lists the groups, "
                                        f"`gantrain --cfg job` every key; +{key}=... adds a new one)")
    missing = missing_plugin(args)
    if missing:
        raise GantrainError(missing)
    if any(a in ("-c", "--cfg", "--info", "-i", "--resolve") for a in args):  # shows the config; trains nothing
        return
    if "-m" in args or "--multirun" in args:
        if _argv_value(args, "resume") not in (None, "", "null"):
            raise GantrainError("resume= does not apply to a sweep: re-run the sweep's command with "
                                "hydra.sweep.dir=<its folder> to finish it (finished jobs are skipped, interrupted ones continue)")
        return
    if plain and cfg is not None:
        try:  # a value of the wrong shape (a mapping for a list, say): Hydra reports it over several lines
            compose(plain)
        except Exception as exc:
            if isinstance(exc, GantrainError) and exc.__cause__ is not None:  # compose's one line: read Hydra's own
                exc = exc.__cause__
            text = str(exc).splitlines()[0] if str(exc) else ""
            if text.startswith("Error merging override "):
                cause = exc.__cause__ or exc.__context__
                why = str(cause).splitlines()[0] if cause is not None and str(cause) else type(exc).__name__
                raise GantrainError(f"cannot set {text[len('Error merging override '):]}: {why}; give a value of the "
                                    f"key's type (`gantrain --cfg job` shows every key's current value)") from None
    resume = _argv_value(args, "resume")
    if resume not in (None, "", "auto", "null") and not Path(resume).expanduser().exists():
        raise GantrainError(f"resume={resume}: no such run folder or checkpoint file")
    run_dir = _argv_value(args, "hydra.run.dir")
    if run_dir is None and resume not in (None, "", "auto", "null"):
        path = Path(resume).expanduser()
        run_dir = str(run_folder_of(path) if path.is_file() or path.suffix == ".pt" else path)
    target = Path(run_dir or "outputs").expanduser().resolve()
    # without hydra.run.dir or resume, Hydra makes a new dated folder below outputs/
    record = target / ".hydra"
    _LAUNCH.update(run_dir=target, existed=target.exists(), fresh=run_dir is None,
                   had_record=(record / "config.yaml").exists(),
                   records={p.name for p in record.iterdir() if p.is_dir()} if record.is_dir() else set())
    probe = target
    while not probe.exists():  # the nearest existing folder must let us make the run folder in it
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise GantrainError(f"cannot create or write the run folder {target} ({probe} is not a writable folder); "
                            f"choose another with hydra.run.dir=...")
    if not target.exists():
        import tempfile

        try:  # what os.access cannot tell (read-only mounts, /proc): try it, under a name no other process uses
            os.rmdir(tempfile.mkdtemp(prefix=".gantrain-probe-", dir=probe))
        except OSError as exc:
            raise GantrainError(f"cannot create the run folder {target} ({exc.strerror or exc}); "
                                f"choose another with hydra.run.dir=...") from None


def main() -> None:
    """Entry point of the `gantrain` command."""
    import hydra

    register_resolvers()
    given = {a.split("=", 1)[0] for a in sys.argv[1:]}
    # a resumed run's group choices first, so that keys of its groups (dataset.root of its dataset) are
    # checked and composed against them, not against the defaults
    sys.argv[1:1] = [c for c in _saved_choices(sys.argv[1:]) if c.split("=", 1)[0] not in given]
    try:
        _check_command_line(sys.argv[1:])
    except GantrainError as exc:
        print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)
    entry = hydra.main(config_path="pkg://gantrain.configs", config_name="config", version_base="1.3")(_task)
    entry()
    from .sweep import LAST_SWEEP

    if LAST_SWEEP.get("failed"):  # the summary above names them and why
        sys.exit(1)


# ---- gantrain-eval ---------------------------------------------------------------------------------


def _yaml_value(text: str) -> Any:
    return OmegaConf.create(f"v: {text}").v


def eval_main(argv: Optional[list[str]] = None) -> None:
    """`gantrain-eval RUN_FOLDER_OR_CHECKPOINT [metrics=[fid_classifier,precision]] [num_samples=N] [device=cpu]
    [dataset.root=DIR] [ema=true] [seed=0]`: print a table of scores with their real-vs-real floor, write eval.json.

    Image translation runs (pix2pix, CycleGAN) are scored on their dataset's test split (metrics l1, psnr, ssim,
    label_acc, fid_classifier, as they apply; num_samples: test images translated, 2000 by default), each
    score next to its floor (the untranslated input; for fid_classifier, real vs real)."""
    from .api import load_generator, load_translator
    from .checkpoint import open_run_or_checkpoint, run_folder_of
    from .components import build_dataset, resolve_device
    from .config import with_added_keys
    from .evaluate import Evaluator

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in ("-h", "--help") for a in args):
        print(eval_main.__doc__)
        sys.exit(0 if args else 2)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        paths = [a for a in args if "=" not in a]
        if len(paths) != 1:
            raise GantrainError("give exactly one run folder or checkpoint file")
        path = Path(paths[0])
        options = dict(a.split("=", 1) for a in args if "=" in a)
        own = {k: options.pop(k) for k in ("metrics", "num_samples", "device", "ema", "seed") if k in options}
        bad = [k for k in options if not k.startswith("dataset.")]
        if bad:
            raise GantrainError(f"unknown option(s) {', '.join(bad)}; use metrics=, num_samples=, device=, ema=, seed=, dataset.KEY=")
        numbers = {}
        for key in ("num_samples", "seed"):
            if key in own:
                value = _yaml_value(own[key])
                if not isinstance(value, int) or isinstance(value, bool):
                    raise GantrainError(f"{key}={own[key]} must be a whole number")
                numbers[key] = value
        checkpoint, state = open_run_or_checkpoint(path)
        out_dir = path if path.is_dir() else run_folder_of(path)
        dataset_cfg = OmegaConf.create(with_added_keys(state["config"])["dataset"])  # as the run trained it
        for key, value in options.items():
            OmegaConf.update(dataset_cfg, key[len("dataset."):], _yaml_value(value))
        dataset = build_dataset(dataset_cfg)  # the full dataset, also for a run trained on dataset.subset
        device = resolve_device(own.get("device", "auto"))
        metrics: Any = own.get("metrics", "auto")
        if metrics != "auto":
            metrics = [m.strip() for m in metrics.strip("[]").split(",") if m.strip()]
        translation = state.get("translation")
        use_ema = own.get("ema", "true").lower() != "false"
        if translation:
            from .translation_eval import TranslationEvaluator

            evaluator: Any = TranslationEvaluator(dataset, metrics, device, numbers.get("num_samples", 2000),
                                                  numbers.get("seed", 0), translation["kind"])
            network: Any = load_translator(checkpoint, device=device, ema=use_ema)
        else:
            evaluator = Evaluator(dataset, metrics, numbers.get("num_samples"), device, numbers.get("seed", 0),
                                  conditional=bool(state["config"].get("conditional", False)))
            network = load_generator(checkpoint, device=device, ema=use_ema)
        results = evaluator(network)
    except GantrainError as exc:
        print(f"gantrain-eval: error: {exc}", file=sys.stderr)
        sys.exit(2)
    report = {
        "checkpoint": str(checkpoint),
        "step": state["step"],
        "generator": "ema" if use_ema and "generator" in state.get("ema", {}) else "generator",
        "metrics": results,
        "real_vs_real_floor": {k: v for k, v in evaluator.floor.items() if k in results},
        "provenance": evaluator.provenance,
    }
    print(f"{'metric':18s} {'value':>12s} {'floor' if translation else 'real-vs-real':>14s}")
    for name, value in results.items():
        floor = evaluator.floor.get(name)
        print(f"{name:18s} {value:12.4f} {floor if floor is None else format(floor, '14.4f'):>14}")
    if translation:
        report["translation"] = {"kind": translation["kind"], "direction": evaluator.direction, **evaluator.details}
        for name, value in evaluator.details.items():
            print(f"{name}: {value:.4f}")
    elif evaluator.details:  # per-class values of the conditional metrics (None: a class without samples)
        report["per_class"] = evaluator.details
        for name, values in evaluator.details.items():
            print(f"{name}: " + ", ".join(f"{c}: {'-' if v is None else format(v, '.4g')}" for c, v in enumerate(values)))
    target = out_dir / "eval.json"
    report["settings"] = {"num_samples": evaluator.num_samples, "seed": numbers.get("seed", 0)}
    report = _merge_eval(target, report)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=lambda v: v if math.isfinite(v) else str(v)) + "\n")
    tmp.replace(target)
    print(f"wrote {target}")


def _merge_eval(target: Path, report: dict) -> dict:
    """The report to write as eval.json: merged with the one there when both score the same samples (same
    checkpoint, generator, sample count and seed); otherwise the old file is kept as eval.<step>.<n>.json."""
    if not target.is_file():
        return report
    try:
        old = json.loads(target.read_text())
    except (OSError, ValueError):
        old = None
    same = isinstance(old, dict) and all(old.get(k) == report[k] for k in ("checkpoint", "step", "generator", "settings"))
    if same:
        assert isinstance(old, dict)
        for key in ("metrics", "real_vs_real_floor", "provenance"):
            report[key] = {**old.get(key, {}), **report[key]}
        return report
    n = 0
    while (kept := target.with_name(f"eval.{(old or {}).get('step', 'old')}.{n}.json")).exists():
        n += 1
    target.rename(kept)
    print(f"kept the previous evaluation as {kept}")
    return report


# ---- gantrain-classifier ---------------------------------------------------------------------------


def classifier_main(argv: Optional[list[str]] = None) -> None:
    """`gantrain-classifier dataset=mnist [dataset.root=...] [steps=1000] [device=cpu]`: train and cache the
    domain classifier of a labelled dataset (the feature space of the classifier-space metrics)."""
    from .api import compose
    from .components import build_dataset, resolve_device
    from .classifier import cache_key, save_classifier, train_classifier

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(classifier_main.__doc__)
        return
    own = {k: v for k, v in (a.split("=", 1) for a in args if a.split("=", 1)[0] in ("steps", "device"))}
    overrides = [a for a in args if a.split("=", 1)[0] not in ("steps", "device")]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bad = [a for a in overrides if not a.startswith("dataset")]
        if bad:
            raise GantrainError(f"unknown argument(s) {', '.join(bad)}; use dataset=..., dataset.KEY=..., steps=N, device=...")
        steps = _yaml_value(own.get("steps", "1000"))
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise GantrainError(f"steps={own.get('steps')} must be a positive whole number")
        try:
            cfg = compose(overrides)
        except Exception as exc:  # Hydra's own errors: an unknown option, a bad override
            raise GantrainError(f"{' '.join(overrides)}: {str(exc).splitlines()[0]}") from None
        dataset = build_dataset(cfg.dataset)
        if dataset.name == "stacked_mnist":
            raise GantrainError("stacked_mnist is scored with the MNIST classifier, channel by channel, not one of its "
                                "own 1000 classes: train that with gantrain-classifier dataset=mnist")
        device = resolve_device(own.get("device", "auto"))
        start = time.time()
        model, acc = train_classifier(dataset, steps=steps, device=str(device))
        path = save_classifier(model, dataset, acc)
    except GantrainError as exc:
        print(f"gantrain-classifier: error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{cache_key(dataset)} classifier: test accuracy {100 * acc:.2f}% in {time.time() - start:.0f} s; saved {path}")


if __name__ == "__main__":
    main()
