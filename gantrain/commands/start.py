"""The console scripts' entry points. Each imports its command's module (torch and Hydra with it: seconds on a
first start) and then runs it; a Ctrl-C in those seconds, or one the command does not answer itself, ends in one
line and exit code 130 rather than a traceback. Imports nothing heavy itself."""
from __future__ import annotations

import functools
import importlib
import signal
import sys
from pathlib import Path
from typing import Any

#: script -> (module, function) that runs it
COMMANDS: dict[str, tuple[str, str]] = {
    "gantrain": ("gantrain.commands.train", "main"),
    "gantrain-eval": ("gantrain.commands.evaluate", "eval_main"),
    "gantrain-classifier": ("gantrain.commands.classifier", "classifier_main"),
    "gantrain-sample": ("gantrain.commands.sample", "main"),
    "gantrain-export": ("gantrain.commands.export", "main"),
    "gantrain-report": ("gantrain.commands.report", "report_main"),
    "gantrain-translate": ("gantrain.commands.translate", "main"),
    "gantrain-project": ("gantrain.commands.project", "main"),
    "gantrain-directions": ("gantrain.commands.directions", "main"),
}


def _interrupted_while_starting(signum: int, frame: Any) -> None:
    print(f"{Path(sys.argv[0]).name}: interrupted while starting; nothing was done", file=sys.stderr)
    raise SystemExit(130)


if Path(sys.argv[0]).name in COMMANDS:  # run as a console script: from this import on (before start() is called,
    signal.signal(signal.SIGINT, _interrupted_while_starting)  # while the script's own lines run), not in a library


_INTERRUPTED = False
_SIGNAL = 0


def _note_and_interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C once the command runs: a KeyboardInterrupt, as Python's own handler raises, and a note of it, which
    the command reads where it commits (a library's `except Exception` around a KeyboardInterrupt it turned into
    another error, as OmegaConf's flag contexts can, would otherwise lose it). A sweep answers SIGTERM so too."""
    global _INTERRUPTED, _SIGNAL
    _INTERRUPTED, _SIGNAL = True, signum
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether Ctrl-C reached this console script (never, when gantrain runs as a library)."""
    return _INTERRUPTED


def interrupt_signal() -> int:
    """The signal noted by interrupted() (SIGINT where none was)."""
    return _SIGNAL or int(signal.SIGINT)


def answer_sigterm_as_interrupt() -> None:
    """SIGTERM, too, noted and raised as a KeyboardInterrupt (where the console script answers Ctrl-C so)."""
    if signal.getsignal(signal.SIGINT) is _note_and_interrupt:
        signal.signal(signal.SIGTERM, _note_and_interrupt)


def start(script: str) -> Any:
    module, function = COMMANDS[script]
    try:
        main = getattr(importlib.import_module(module), function)
    except KeyboardInterrupt:
        print(f"{script}: interrupted while starting; nothing was done", file=sys.stderr)
        sys.exit(130)
    if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:  # the command answers Ctrl-C from here on
        signal.signal(signal.SIGINT, _note_and_interrupt)
    try:
        return main()
    except KeyboardInterrupt:  # one the command did not answer itself (its own imports and checks, say)
        print(f"{script}: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # its output piped into a reader that stopped (`| head`): end as a tool killed by SIGPIPE
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the flush at exit would fail again)
        sys.exit(128 + signal.SIGPIPE)


# the entry points pyproject.toml names, one per script
train = functools.partial(start, "gantrain")
evaluate = functools.partial(start, "gantrain-eval")
classifier = functools.partial(start, "gantrain-classifier")
sample = functools.partial(start, "gantrain-sample")
export = functools.partial(start, "gantrain-export")
report = functools.partial(start, "gantrain-report")
translate = functools.partial(start, "gantrain-translate")
project = functools.partial(start, "gantrain-project")
directions = functools.partial(start, "gantrain-directions")
