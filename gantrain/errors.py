"""The one exception type a user can cause; the CLI prints it as one line."""


class GantrainError(Exception):
    """A mistake in the user's config, data or files: the message says what and how to fix it."""
