"""Checkpoints: what best.pt and last.pt hold, when each is written (atomically), and loading them back.

- best.pt: the model's weights and its `ModelSpec` (enough to rebuild and feed it: `load_model`), the run's
  config, the epoch and its validation mIoU. Written whenever validation mIoU improves.
- last.pt: best.pt's fields plus everything a resume needs (optimizer, LR schedule, gradient scaler, history,
  best score, every rank's random generators) and what the run trained on (`trained_on`: a resume that differs
  is refused). Written after the first epoch, after the last, and otherwise
  once `save_every` minutes have passed since the previous one (0: after every epoch), so that a 300 MB
  write does not stall every short epoch. A kill loses the epochs since the last write of last.pt.
When both are due, best.pt is written first, so that the pair is consistent at every instant (a SIGKILL between
any two writes included): last.pt never names a best epoch that best.pt does not hold.
Both load with `torch.load(..., weights_only=True)`: tensors and plain containers only.

last.pt's fields are built by `training_state` and read back by `restore_training`, nowhere else; what a run
folder holds and how far its run got is utils/run_folder.py's `run_status`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models import ModelSpec, build_model, check_spec
from utils.fingerprint import data_changes, split_record
from utils.engine import distributed
from utils.engine.seeding import set_rng_state
from utils.errors import CheckpointError, WriteError
from utils.files import write_atomic
from utils.signals import deferred_stops


class CheckpointSaver:
    """The checkpoint policy of one run; the training loop calls `after_epoch` and nothing else."""

    def __init__(self, run_dir: Path, save_every_minutes: float, enabled: bool = True, clock=time.monotonic):
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
    except (OSError, RuntimeError) as error:  # a WriteError names the cause; a RuntimeError of torch's own, its line
        reason = error.reason if isinstance(error, WriteError) else str(error).strip().splitlines()[0]
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


# ------------------------------------------------------------------------------------ last.pt: the training state
def training_state(model, config, epoch: int, best_miou: float, best_epoch: int | None, optimizer, scheduler, scaler,
                   history: list, rngs: list, earlier: list, trained_on: dict) -> dict:
    """last.pt's dict (best.pt takes its model, model_spec, config and epoch)."""
    return {"model": model.state_dict(), "model_spec": config.model.to_dict(), "config": config.to_dict(),
            "epoch": epoch, "best_miou": best_miou, "best_epoch": best_epoch, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else {},
            "history": history, "rng": rngs, "earlier_metrics": earlier, "trained_on": trained_on}


@dataclass
class Progress:
    """Where a resumed run stands: the last epoch trained and the best so far."""
    epoch: int
    best_miou: float
    best_epoch: int | None
    history: list
    earlier: list  # the summaries of the run's earlier finishes (a finished run trained on: --epochs N)


def restore_training(state: dict, model, optimizer, scheduler, scaler, path: Path) -> Progress:
    """Load last.pt's `state` into the model, optimizer, schedule, scaler and this rank's random generators."""
    load_model_state(model, state, path)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][min(distributed.rank(), len(state["rng"]) - 1)])
    progress = Progress(state["epoch"], state["best_miou"], state.get("best_epoch"), state["history"],
                        state.get("earlier_metrics", []))
    return adopt_newer_best(progress, Path(path).parent / "best.pt")


def adopt_newer_best(progress: Progress, best_path: Path) -> Progress:
    """A kill between best.pt and last.pt leaves a best.pt of an epoch after last.pt's. Its epochs are trained
    again; on a non-deterministic GPU the re-run may score lower and not rewrite best.pt, so best.pt's score is
    the best so far: the run then keeps best.pt and names its epoch, whichever timeline it came from."""
    if not best_path.is_file():
        return progress
    best = load_checkpoint(best_path)
    if best["epoch"] <= progress.epoch:
        return progress
    if distributed.is_main():
        print(f"note: {best_path} holds epoch {best['epoch']}, after last.pt's epoch {progress.epoch} (stopped "
              f"between the two writes): epochs {progress.epoch + 1}..{best['epoch']} are trained again", flush=True)
    score = best.get("val_miou", math.nan)
    if math.isnan(score):  # a val split without labels: the re-trained epoch writes best.pt again
        return progress
    progress.best_miou, progress.best_epoch = score, best["epoch"]
    return progress


# ------------------------------------------------------------------------- what the run trained on, and changes
def trained_on(splits: dict, world_size: int, global_batch_size: int) -> dict:
    """What a run trains on, recorded in config.json and last.pt: a resume that differs is refused."""
    return {"data": {split: split_record(data) for split, data in splits.items()}, "world_size": world_size,
            "global_batch_size": global_batch_size}


def run_changes(recorded: dict, current: dict) -> list[str]:
    """What differs between a run's record (`trained_on`) and this resume's, in words; [] if nothing."""
    changes = data_changes(recorded.get("data", {}), current["data"])
    if (recorded["world_size"], recorded["global_batch_size"]) != (current["world_size"], current["global_batch_size"]):
        changes.append(f"{current['world_size']} processes (global batch {current['global_batch_size']}), the run was "
                       f"trained by {recorded['world_size']} (global batch {recorded['global_batch_size']})")
    return changes
