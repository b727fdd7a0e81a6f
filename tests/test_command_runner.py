"""The warm runner (command_runner.py, used by run_gantrain, run_command and run_commands) against the installed
scripts started as programs of their own: the same exit codes, output and files."""
import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import command_env, run_commands


def real(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name(name)), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=command_env())


def same(text: str) -> str:
    return re.sub(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\]", "[time]", text, flags=re.M)  # the log lines' clock


def test_the_runner_gives_what_the_installed_scripts_give(tmp_path):
    tiny = ["experiment=grid", "trainer.steps=4", "trainer.log_every=2", "trainer.eval_every=0", "trainer.progress=false",
            "generator.hidden=[8]", "discriminator.hidden=[8]", "trainer.device=cpu"]
    refused = f"hydra.run.dir={tmp_path / 'refused'}"  # never made
    cases = [("gantrain", "trainer.steps=0", refused),  # refused by the config check: exit 2, one line
             ("gantrain", "loss=foo", refused),  # refused by Hydra's composition
             ("gantrain-sample", str(tmp_path / "missing")),  # another script
             ("gantrain", *tiny)]  # a run
    for side in ("real", "warm"):
        (tmp_path / side).mkdir()
    warm = run_commands([(c[0], *c[1:], f"hydra.run.dir={tmp_path / 'warm' / 'run'}") if c[-1] in tiny else c
                         for c in cases], cwd=tmp_path / "warm")
    for case, got in zip(cases, warm):
        args = [*case[1:], f"hydra.run.dir={tmp_path / 'real' / 'run'}"] if case[-1] in tiny else list(case[1:])
        want = real(case[0], *args, cwd=tmp_path / "real")
        assert got.returncode == want.returncode, (case, got.stderr, want.stderr)
        if case[-1] not in tiny:  # the refusals word for word
            assert (same(got.stdout), same(got.stderr)) == (same(want.stdout), same(want.stderr)), case
    assert [r.returncode for r in warm] == [2, 2, 2, 0] and not (tmp_path / "refused").exists()
    runs = {side: tmp_path / side / "run" for side in ("real", "warm")}
    files = {side: sorted(re.sub(r"tfevents\..*", "tfevents", p.relative_to(run).as_posix())  # clock, host, pid
                          for p in run.rglob("*") if p.is_file()) for side, run in runs.items()}
    assert files["warm"] == files["real"] and "checkpoints/last.pt" in files["warm"]
    rows = {side: [{k: v for k, v in json.loads(line).items() if k != "steps_per_s"}  # the clock's
                   for line in (run / "metrics.jsonl").read_text().splitlines()] for side, run in runs.items()}
    assert rows["warm"] == rows["real"] and [r["step"] for r in rows["warm"]] == [2, 4]  # the same training, bit for bit


def test_a_command_past_its_timeout_is_killed_as_subprocess_run_does(tmp_path):
    import pytest

    from conftest import run_command, warm_runner

    run = tmp_path / "run"
    with pytest.raises(subprocess.TimeoutExpired) as stopped:
        run_command("gantrain", "experiment=grid", "trainer.steps=100000000", "trainer.device=cpu", "trainer.eval_every=0",
                    f"hydra.run.dir={run}", cwd=tmp_path, timeout=8)
    assert stopped.value.timeout == 8 and stopped.value.cmd[0] == "gantrain"
    assert warm_runner().proc.poll() is None  # the runner goes on: the next command runs
    assert run_command("gantrain", "trainer.steps=0", cwd=tmp_path).returncode == 2


def test_a_variable_read_at_start_up_gets_a_program_of_its_own(tmp_path):
    from conftest import run_command

    (tmp_path / "sitecustomize.py").write_text("import sys\nprint('a fresh interpreter', file=sys.stderr)\n")
    fresh = run_command("gantrain", "trainer.steps=0", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert fresh.returncode == 2 and fresh.stderr.startswith("a fresh interpreter\n")  # Python read PYTHONPATH
    warm = run_command("gantrain", "trainer.steps=0", cwd=tmp_path, env={"GANTRAIN_CACHE": str(tmp_path)})
    assert warm.returncode == 2 and "a fresh interpreter" not in warm.stderr  # read when used: the warm runner
    assert fresh.stderr.split("\n", 1)[1] == warm.stderr
