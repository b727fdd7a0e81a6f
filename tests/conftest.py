"""Shared fixtures. Real MNIST is read from GANTRAIN_DATA (set by .ci/run) or ../shared/data."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--data-root", default=None, help="folder holding MNIST/raw and FashionMNIST/raw")


@pytest.fixture(scope="session")
def data_root(request: pytest.FixtureRequest) -> Path:
    """The folder with torchvision's MNIST layout: the given or shared copy, else one downloaded once into a cache.

    Without a copy and without a network the test fails (it is never skipped).
    """
    import shutil
    import socket
    import tempfile

    given = request.config.getoption("--data-root") or os.environ.get("GANTRAIN_DATA")
    root = Path(given) if given else REPO.parent / "shared" / "data"
    if (root / "MNIST" / "raw").is_dir():
        return root
    # Not $GANTRAIN_CACHE: the session's classifier_cache fixture points it at a temporary folder, and the
    # point of this cache is to download once per machine, not once per session.
    cache = Path.home() / ".cache" / "gantrain" / "data"
    needed = ("MNIST", "FashionMNIST")  # test_configs builds fashion_mnist from this root too
    files = [f"{split}-{kind}-ubyte.gz" for split in ("train", "t10k") for kind in ("images-idx3", "labels-idx1")]

    def complete(folder: Path) -> bool:
        return all((folder / "raw" / name).is_file() for name in files)

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # a network that drops packets fails in seconds instead of hanging the session
    try:
        import torchvision

        cache.mkdir(parents=True, exist_ok=True)
        for name in needed:
            if complete(cache / name):
                continue
            # download beside the cache and move whole folders in, so an interrupted download leaves no half copy
            with tempfile.TemporaryDirectory(dir=cache, prefix=".partial-") as partial:
                getattr(torchvision.datasets, name)(partial, train=True, download=True)
                try:
                    os.replace(Path(partial) / name, cache / name)
                except OSError:  # another session got there first; keep its copy if it is whole
                    if not complete(cache / name):
                        shutil.rmtree(cache / name, ignore_errors=True)
                        os.replace(Path(partial) / name, cache / name)
    except Exception as exc:  # offline: URLError, RuntimeError("Error downloading ..."), socket.timeout, ...
        detail = " ".join(str(exc).split())
        reason = f"{type(exc).__name__}: {detail if len(detail) <= 200 else detail[:197] + '...'}"
        pytest.fail(f"real MNIST not found under {root} and no download into {cache} ({reason}): "
                    f"set GANTRAIN_DATA or --data-root to ../shared/data")
    finally:
        socket.setdefaulttimeout(previous)
    return cache


def command_env(env: dict | None = None) -> dict:
    """The environment of a command a test starts: this one, unbuffered, with Hydra's one-line errors kept."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return full_env


