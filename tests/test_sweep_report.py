"""A sweep's summary from hand-made job folders: status files, what a job logged, the per-job and per-seed
tables, summary.md / summary.csv word for word, the best job, and the metric's direction. (test_sweep.py runs
real sweeps through `gantrain -m`; these check the summary's arithmetic and text exactly, in milliseconds.)"""
from __future__ import annotations

import csv
import fcntl
import json
import math
import os
from pathlib import Path

import pytest

from gantrain.commands import sweep
from gantrain.errors import GantrainError


def _job(root: Path, name: str, lines: list, status: dict | None = None, hydra: list | None = None,
         checkpoints: bool = False) -> Path:
    job = root / name
    job.mkdir(parents=True)
    if lines:
        (job / "metrics.jsonl").write_text("\n".join(line if isinstance(line, str) else json.dumps(line)
                                                     for line in lines) + "\n")
    if status is not None:
        (job / sweep.STATUS_FILE).write_text(json.dumps(status))
    if hydra is not None:
        (job / ".hydra").mkdir()
        (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in hydra))
    if checkpoints:
        (job / "checkpoints").mkdir()
    return job


def test_status_files_read_and_merge(tmp_path: Path) -> None:
    job = tmp_path / "a" / "0"
    assert sweep.read_status(job) is None  # no folder, no file
    record = sweep.write_status(job, status="running", step=3)
    assert sweep.read_status(job) == record and set(record) == {"status", "step", "updated"}
    record = sweep.write_status(job, step=7, reason="x")
    assert {k: record[k] for k in ("status", "step", "reason")} == {"status": "running", "step": 7, "reason": "x"}
    assert sweep.read_status(job) == record
    assert sorted(p.name for p in job.iterdir()) == [sweep.STATUS_FILE]  # no temporary file left
    (job / sweep.STATUS_FILE).write_text("[1, 2]")
    assert sweep.read_status(job) is None  # JSON, but not a record
    (job / sweep.STATUS_FILE).write_text("{cut")
    assert sweep.read_status(job) is None
    assert sweep.write_status(job, status="finished")["status"] == "finished"  # a damaged file is replaced


def test_job_identity_drops_prefixed_resume_keys_and_sorts() -> None:
    assert sweep.job_identity(["seed=2", "+trainer.steps=5", "~resume", "loss=hinge", "+model.x=1",
                               "dataset.root=/d", "trainer.lr=3"]) == ["+model.x=1", "loss=hinge", "seed=2", "trainer.lr=3"]


def test_is_busy_reads_another_holder_of_the_run_lock(tmp_path: Path) -> None:
    assert sweep.is_busy(tmp_path) is False  # no lock file
    lock = tmp_path / ".gantrain.lock"
    lock.write_text("")
    assert sweep.is_busy(tmp_path) is False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert sweep.is_busy(tmp_path) is True
    finally:
        os.close(fd)
    assert sweep.is_busy(tmp_path) is False
    assert sweep.is_busy(tmp_path) is False  # the check itself released the lock it took


def test_one_line_of_an_exception() -> None:
    assert sweep.one_line(GantrainError("bad value\nsecond line")) == "bad value"
    assert sweep.one_line(ValueError("  no\nmore")) == "ValueError: no"
    assert sweep.one_line(RuntimeError()) == "RuntimeError"
    assert sweep.one_line(OSError("")) == "OSError"


def test_last_values_keep_the_latest_step_and_every_scalar(tmp_path: Path) -> None:
    assert sweep.last_values(tmp_path) == (0, {})
    _job(tmp_path, "0", [{"step": 10, "loss/d": 1.5, "note": "text", "none": None},
                         {"step": 4, "loss/g": 2},  # an earlier step written later
                         "[1, 2]", "7",
                         {"loss/d": "inf", "eval/fid": "nan"},  # no step
                         '{"step": 99, "loss'])
    step, values = sweep.last_values(tmp_path / "0")
    assert step == 10
    assert set(values) == {"loss/d", "loss/g", "eval/fid"}
    assert values["loss/d"] == math.inf and values["loss/g"] == 2.0 and math.isnan(values["eval/fid"])


