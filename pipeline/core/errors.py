"""Error classes that separate the user's mistakes from the tool's failures.

Only the CLI turns these into exit codes: a `UsageError` (bad argument, missing file, unknown model)
exits 2, a `RunFailure` (the work itself could not be done) exits 1. Any other exception is a bug.
"""


class PipelineError(Exception):
    """Base class for errors the user can act on; the message names the problem and the fix."""

    exit_code = 1


class UsageError(PipelineError):
    """The user asked for something that cannot work as asked (exit code 2)."""

    exit_code = 2


class RunFailure(PipelineError):
    """The request was valid but the work failed (exit code 1)."""

    exit_code = 1
