"""How sure a difference between two models is: a paired bootstrap over test images, pooled over seeds.

Input: per-image confusion matrices, shape (S, N, C, C) (seeds, test images in dataset order, rows target,
columns prediction, the last class void; utils/metrics.py) for the baseline and for AFMA, trained with the
same S seeds and scored on the same N images. One bootstrap resample draws N image indices with
replacement; the SAME draw is used for both models and for every seed (the images are one test set), so
the pairing removes the spread that comes from which images happen to be hard. For each resample and seed
the scores are recomputed from the summed matrices of the drawn images (exactly the scores of
utils/metrics.py, both protocols), the difference AFMA - baseline is taken per seed and averaged over the
seeds; the 95 % interval is the 2.5 and 97.5 percentiles of that average over the resamples (percentile
bootstrap). A draw is stored as counts (how often each image was drawn), so every resampled matrix of
every seed is one matrix product counts @ matrices.
"""

import math

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95


def class_ious(mats, void_ignored=False):
    """Per-class IoU of (..., C, C) confusion matrices, shape (..., C-1), NaN where TP + FP + FN = 0.

    The authors' protocol of utils.metrics.scores_from_confusion, or with void_ignored the void row
    dropped first (utils.metrics.void_ignored_scores), on any number of leading axes at once.
    """
    mats = np.array(mats, dtype=np.float64)
    if void_ignored:
        mats[..., -1, :] = 0
    tp = np.diagonal(mats, axis1=-2, axis2=-1)
    union = mats.sum(-2) + mats.sum(-1) - tp  # TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return (tp / union)[..., :-1]


def nanmean(x, axis=-1):
    """Mean leaving NaN out; NaN (no warning) where every value is NaN, as utils.metrics' mIoU does."""
    x = np.asarray(x, dtype=np.float64)
    defined = ~np.isnan(x)
    n = defined.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(defined, x, 0).sum(axis) / n, np.nan)


def scores(mats):
    """{"miou", "void_ignored_miou", "per_class_iou", "void_ignored_per_class_iou"} of (..., C, C) mats."""
    out = {}
    for prefix, void_ignored in (("", False), ("void_ignored_", True)):
        ious = class_ious(mats, void_ignored)
        out[prefix + "per_class_iou"] = ious
        out[prefix + "miou"] = nanmean(ious)
    return out


def resample_counts(n_images, resamples=RESAMPLES, seed=SEED):
    """(resamples, n_images) int64: how often each image is drawn in each resample of n_images draws with
    replacement; a fixed numpy Generator seed so the same command gives the same interval."""
    if n_images < 1:
        raise ValueError("the bootstrap needs at least one test image")
    idx = np.random.default_rng(seed).integers(0, n_images, size=(resamples, n_images))
    flat = (idx + n_images * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_images).reshape(resamples, n_images)


def paired_bootstrap(baseline, afma, resamples=RESAMPLES, seed=SEED, level=LEVEL):
    """The paired difference AFMA - baseline of every score, with its bootstrap interval.

    baseline, afma: per-image confusion matrices, (S, N, C, C) or (N, C, C) for one seed; seed s of one
    model is paired with seed s of the other and image n with image n.
    Returns {score: {"diff", "low", "high"}} for "miou" and "void_ignored_miou" (floats) and for
    "per_class_iou" and "void_ignored_per_class_iou" (lists of C-1 floats): diff is the difference on the
    whole test set averaged over the seeds, low/high the percentile interval; NaN where a score is
    undefined. Plus "resamples", "seed", "level", "seeds", "images" so a table can say how it was made.
    """
    baseline, afma = (np.asarray(m, dtype=np.float64) for m in (baseline, afma))
    if baseline.ndim == 3:
        baseline, afma = baseline[None], afma[None]
    if baseline.shape != afma.shape or baseline.ndim != 4 or baseline.shape[-1] != baseline.shape[-2]:
        raise ValueError(f"paired confusion matrices must have one shape (S, N, C, C); got "
                         f"{baseline.shape} and {afma.shape}")
    s, n, c, _ = baseline.shape
    counts = resample_counts(n, resamples, seed).astype(np.float64)

    def resampled(mats):  # (S, N, C, C) -> (R, S, C, C): the summed matrices of every resample and seed
        return np.einsum("rn,snk->rsk", counts, mats.reshape(s, n, c * c)).reshape(resamples, s, c, c)

    full_base, full_afma = scores(baseline.sum(1)), scores(afma.sum(1))
    boot_base, boot_afma = scores(resampled(baseline)), scores(resampled(afma))
    tail = 100 * (1 - level) / 2
    out = {}
    for key in full_base:
        diff = nanmean(full_afma[key] - full_base[key], axis=0)
        boot = nanmean(boot_afma[key] - boot_base[key], axis=1)  # (R, ...): mean over the seeds
        low, high = _nanpercentile(boot, [tail, 100 - tail])
        out[key] = {"diff": _plain(diff), "low": _plain(low), "high": _plain(high)}
    return {**out, "resamples": resamples, "seed": seed, "level": level, "seeds": s, "images": n}


def _nanpercentile(x, q):
    """np.nanpercentile along the resamples, NaN without a warning where every resample is NaN."""
    flat = x.reshape(len(x), -1)
    defined = ~np.isnan(flat).all(0)
    out = np.full((len(q), flat.shape[1]), np.nan)
    if defined.any():
        out[:, defined] = np.nanpercentile(flat[:, defined], q, axis=0)
    return out.reshape((len(q),) + x.shape[1:])


def _plain(x):
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x.tolist()


def excludes_zero(entry):
    """Whether a {"low", "high"} interval lies strictly above or strictly below 0."""
    low, high = entry["low"], entry["high"]
    return not (math.isnan(low) or math.isnan(high)) and (low > 0 or high < 0)


def mean_std(values):
    """(mean, sample standard deviation) over seeds, NaN values left out; the std is NaN with < 2 values."""
    x = np.asarray([math.nan if v is None else v for v in values], dtype=np.float64)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan
