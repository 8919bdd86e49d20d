"""Segmentation scores: a confusion matrix for IoU / mIoU / accuracy, and small-object scores.

Conventions shared by everything here (docs/METHOD.md §6, utils/labels.py):
- the LAST class is the unlabelled/background channel; it is counted in the confusion matrix (a pixel of
  it predicted as class c is a false positive of c) but it gets no score of its own and is left out of
  every mean;
- pixels whose target is outside [0, C) (e.g. 255) are ignored entirely.

A class whose TP + FP + FN is 0 over the whole split (absent from both target and prediction) has an
undefined IoU: it is reported as NaN and left out of mIoU (a NaN-excluded mean), so a split that simply
does not contain a class is neither rewarded (IoU 1) nor punished (IoU 0) for it.

Two protocols are computed from the one confusion matrix (ConfusionMatrix.scores):
- the authors' protocol (scores_from_confusion; the one the tables and model selection use): every pixel
  of [0, C) counts, so a pixel labelled void that the model calls c is a false positive of c;
- void ignored (void_ignored_scores; the official Cityscapes evaluation and SegNet's CamVid protocol):
  pixels labelled void do not count at all, while a labelled pixel predicted void is still a miss (a false
  negative of its class), as the Cityscapes script counts void predictions as wrong.
A split without a single labelled pixel (every target void or ignored, e.g. Cityscapes' public test set)
has no scores: both protocols report NaN and the flag no_labels.
"""

import math

import cv2
import numpy as np
import torch
import torch.distributed as dist

from utils.labels import void_index


def confusion_counts(target, pred, num_classes, per_image=False):
    """int64 (C, C) confusion counts of integer maps (rows target, columns prediction), on their device; with
    `per_image`, (B, C, C): one matrix per image of a (B, H, W) batch.

    Targets outside [0, C) are ignored, and so is a prediction outside [0, C) (impossible for an argmax) rather
    than being counted in another class's bin. Ignored pixels are sent to one extra bin (instead of boolean
    indexing, whose data-dependent output size would force a device-to-host sync) and that bin is dropped.
    The bins are an index_add_ into a fixed-size tensor: torch.bincount itself reads the largest index back to
    the host on CUDA to size its output.
    """
    c = num_classes
    target, pred = target.long(), pred.long()
    images = len(target) if per_image else 1
    valid = (target >= 0) & (target < c) & (pred >= 0) & (pred < c)
    index = target * c + pred
    if per_image:  # the image as a third coordinate
        index = index + c * c * torch.arange(images, device=index.device).view(-1, *([1] * (index.dim() - 1)))
    index = torch.where(valid, index, images * c * c).flatten()
    counts = torch.zeros(images * c * c + 1, dtype=torch.int64, device=index.device)
    counts.index_add_(0, index, torch.ones((), dtype=torch.int64, device=index.device).expand_as(index))
    counts = counts[: images * c * c].view(images, c, c)
    return counts if per_image else counts[0]


class ConfusionMatrix:
    """Pixel confusion matrix accumulated on the device; rows are targets, columns predictions."""

    def __init__(self, num_classes, device="cpu"):
        self.num_classes = num_classes
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)

    def update(self, target, pred):
        """Add a batch of (B, H, W) integer maps (confusion_counts)."""
        self.mat += confusion_counts(target, pred, self.num_classes)

    def reset(self):
        self.mat.zero_()

    def all_reduce(self):
        """Sum the matrices of all processes so every rank scores the whole split."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.mat)

    def compute(self):
        return scores_from_confusion(self.mat)

    def scores(self, class_names):
        """The split's scores as reported, under both protocols.

        class_names: the scored names, all but the last (void) one, in class order.
        Returns the authors' protocol as miou, global_iou, accuracy, per_class_iou (name -> IoU, NaN where
        undefined); "void_ignored": the same four under the void-ignored protocol (void_ignored_scores);
        labelled_pixels: pixels whose target is a class other than void; no_labels: labelled_pixels == 0,
        in which case every score of both protocols is NaN (null in metrics.json), not 0;
        confusion_matrix: the (C, C) counts, rows target, columns prediction.
        """
        mat = self.mat.cpu()
        labelled = labelled_pixels(mat)
        no_labels = labelled == 0
        return {
            **_reported(scores_from_confusion(mat), class_names, no_labels),
            "void_ignored": _reported(void_ignored_scores(mat), class_names, no_labels),
            "labelled_pixels": labelled,
            "no_labels": no_labels,
            "confusion_matrix": mat.tolist(),
        }


def _reported(scores, class_names, no_labels):
    """The reported keys of one protocol's scores; all NaN when the split has no labelled pixel."""
    ious = [math.nan] * len(class_names) if no_labels else scores["per_class_iou"]
    reported = {key: math.nan if no_labels else scores[key] for key in ("miou", "global_iou", "accuracy")}
    return {**reported, "per_class_iou": dict(zip(class_names, ious))}


