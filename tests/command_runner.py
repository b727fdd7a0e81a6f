"""Runs many invocations of gantrain's console scripts from one process: it loads each command's entry point
(the one `pip install` registered) once, then forks a fresh child for every invocation, which sets its argv,
working folder and environment, sends stdout and stderr to files and exits with the command's exit code, as
the installed script does (`sys.exit(main())`). The children skip the imports (about 2 s a command on the
test machines); what they run is the command's own code, in a process of its own.

Read by conftest.run_commands: a JSON list of cases on stdin, a JSON list of exit codes on stdout.
An environment variable that takes effect at import (OMP_NUM_THREADS for torch, say) is the runner's own.
"""
import json
import os
import sys
import traceback
from importlib.metadata import entry_points


def exit_code(code: object) -> int:
    """What Python does with sys.exit(code) at the end of a script."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def child(main, case: dict) -> int:
    out = os.open(case["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(case["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(case["cwd"])
    if case.get("umask") is not None:
        os.umask(case["umask"])
    os.environ.clear()
    os.environ.update(case["env"])
    sys.argv = [case["command"], *case["args"]]
    try:
        return exit_code(main())
    except SystemExit as stop:
        return exit_code(stop.code)
    except BaseException:  # as an uncaught exception ends a script: the traceback on stderr, exit code 1
        traceback.print_exc()
        return 1


def run(cases: list[dict]) -> list[int]:
    scripts = {ep.name: ep for ep in entry_points(group="console_scripts") if ep.value.startswith("gantrain.")}
    mains = {name: scripts[name].load() for name in {case["command"] for case in cases}}
    codes = []
    for case in cases:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(mains[case["command"]], case)
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    return codes


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    sys.stdin = open(os.devnull)
    results = run(cases)
    sys.stdout.write(json.dumps(results))
