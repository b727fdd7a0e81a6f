"""`gantrain`: train one run, or one job of a sweep (Hydra multirun). Parsing and exit codes only."""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from gantrain.config import register_resolvers
from gantrain.errors import GantrainError
from gantrain.overrides import check_overrides, check_roots, override_words, paths_ending_with

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


def _undo_launch(run_dir: Path, log_size: Optional[int], busy: bool, started: bool = False) -> None:
    """Remove what a launch that never trained left in run_dir: the folder itself when this launch made
    it, else its own .hydra record (and, when it held the lock, the log lines it added). started: the launch
    may have begun writing the run's outputs (interrupted while setting up): a folder it made without a
    checkpoint in it goes whole."""
    import shutil

    made_here = _LAUNCH.get("fresh") or (_LAUNCH.get("run_dir") == run_dir.resolve() and not _LAUNCH.get("existed", True))
    own = str(_LAUNCH.get("own_record") or "")
    if busy and own.startswith(".hydra/") and run_dir.resolve() != _LAUNCH.get("run_dir"):
        # refused by a run in the same dated folder (two launches in one second): the record this launch wrote
        # beside that run's own goes; nothing else of that run is touched
        shutil.rmtree(run_dir / own, ignore_errors=True)
        return
    if made_here and not busy:
        leftovers = {p.name for p in run_dir.iterdir()} if run_dir.is_dir() else set()
        if leftovers <= {".hydra", "gantrain.log", ".gantrain.lock"} or (started and "checkpoints" not in leftovers):
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
        mine = _LAUNCH.get("run_dir") == run_dir.resolve() or not (run_dir / "checkpoints").exists()
        if mine and not _LAUNCH.get("had_lock"):  # the lock came with this launch
            (run_dir / ".gantrain.lock").unlink(missing_ok=True)