def labelled_pixels(mat):
    """Pixels whose target is one of the first C-1 classes (not void): the sum of all rows but the last."""
    mat = torch.as_tensor(mat)
    return int(mat[: void_index(len(mat))].sum().item())


def void_ignored_scores(mat):
    """Scores of a (C, C) confusion matrix under the void-ignored protocol (Cityscapes / SegNet evaluation).

    The void row (pixels whose target is the last class) is dropped, i.e. set to 0, and the result is scored
    exactly as scores_from_confusion does. The void column is kept. So, for a scored class c, with M the
    matrix and v = C - 1:
      TP_c = M[c, c];  FP_c = sum over non-void targets r != c of M[r, c] (a void pixel predicted c is
      not counted);  FN_c = sum over predictions p != c of M[c, p], p = v included (a pixel of c predicted
      void is a miss);  TN_c = N' - TP_c - FP_c - FN_c with N' = labelled pixels (all rows but the void one);
      IoU_c = TP_c / (TP_c + FP_c + FN_c), NaN where that is 0; miou the NaN-excluded mean of those;
      global_iou = sum TP / (sum TP + sum FP + sum FN) over the scored classes;
      accuracy = mean over the scored classes of (TP_c + TN_c) / N' -- the same formula as the authors'
      protocol, on the matrix without the void row (NaN when N' = 0).
    """
    mat = torch.as_tensor(mat).detach().cpu().clone()
    mat[void_index(len(mat))] = 0
    return scores_from_confusion(mat)


def scores_from_confusion(mat):
    """Scores of a (C, C) confusion matrix (rows target, columns prediction) under the authors' protocol,
    docs/METHOD.md §6: every pixel counts, so a void pixel (last row) predicted as c is a false positive of c,
    and a pixel of c predicted void (last column) a false negative of c.

    Returns tp, fp, fn, tn: float64 CPU tensors of length C (every class, the last included);
    per_class_iou: list of C-1 floats, IoU_c = TP / (TP + FP + FN), NaN where TP + FP + FN = 0;
    miou: NaN-excluded mean of per_class_iou (NaN if every class is NaN);
    global_iou: sum TP / (sum TP + sum FP + sum FN) over the first C-1 classes;
    accuracy: mean over the first C-1 classes of (TP + TN) / (TP + TN + FP + FN).
    """
    mat = torch.as_tensor(mat).detach().cpu().double()
    tp = mat.diag()
    fp = mat.sum(0) - tp
    fn = mat.sum(1) - tp
    tn = mat.sum() - tp - fp - fn
    k = slice(0, void_index(len(mat)))  # the scored classes
    iou = tp[k] / (tp[k] + fp[k] + fn[k])  # 0 / 0 -> NaN for absent classes
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "per_class_iou": iou.tolist(),
        "miou": iou.nanmean().item(),
        "global_iou": _ratio(tp[k].sum(), (tp[k] + fp[k] + fn[k]).sum()),
        "accuracy": ((tp[k] + tn[k]) / mat.sum()).mean().item(),
    }


def _ratio(num, den):
    return (num / den).item() if den > 0 else math.nan


SMALL_AREA = 32 * 32
LARGE_AREA = 96 * 96
BUCKETS = ("small", "medium", "large")


