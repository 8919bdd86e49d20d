"""The project's own errors: each is one line for the user, naming the file or flag and what to do.

main.py turns exactly these into an `error:` line and exit status 2; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations


class AFMAError(Exception):
    """Base of every error whose message is meant for the user as it stands."""


class UsageError(AFMAError, ValueError):
    """A setting that cannot work; the message names the flag and what to do."""


class DataError(AFMAError, ValueError):
    """Bad or missing data; the message names the file or folder and what to do."""


class CheckpointError(AFMAError, ValueError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, or of another model."""


class WriteError(AFMAError, OSError):
    """A file that cannot be written (a full disk, a read-only folder): the message names it and the cause
    (`reason`, e.g. "No space left on device"). An OSError too, so that code that handles a failed write handles
    this one."""

    def __init__(self, path, reason: str, advice: str = "the files written before it are kept"):
        super().__init__(f"{path} cannot be written ({reason}): {advice}")
        self.path, self.reason = path, reason


class NonFiniteLoss(AFMAError, RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class Interrupted(AFMAError):
    """Ctrl-C or SIGTERM: the run stops after saying what was kept."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(BaseException):
    """SIGTERM (what cluster schedulers send), raised by utils.signals so that a run stops as on Ctrl-C."""
