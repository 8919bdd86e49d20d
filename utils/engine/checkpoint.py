"""Checkpoints: what best.pt and last.pt hold, when each is written (atomically), and loading them back.

- best.pt: the model's weights and its `ModelSpec` (enough to rebuild and feed it: `load_model`), the run's
  config, the epoch and its validation mIoU. Written whenever validation mIoU improves.
- last.pt: best.pt's fields plus everything a resume needs (optimizer, LR schedule, gradient scaler, history,
  best score, every rank's random generators). Written after the first epoch, after the last, and otherwise
  once `save_every` minutes have passed since the previous one (0: after every epoch), so that a 300 MB
  write does not stall every short epoch. A kill loses the epochs since the last write of last.pt.
When both are due, best.pt is written first, so that the pair is consistent at every instant (a SIGKILL between
any two writes included): last.pt never names a best epoch that best.pt does not hold.
Both load with `torch.load(..., weights_only=True)`: tensors and plain containers only.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from models import ModelSpec, build_model, check_spec
from utils.errors import CheckpointError
from utils.files import write_atomic
from utils.signals import deferred_stops


class CheckpointSaver:
    """The checkpoint policy of one run; the training loop calls `after_epoch` and nothing else."""

    def __init__(self, run_dir: Path, save_every_minutes: float = 5.0, enabled: bool = True, clock=time.monotonic):
        self.run_dir, self.interval, self.enabled, self.clock = Path(run_dir), save_every_minutes * 60, enabled, clock
        self.last_write = None
        self.last_epoch = None  # the epoch in last.pt, once this saver has written it

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    def after_epoch(self, epoch: int, final: bool, improved: bool, state: Callable[[], dict]) -> list[Path]:
        """Write what the policy asks for after `epoch`; `state()` builds last.pt's dict (only when needed)."""
        if not self.enabled:
            return []
        written = []
        due = final or self.last_write is None or self.clock() - self.last_write >= self.interval
        if not (improved or due):
            return written
        with deferred_stops():  # a Ctrl-C or SIGTERM waits until both files and last_epoch are up to date
            full = state()
            # best.pt before last.pt: last.pt records the best epoch, so it must never get ahead of best.pt. A kill
            # between the two leaves a best.pt newer than last.pt, which the resumed run writes again when it trains
            # that epoch again (the same weights on the CPU with a fixed seed); the other order lost the new best.
            if improved:
                best = {key: full[key] for key in ("model", "model_spec", "config", "epoch")}
                written.append(save(best | {"val_miou": full["history"][-1]["val_miou"]}, self.best_path))
            if due:
                written.append(save(full, self.last_path))
                self.last_write, self.last_epoch = self.clock(), epoch
        return written


def save(state: dict, path: Path) -> Path:
    """torch.save, atomically: a kill at any moment leaves the previous file intact; so does a failed write (a full
    disk: OSError 28, or torch's RuntimeError from its zip writer), which is one CheckpointError."""
    try:
        return write_atomic(path, lambda file: torch.save(state, file))
    except (OSError, RuntimeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path} cannot be written ({reason}): the checkpoints written before are kept; free "
                              f"space and continue with --resume {Path(path).parent}") from None


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load with weights_only=True (nothing but tensors and plain containers is unpickled)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder: give the best.pt or last.pt inside it")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: give the path of a best.pt or last.pt written by main.py")
    try:
        with deferred_stops():  # a Ctrl-C cut into the zip reader would be reported as a corrupt file
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, wrong format, pickled objects refused by weights_only
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(error).__name__}): it is corrupt, truncated or not "
            f"written by main.py; use another checkpoint or train again"
        ) from None
    if not isinstance(state, dict) or not {"model", "model_spec", "config"} <= set(state):
        raise CheckpointError(f"{path} is not a checkpoint written by this version of main.py (it has no model "
                              f"spec); train again, or evaluate it with the version that wrote it")
    return state


def checkpoint_spec(state: dict, path: Path) -> ModelSpec:
    try:
        spec = ModelSpec.from_dict(state["model_spec"])
        check_spec(spec)  # right keys, nonsense values (classes=0): a SettingError, a ValueError
        return spec
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} holds a model spec this version cannot read ({error})") from None


def load_model(path: Path, map_location="cpu") -> tuple[torch.nn.Module, dict]:
    """The model a checkpoint holds, rebuilt from its spec with its weights, and the checkpoint itself."""
    state = load_checkpoint(path, map_location)
    model = build_model(**checkpoint_spec(state, path).to_dict())
    load_model_state(model, state, path)
    return model, state


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not fit this model ({first}); use a checkpoint of the same model") from None
