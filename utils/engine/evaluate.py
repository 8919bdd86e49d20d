"""One pass of evaluation over a split: the confusion matrix, the loss and, once, the object-size scores."""
from __future__ import annotations

import sys

import torch
from tqdm import tqdm

from utils.engine import distributed
from utils.labels import scored_classes
from utils.metrics import ConfusionMatrix, SmallObjectMeter


@torch.inference_mode()
def evaluate(model, criterion, loader, normalizer, class_names, amp_dtype=None, small_objects=False, desc="eval") -> dict:
    """Metrics of one split, summed over all ranks' shards (docs/METHOD.md §6), plus the loss.

    One confusion matrix on the device (no host sync per batch); with `small_objects` also the object-size
    scores, which need the maps on the host (so they run once at the end, not every epoch). The loss is the
    mean of the batches' losses weighted by their sizes: under torchrun the batches differ, so it can differ
    from one process's in the 4th digit, while every confusion count, and so every IoU, is exact.

    The scores come under both protocols (ConfusionMatrix.scores: the authors' one, and "void_ignored"). A split
    without a labelled pixel (e.g. Cityscapes' public test set, all void) gets NaN scores and no_labels, and
    process 0 prints one warning line to stderr naming it (by `desc`).
    """
    model.eval()
    device = normalizer.device
    confusion = ConfusionMatrix(len(class_names), device)
    meter = SmallObjectMeter(len(class_names), class_names) if small_objects else None
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for images, targets in tqdm(loader, desc=desc, leave=False, disable=not distributed.is_main(), dynamic_ncols=True):
        images, targets = normalizer(images), targets.to(device, non_blocking=True).long()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            output = model(images)
            loss = criterion(output, targets)
        loss_sum += torch.stack([loss.double() * len(images), loss_sum.new_tensor(len(images))])
        prediction = output[0].argmax(1)
        confusion.update(targets, prediction)
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
    return result
