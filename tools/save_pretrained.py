"""Turn a run's checkpoint into a saved-model folder: config.json (the model spec) and model.safetensors.

    python tools/save_pretrained.py runs/RUN/best.pt afma-unet
    python -c "from models import SegmentationModel; SegmentationModel.from_pretrained('afma-unet')"

The folder is what `SegmentationModel.save_pretrained` writes, and what `from_pretrained`, torch.hub's
`from_pretrained` entry and `push_to_hub` take (docs/sharing.md). It is written beside DIR under a temporary name
and renamed into place, so DIR is either absent or complete. Errors are one `error:` line, exit status 2.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repository's packages

from models import PretrainedError  # noqa: E402
from utils.engine.checkpoint import load_model  # noqa: E402
from utils.errors import AFMAError  # noqa: E402


def save_folder(checkpoint: Path, directory: Path) -> Path:
    """Write the model in `checkpoint` (best.pt or last.pt) into the new folder `directory`."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise PretrainedError(f"{directory} already exists and is not an empty folder: give a new folder, or remove "
                              f"it first")
    model, _ = load_model(checkpoint)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        model.save_pretrained(staging)
        staging.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would hide the folder from others
        staging.replace(directory)  # an empty folder is replaced: rename(2)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="save_pretrained.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="best.pt (or last.pt) of a run of main.py")
    parser.add_argument("directory", type=Path, help="the folder to create (absent or empty)")
    args = parser.parse_args(argv)
    try:
        directory = save_folder(args.checkpoint, args.directory)
    except (AFMAError, PretrainedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {args.directory} cannot be written ({error.strerror or error}); free space or choose another "
              f"folder", file=sys.stderr)
        return 2
    print(f"wrote {directory}/config.json and model.safetensors; load it with "
          f"SegmentationModel.from_pretrained({str(directory)!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
