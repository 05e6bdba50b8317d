"""The errors a user can cause: stages print them as one line and exit, never a traceback."""


class UserError(Exception):
    """A mistake in the user's inputs (params, competition files, data on disk)."""


class ParamError(UserError, ValueError):
    """A param with a value outside what the pipeline allows."""
