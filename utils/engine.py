"""One epoch of training, one pass of evaluation, and crash-safe checkpoints."""
from __future__ import annotations

import math
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .metrics import ConfusionMatrix, SmallObjectMeter

# Steps between the loss checks that need the host (progress bar, non-finite loss): each is a device sync.
CHECK_EVERY = 10


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and step."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, or of another model."""


# ----------------------------------------------------------------------------------------------- precision
def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """bf16 where the device has it (CPU, Ampere and later), else fp16 (which then needs a GradScaler)."""
    if not amp:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def to_device(images: torch.Tensor, targets: torch.Tensor, device: torch.device):
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
    return images, targets.to(device, non_blocking=True)


# ----------------------------------------------------------------------------------------------- training
def train_one_epoch(model, criterion, optimizer, loader, device, epoch, amp_dtype=None, scaler=None) -> float:
    """Train one epoch and return the mean loss over all ranks' batches.

    Losses stay on the device; every CHECK_EVERY steps (and at the end) they are read once, for the progress
    bar and to stop at the first non-finite one, before it can reach a checkpoint.
    """
    model.train()
    pending, total, count = [], 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch} train", leave=False, disable=not distributed.is_main(), dynamic_ncols=True)
    for step, (images, targets) in enumerate(bar, start=1):
        images, targets = to_device(images, targets, device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = model(images)
        loss = criterion(output, targets)  # in float32: the loss casts what it needs
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        pending.append(loss.detach())
        if step % CHECK_EVERY == 0 or step == len(loader):
            values = torch.stack(pending)
            _stop_if_not_finite(values, epoch, step - len(pending) + 1)
            total, count = total + values.sum().item(), count + len(values)
            pending = []
            bar.set_postfix(loss=f"{values[-1].item():.4f}")
    totals = distributed.all_reduce_sum(torch.tensor([total, count], dtype=torch.float64, device=device))
    return (totals[0] / totals[1]).item()


def _stop_if_not_finite(values: torch.Tensor, epoch: int, first_step: int) -> None:
    """Raise on every rank at once if any rank saw a non-finite loss, so that no rank waits for the others."""
    bad = (~torch.isfinite(values)).nonzero().flatten()
    flag = distributed.all_reduce_sum(torch.tensor([len(bad)], device=values.device))
    if flag.item() > 0:
        step = f"step {first_step + bad[0].item()}" if len(bad) else "a step of another rank"
        raise NonFiniteLoss(
            f"the training loss became non-finite at epoch {epoch}, {step}: stopped; the checkpoints of the last "
            f"good epoch are kept (try a lower --lr, or train without --amp)"
        )


# --------------------------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def evaluate(model, criterion, loader, device, class_names, amp_dtype=None, small_objects=False, desc="eval") -> dict:
    """Metrics of one split, summed over all ranks' shards: spec section 6, plus the loss.

    One confusion matrix on the device (bincount per batch, no host sync); with `small_objects` also the
    object-size scores, which need the maps on the host (so they run once at the end, not every epoch).
    """
    model.eval()
    confusion = ConfusionMatrix(len(class_names), device)
    meter = SmallObjectMeter(len(class_names), class_names) if small_objects else None
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not distributed.is_main(), dynamic_ncols=True):
        images, targets = to_device(images, targets, device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = model(images)
        loss_sum += torch.stack([criterion(output, targets).double() * len(images), loss_sum.new_tensor(len(images))])
        prediction = output[0].argmax(1)
        confusion.update(targets, prediction)
        if meter is not None:
            meter.update(targets, prediction)
    confusion.all_reduce()
    distributed.all_reduce_sum(loss_sum)
    scores = confusion.compute()
    result = {
        "miou": scores["miou"],
        "global_iou": scores["global_iou"],
        "accuracy": scores["accuracy"],
        "loss": (loss_sum[0] / loss_sum[1].clamp_min(1)).item(),
        "per_class_iou": dict(zip(class_names[:-1], scores["per_class_iou"])),
        "confusion_matrix": confusion.mat.cpu().tolist(),
    }
    if meter is not None:
        meter.all_reduce()
        result["small_objects"] = meter.compute()
    return result


# -------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict, path: Path) -> None:
    """Write to a temporary file beside `path`, then rename over it: a kill at any moment leaves the old file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load with weights_only=True (nothing but tensors and plain containers is unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist: give the path of a best.pt or last.pt written by main.py")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, wrong format, pickled objects refused by weights_only
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(error).__name__}): it is corrupt, truncated or not "
            f"written by main.py; use another checkpoint or train again"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by main.py (no model state and config in it)")
    return state


def check_compatible(state: dict, config: dict, path: Path) -> None:
    """Refuse a checkpoint of another architecture, encoder, depth, patch size or class list, naming both."""
    saved = state["config"]
    for key in ("arch", "encoder", "att_depth", "patch_size", "classes"):
        if saved.get(key) != config.get(key):
            raise CheckpointError(
                f"{path} holds a model with {key}={saved.get(key)!r}, but this run uses {key}={config.get(key)!r}: "
                f"use a checkpoint of the same model, or the same settings"
            )


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{path} does not fit this model ({first}); use a checkpoint of the same model") from None


# -------------------------------------------------------------------------------------------- randomness
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_augmentations(dataset, seed: int) -> None:
    """Albumentations keeps its own generators, untouched by the global seeds: seed them explicitly."""
    if getattr(dataset, "transform", None) is not None:
        dataset.transform.set_random_seed(seed % 2**32)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker start-up: torch seeds each worker from the loader's generator; derive the rest."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    seed_augmentations(torch.utils.data.get_worker_info().dataset, seed)


def rng_state() -> dict:
    """The random generators' states, as tensors only (so that the checkpoint loads with weights_only)."""
    version, internal, gauss = random.getstate()
    _, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": torch.tensor([version, *internal], dtype=torch.int64),
        "python_gauss": torch.tensor([math.nan if gauss is None else gauss], dtype=torch.float64),
        "numpy": torch.tensor([*keys.tolist(), position, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([cached], dtype=torch.float64),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, *internal = state["python"].tolist()
    gauss = state["python_gauss"].item()
    random.setstate((version, tuple(internal), None if math.isnan(gauss) else gauss))
    *keys, position, has_gauss = state["numpy"].tolist()
    np.random.set_state(("MT19937", np.array(keys, dtype=np.uint32), position, has_gauss, state["numpy_gauss"].item()))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
