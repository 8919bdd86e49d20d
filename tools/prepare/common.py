"""What every part of the tool shares: the error type, progress bars, and the staged, marked output folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tqdm import tqdm


EXIT_ERROR = 2
FIRST_FEW = 5  # offending paths listed per problem; the rest are counted
# Written into every output folder: --force replaces only folders that hold it (never the user's own).
MARKER = ".prepare_data"
MARKER_TEXT = "written by tools/prepare_data.py: its --force may replace this folder\n"


class PrepareError(Exception):
    """A problem the user must fix; main() prints it as an `error:` line and exits with status 2."""


def require_pairs(first: dict, second: dict, without_second, without_first) -> None:
    """Raise PrepareError(without_second(key)) for the first key of `first` that `second` lacks, then
    PrepareError(without_first(key)) for the first key of `second` that `first` lacks (sorted: the same file
    is named every time)."""
    for keys, message in ((first.keys() - second.keys(), without_second),
                          (second.keys() - first.keys(), without_first)):
        if keys:
            raise PrepareError(message(min(keys)))


def refuse_existing(out: Path | None, source: Path, force: bool) -> None:
    """Stop before any work if an existing --out may not be replaced.

    --force replaces only a folder this tool wrote (it holds MARKER), and never one that holds --source:
    `--out` equal to `--source`, or a parent of it, would otherwise delete the download itself.
    """
    if out is None or not (out.exists() or out.is_symlink()):
        return
    if source.resolve().is_relative_to(out.resolve()):
        raise PrepareError(f"--out {out} holds --source {source}: replacing it would delete the source; "
                           f"choose an --out outside --source")
    if not force:
        raise PrepareError(f"--out {out} exists: pass --force to replace it, or choose another --out")
    if not (out / MARKER).is_file():
        raise PrepareError(f"--out {out} was not written by this tool (it has no {MARKER} file), so --force "
                           f"does not replace it: remove it yourself, or choose another --out")


@contextlib.contextmanager
def staged_output(out: Path, source: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary folder beside `out` that becomes `out` only if the block completes.

    Anything else (an error, Ctrl-C) removes it, so `out` is never half-written; an existing `out` is
    replaced only with --force, only if this tool wrote it, and only once the new one is complete.
    """
    refuse_existing(out, source, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(MARKER_TEXT)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output should not be
        if out.exists():
            old = tmp.with_name(tmp.name.replace(".tmp-", ".old-"))
            out.rename(old)
            tmp.rename(out)
            if old.is_dir():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def progress(items, desc: str, unit: str):
    """A tqdm bar on interactive terminals (disable=None hides it in logs and tests)."""
    return tqdm(items, desc=desc, unit=unit, disable=None)