def test_metric_value_by_name_or_tag_and_the_refusals(tmp_path: Path) -> None:
    job = _job(tmp_path, "0", [{"step": 5, "loss/g": 1.25, "eval/fid_classifier": 3.5, "eval/modes": 8}])
    assert sweep.metric_value(job, "fid_classifier") == 3.5
    assert sweep.metric_value(job, "eval/modes") == 8.0 and sweep.metric_value(job, "loss/g") == 1.25
    with pytest.raises(GantrainError) as err:
        sweep.metric_value(job, "recall")
    assert str(err.value) == (f"optimized_metric=recall was never logged in {job / 'metrics.jsonl'} (evaluation logged "
                              "fid_classifier, modes); name an evaluation metric of trainer.metrics or a logged scalar "
                              "such as loss/g")
    bare = _job(tmp_path, "1", [{"step": 5, "loss/g": 1.0}])
    with pytest.raises(GantrainError) as err:
        sweep.metric_value(bare, "fid")
    assert str(err.value) == (f"optimized_metric=fid was never logged in {bare / 'metrics.jsonl'} (no evaluation ran: "
                              "set trainer.eval_every so that it runs at the last step); name an evaluation metric of "
                              "trainer.metrics or a logged scalar such as loss/g")


def test_job_rows_order_states_and_overrides(tmp_path: Path) -> None:
    _job(tmp_path, "10", [{"step": 20, "loss/d": 1.0}], status={"status": "finished", "overrides": ["seed=10"],
                                                                "reason": "stale", "step": 20, "steps": 20})
    _job(tmp_path, "2", [{"step": 6, "loss/d": 2.0}], status={"status": "failed", "overrides": ["seed=2"],
                                                              "reason": "NaN at step 6", "steps": 20})
    _job(tmp_path, "busy", [], status={"status": "running", "overrides": ["seed=7"], "step": 3})
    lock = tmp_path / "busy" / ".gantrain.lock"
    lock.write_text("")
    _job(tmp_path, "a", [{"step": 8}], hydra=["seed=4", "loss=hinge"], checkpoints=True)
    _job(tmp_path, "b", [], hydra=["seed=5"])
    (tmp_path / "b" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")  # damaged: shown without overrides
    _job(tmp_path, "c", [], hydra=["seed=6"])
    (tmp_path / "logs").mkdir()  # not a job
    (tmp_path / "multirun.yaml").write_text("{}\n")
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        rows = sweep.job_rows(tmp_path)
    finally:
        os.close(fd)
    assert [r["job"] for r in rows] == ["2", "10", "a", "b", "busy", "c"]
    by = {r["job"]: r for r in rows}
    assert [by[j]["status"] for j in ("2", "10", "a", "b", "busy", "c")] == [
        "failed", "finished", "interrupted", "not started", "running", "not started"]
    assert by["10"]["reason"] == "" and by["2"]["reason"] == "NaN at step 6" and by["a"]["reason"] == ""
    assert [by[j]["step"] for j in ("2", "10", "a", "b", "busy")] == [6, 20, 8, 0, 3]
    assert by["10"]["steps"] == 20 and by["a"]["steps"] == ""
    assert by["a"]["overrides"] == ["seed=4", "loss=hinge"] and by["b"]["overrides"] == []
    assert by["2"]["values"] == {"loss/d": 2.0}
    rows = sweep.job_rows(tmp_path)  # the lock released: the running job is read as killed
    assert {r["job"]: r["status"] for r in rows}["busy"] == "interrupted"
    with pytest.raises(GantrainError, match="is not a folder; give the sweep folder"):
        sweep.job_rows(tmp_path / "missing")


def _rows() -> list[dict]:
    def row(job: str, overrides: list[str], status: str, values: dict, step: int = 20, reason: str = "") -> dict:
        return {"job": job, "overrides": overrides, "status": status, "reason": reason, "step": step, "steps": 20,
                "values": values}

    return [row("0", ["loss=hinge", "seed=0", "trainer.steps=20"], "finished", {"loss/d": 1.0, "eval/fid": 3.0, "x/y": 5.0}),
            row("1", ["loss=hinge", "seed=1", "trainer.steps=20"], "finished", {"loss/d": 3.0, "eval/fid": 5.0}),
            row("2", ["loss=wgan", "seed=0", "trainer.steps=20"], "finished", {"loss/d": 4.0, "eval/fid": math.nan}),
            row("3", ["loss=wgan", "seed=1", "trainer.steps=20", "+extra=1"], "failed", {"loss/d": 9.0},
                step=4, reason="NaN")]


def test_summary_tables_per_job_and_mean_and_std_over_seeds() -> None:
    columns, table, seed_columns, seed_table, common = sweep.summary_tables(_rows())
    assert columns == ["job", "loss", "seed", "extra", "status", "step", "loss/d", "eval/fid", "reason"]
    assert table[0] == ["0", "hinge", "0", "", "finished", 20, 1.0, 3.0, ""]
    assert table[3] == ["3", "wgan", "1", "1", "failed", 4, 9.0, "", "NaN"]
    assert common == {"trainer.steps": "20"}
    assert seed_columns == ["loss", "extra", "seeds", "finished", "loss/d mean", "loss/d std", "eval/fid mean",
                            "eval/fid std"]
    hinge, wgan, wgan_extra = seed_table
    assert hinge[:4] == ["hinge", "", 2, 2]
    assert hinge[4] == pytest.approx(2.0) and hinge[5] == pytest.approx(math.sqrt(2.0))
    assert hinge[6] == pytest.approx(4.0) and hinge[7] == pytest.approx(math.sqrt(2.0))
    assert wgan == ["wgan", "", 1, 1, 4.0, 0.0, "", ""]  # one value: std 0; fid nan left out
    assert wgan_extra == ["wgan", "1", 1, 0, "", "", "", ""]  # failed jobs are not averaged


def test_no_seed_table_without_varying_seeds() -> None:
    rows = [r for r in _rows() if "seed=0" in r["overrides"]]
    columns, table, seed_columns, seed_table, common = sweep.summary_tables(rows)
    assert columns == ["job", "loss", "status", "step", "loss/d", "eval/fid", "reason"]
    assert (seed_columns, seed_table) == ([], [])
    assert common == {"seed": "0", "trainer.steps": "20"}


def test_cells_and_markdown_and_csv(tmp_path: Path) -> None:
    assert sweep._shown(0.123456789) == "0.1235" and sweep._shown(12345.0) == "1.234e+04"
    assert sweep._shown("0.000123456789") == "0.0001235"  # a long number written as text (an Optuna draw)
    assert sweep._shown("0.5") == "0.5" and sweep._shown("123456789x") == "123456789x" and sweep._shown(3) == "3"
    assert sweep._number("nan") is None and sweep._number("1e3") == 1000.0 and sweep._number("x") is None
    assert sweep.markdown(["a", "b"], [[1.0, "x|y"], [2, ""]]) == "| a | b |\n|---|---|\n| 1 | x\\|y |\n| 2 |  |"
    path = tmp_path / "t.csv"
    sweep._write_csv(path, ["a", "b"], [[1.5, None], ["x,y", 2]])
    assert list(csv.reader(path.open())) == [["a", "b"], ["1.5", ""], ["x,y", "2"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def _sweep_folder(root: Path) -> Path:
    for row in _rows():
        status = {"status": row["status"], "overrides": row["overrides"], "reason": row["reason"], "steps": 20}
        lines = [{"step": row["step"], **{k: (v if math.isfinite(v) else "nan") for k, v in row["values"].items()}}]
        _job(root, row["job"], lines, status=status)
    _job(root, "4", [], status={"status": "running", "overrides": ["loss=hinge", "seed=2", "trainer.steps=20"]})
    return root


def test_report_writes_the_summary_word_for_word(tmp_path: Path) -> None:
    folder = _sweep_folder(tmp_path)
    text, rows = sweep.report(folder, "fid", "minimize")
    assert len(rows) == 5
    lines = text.splitlines()
    assert lines[0] == f"sweep {folder}: 5 jobs, 3 finished, 1 failed, 1 interrupted"
    assert lines[1] == "common: trainer.steps=20"
    assert lines[2] == "| job | loss | seed | extra | status | step | loss/d | eval/fid | reason |"
    assert lines[4] == "| 0 | hinge | 0 |  | finished | 20 | 1 | 3 |  |"
    assert lines[7] == "| 3 | wgan | 1 | 1 | failed | 4 | 9 |  | NaN |"
    assert lines[8] == "| 4 | hinge | 2 |  | interrupted | 0 |  |  |  |"
    assert lines[9] == "mean and std over seeds (finished jobs):"
    assert lines[-3] == "best fid (minimize): 3, job 0 (loss=hinge seed=0 extra=)"
    assert lines[-2] == "job 3 failed: NaN"
    assert lines[-1] == (f"1 job(s) unfinished: re-run the same `gantrain -m` command with hydra.sweep.dir={folder} "
                         "to finish them (finished jobs are skipped)")
    assert (folder / sweep.SUMMARY_MD).read_text() == text + "\n"
    per_job = list(csv.reader((folder / sweep.SUMMARY_CSV).open()))
    assert per_job[0] == ["job", "loss", "seed", "extra", "status", "step", "loss/d", "eval/fid", "reason"]
    assert per_job[2] == ["1", "hinge", "1", "", "finished", "20", "3.0", "5.0", ""]
    seeds = list(csv.reader((folder / sweep.SEEDS_CSV).open()))
    assert seeds[0][:4] == ["loss", "extra", "seeds", "finished"] and seeds[1][:5] == ["hinge", "", "3", "2", "2.0"]
    assert not list(folder.glob(".*.tmp"))
    text, _ = sweep.report(folder, "eval/fid", "maximize")
    assert "best eval/fid (maximize): 5, job 1 (loss=hinge seed=1 extra=)" in text.splitlines()
    text, _ = sweep.report(folder, "recall", "maximize")  # logged by no job: no best line
    assert not any(line.startswith("best") for line in text.splitlines())


def test_report_of_a_single_setting_names_its_overrides(tmp_path: Path) -> None:
    _job(tmp_path, "0", [{"step": 5, "eval/modes": 7}], status={"status": "finished", "overrides": ["seed=3"]})
    text, _ = sweep.report(tmp_path, "modes", "maximize")
    assert text.splitlines() == [f"sweep {tmp_path}: 1 jobs, 1 finished", "common: seed=3", "| job | status | step | eval/modes | reason |",
                                 "|---|---|---|---|---|", "| 0 | finished | 5 | 7 |  |", "best modes (maximize): 7, job 0 (seed=3)"]
    assert not (tmp_path / sweep.SEEDS_CSV).exists()


def test_a_folder_of_ordinary_runs_is_not_a_sweep(tmp_path: Path) -> None:
    _job(tmp_path, "0", [{"step": 5}], hydra=["seed=1"])
    with pytest.raises(GantrainError) as err:
        sweep.report(tmp_path)
    assert str(err.value) == (f"{tmp_path} is not a sweep folder (no multirun.yaml, no job with status.json): it holds "
                              "1 ordinary run(s); give the folder a `gantrain -m` sweep printed")
    (tmp_path / "multirun.yaml").write_text("{}\n")
    text, rows = sweep.report(tmp_path)
    assert rows[0]["status"] == "not started" and text.splitlines()[0] == f"sweep {tmp_path}: 1 jobs, 1 not started"


def test_check_metric_names_what_the_jobs_log(tmp_path: Path) -> None:
    rows = [{"values": {"eval/fid_classifier": 1.0, "loss/g": 2.0}}, {"values": {"eval/recall": 0.5}}]
    sweep.check_metric(rows, "fid_classifier", tmp_path)
    sweep.check_metric(rows, "eval/recall", tmp_path)
    sweep.check_metric(rows, "loss/g", tmp_path)
    sweep.check_metric([{"values": {}}], "anything", tmp_path)  # nothing logged yet: nothing to check against
    with pytest.raises(GantrainError) as err:
        sweep.check_metric(rows, "fid_clasifier", tmp_path)
    assert str(err.value) == (f"optimized_metric=fid_clasifier is logged by no job of {tmp_path}; did you mean "
                              "fid_classifier? the jobs log: fid_classifier, loss/g, recall")
    with pytest.raises(GantrainError) as err:
        sweep.check_metric(rows, "zzz", tmp_path)
    assert str(err.value) == f"optimized_metric=zzz is logged by no job of {tmp_path}; the jobs log: fid_classifier, loss/g, recall"


@pytest.mark.parametrize("metric, given, direction", [
    ("fid_classifier", None, "minimize"), ("eval/fid_classifier", None, "minimize"), ("modes", None, "maximize"),
    ("eval/psnr", None, "maximize"), ("l1", None, "minimize"), ("loss/g", None, "minimize"),
    ("my_score", None, "maximize"), (None, None, "maximize"), ("fid", "maximize", "maximize"),
    ("modes", "minimize", "minimize"), ("fid", "up", "minimize"), ("fid", 1, "minimize")])
def test_natural_direction(metric: str, given: object, direction: str) -> None:
    assert sweep.natural_direction(metric, given) == direction


def test_last_values_read_past_cut_lines_and_text_values(tmp_path):
    _job(tmp_path, "cut", ['{"step": 3, "lo'])  # only a cut line: nothing logged yet
    assert sweep.last_values(tmp_path / "cut") == (0, {})
    _job(tmp_path, "nostep", [{"loss/d": 1.0}])
    assert sweep.last_values(tmp_path / "nostep") == (0, {"loss/d": 1.0})
    _job(tmp_path, "mid", [{"step": 2, "note": "text", "loss/d": 1.5, "throughput": 9, "time/step": 0.5},
                           '{"step": 9, "lo', {"step": 4, "zzz": 2.0}])
    step, values = sweep.last_values(tmp_path / "mid")
    assert step == 4 and values == {"loss/d": 1.5, "throughput": 9.0, "time/step": 0.5, "zzz": 2.0}


def test_job_rows_skip_a_folder_that_is_not_a_job_wherever_it_sorts_and_keep_reasons(tmp_path):
    (tmp_path / "_logs").mkdir()  # sorts before the named jobs
    _job(tmp_path, "a", [], status={"status": "interrupted", "overrides": ["seed=1"], "reason": "SIGTERM at step 5"})
    _job(tmp_path, "b", [], status={"status": "finished", "overrides": ["seed=2"], "reason": "old"})
    rows = sweep.job_rows(tmp_path)
    assert [(r["job"], r["status"], r["reason"]) for r in rows] == [("a", "interrupted", "SIGTERM at step 5"),
                                                                     ("b", "finished", "")]


def test_long_numbers_written_as_text_are_shortened_from_nine_characters():
    assert sweep._shown("1.0000") == "1.0000" and sweep._shown("0.12345") == "0.12345"
    assert sweep._shown("0.123456") == "0.123456"  # 8 characters: kept as written
    assert sweep._shown("0.1234567") == "0.1235"  # 9: a number to 4 significant digits


def test_seeds_are_averaged_within_every_other_varying_setting():
    def row(job, seed, lr, value):
        return {"job": job, "overrides": [f"seed={seed}", f"trainer.lr={lr}"], "status": "finished", "reason": "",
                "step": 5, "steps": 5, "values": {"loss/g": value}}

    rows = [row("0", 0, 1, 1.0), row("1", 1, 1, 3.0), row("2", 0, 2, 10.0), row("3", 1, 2, 20.0)]
    _, _, seed_columns, seed_table, _ = sweep.summary_tables(rows)
    assert seed_columns == ["trainer.lr", "seeds", "finished", "loss/g mean", "loss/g std"]
    assert [r[:4] for r in seed_table] == [["1", 2, 2, 2.0], ["2", 2, 2, 15.0]]


def test_the_best_job_is_a_finished_one(tmp_path):
    statuses = {"0": ("finished", 5.0), "1": ("failed", 1.0), "2": ("interrupted", 0.5), "3": ("finished", 4.0)}
    for job, (status, fid) in statuses.items():
        _job(tmp_path, job, [{"step": 5, "eval/fid": fid}], status={"status": status, "overrides": [f"seed={job}"]})
    text, _ = sweep.report(tmp_path, "fid", "minimize")
    assert "best fid (minimize): 4, job 3 (seed=3)" in text.splitlines()
    text, _ = sweep.report(tmp_path, "fid", "maximize")
    assert "best fid (maximize): 5, job 0 (seed=0)" in text.splitlines()


def test_jobs_the_sweep_never_reached_are_counted_from_its_command(tmp_path: Path) -> None:
    # a sweep of 2 losses x 3 seeds (one of them through hydra.sweeper.params) stopped in its second job
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        "    params:\n      seed: 0,1,2\n  overrides:\n    task: ['loss=hinge,wgan', trainer.steps=20]\n")
    _job(tmp_path, "0", [{"step": 20}], status={"status": "finished", "overrides": ["loss=hinge", "seed=0"]})
    _job(tmp_path, "1", [], status={"status": "running", "overrides": ["loss=hinge", "seed=1"]})
    assert sweep.planned_jobs(tmp_path) == 6
    text, rows = sweep.report(tmp_path)
    assert len(rows) == 2 and text.splitlines()[0] == f"sweep {tmp_path}: 6 jobs, 1 finished, 1 interrupted, 4 not started"
    assert text.splitlines()[-1].startswith("5 job(s) unfinished: re-run the same `gantrain -m` command")
    # Optuna's sweeper decides how many trials run (a grid ends early); a record that does not say: the folders
    # alone, as before
    (tmp_path / "multirun.yaml").write_text("hydra:\n  sweeper:\n    _target_: hydra_plugins.hydra_optuna_sweeper."
                                            "optuna_sweeper.OptunaSweeper\n    n_trials: 5\n")
    assert sweep.planned_jobs(tmp_path) is None
    (tmp_path / "multirun.yaml").write_text("{}\n")
    assert sweep.planned_jobs(tmp_path) is None
    assert sweep.report(tmp_path)[0].splitlines()[0] == f"sweep {tmp_path}: 2 jobs, 1 finished, 1 interrupted"


def test_a_sweep_stopped_early_shows_its_swept_keys_and_the_jobs_it_never_reached(tmp_path: Path) -> None:
    # 2 losses x 2 seeds, stopped during job 1: the jobs so far share loss=hinge, which is still a column (not a
    # "common" setting), and the two jobs without a folder are rows with the settings they will run
    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweep:\n    subdir: ${hydra.job.num}\n  sweeper:\n"
        "    _target_: hydra._internal.core_plugins.basic_sweeper.BasicSweeper\n"
        "  overrides:\n    task: ['loss=hinge,wgan', 'seed=0,1', trainer.steps=20]\n")
    _job(tmp_path, "0", [{"step": 20, "loss/g": 1.0}],
         status={"status": "finished", "overrides": ["loss=hinge", "seed=0", "trainer.steps=20"]})
    _job(tmp_path, "1", [], status={"status": "running", "overrides": ["loss=hinge", "seed=1", "trainer.steps=20"]})
    text, rows = sweep.report(tmp_path)
    lines = text.splitlines()
    assert lines[0] == f"sweep {tmp_path}: 4 jobs, 1 finished, 1 interrupted, 2 not started"
    assert lines[1] == "common: trainer.steps=20"
    assert lines[2].startswith("| job | loss | seed | status |")
    assert [(r["job"], r["status"]) for r in rows] == [("0", "finished"), ("1", "interrupted"), ("2", "not started"),
                                                        ("3", "not started")]
    assert [r["settings"] for r in rows[2:]] == [{"loss": "wgan", "seed": "0"}, {"loss": "wgan", "seed": "1"}]
    # where job folders are named otherwise, the never-reached jobs are counted, and loss is still a column
    (tmp_path / "multirun.yaml").write_text((tmp_path / "multirun.yaml").read_text().replace(
        "${hydra.job.num}", "${hydra.job.override_dirname}"))
    (tmp_path / "1" / sweep.STATUS_FILE).write_text(json.dumps({"status": "finished", "step": 20, "overrides": [
        "loss=hinge", "seed=1", "trainer.steps=20"]}))
    text, rows = sweep.report(tmp_path)
    assert len(rows) == 2 and text.splitlines()[0] == f"sweep {tmp_path}: 4 jobs, 2 finished, 2 not started"
    assert text.splitlines()[2].startswith("| job | loss | seed | status |")
