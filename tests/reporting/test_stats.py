import math

import numpy as np
import pytest

from utils.metrics import scores_from_confusion, void_ignored_scores
from utils.reporting import stats


def _random_mats(rng, seeds, images, classes, absent=None):
    mats = rng.integers(0, 50, size=(seeds, images, classes, classes)).astype(np.int64)
    if absent is not None:  # a class no image contains and no model predicts: IoU undefined everywhere
        mats[..., absent, :] = 0
        mats[..., :, absent] = 0
    return mats


def _literal_iou(mat, c, void_ignored):
    """IoU of class c from one (C, C) matrix, element by element."""
    rows = range(len(mat) - 1) if void_ignored else range(len(mat))
    tp = mat[c][c]
    fp = sum(mat[r][c] for r in rows if r != c)
    fn = sum(mat[c][p] for p in range(len(mat)) if p != c)
    return tp / (tp + fp + fn) if tp + fp + fn > 0 else math.nan


def _literal_bootstrap(baseline, afma, resamples, seed, level):
    """Nested loops over resamples, seeds, drawn images and classes, with the same draws as the module."""
    s, n, c, _ = baseline.shape
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    keys = ("per_class_iou", "void_ignored_per_class_iou", "miou", "void_ignored_miou")
    boot = {key: [] for key in keys}
    for r in range(resamples):
        per_seed = {key: [] for key in keys}
        for k in range(s):
            summed = {"b": np.zeros((c, c)), "a": np.zeros((c, c))}
            for i in idx[r]:
                summed["b"] += baseline[k, i]
                summed["a"] += afma[k, i]
            for void_ignored, prefix in ((False, ""), (True, "void_ignored_")):
                ious = {m: [_literal_iou(summed[m], cls, void_ignored) for cls in range(c - 1)] for m in "ba"}
                per_seed[prefix + "per_class_iou"].append([a - b for a, b in zip(ious["a"], ious["b"])])
                score = void_ignored_scores if void_ignored else scores_from_confusion
                per_seed[prefix + "miou"].append(score(summed["a"])["miou"] - score(summed["b"])["miou"])
        for key in keys:
            boot[key].append(np.nanmean(np.array(per_seed[key], dtype=np.float64), axis=0))
    tail = 100 * (1 - level) / 2
    return {key: np.nanpercentile(np.array(boot[key]), [tail, 100 - tail], axis=0) for key in keys}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the literal side's all-NaN absent class
@pytest.mark.parametrize("seeds", [1, 3])
def test_paired_bootstrap_matches_a_literal_computation(seeds):
    rng = np.random.default_rng(7)
    baseline = _random_mats(rng, seeds, 6, 4, absent=1)
    afma = _random_mats(rng, seeds, 6, 4, absent=1)
    got = stats.paired_bootstrap(baseline, afma, resamples=40, seed=3)
    want = _literal_bootstrap(baseline, afma, resamples=40, seed=3, level=0.95)
    for key, (low, high) in want.items():
        np.testing.assert_allclose(got[key]["low"], low, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(got[key]["high"], high, rtol=1e-12, equal_nan=True)
    # the point estimate: the difference on all images, averaged over the seeds, as utils.metrics scores it
    for key, score in (("miou", scores_from_confusion), ("void_ignored_miou", void_ignored_scores)):
        diff = np.mean([score(afma[k].sum(0))["miou"] - score(baseline[k].sum(0))["miou"] for k in range(seeds)])
        assert got[key]["diff"] == pytest.approx(diff, rel=1e-12)
    assert math.isnan(got["per_class_iou"]["diff"][1]) and math.isnan(got["per_class_iou"]["low"][1])
    assert (got["resamples"], got["seed"], got["level"], got["seeds"], got["images"]) == (40, 3, 0.95, seeds, 6)


def test_class_ious_match_utils_metrics_on_stacked_matrices():
    mats = _random_mats(np.random.default_rng(1), 2, 3, 5, absent=2)
    got = stats.scores(mats)
    for k in range(2):
        for i in range(3):
            for key, score in (("", scores_from_confusion), ("void_ignored_", void_ignored_scores)):
                want = score(mats[k, i])
                np.testing.assert_allclose(got[key + "per_class_iou"][k, i], want["per_class_iou"], equal_nan=True)
                assert got[key + "miou"][k, i] == pytest.approx(want["miou"], rel=1e-12)


def test_resample_counts_draw_every_image_n_times_in_total_and_repeat_with_the_seed():
    counts = stats.resample_counts(5, resamples=300, seed=4)
    assert counts.shape == (300, 5) and (counts.sum(1) == 5).all()
    assert (counts == stats.resample_counts(5, resamples=300, seed=4)).all()
    assert not (counts == stats.resample_counts(5, resamples=300, seed=5)).all()
    assert (counts.max(1) > 1).any()  # with replacement


def test_identical_models_differ_by_exactly_zero_with_an_interval_of_zero_width():
    mats = _random_mats(np.random.default_rng(2), 2, 8, 4)
    got = stats.paired_bootstrap(mats, mats.copy(), resamples=200)
    for key in ("miou", "void_ignored_miou"):
        assert got[key] == {"diff": 0.0, "low": 0.0, "high": 0.0}
        assert not stats.excludes_zero(got[key])
    assert got["per_class_iou"]["low"] == [0.0] * 3 == got["per_class_iou"]["high"]


def test_a_model_better_on_every_image_has_an_interval_above_zero():
    rng = np.random.default_rng(3)
    baseline = _random_mats(rng, 2, 10, 4)
    afma = baseline.copy()
    for c in range(4):  # move some of every image's errors onto the diagonal
        afma[..., c, c] += baseline[..., c, (c + 1) % 4] // 2
        afma[..., c, (c + 1) % 4] -= baseline[..., c, (c + 1) % 4] // 2
    got = stats.paired_bootstrap(baseline, afma, resamples=300)
    for key in ("miou", "void_ignored_miou"):
        assert 0 < got[key]["low"] <= got[key]["diff"] <= got[key]["high"]
        assert stats.excludes_zero(got[key])
    assert all(low > 0 for low in got["per_class_iou"]["low"])
    worse = stats.paired_bootstrap(afma, baseline, resamples=300)  # the other way round: below 0
    assert worse["miou"]["high"] < 0 and stats.excludes_zero(worse["miou"])


def test_mismatched_pairs_are_refused():
    mats = np.zeros((2, 3, 4, 4), dtype=np.int64)
    with pytest.raises(ValueError, match="one shape"):
        stats.paired_bootstrap(mats, mats[:, :2])


def test_mean_std_over_seeds():
    assert stats.mean_std([0.5, 0.7, 0.6]) == pytest.approx((0.6, 0.1))
    mean, std = stats.mean_std([0.4, None, math.nan])
    assert mean == 0.4 and math.isnan(std)
    assert all(math.isnan(v) for v in stats.mean_std([None]))