class SmallObjectMeter:
    """Object-level scores by object size, to test the claim that AFMA helps small objects.

    Definitions (per class c, the last class excluded when ignore_last):
    - object: an 8-connected component of the ground truth of class c in one image, at the evaluation
      resolution; its area A is its pixel count. Bucket (COCO): small A < 32*32, medium 32*32 <= A < 96*96,
      large A >= 96*96.
    - matched prediction P' of an object G: the union of the 8-connected components of (pred == c) that
      share at least one pixel with G. So a false-positive blob attached to the object counts against it,
      while unrelated false positives elsewhere in the image do not.
    - object IoU = |G & P'| / |G | P'|; the object is detected when object IoU >= 0.5 (exactly 0.5 counts).
    - recall50[bucket][c] = detected objects / objects of c in that bucket (None without objects).
    - small_iou[c] = sum |G & P'| / sum |G | P'| pooled over all small objects of c (None without any).
    - mean_recall50[bucket], mean_small_iou: plain means over the classes that have objects there (None
      when no class has).
    Pixels whose target is outside [0, C) are ignored (their prediction is treated as no class), as in
    ConfusionMatrix.
    """

    def __init__(self, num_classes, class_names, ignore_last=True):
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.scored = void_index(num_classes) if ignore_last else num_classes  # classes 0 .. scored-1
        self.reset()

    def reset(self):
        self.counts = np.zeros((len(BUCKETS), self.scored), dtype=np.int64)
        self.hits = np.zeros((len(BUCKETS), self.scored), dtype=np.int64)
        self.small_inter = np.zeros(self.scored, dtype=np.int64)
        self.small_union = np.zeros(self.scored, dtype=np.int64)

    def update(self, target, pred):
        """Add a batch of (B, H, W) (or one (H, W)) integer maps, numpy arrays or tensors."""
        target, pred = _to_numpy(target), _to_numpy(pred)
        pred = np.where((target >= 0) & (target < self.num_classes), pred, -1)
        for t, p in zip(target.reshape(-1, *target.shape[-2:]), pred.reshape(-1, *pred.shape[-2:])):
            for c in range(self.scored):
                if (t == c).any():
                    self._add_objects(c, *object_overlaps(t == c, p == c))

    def all_reduce(self):
        """Sum the counters over all processes (each rank scored its own shard of the images)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        state = [self.counts, self.hits, self.small_inter, self.small_union]
        flat = torch.from_numpy(np.concatenate([a.ravel() for a in state]))
        if torch.distributed.get_backend() == "nccl":  # NCCL reduces GPU tensors only
            flat = flat.cuda()
        torch.distributed.all_reduce(flat)
        flat = flat.cpu().numpy()
        offset = 0
        for array in state:
            array.ravel()[:] = flat[offset: offset + array.size]
            offset += array.size

    def _add_objects(self, c, area, inter, union):
        bucket = np.digitize(area, [SMALL_AREA, LARGE_AREA])
        detected = 2 * inter >= union  # IoU >= 0.5 in integers, so 0.5 exactly is not lost to rounding
        self.counts[:, c] += np.bincount(bucket, minlength=len(BUCKETS))
        self.hits[:, c] += np.bincount(bucket[detected], minlength=len(BUCKETS))
        small = bucket == 0
        self.small_inter[c] += inter[small].sum()
        self.small_union[c] += union[small].sum()

    def compute(self):
        names = self.class_names[: self.scored]
        recall = {b: {n: _safe_div(self.hits[i, c], self.counts[i, c]) for c, n in enumerate(names)}
                  for i, b in enumerate(BUCKETS)}
        small_iou = {n: _safe_div(self.small_inter[c], self.small_union[c]) for c, n in enumerate(names)}
        return {
            "recall50": recall,
            "small_iou": small_iou,
            "counts": {b: {n: int(self.counts[i, c]) for c, n in enumerate(names)}
                       for i, b in enumerate(BUCKETS)},
            "mean_recall50": {b: _mean_defined(recall[b].values()) for b in BUCKETS},
            "mean_small_iou": _mean_defined(small_iou.values()),
        }


def object_overlaps(gt, pred):
    """Per ground-truth object of a binary mask: (area, |G & P'|, |G | P'|), int64 arrays.

    P' is the union of the predicted components touching the object (see SmallObjectMeter). Every
    predicted pixel inside G belongs to such a component, so |G & P'| = |G & pred|; |P'| is the summed
    area of the distinct (object, predicted component) pairs that share a pixel.
    """
    n_gt, gt_lab, stats, _ = cv2.connectedComponentsWithStats(gt.astype(np.uint8), connectivity=8)
    n_pr, pr_lab = cv2.connectedComponents(pred.astype(np.uint8), connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    inter = np.bincount(gt_lab[pred], minlength=n_gt)[1:]
    pr_area = np.bincount(pr_lab.ravel(), minlength=n_pr)
    touching = (gt_lab > 0) & (pr_lab > 0)
    pairs = np.unique(gt_lab[touching].astype(np.int64) * n_pr + pr_lab[touching])
    matched = np.bincount(pairs // n_pr, weights=pr_area[pairs % n_pr], minlength=n_gt)[1:]
    return area, inter, area + matched.astype(np.int64) - inter


def _to_numpy(x):
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _safe_div(num, den):
    return float(num) / float(den) if den > 0 else None


def _mean_defined(values):
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None