def _sweep_job(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> Any:
    """One job of a sweep (`gantrain -m`): skipped when its folder holds it finished, continued from its
    checkpoint when interrupted, recorded in status.json; a failing job fails alone (the sweep goes on).
    Returns the value of `optimized_metric` for Hydra's sweepers (a sweep.FailedJob when the job failed)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from gantrain.commands import sweep
    from gantrain.training.loop import Interrupted
    from gantrain.training.run import RunBusy, run_contents, train

    hydra_cfg = HydraConfig.get()
    sweep_dir = Path(str(hydra_cfg.sweep.dir))
    name = f"job {hydra_cfg.job.num} ({' '.join(overrides) or 'no overrides'})"
    metric = cfg.get("optimized_metric")
    steps = _whole_number(OmegaConf.select(cfg, "trainer.steps", default=0)) or 0  # a bad value fails in train()
    prior = sweep.read_status(run_dir) or {}
    other_job = bool(prior) and sweep.job_identity(prior.get("overrides") or []) != sweep.job_identity(overrides)
    # a job writes status.json before it trains: checkpoints or outputs without one are a run of another kind
    foreign = [] if prior else run_contents(run_dir)
    other_job = other_job or bool(foreign)
    finished = prior.get("status") == "finished" and int(prior.get("step", 0)) >= steps
    if other_job or finished:
        record = str(hydra_cfg.output_subdir or "")
        if record.startswith(".hydra/"):  # the config record Hydra just wrote for a job that will not run
            import shutil

            shutil.rmtree(run_dir / record, ignore_errors=True)
    if other_job:
        record, _, copy = os.environ.get("GANTRAIN_KEPT_MULTIRUN", "").partition(os.pathsep)
        if copy and Path(record) == (sweep_dir / "multirun.yaml").resolve() and Path(copy).is_file():
            Path(record).write_bytes(Path(copy).read_bytes())  # the sweep that is there keeps its record
        if foreign:
            print(f"gantrain: error: {run_dir} holds a run that is not a job of a sweep ({', '.join(foreign)}, no "
                  f"{sweep.STATUS_FILE}); this sweep's {name} would be mixed into it: give a new hydra.sweep.dir",
                  file=sys.stderr)
        else:
            print(f"gantrain: error: {run_dir} holds another job ({' '.join(prior.get('overrides') or [])}) than this "
                  f"sweep's {name}; re-run the sweep's original command, or give a new hydra.sweep.dir", file=sys.stderr)
        sys.exit(2)
    if sweep.is_busy(run_dir):
        print(f"gantrain: error: {run_dir} is in use by another process; is this sweep running twice?", file=sys.stderr)
        sys.exit(2)
    if finished:
        log.info("%s finished earlier (step %s); skipped", name, prior.get("step"))
        return _job_value(run_dir, metric)
    try:
        every = _whole_number(OmegaConf.select(cfg, "trainer.eval_every", default=0)) or 0
        if metric and _is_evaluation_metric(metric) and (every <= 0 or steps % every):
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
              f"{shlex.quote(f'hydra.sweep.dir={sweep_dir}')} (finished jobs are skipped, this one continues)", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except RunBusy as exc:
        print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, Exception) as exc:  # the job fails alone; its log keeps any unexpected traceback
        from gantrain.commands.start import interrupt_signal, interrupted

        # a Ctrl-C or SIGTERM while the job was set up (or one a library turned into another error): the sweep stops
        if isinstance(exc, KeyboardInterrupt) or interrupted():
            sweep.write_status(run_dir, status="interrupted", reason=f"stopped by signal {interrupt_signal()}",
                               ended_at=time.time())
            print(f"gantrain: sweep stopped in {name} before it trained. Finish it with the same command and "
                  f"{shlex.quote(f'hydra.sweep.dir={sweep_dir}')} (finished jobs are skipped)", file=sys.stderr)
            sys.exit(128 + interrupt_signal())
        reason = sweep.one_line(exc)
        if not isinstance(exc, GantrainError):
            log.exception("%s failed", name)
        log.error("%s failed: %s", name, reason)
        sweep.write_status(run_dir, status="failed", reason=reason, step=sweep.last_values(run_dir)[0], ended_at=time.time())
        sweep.write_hparams(run_dir, overrides, "failed")
        return sweep.FailedJob(f"job {hydra_cfg.job.num} failed: {reason}")
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


def _job_value(run_dir: Path, metric: Optional[str]) -> Any:
    """The value a finished job returns to the sweeper: its last `optimized_metric` (None when unset; a
    FailedJob when the job logged no such value or a NaN, which no search can rank)."""
    if not metric:
        return None
    from gantrain.commands import sweep

    try:
        value = sweep.metric_value(run_dir, str(metric))
    except GantrainError as exc:
        log.error("%s", exc)
        sweep.write_status(run_dir, status="failed", reason=str(exc))
        return sweep.FailedJob(str(exc))
    if math.isnan(value):
        reason = f"its last {metric} is NaN"
        log.error("%s: %s", run_dir, reason)
        sweep.write_status(run_dir, status="failed", reason=reason)
        return sweep.FailedJob(f"{run_dir.name} failed: {reason}")
    return value


def _task(cfg: DictConfig) -> Optional[float]:
    """One Hydra job: train (or resume) the composed config in Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from gantrain.training import distributed
    from gantrain.training.loop import Interrupted
    from gantrain.training.run import BeforeStart, RunBusy, train

    _LAUNCH["task_started"] = True  # from here on, this function answers interrupts and refusals itself
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    _LAUNCH["own_record"] = str(hydra_cfg.output_subdir or "")  # .hydra, or .hydra/<time> beside an earlier record
    log_file = run_dir / "gantrain.log"
    log_size = log_file.stat().st_size if log_file.is_file() else None
    overrides = list(OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False))  # as typed: ${...} kept
    dist = distributed.from_env()
    if hydra_cfg.mode == RunMode.MULTIRUN and not dist.enabled:
        return _sweep_job(cfg, run_dir, overrides)
    try:
        from gantrain.commands.start import interrupted

        if interrupted():  # a Ctrl-C while the command line was checked, that a library's handler lost
            raise KeyboardInterrupt
        if dist.enabled:  # join the job and take rank 0's run folder
            distributed.init(dist, str(cfg.trainer.device))
            own_dir, run_dir = run_dir, Path(distributed.broadcast_object(str(run_dir)))
            if not dist.main:
                logging.getLogger("gantrain").setLevel(logging.WARNING)
                _remove_rank_folder(own_dir)
        loop = train(cfg, run_dir, overrides, dist)
        if dist.main:
            _update_job_status(run_dir, status="finished", step=loop.step, steps=loop.steps, reason="")
    except Interrupted as stop:
        if dist.main:
            _update_job_status(run_dir, status="interrupted", step=stop.step, reason=f"stopped by signal {stop.signum}")
            launcher = "torchrun ... -m gantrain.commands.train" if dist.enabled else "gantrain"
            print(f"gantrain: stopped at step {stop.step}; checkpoint {run_dir / 'checkpoints' / 'last.pt'}. "
                  f"Resume with: {launcher} {shlex.quote(f'resume={run_dir}')}", file=sys.stderr)
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:  # Ctrl-C before the loop took over SIGINT (while importing, loading data, building)
        if dist.main:
            _undo_launch(run_dir, log_size, busy=False, started=True)
            print("gantrain: interrupted before training started; nothing of this launch was kept", file=sys.stderr)
        sys.exit(130)
    except GantrainError as exc:
        if dist.main and isinstance(exc, (BeforeStart, RunBusy)):
            _undo_launch(run_dir, log_size, busy=isinstance(exc, RunBusy))
        elif dist.main:  # stopped while training (diverged, say)
            from gantrain.commands import sweep

            _update_job_status(run_dir, status="failed", reason=sweep.one_line(exc), step=sweep.last_values(run_dir)[0])
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if dist.main:
            print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        if dist.enabled:
            distributed.leave()


