"""Runs gantrain's console scripts for the tests from one warm process per test worker: it loads each command's
entry point (the one `pip install` registered) and the modules every run imports on first use (torch's compiler
front end, which a meta-device or optimizer call pulls in, and TensorBoard's writer) once, then forks a fresh
child for every command line. The child sets its argv, working folder, environment and umask, sends stdout and
stderr to files, runs the command as the installed script does (`sys.exit(main())`), then leaves through the
interpreter's own shutdown, as a script does: threads joined, exit handlers run, files flushed, the exit code (an
uncaught exception: its traceback on stderr and code 1). What a child runs is the command's own code, in a process of its own; it skips the imports
(about 3 s a command on the test machines).

Protocol (conftest.run_commands and run_gantrain): one JSON case a line on stdin; for each, two JSON lines on the
file descriptor given as the only argument: {"pid": N} once the child runs, then {"code": C} when it ended.
An environment variable that takes effect at import (OMP_NUM_THREADS for torch, say) is the runner's own:
conftest starts a real process for a case that changes one.
"""
import gc
import importlib
import json
import os
import sys
import tempfile
import traceback
from importlib.metadata import entry_points
from pathlib import Path


def exit_code(code: object) -> int:
    """What Python does with sys.exit(code) at the end of a script."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def child(mains: dict, case: dict) -> int:
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),  # the requests are the runner's, not the command's
                            (1, case["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, case["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(os.devnull)
    os.chdir(case["cwd"])
    if case.get("umask") is not None:
        os.umask(case["umask"])
    os.environ.clear()
    os.environ.update(case["env"])
    tempfile.tempdir = None  # read $TMPDIR again, as a fresh program does
    script = Path(sys.executable).with_name(case["command"])
    sys.argv = [str(script), *case["args"]]
    sys.path[0] = str(script.parent)  # a console script's own folder, not this one's
    try:
        return exit_code(mains[case["command"]]())
    except SystemExit as stop:
        return exit_code(stop.code)
    except BaseException:  # as an uncaught exception ends a script: the traceback on stderr, exit code 1
        traceback.print_exc()
        return 1


def warm_up() -> dict:
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.value.startswith("gantrain.")}
    mains = {name: ep.load() for name, ep in scripts.items()}
    from gantrain.commands.start import COMMANDS

    for module, _ in COMMANDS.values():  # what each entry point imports when it starts
        importlib.import_module(module)
    import torch._dynamo  # noqa: F401  (what the first meta-device linear layer or optimizer step imports)
    import torch.utils.tensorboard  # noqa: F401
    import torchvision  # noqa: F401  (what the first sample grid imports)

    return mains


def serve(reply_fd: int) -> None:
    mains = warm_up()
    # What the imports made is moved out of the cyclic collector's reach: a child's collections (and the one at
    # its shutdown) then leave those objects' memory pages alone instead of copying every one of them, which
    # took about a second a command. The command's own objects are collected as in any script.
    gc.collect()
    gc.freeze()
    replies = os.fdopen(reply_fd, "w", buffering=1)
    for line in sys.stdin:
        case = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the command's process: it runs, then ends as a script ends (the interpreter's own shutdown:
            replies.close()  # threads joined, exit handlers run, files flushed) with the command's exit code
            code = 1
            try:
                code = child(mains, case)
            except BaseException:
                traceback.print_exc()
            raise SystemExit(code)
        replies.write(json.dumps({"pid": pid}) + "\n")
        status = os.waitpid(pid, 0)[1]
        replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    serve(int(sys.argv[1]))
