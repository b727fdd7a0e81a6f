"""A sweep's summary: job status files, summary.csv / summary.md, the Hydra callback that writes them."""
from __future__ import annotations

import csv
import datetime
import difflib
import io
import json
import logging
import math
import os
import statistics
from pathlib import Path
from typing import Any, Optional, Sequence

from gantrain.errors import GantrainError

log = logging.getLogger("gantrain")


STATUS_FILE = "status.json"


SUMMARY_CSV = "summary.csv"


SUMMARY_MD = "summary.md"


SEEDS_CSV = "summary_seeds.csv"


#: keys whose change does not make another job (a longer run of the same job continues it)
_NOT_IDENTITY = ("trainer.steps", "trainer.device", "trainer.log_every", "trainer.sample_every",
                 "trainer.ckpt_every", "trainer.keep_last", "trainer.eval_every", "trainer.metrics",
                 "trainer.best_metric", "trainer.num_samples", "trainer.num_workers", "trainer.progress",
                 "trainer.cuda_graph", "dataset.root", "dataset.download", "dataset.on_device",
                 "optimized_metric", "resume")


# ---- a job's status ---------------------------------------------------------------------------------


def read_status(job_dir: Path) -> Optional[dict]:
    """The job's status.json, or None when there is none (or it cannot be read)."""
    try:
        value = json.loads((Path(job_dir) / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_status(job_dir: Path, **fields: Any) -> dict:
    """Update the job's status.json with fields (written atomically); returns the whole record."""
    path = Path(job_dir) / STATUS_FILE
    record = {**(read_status(job_dir) or {}), **fields,
              "updated": datetime.datetime.now().isoformat(timespec="seconds")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{STATUS_FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, path)
    return record


def job_identity(overrides: Sequence[str]) -> list[str]:
    """The overrides that make a job what it is (those a resume may change left out), sorted."""
    return sorted(o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in _NOT_IDENTITY)


def is_busy(job_dir: Path) -> bool:
    """Whether a process holds the job folder's run lock now."""
    try:
        import fcntl
    except ImportError:
        return False
    lock = Path(job_dir) / ".gantrain.lock"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # releases the lock if this call took it
    return False


def one_line(exc: BaseException) -> str:
    """An exception as the one line a summary shows."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, GantrainError) else f"{type(exc).__name__}: {text}".rstrip(": ")


# ---- what a job logged ------------------------------------------------------------------------------


def last_values(job_dir: Path) -> tuple[int, dict[str, float]]:
    """The last step logged in the job's metrics.jsonl and the last value of every scalar in it."""
    values: dict[str, float] = {}
    step = 0
    path = Path(job_dir) / "metrics.jsonl"
    if not path.is_file():
        return 0, values
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:  # a line cut by a crash
            continue
        if not isinstance(row, dict):
            continue
        step = max(step, int(row.get("step", 0)))
        for key, value in row.items():
            if key == "step":
                continue
            try:
                values[key] = float(value)  # "nan" / "inf" were written as text
            except (TypeError, ValueError):
                continue
    return step, values


def metric_value(job_dir: Path, name: str) -> float:
    """The last logged value of a metric: an evaluation metric by its name (modes, fid_classifier) or any
    logged scalar by its full tag (loss/g, eval/modes)."""
    _, values = last_values(job_dir)
    for key in (name, f"eval/{name}"):
        if key in values:
            return values[key]
    logged = sorted(k for k in values if k.startswith("eval/"))
    raise GantrainError(f"optimized_metric={name} was never logged in {job_dir / 'metrics.jsonl'} "
                        + (f"(evaluation logged {', '.join(k[5:] for k in logged)}); " if logged else
                           "(no evaluation ran: set trainer.eval_every so that it runs at the last step); ")
                        + "name an evaluation metric of trainer.metrics or a logged scalar such as loss/g")


def write_hparams(job_dir: Path, overrides: Sequence[str], status: str) -> None:
    """The job's overrides and final numbers in TensorBoard's HParams dashboard (its tb/ folder), so that
    `tensorboard --logdir SWEEP_FOLDER` compares the jobs."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    params: dict[str, Any] = {}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        params[key] = _number(value) if _number(value) is not None else value
    _, values = last_values(job_dir)
    shown = {k: v for k, v in values.items() if k.startswith(("loss/", "eval/")) and math.isfinite(v)}
    exp, ssi, sei = hparams(params, shown, hparam_domain_discrete=None)
    writer = SummaryWriter(str(Path(job_dir) / "tb"))
    try:
        for summary in (exp, ssi, sei):
            writer.file_writer.add_summary(summary)
        writer.add_text("sweep/status", status)
    finally:
        writer.close()


def _number(text: str) -> Optional[float]:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---- the summary of a sweep folder -----------------------------------------------------------------


def _overrides_of(job_dir: Path, status: Optional[dict]) -> Optional[list[str]]:
    if status is not None and isinstance(status.get("overrides"), list):
        return [str(o) for o in status["overrides"]]
    record = job_dir / ".hydra" / "overrides.yaml"
    if record.is_file():
        from omegaconf import OmegaConf

        try:
            return [str(o) for o in OmegaConf.load(record)]
        except Exception:  # a damaged record: the job shows without its overrides
            return []
    return None


def job_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job folder of a sweep: job, overrides, status, reason, step, steps and last logged values."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise GantrainError(f"{sweep_dir} is not a folder; give the sweep folder a `gantrain -m` run printed "
                            f"(outputs/multirun/DATE/TIME by default)")
    rows = []
    folders = sorted((p for p in sweep_dir.iterdir() if p.is_dir()), key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    for job_dir in folders:
        status = read_status(job_dir)
        overrides = _overrides_of(job_dir, status)
        if overrides is None:
            continue  # not a job folder
        step, values = last_values(job_dir)
        state = (status or {}).get("status")
        if state == "running" and not is_busy(job_dir):
            state = "interrupted"  # killed without a word: its checkpoints continue it
        elif state is None:
            state = "interrupted" if (job_dir / "checkpoints").is_dir() else "not started"
        rows.append({"job": job_dir.name, "overrides": overrides, "status": state,
                     "reason": (status or {}).get("reason", "") if state != "finished" else "",
                     "step": int((status or {}).get("step", step) or step),
                     "steps": (status or {}).get("steps", ""), "values": values})
    return rows


def _varying(rows: list[dict[str, Any]], swept: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """The override keys whose value differs between jobs or that the sweep sweeps (in command-line order), and
    the common ones."""
    per_job = [dict(o.lstrip("+~").partition("=")[::2] for o in row["overrides"]) for row in rows]
    keys: list[str] = []
    for mapping in per_job:
        keys += [k for k in mapping if k not in keys]
    varying = [k for k in keys if len({m.get(k) for m in per_job}) > 1 or k in swept]
    common = {k: per_job[0][k] for k in keys if k not in varying and all(k in m for m in per_job)}
    for row, mapping in zip(rows, per_job):
        row["settings"] = {k: mapping.get(k, "") for k in varying}
    return varying, common


def _value_columns(rows: list[dict[str, Any]]) -> list[str]:
    names = sorted({k for row in rows for k in row["values"]})
    losses = [k for k in names if k.startswith("loss/")]
    scores = [k for k in names if k.startswith("eval/")]
    return losses + scores


def _shown(value: Any) -> str:
    """A table cell: numbers to 4 significant digits (a value written as long text too, like an Optuna draw)."""
    if isinstance(value, str) and len(value) > 8 and _number(value) is not None:
        value = float(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_tables(rows: list[dict[str, Any]], swept: Sequence[str] = ()) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]], dict[str, str]]:
    """(columns, rows) of the per-job table, (columns, rows) of the per-setting mean/std over seeds
    (empty when the sweep does not vary `seed`), and the overrides common to every job. Keys in swept are
    columns even where the jobs so far share one value (a sweep stopped in its first value)."""
    varying, common = _varying(rows, swept)
    metrics = _value_columns(rows)
    columns = ["job", *varying, "status", "step", *metrics, "reason"]
    table = [[row["job"], *(row["settings"][k] for k in varying), row["status"], row["step"],
              *(row["values"].get(m, "") for m in metrics), row["reason"]] for row in rows]
    seed_columns: list[str] = []
    seed_table: list[list[Any]] = []
    if "seed" in varying:
        group_keys = [k for k in varying if k != "seed"]
        groups: dict[tuple, list[dict]] = {}
        for row in rows:
            groups.setdefault(tuple(row["settings"][k] for k in group_keys), []).append(row)
        seed_columns = [*group_keys, "seeds", "finished"]
        for m in metrics:
            seed_columns += [f"{m} mean", f"{m} std"]
        for key, members in groups.items():
            done = [r for r in members if r["status"] == "finished"]
            cells: list[Any] = [*key, len(members), len(done)]
            for m in metrics:
                found = [r["values"][m] for r in done if m in r["values"] and math.isfinite(r["values"][m])]
                cells += [statistics.fmean(found) if found else "", statistics.stdev(found) if len(found) > 1 else (0.0 if found else "")]
            seed_table.append(cells)
    return columns, table, seed_columns, seed_table, common


def markdown(columns: list[str], table: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_shown(c).replace("|", "\\|") for c in row) + " |" for row in table]
    return "\n".join(lines)


def _write_csv(path: Path, columns: list[str], table: list[list[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows([["" if c is None else c for c in row] for row in table])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)


def planned_overrides(sweep_dir: Path) -> Optional[tuple[list[list[str]], list[str]]]:
    """The jobs the sweep's command asked for, as Hydra's basic sweeper makes them: (each job's overrides in job
    order, the swept keys). None when its record does not say (no multirun.yaml) or the jobs are the sweeper's to
    decide (Optuna stops a grid search when the grid is done, or at a failed last trial, whatever n_trials says)."""
    target = str(_saved(sweep_dir, "hydra.sweeper._target_") or "")
    if not target.endswith("BasicSweeper"):
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = _saved(sweep_dir, "hydra.sweeper.params") or {}
        task = list(_saved(sweep_dir, "hydra.overrides.task") or [])
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in dict(params).items()] + task)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        swept: list[str] = []
        for override in parsed:  # a key given twice: its last value counts, as in the sweeper
            key = override.get_key_element()
            if key in swept:
                swept.remove(key)
            if override.is_sweep_override():
                swept.append(key)
        return jobs, [k.lstrip("+~") for k in swept]
    except Exception:  # a record this Hydra cannot read: the report goes without the plan
        return None


def planned_jobs(sweep_dir: Path) -> Optional[int]:
    """How many jobs the sweep's command asked for (see planned_overrides), or None."""
    plan = planned_overrides(sweep_dir)
    return None if plan is None else len(plan[0])


def report(sweep_dir: Path, optimized_metric: Optional[str] = None, direction: str = "maximize") -> tuple[str, list[dict[str, Any]]]:
    """Write summary.csv, summary.md (and summary_seeds.csv when seeds vary) into the sweep folder; returns
    the text printed to the console and the rows."""
    sweep_dir = Path(sweep_dir)
    rows = job_rows(sweep_dir)
    if not rows:
        raise GantrainError(f"{sweep_dir} holds no sweep jobs (folders with status.json or .hydra/overrides.yaml); "
                            f"give the folder `gantrain -m` printed")
    if not (sweep_dir / "multirun.yaml").is_file() and not any(read_status(sweep_dir / r["job"]) for r in rows):
        raise GantrainError(f"{sweep_dir} is not a sweep folder (no multirun.yaml, no job with status.json): it holds "
                            f"{len(rows)} ordinary run(s); give the folder a `gantrain -m` sweep printed")
    plan = planned_overrides(sweep_dir)
    never = 0
    if plan is not None and len(plan[0]) > len(rows):  # jobs the sweep never reached: no folder yet
        never = len(plan[0]) - len(rows)
        if _saved(sweep_dir, "hydra.sweep.subdir", resolve=False) == "${hydra.job.num}":  # their folders' names are known
            present = {r["job"] for r in rows}
            rows += [{"job": str(num), "overrides": overrides, "status": "not started", "reason": "", "step": 0,
                      "steps": "", "values": {}} for num, overrides in enumerate(plan[0]) if str(num) not in present]
            rows.sort(key=lambda r: (not r["job"].isdigit(), int(r["job"]) if r["job"].isdigit() else 0, r["job"]))
            never = 0
    columns, table, seed_columns, seed_table, common = summary_tables(rows, swept=plan[1] if plan else ())
    counts = {s: sum(r["status"] == s for r in rows) for s in ("finished", "failed", "interrupted", "running", "not started")}
    counts["not started"] += never
    parts = [f"sweep {sweep_dir}: {len(rows) + never} jobs, " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    if common:
        parts.append("common: " + " ".join(f"{k}={v}" for k, v in common.items()))
    parts.append(markdown(columns, table))
    _write_csv(sweep_dir / SUMMARY_CSV, columns, table)
    if seed_table:
        parts.append("mean and std over seeds (finished jobs):")
        parts.append(markdown(seed_columns, seed_table))
        _write_csv(sweep_dir / SEEDS_CSV, seed_columns, seed_table)
    if optimized_metric:
        scored = []
        for row in rows:
            value = next((row["values"][k] for k in (optimized_metric, f"eval/{optimized_metric}") if k in row["values"]), None)
            if row["status"] == "finished" and value is not None and math.isfinite(value):
                scored.append((value, row))
        if scored:
            value, best = (max if direction.startswith("max") else min)(scored, key=lambda pair: pair[0])
            setting = " ".join(f"{k}={_shown(v)}" for k, v in best["settings"].items()) or " ".join(best["overrides"])
            parts.append(f"best {optimized_metric} ({direction}): {value:.4g}, job {best['job']} ({setting})")
    failed = [r for r in rows if r["status"] == "failed"]
    for row in failed:
        parts.append(f"job {row['job']} failed: {row['reason']}")
    unfinished = [r for r in rows if r["status"] in ("interrupted", "not started")]
    if unfinished or never:
        parts.append(f"{len(unfinished) + never} job(s) unfinished: re-run the same `gantrain -m` command with "
                     f"hydra.sweep.dir={sweep_dir} to finish them (finished jobs are skipped)")
    text = "\n".join(parts)
    tmp = sweep_dir / f".{SUMMARY_MD}.tmp"
    tmp.write_text(text + "\n")
    os.replace(tmp, sweep_dir / SUMMARY_MD)
    return text, rows


def check_metric(rows: list[dict[str, Any]], metric: str, sweep_dir: Path) -> None:
    """Refuse an optimized_metric that no job of the sweep logs (naming those they do), once any job logged."""
    keys = {k for r in rows for k in r["values"]}
    names = keys | {k.removeprefix("eval/") for k in keys}
    if keys and metric not in names:
        shown = sorted({k.removeprefix("eval/") for k in keys})
        near = difflib.get_close_matches(metric, shown, n=1)
        hint = f"did you mean {near[0]}? " if near else ""
        raise GantrainError(f"optimized_metric={metric} is logged by no job of {sweep_dir}; {hint}the jobs log: "
                            f"{', '.join(shown)}")


try:  # Hydra's callback base class (hydra-core >= 1.1)
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover
    _Callback = object  # type: ignore[assignment,misc]


class FailedJob:
    """What a failed job returns to Hydra's sweeper instead of a number: Optuna's sweeper records a trial whose
    value does not convert to a float as failed and goes on (a NaN stops the whole search with Optuna 2.x);
    the other sweepers ignore the value."""

    def __init__(self, reason: str):
        self.reason = reason

    def __float__(self) -> float:
        raise ValueError(self.reason)

    def __repr__(self) -> str:
        return self.reason

    __str__ = __repr__


#: the last sweep this process launched: its folder, metric and direction (set when it starts), and at its end
#: {"failed": n, "jobs": n}
LAST_SWEEP: dict[str, Any] = {}


class SweepSummary(_Callback):  # type: ignore[misc,valid-type]
    """Hydra callback (configs/config.yaml): prints and writes the sweep's summary when a multirun ends."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        """The sweep's folder, metric and direction, known in the launching process (a parallel launcher's jobs
        run in other processes)."""
        from omegaconf import OmegaConf

        LAST_SWEEP.update(dir=str(config.hydra.sweep.dir), metric=OmegaConf.select(config, "optimized_metric", default=None),
                          direction=OmegaConf.select(config, "hydra.sweeper.direction", default=None))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        sweep_dir = Path(str(config.hydra.sweep.dir))
        metric = OmegaConf.select(config, "optimized_metric", default=None)
        direction = natural_direction(metric, OmegaConf.select(config, "hydra.sweeper.direction", default=None))
        try:
            text, rows = report(sweep_dir, metric, direction)
        except GantrainError as exc:
            log.warning("no sweep summary: %s", exc)
            return
        print(text, flush=True)
        LAST_SWEEP.update(jobs=len(rows), failed=sum(r["status"] == "failed" for r in rows))


def natural_direction(metric: Optional[str], given: Any = None) -> str:
    """maximize or minimize: as given (an Optuna sweeper's direction), else the metric's own direction
    (evaluation metrics declare theirs; losses are minimised)."""
    if isinstance(given, str) and given in ("maximize", "minimize"):
        return given
    from gantrain.eval.evaluator import HIGHER_IS_BETTER as gan_directions
    from gantrain.eval.translation import HIGHER_IS_BETTER as translation_directions

    HIGHER_IS_BETTER = {**gan_directions, **translation_directions}
    name = str(metric or "")
    name = name[5:] if name.startswith("eval/") else name
    if name in HIGHER_IS_BETTER:
        return "maximize" if HIGHER_IS_BETTER[name] else "minimize"
    return "minimize" if name.startswith("loss/") else "maximize"


def _saved(sweep_dir: Path, key: str, resolve: bool = True) -> Any:
    """A value of the sweep's config as Hydra saved it: multirun.yaml (the basic sweeper's), else the first job's
    own record (.hydra/config.yaml, .hydra/hydra.yaml: Optuna's sweeper writes no multirun.yaml); None if absent.
    resolve=False: as written (an interpolation such as ${hydra.job.num} kept)."""
    from omegaconf import OmegaConf

    records = [sweep_dir / "multirun.yaml"]
    try:
        jobs = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()),
                      key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))
    except OSError:
        jobs = []
    if jobs:
        records.append(jobs[0] / ".hydra" / ("hydra.yaml" if key.startswith("hydra.") else "config.yaml"))
    for record in records:
        if not record.is_file():
            continue
        try:
            if resolve:
                return OmegaConf.select(OmegaConf.load(record), key, default=None)
            value: Any = OmegaConf.to_container(OmegaConf.load(record), resolve=False)
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            return value
        except Exception:  # a damaged record: the report goes without it
            continue
    return None


def device_for_job(device: str, job_num: int, gpus: int) -> str:
    """The device of a parallel sweep job: on a machine with several GPUs, job i gets GPU i mod count
    (trainer.device auto or cuda); an explicit device is kept."""
    if gpus > 1 and str(device) in ("auto", "cuda"):
        return f"cuda:{job_num % gpus}"
    return str(device)
