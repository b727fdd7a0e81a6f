"""Shared fixtures. Real MNIST is read from GANTRAIN_DATA (set by .ci/run) or ../shared/data."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--data-root", default=None, help="folder holding MNIST/raw and FashionMNIST/raw")


@pytest.fixture(scope="session")
def data_root(request: pytest.FixtureRequest) -> Path:
    """The folder with torchvision's MNIST layout; a missing folder fails the test (it is never skipped)."""
    given = request.config.getoption("--data-root") or os.environ.get("GANTRAIN_DATA")
    root = Path(given) if given else REPO.parent / "shared" / "data"
    if not (root / "MNIST" / "raw").is_dir():
        pytest.fail(f"real MNIST not found under {root}: set GANTRAIN_DATA or --data-root to ../shared/data")
    return root


def run_gantrain(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `gantrain` command; returns the completed process (stdout and stderr as text)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    exe = Path(sys.executable).with_name("gantrain")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "gantrain.cli"]
    return subprocess.run(command + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


# Small, fast settings shared by the end-to-end tests.
FAST = ["trainer.device=cpu", "trainer.log_every=5", "trainer.sample_every=10", "trainer.ckpt_every=10"]


@pytest.fixture(scope="session", autouse=True)
def classifier_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Domain classifiers trained by the tests go to a temporary cache, shared by the whole session."""
    folder = tmp_path_factory.mktemp("classifier-cache")
    os.environ["GANTRAIN_CACHE"] = str(folder)
    return folder
