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
