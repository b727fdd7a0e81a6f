"""The one exception type a user can cause; the CLI prints it as one line."""
import contextvars


class GantrainError(Exception):
    """A mistake in the user's config, data or files: the message says what and how to fix it."""


#: whether the run in progress was started from Python (gantrain.train) rather than the gantrain command: the
#: messages then name train's run_dir where they would name the command's hydra.run.dir
_FROM_PYTHON: contextvars.ContextVar[bool] = contextvars.ContextVar("gantrain_from_python", default=False)


def folder_option() -> str:
    """How the user names a run's folder: hydra.run.dir on the command line, run_dir from Python."""
    return "run_dir" if _FROM_PYTHON.get() else "hydra.run.dir"
