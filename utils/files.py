"""One way to write a file: atomically (temporary file, fsync, rename), with the umask's permissions.

A kill at any moment leaves either the old file or the new one, never half of either; a Ctrl-C or SIGTERM that
arrives during a write takes effect once the file is whole. Checkpoints, JSON, CSV and figures all go through
`write_atomic`; a write that fails (a full disk, a folder that cannot be written) is one `WriteError` naming the
file and the cause, and leaves the previous file as it was.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from utils.errors import WriteError
from utils.signals import deferred_stops


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path | str, content: bytes | str | Callable[[IO[bytes]], Any]) -> Path:
    """Write bytes, text (UTF-8) or whatever `content(file)` writes to `path`, atomically.

    The temporary file lives beside `path` (same file system, so the rename is atomic) and gets the mode a
    plain `open()` would (0666 less the umask), not mkstemp's 0600.
    """
    path = Path(path)
    temporary = None
    with deferred_stops():  # a library cut mid-write (torch.save) fails with its own error, not the stop's
        try:
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(handle, "wb") as file:
                if callable(content):
                    content(file)
                else:
                    file.write(content.encode() if isinstance(content, str) else content)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, path)
        except Exception as error:
            cause = os_error(error)
            if cause is None or isinstance(error, WriteError):
                raise
            raise WriteError(path, cause.strerror or str(cause)) from None
        finally:
            if temporary and os.path.exists(temporary):
                os.unlink(temporary)
    return path


def os_error(error: BaseException) -> OSError | None:
    """The OSError behind a failed write: the error itself, or the one a library turned into its own (torch.save's
    zip writer reports a full disk as "unexpected pos 64 vs 0", with the OSError as its context)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


def remove_partial_writes(folder: Path | str) -> list[Path]:
    """The temporary files of writes a kill cut short (`.NAME.*.tmp` beside NAME): a run removes them as it starts."""
    leftovers = sorted(Path(folder).glob(".*.tmp"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def json_safe(value):
    """NaN and infinities become null: strict JSON readers refuse them, and 'no value' is what they mean."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path | str, data) -> Path:
    return write_atomic(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def write_csv(path: Path | str, rows: list[dict]) -> Path:
    text = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return write_atomic(path, text.getvalue())
