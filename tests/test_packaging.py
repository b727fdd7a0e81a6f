"""`pip install .` (not only editable) must carry every module and config file inside the package."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_every_config(tmp_path):
    import shutil

    source = tmp_path / "src"  # a clean copy: a stale build/ folder of the checkout would hide missing packages
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "outputs",
                                                                 ".hypothesis", "fixtures"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                             str(tmp_path), str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("gantrain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"gantrain/configs/{p.relative_to(REPO / 'configs').as_posix()}" for p in (REPO / "configs").rglob("*.yaml")}
    assert len(configs) > 25 and configs <= names, sorted(configs - names)
    assert "gantrain/configs/hydra/help/gantrain.yaml" in names
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "gantrain").rglob("*.py")}
    assert len(modules) > 15 and modules <= names, sorted(modules - names)  # every module, subpackages too


def test_every_console_script_starts_through_the_light_entry_module():
    from importlib.metadata import entry_points

    from gantrain.commands.start import COMMANDS

    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.value.startswith("gantrain.")}
    assert set(scripts) == set(COMMANDS) and all(v.startswith("gantrain.commands.start:") for v in scripts.values())
    # importing it (and the package) loads neither torch nor Hydra: the seconds they take are the script's to guard
    code = ("import sys, gantrain.commands.start; "
            "print(sorted(m for m in ('torch', 'hydra', 'omegaconf', 'numpy') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_ctrl_c_while_a_command_starts_is_one_line(tmp_path, monkeypatch, capsys):
    from gantrain.commands import start

    # an interrupt while the command's module imports (torch, Hydra: seconds) ...
    (tmp_path / "slow_command.py").write_text("raise KeyboardInterrupt\n")
    # ... or one the command does not answer itself
    (tmp_path / "quick_command.py").write_text("def main():\n    raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(start.COMMANDS, "gantrain-slow", ("slow_command", "main"))
    monkeypatch.setitem(start.COMMANDS, "gantrain-quick", ("quick_command", "main"))
    for script, line in (("gantrain-slow", "gantrain-slow: interrupted while starting; nothing was done"),
                         ("gantrain-quick", "gantrain-quick: interrupted")):
        with pytest.raises(SystemExit) as stop:
            start.start(script)
        assert stop.value.code == 130 and capsys.readouterr().err == line + "\n"


@pytest.mark.slow
def test_ctrl_c_while_the_installed_gantrain_imports_torch_is_one_line(tmp_path):
    import os
    import signal

    script = Path(sys.executable).with_name("gantrain")  # the installed console script itself (no shell shim)
    # Python reports each import as it finishes (PYTHONPROFILEIMPORTTIME): the signal goes once the entry module
    # is in, while torch and Hydra are still importing (seconds), whatever this machine's speed
    process = subprocess.Popen([sys.executable, str(script), "trainer.steps=5", f"hydra.run.dir={tmp_path / 'run'}"],
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    seen = []
    for line in process.stderr:
        seen.append(line)
        if line.rstrip().endswith("| gantrain.commands.start"):
            break
    assert "torch\n" not in "".join(seen).replace(" ", "")  # torch is not in yet
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    said = [line for line in ("".join(seen) + rest).splitlines() if not line.startswith("import time:")]
    assert process.returncode == 130, said
    assert len(said) == 1 and said[0].startswith("gantrain: interrupted"), said
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_output_piped_into_a_reader_that_stops_ends_quietly(tmp_path):
    import os

    (tmp_path / "chatty.py").write_text("def main():\n    for i in range(200000):\n        print('line', i)\n")
    code = ("import sys; from gantrain.commands import start; start.COMMANDS['gantrain-chatty'] = ('chatty', 'main'); "
            "sys.exit(start.start('gantrain-chatty'))")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert process.stdout.readline() == b"line 0\n"
    process.stdout.close()  # as `| head -1` does: the command's next writes find no reader
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141 and err == b"", err[-2000:]  # as a tool killed by SIGPIPE, no traceback