def run_gantrain(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real `gantrain` command (through the warm runner: see run_commands); returns the completed
    process (stdout and stderr as text)."""
    return run_commands([("gantrain", *args)], cwd=cwd, env=env, timeout=timeout)[0]


def run_command(name: str, *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None,
                umask: int | None = None) -> subprocess.CompletedProcess:
    """Run one installed console script (gantrain-eval, gantrain-sample, ...) as run_gantrain runs gantrain."""
    return run_commands([(name, *args)], cwd=cwd or Path.cwd(), env=env, timeout=timeout, umask=umask)[0]


#: environment variables read when a program starts or imports torch: a case whose environment sets one otherwise
#: than the warm runner's own gets a process started from scratch
STARTUP_VARIABLES = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "NUMEXPR_", "CUDA_", "PYTORCH_", "TORCH",
                     "LD_")
#: what libraries set in a process's own environment when imported (torch's compiler front end, tokenizers): the
#: runner's children get them from the same imports, so a test process that has them differs in nothing that matters
SET_BY_IMPORTS = {"KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK", "TORCHINDUCTOR_CACHE_DIR", "TOKENIZERS_PARALLELISM"}


def startup_settings(env: dict) -> dict:
    return {k: v for k, v in env.items() if k.startswith(STARTUP_VARIABLES) and k not in SET_BY_IMPORTS}


class WarmRunner:
    """This test process's command_runner.py: started on first use, kept for the session (one per worker)."""

    def __init__(self) -> None:
        self.env = command_env()
        read, write_end = os.pipe()
        self.replies = read
        self.log = tempfile.NamedTemporaryFile(prefix="gantrain-runner-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("command_runner.py")), str(write_end)],
                                     stdin=subprocess.PIPE, stdout=self.log, stderr=self.log, env=self.env,
                                     pass_fds=(write_end,), text=True)
        os.close(write_end)
        self.buffer = b""
        self.alive = True

    def reply(self, deadline: float | None) -> dict | None:
        """The runner's next reply line, or None at the deadline."""
        import select
        import time

        while b"\n" not in self.buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.replies], [], [], wait)[0]:
                return None
            chunk = os.read(self.replies, 65536)
            if not chunk:
                log = Path(self.log.name).read_text()[-3000:]
                self.close()
                raise AssertionError(f"the command runner ended: {log}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def run(self, job: dict, timeout: float) -> int:
        import signal
        import time

        try:
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            started = self.reply(time.monotonic() + 60)  # the runner forks at once
            if started is None:
                raise AssertionError("the command runner did not start the command within 60 s")
            done = self.reply(time.monotonic() + timeout)
            if done is None:  # as subprocess.run(timeout=...) does: kill the command, then say so
                try:
                    os.kill(started["pid"], signal.SIGKILL)
                except ProcessLookupError:  # it ended at that moment: its code is on its way
                    pass
                self.reply(None)
                raise subprocess.TimeoutExpired([job["command"], *job["args"]], timeout,
                                                Path(job["stdout"]).read_text(), Path(job["stderr"]).read_text())
            return done["code"]
        except subprocess.TimeoutExpired:
            raise
        except BaseException:  # anything else leaves the conversation in an unknown state: a new runner next time
            self.close()
            raise

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.replies)
        self.log.close()
        os.unlink(self.log.name)


_RUNNER: WarmRunner | None = None


def warm_runner() -> WarmRunner:
    global _RUNNER
    if _RUNNER is None or not _RUNNER.alive or _RUNNER.proc.poll() is not None:
        if _RUNNER is not None:
            _RUNNER.close()
        _RUNNER = WarmRunner()
    return _RUNNER


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _RUNNER is not None:
        _RUNNER.close()


def run_commands(cases: list[tuple], cwd: Path, env: dict | None = None, umask: int | None = None,
                 timeout: float = 600) -> list[subprocess.CompletedProcess]:
    """Invocations of the installed console scripts, one after the other, each in a process of its own: cases are
    (command, *args) tuples, e.g. ("gantrain", "loss=foo"); one completed process per case. They run through the
    warm runner (command_runner.py), which forks each from a process that has imported gantrain and torch already;
    a case whose environment sets a variable read at start-up (STARTUP_VARIABLES) otherwise than the runner's runs
    as a program of its own."""
    full_env = command_env(env)
    if umask is None:  # the test's own, as a program it started would inherit
        umask = os.umask(0o022)
        os.umask(umask)
    if not Path(cwd).is_dir():  # as subprocess.run refuses it
        raise FileNotFoundError(f"no such folder to run in: {cwd}")
    for command, *_ in cases:
        if not Path(sys.executable).with_name(command).exists():
            raise AssertionError(f"{command} is not installed beside {sys.executable}: pip install -e . puts it there")
    runner = warm_runner()
    fresh = startup_settings(full_env) != startup_settings(runner.env)
    streams = Path(tempfile.mkdtemp(prefix="gantrain-commands-"))
    results = []
    try:
        for i, (command, *args) in enumerate(cases):
            if fresh:
                results.append(subprocess.run([str(Path(sys.executable).with_name(command)), *args], cwd=cwd,
                                              capture_output=True, text=True, timeout=timeout, env=full_env))
                continue
            job = {"command": command, "args": list(args), "cwd": str(cwd), "env": full_env,
                   "stdout": str(streams / f"{i}.out"), "stderr": str(streams / f"{i}.err"), "umask": umask}
            code = runner.run(job, timeout)
            results.append(subprocess.CompletedProcess([command, *args], code, Path(job["stdout"]).read_text(),
                                                       Path(job["stderr"]).read_text()))
        return results
    finally:
        shutil.rmtree(streams, ignore_errors=True)