def _update_job_status(run_dir: Path, **fields: Any) -> None:
    """A sweep's job continued on its own (`gantrain resume=SWEEP/3 trainer.steps=N`): its status.json follows, so
    that gantrain-report and a re-run of the sweep see where it is. Nothing for any other run."""
    from gantrain.commands import sweep

    if (run_dir / sweep.STATUS_FILE).is_file():
        sweep.write_status(run_dir, ended_at=time.time(), **fields)


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
        if arg.lstrip("+~") == "hydra/launcher=slurm" and ("-m" in args or "--multirun" in args):
            import shutil

            if shutil.which("sbatch") is None:  # submitit submits each job with sbatch
                return ("hydra/launcher=slurm submits the sweep's jobs with sbatch, which is not on this machine's PATH: "
                        "start the sweep on the cluster's login node, or run it here with hydra/launcher=joblib")
    return None


def _saved_choices(args: list[str]) -> list[str]:
    """The group choices (experiment=..., dataset=...) of the run that resume= continues, from its
    .hydra/overrides.yaml: a key such as dataset.root is checked against the run's dataset, not the default."""
    resume = _argv_value(args, "resume")
    if resume in (None, "", "null"):
        return []
    from gantrain.checkpoint import run_folder_for

    where = _argv_value(args, "hydra.run.dir") if resume == "auto" else resume
    if where is None:
        return []
    folder = run_folder_for(Path(where).expanduser())
    try:
        saved = OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "overrides.yaml"))
    except Exception:  # no record (a run started from Python) or an unreadable one: the defaults
        return []
    return [o for o in saved if isinstance(o, str) and "=" in o and not o.startswith(("+", "~", "hydra", "resume="))
            and "." not in o.split("=", 1)[0]] if isinstance(saved, list) else []


