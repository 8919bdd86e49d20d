"""One pass of evaluation over a split: the confusion matrix, the loss and, once, the object-size scores."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from utils.engine import distributed
from utils.files import write_atomic
from utils.labels import scored_classes
from utils.metrics import ConfusionMatrix, SmallObjectMeter

PER_IMAGE_FILE = "per_image_confusion.npz"  # beside metrics.json: split name -> (N, C, C) int64 counts


@torch.inference_mode()
def evaluate(model, criterion, loader, normalizer, class_names, amp_dtype=None, small_objects=False, per_image=False,
             desc="eval") -> dict:
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
    device = normalizer.device
    confusion = ConfusionMatrix(len(class_names), device)
    meter = SmallObjectMeter(len(class_names), class_names) if small_objects else None
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    per_image_mats = []
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not distributed.is_main(), dynamic_ncols=True):
        images, targets = normalizer(images), targets.to(device, non_blocking=True).long()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = model(images)
            loss = criterion(output, targets)
        loss_sum += torch.stack([loss.double() * len(images), loss_sum.new_tensor(len(images))])
        prediction = output[0].argmax(1)
        confusion.update(targets, prediction)
        if per_image:
            per_image_mats.append(image_confusions(targets, prediction, len(class_names)))
        if meter is not None:
            meter.update(targets, prediction)
    confusion.all_reduce()
    distributed.all_reduce_sum(loss_sum)
    result = {**confusion.scores(scored_classes(class_names)), "loss": (loss_sum[0] / loss_sum[1].clamp_min(1)).item()}
    if result["no_labels"] and distributed.is_main():
        print(f"warning: {desc}: the split has no labelled pixels (every target is void or ignored): no scores",
              file=sys.stderr, flush=True)
    if meter is not None:
        meter.all_reduce()
        result["small_objects"] = meter.compute()
    if per_image:
        c = len(class_names)
        local = torch.cat(per_image_mats) if per_image_mats else torch.zeros((0, c, c), dtype=torch.int64, device=device)
        result["per_image_confusion"] = gather_shards(local).cpu().numpy()
    return result


def image_confusions(target, pred, num_classes):
    """(B, C, C) int64 confusion counts of each image of a (B, H, W) batch, on its device without a host sync.

    The same counts as ConfusionMatrix.update (targets or predictions outside [0, C) ignored, sent to one
    extra bin that is dropped), with the image's index as a third coordinate.
    """
    c, b = num_classes, len(target)
    target, pred = target.long(), pred.long()
    valid = (target >= 0) & (target < c) & (pred >= 0) & (pred < c)
    image = torch.arange(b, device=target.device).view(-1, *([1] * (target.dim() - 1)))
    index = torch.where(valid, image * c * c + target * c + pred, b * c * c).flatten()
    counts = torch.zeros(b * c * c + 1, dtype=torch.int64, device=index.device)
    counts.index_add_(0, index, torch.ones((), dtype=torch.int64, device=index.device).expand_as(index))
    return counts[: b * c * c].view(b, c, c)


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