# Small, fast settings shared by the end-to-end tests.
FAST = ["trainer.device=cpu", "trainer.log_every=5", "trainer.sample_every=10", "trainer.ckpt_every=10"]


@pytest.fixture(scope="session", autouse=True)
def classifier_cache(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """Domain classifiers trained by the tests go to a temporary cache, shared by the whole session (and by
    the workers of `pytest -n N`, which train each classifier once between them: load_classifier locks)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if worker_id != "master" else base) / "classifier-cache"
    folder.mkdir(exist_ok=True)
    os.environ["GANTRAIN_CACHE"] = str(folder)
    return folder


#: torch's thread count before a test worker set it to 1 (what the pinned fixtures were trained with)
DEFAULT_THREADS = int(os.environ.get("GANTRAIN_TEST_DEFAULT_THREADS", "0")) or None


def pytest_configure(config: pytest.Config) -> None:
    """Under `pytest -n N` each worker, and every command it starts, computes on one thread: N workers share
    the cores instead of each spreading over all of them (which makes the suite several times slower)."""
    global DEFAULT_THREADS
    import torch

    DEFAULT_THREADS = DEFAULT_THREADS or torch.get_num_threads()
    os.environ["GANTRAIN_TEST_DEFAULT_THREADS"] = str(DEFAULT_THREADS)  # the workers inherit it
    if hasattr(config, "workerinput"):
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture
def default_threads() -> Iterator[dict]:
    """For tests that compare with weights pinned by an earlier version: torch's default thread count in this
    process (CPU reductions round differently with another), and the environment for commands it starts."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(DEFAULT_THREADS)
    try:
        yield {"OMP_NUM_THREADS": str(DEFAULT_THREADS)}
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """This process's pytest-xdist worker ("gw0", ...), or "master" without xdist."""
    return getattr(request.config, "workerinput", {}).get("workerid", "master")


def replay_generator(images):
    """A 'generator' whose sample(n) returns the next n of the given uint8 images, in data space, in order: real
    images in a generator's place (their scores must sit at the real-vs-real floor)."""
    import torch

    class Replay(torch.nn.Module):
        latent_dim = 1

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.i = 0

        def sample(self, n, generator=None):
            out = images[self.i : self.i + n].float() / 127.5 - 1
            self.i += n
            return out

    return Replay()


#: a StyleGAN2 small enough to train in a second: 16 px MNIST, z and w of 8, every layer 8 channels wide
TINY_STYLEGAN2 = ["dataset.image_size=16", "generator.latent_dim=8", "generator.w_dim=8", "generator.channel_base=64",
                  "generator.channel_max=8", "discriminator.channel_base=64", "discriminator.channel_max=8",
                  "trainer.steps=2", "trainer.batch_size=4", "trainer.eval_every=0", "trainer.device=cpu"]


@pytest.fixture(scope="session")
def tiny_stylegan2_runs(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict:
    """Two tiny StyleGAN2 runs on MNIST (2 steps each), shared by the tests of the control commands:
    "plain" (experiment=stylegan2_mnist) and "conditional" (experiment=stylegan2_cmnist). Read them, never
    write into them."""
    import gantrain

    root = tmp_path_factory.mktemp("stylegan2_runs")
    runs = {}
    for name, preset in (("plain", "stylegan2_mnist"), ("conditional", "stylegan2_cmnist")):
        runs[name] = root / name
        gantrain.train(gantrain.compose([f"experiment={preset}", f"dataset.root={data_root}", *TINY_STYLEGAN2]),
                       runs[name])
    return runs