def _first_choice(arg: str) -> Optional[str]:
    """A command line's `key=a,b` / `key=choice(a,b)` / `key=range(...)` as `key=a` (its first job's value), any
    other override as it is; None for a sweep with no first value to take (an interval, a glob)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_override(arg)
        if not override.is_sweep_override():
            return arg
        return f"{override.get_key_element()}={next(iter(override.sweep_string_iterator()))}"
    except Exception:  # not Hydra's syntax (Hydra reports it), or a sweep without listed values
        return None


def _is_evaluation_metric(metric: Any) -> bool:
    """optimized_metric names an evaluation metric (modes, eval/fid_classifier), not another logged scalar (loss/g,
    grad/d, diag/diversity)."""
    name = str(metric)
    return "/" not in name or name.startswith("eval/")


def _check_sweep_metric(words: list[str]) -> None:
    """A sweep whose optimized_metric is an evaluation metric that no job would evaluate at its last step is
    refused before any job is launched (each job would fail alone, the search with none to rank)."""
    from gantrain.api import compose

    searched = {a.lstrip("+~").split("=", 1)[0][len("hydra.sweeper.params."):] for a in words
                if a.lstrip("+~").startswith("hydra.sweeper.params.")}
    plain = [a for a in words if "=" in a and not a.startswith(("+", "~", "hydra"))]
    swept = {a.split("=", 1)[0] for a in plain if _first_choice(a) != a} | searched
    if swept & {"trainer.steps", "trainer.eval_every", "optimized_metric"} or "hydra.sweeper.params" in {
            a.split("=", 1)[0].lstrip("+~") for a in words}:
        return
    try:
        cfg = compose([a for a in (_first_choice(a) for a in plain) if a is not None])
    except Exception:  # the jobs report what does not compose
        return
    metric = cfg.get("optimized_metric")
    steps, every = OmegaConf.select(cfg, "trainer.steps"), OmegaConf.select(cfg, "trainer.eval_every")
    if (not metric or not _is_evaluation_metric(metric) or not isinstance(steps, int)
            or not isinstance(every, int) or isinstance(steps, bool) or isinstance(every, bool) or steps < 1):
        return
    if every <= 0 or steps % every:
        raise GantrainError(f"optimized_metric={metric} is an evaluation metric, but no job would evaluate at its "
                            f"last step (trainer.eval_every={every}, trainer.steps={steps}): set trainer.eval_every "
                            f"to a divisor of trainer.steps")


def _check_can_make(target: Path, what: str, key: str) -> None:
    """The run or sweep folder `target` exists or can be made: the nearest existing folder is writable, and (what
    os.access cannot tell: read-only mounts, /proc) a folder can be made in it, under a name no other process uses."""
    probe = target
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise GantrainError(f"cannot create or write the {what} folder {target} ({probe} is not a writable folder); "
                            f"choose another with {key}=...")
    if not target.exists():
        import tempfile

        try:
            os.rmdir(tempfile.mkdtemp(prefix=".gantrain-probe-", dir=probe))
        except OSError as exc:
            raise GantrainError(f"cannot create the {what} folder {target} ({exc.strerror or exc}); "
                                f"choose another with {key}=...") from None


def _is_sweep_folder(folder: Path) -> bool:
    """A folder `gantrain -m` wrote: its multirun.yaml, or job folders with status.json."""
    if not folder.is_dir():
        return False
    if (folder / "multirun.yaml").is_file():
        return True
    try:
        return any((child / "status.json").is_file() for child in folder.iterdir() if child.is_dir())
    except OSError:
        return False


def _check_sweep_folder(given: Optional[str]) -> None:
    """hydra.sweep.dir: a folder that can be made (Hydra's traceback otherwise), and no run's folder (a sweep's jobs
    would be written into the run). The multirun.yaml of a sweep folder is kept to be put back if a job of this
    launch finds the folder holds another sweep (Hydra writes the new one before any job starts)."""
    if given in (None, ""):
        return
    target = Path(given).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise GantrainError(f"hydra.sweep.dir={given} is a file; give a folder for the sweep's jobs")
    if target.is_dir() and not _is_sweep_folder(target) and (
            (target / "checkpoints").is_dir() or (target / "metrics.jsonl").is_file()):
        raise GantrainError(f"hydra.sweep.dir={given} is a run's folder, not a sweep's: the jobs would be written into "
                            f"that run; choose a new hydra.sweep.dir")
    if target.is_dir():  # a job folder holding a run that is no sweep's job (a job writes status.json first)
        from gantrain.training.run import run_contents

        for child in sorted(p for p in target.iterdir() if p.is_dir() and not (p / "status.json").exists()):
            held = run_contents(child)
            if held:
                raise GantrainError(f"hydra.sweep.dir={given} holds a run that is not a job of a sweep in {child.name}/ "
                                    f"({', '.join(held)}, no status.json): a job there would be mixed into it; choose a "
                                    f"new hydra.sweep.dir")
    _check_can_make(target, "sweep", "hydra.sweep.dir")
    record = target / "multirun.yaml"
    if record.is_file():  # a copy outside the folder, named in the environment that a parallel launcher's jobs inherit
        import atexit
        import tempfile

        fd, copy = tempfile.mkstemp(prefix="gantrain-multirun-", suffix=".yaml")
        with os.fdopen(fd, "wb") as f:
            f.write(record.read_bytes())
        os.environ["GANTRAIN_KEPT_MULTIRUN"] = f"{record}{os.pathsep}{copy}"
        atexit.register(lambda: Path(copy).unlink(missing_ok=True))


#: keys whose empty value would not mean what it says: the run written into the current folder, a fresh run
#: instead of a resume
_NOT_EMPTY = {
    "hydra.run.dir": "give the run's folder, or leave hydra.run.dir out for a new folder under outputs/",
    "hydra.sweep.dir": "give the sweep's folder, or leave hydra.sweep.dir out for a new folder under outputs/multirun/",
    "resume": "give the run folder or checkpoint to continue, resume=auto, or leave resume out for a new run",
    "hydra.sweep.subdir": "give the jobs' folder names, or leave hydra.sweep.subdir out (the job numbers)",
}


def _check_command_line(args: list[str]) -> None:
    """What Hydra would report with a traceback or wrong advice, as one line: unknown keys (with the
    nearest valid ones), and a run folder that cannot be created or written."""
    import difflib

    from gantrain.api import compose
    from gantrain.checkpoint import run_folder_for

    if any(a in ("-h", "--help", "--hydra-help") for a in args):
        return
    check_overrides(args)
    for key, what in _NOT_EMPTY.items():  # an unset shell variable ($OUT) reads as an empty value
        value = _argv_value(args, key)
        if value is not None and not value.strip():
            raise GantrainError(f"{key}= is empty (an unset shell variable?); {what}")
    words = override_words(args)
    plain = [a for a in words if "=" in a and not a.startswith(("+", "~")) and not a.startswith("hydra")]
    shows = any(a in ("-c", "--cfg", "--info", "-i", "--resolve") for a in args)  # shows the config; trains nothing
    multirun = "-m" in args or "--multirun" in args
    composed = False  # the whole command line composes: every key is known and every value of its key's type
    if plain and not shows and not multirun:
        try:
            compose(plain)
            composed = True
        except Exception:  # found again below, and said in one line
            pass
    cfg = None
    if plain:
        check_roots(plain)
    if plain and not composed:
        choices = [c for c in (_first_choice(a) for a in plain if "." not in a.split("=", 1)[0]) if c is not None]
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
                    # (an unknown top-level key was refused by check_roots, with the group that has it)
                    near = [(parent + "." if parent else "") + n for n in difflib.get_close_matches(leaf, valid, n=2)]
                    if not near and parent:  # a key of another group (trainer.lr: optimizer.lr)
                        near = sorted((p for p in paths_ending_with(cfg, leaf, depth=3) if p != key),
                                      key=lambda p: (parent not in p.split("."), len(p)))[:2]
                    hint = f"; did you mean {' or '.join(near)}?" if near else ""
                    typed = key.split(".", 1)[0] in ("trainer", "optimizer")  # their keys are a fixed schema
                    adds = "" if typed else f"; +{key}=... adds a new one"
                    raise GantrainError(f"unknown key {key}{hint} (`gantrain --help` lists the groups, "
                                        f"`gantrain --cfg job` every key{adds})")
    missing = missing_plugin(args)
    if missing:
        raise GantrainError(missing)
    if shows:
        return
    if multirun:
        if _argv_value(args, "resume") not in (None, "", "null"):
            raise GantrainError("resume= does not apply to a sweep: re-run the sweep's command with "
                                "hydra.sweep.dir=<its folder> to finish it (finished jobs are skipped, interrupted ones continue)")
        _check_sweep_metric(words)
        _check_sweep_folder(_argv_value(args, "hydra.sweep.dir"))
        return
    if plain and cfg is not None and not composed:
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
        run_dir = str(run_folder_for(Path(resume).expanduser()))
    target = Path(run_dir or "outputs").expanduser().resolve()
    if run_dir is not None and _is_sweep_folder(target):
        raise GantrainError(f"{target} is a sweep's folder (multirun.yaml, one folder per job): a run needs a folder of "
                            f"its own; choose another hydra.run.dir (a job of the sweep continues with the sweep's "
                            f"command and hydra.sweep.dir={target})")
    # without hydra.run.dir or resume, Hydra makes a new dated folder below outputs/
    record = target / ".hydra"
    _LAUNCH.update(run_dir=target, existed=target.exists(), fresh=run_dir is None,
                   had_record=(record / "config.yaml").exists(), had_lock=(target / ".gantrain.lock").exists(),
                   records={p.name for p in record.iterdir() if p.is_dir()} if record.is_dir() else set())
    _check_can_make(target, "run", "hydra.run.dir")


@contextlib.contextmanager
def _no_trial_finished_is_one_line() -> Iterator[None]:
    """Optuna's sweeper asks for the best trial after the last one, which raises (and Hydra prints a traceback)
    when every trial failed, and raises when the last trial of a grid search failed: those cases end with the
    sweep's summary and one line instead. Hydra reports what
    a sweep raises through hydra._internal.utils.run_and_report, which is wrapped for this; left as it is
    when a Hydra version has no such function."""
    import hydra._internal.utils as hydra_utils

    original = getattr(hydra_utils, "run_and_report", None)
    if original is None:  # pragma: no cover
        yield
        return

    def guarded(func: Any) -> Any:
        def call() -> Any:
            try:
                return func()
            except (KeyboardInterrupt, Exception) as exc:
                from gantrain.commands import sweep
                from gantrain.commands.start import interrupt_signal, interrupted

                if not sweep.LAST_SWEEP.get("dir"):
                    raise
                if isinstance(exc, KeyboardInterrupt) or interrupted():  # outside a job's training (which answers its own)
                    folder = sweep.LAST_SWEEP["dir"]
                    print(f"gantrain: sweep stopped. Finish it with the same command and "
                          f"{shlex.quote(f'hydra.sweep.dir={folder}')} (finished jobs are skipped)", file=sys.stderr)
                    sys.exit(128 + interrupt_signal())
                if not isinstance(exc, (ValueError, RuntimeError)):
                    raise
                if str(exc) == "No trials are completed yet.":
                    why = "no trial of the search finished, so it has no best"
                elif str(exc).startswith("`Study.stop` is supposed to be invoked"):  # a grid whose last trial failed
                    why = ("the grid's last trial failed and Optuna's sweeper stopped there, without writing "
                           "optimization_results.yaml (the summary above ranks the trials)")
                else:
                    raise
                folder = Path(sweep.LAST_SWEEP["dir"])
                metric = sweep.LAST_SWEEP.get("metric")
                try:
                    text, _ = sweep.report(folder, metric, sweep.natural_direction(metric, sweep.LAST_SWEEP.get("direction")))
                    print(text, flush=True)
                except GantrainError:
                    pass
                print(f"gantrain: error: {why}; each failed job's status.json in {folder} says why it failed",
                      file=sys.stderr)
                sys.exit(1)

        return original(call)

    hydra_utils.run_and_report = guarded
    try:
        yield
    finally:
        hydra_utils.run_and_report = original


def main() -> None:
    """Entry point of the `gantrain` command."""
    try:  # imports and checks: nothing is written before Hydra starts the run
        import hydra

        register_resolvers()
        given = {a.split("=", 1)[0] for a in sys.argv[1:]}
        # a resumed run's group choices first, so that keys of its groups (dataset.root of its dataset) are
        # checked and composed against them, not against the defaults
        sys.argv[1:1] = [c for c in _saved_choices(sys.argv[1:]) if c.split("=", 1)[0] not in given]
        _check_command_line(sys.argv[1:])
    except GantrainError as exc:
        print(f"gantrain: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("gantrain: interrupted before training started; nothing was done", file=sys.stderr)
        sys.exit(130)
    entry = hydra.main(config_path="pkg://gantrain.configs", config_name="config", version_base="1.3")(_task)
    if "-m" in sys.argv[1:] or "--multirun" in sys.argv[1:]:  # a sweep stopped between jobs says how to finish it
        from gantrain.commands.start import answer_sigterm_as_interrupt

        answer_sigterm_as_interrupt()
    try:
        with _no_trial_finished_is_one_line():
            entry()
    except KeyboardInterrupt:
        if _LAUNCH.get("task_started") or _LAUNCH.get("run_dir") is None:
            raise  # (answered where the training was; a sweep's own)
        # while Hydra set the run up (its folder, .hydra record and log made, the job not yet begun)
        _undo_launch(Path(_LAUNCH["run_dir"]), None, busy=False, started=True)
        print("gantrain: interrupted before training started; nothing of this launch was kept", file=sys.stderr)
        sys.exit(130)
    from gantrain.commands.sweep import LAST_SWEEP

    if LAST_SWEEP.get("failed"):  # the summary above names them and why
        sys.exit(1)


if __name__ == "__main__":  # `torchrun ... -m gantrain.commands.train` (one process per GPU) reaches the command here
    main()
