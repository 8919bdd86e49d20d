"""One pass of evaluation over a split: the confusion matrix, the loss and, once, the object-size scores."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from utils.engine import distributed
from utils.engine.setup import Engine
from utils.files import write_atomic
from utils.labels import scored_classes
from utils.metrics import ConfusionMatrix, SmallObjectMeter, confusion_counts

PER_IMAGE_FILE = "per_image_confusion.npz"  # beside metrics.json: split name -> (N, C, C) int64 counts


@torch.inference_mode()
def evaluate(model, engine: Engine, loader, class_names, small_objects=False, per_image=False, desc="eval") -> dict:
    """Metrics of one split, summed over all ranks' shards (docs/METHOD.md §6), plus the loss.

    One confusion matrix on the device (no host sync per batch); with `small_objects` also the object-size
    scores, which need the maps on the host (so they run once at the end, not every epoch). The loss is the
    mean of the batches' losses weighted by their sizes: under torchrun the batches differ, so it can differ
    from one process's in the 4th digit, while every confusion count, and so every IoU, is exact.

    The scores come under both protocols (ConfusionMatrix.scores: the authors' one, and "void_ignored"). A split
    without a labelled pixel (e.g. Cityscapes' public test set, all void) gets NaN scores and no_labels, and
    process 0 prints one warning line to stderr naming it (by `desc`).

    With `per_image` also "per_image_confusion": every image's (C, C) counts as an (N, C, C) int64 numpy array
    in dataset order (gathered from all ranks), so any score can be recomputed on any subset of the images
    and two models pair image by image (utils/reporting/stats.py). They stay on the device until the end.
    """
    model.eval()
    tally = Tally(class_names, engine.device, small_objects, per_image)
    for images, targets in distributed.progress(loader, desc):
        eval_step(model, engine, images, targets, tally)
    return tally.result(desc)


@torch.inference_mode()
def eval_step(model, engine: Engine, images, targets, tally: Tally) -> torch.Tensor:
    """One loader batch (uint8 images, class-index targets) through Engine.forward, its argmax prediction and
    loss added to `tally`. Returns the loss, left on the device."""
    output, loss, targets = engine.forward(model, images, targets)
    tally.add(loss, targets, output[0].argmax(1))
    return loss


class Tally:
    """What an evaluation sums over a split's batches: the confusion matrix and the size-weighted loss on the
    device, and optionally every image's confusion counts and the object-size scores."""

    def __init__(self, class_names, device, small_objects=False, per_image=False):
        self.class_names = list(class_names)
        self.confusion = ConfusionMatrix(len(class_names), device)
        self.loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # sum of loss x images, images
        self.meter = SmallObjectMeter(len(class_names), class_names) if small_objects else None
        self.per_image = [] if per_image else None

    def add(self, loss, targets, prediction) -> None:
        self.loss_sum += torch.stack([loss.double() * len(targets), self.loss_sum.new_tensor(len(targets))])
        if self.per_image is None:
            self.confusion.update(targets, prediction)
        else:  # the split's matrix is the sum of its images' ones: counted once
            self.per_image.append(confusion_counts(targets, prediction, len(self.class_names), per_image=True))
            self.confusion.mat += self.per_image[-1].sum(0)
        if self.meter is not None:
            self.meter.update(targets, prediction)

    def result(self, desc) -> dict:
        """The split's scores over every rank (process 0 warns on stderr when it has no labelled pixel)."""
        self.confusion.all_reduce()
        distributed.all_reduce_sum(self.loss_sum)
        loss = (self.loss_sum[0] / self.loss_sum[1].clamp_min(1)).item()
        result = {**self.confusion.scores(scored_classes(self.class_names)), "loss": loss}
        if result["no_labels"] and distributed.is_main():
            print(f"warning: {desc}: the split has no labelled pixels (every target is void or ignored): no scores",
                  file=sys.stderr, flush=True)
        if self.meter is not None:
            self.meter.all_reduce()
            result["small_objects"] = self.meter.compute()
        if self.per_image is not None:
            c = len(self.class_names)
            local = torch.cat([self.loss_sum.new_zeros((0, c, c), dtype=torch.int64), *self.per_image])
            result["per_image_confusion"] = gather_shards(local).cpu().numpy()
        return result


def gather_shards(local):
    """The whole split's per-image rows from every rank's shard, in dataset order.

    distributed.ShardSampler gives rank r the images r, r + W, r + 2W, ...; the shards differ in length by at
    most one, so each is padded to the longest for all_gather and the rows are interleaved back.
    """
    if not distributed.is_distributed():
        return local
    world = distributed.world_size()
    sizes = [torch.zeros(1, dtype=torch.int64, device=local.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([len(local)], dtype=torch.int64, device=local.device))
    sizes = [int(size.item()) for size in sizes]
    longest = max(sizes)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[: len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    whole = torch.empty((sum(sizes), *local.shape[1:]), dtype=local.dtype, device=local.device)
    for rank, (part, size) in enumerate(zip(parts, sizes)):
        whole[rank::world] = part[:size]
    return whole


def write_per_image(run_dir: Path, confusions: dict) -> Path:
    """Store each split's per-image confusion matrices in RUN/per_image_confusion.npz, atomically."""
    return write_atomic(Path(run_dir) / PER_IMAGE_FILE, lambda file: np.savez(file, **confusions))


def read_per_image(run_dir: Path, split: str = "test") -> np.ndarray:
    with np.load(Path(run_dir) / PER_IMAGE_FILE) as stored:
        return stored[split]
