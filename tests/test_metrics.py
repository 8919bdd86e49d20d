import math

import numpy as np
import pytest
import torch

from utils.metrics import ConfusionMatrix, SmallObjectMeter, format_table, object_overlaps, \
    scores_from_confusion

NAMES = ["sky", "car", "unlabelled"]


# ---------------------------------------------------------------- confusion matrix

def slow_confusion(target, pred, c):
    mat = np.zeros((c, c), dtype=np.int64)
    for t, p in zip(target.flatten().tolist(), pred.flatten().tolist()):
        if 0 <= t < c:
            mat[t, p] += 1
    return mat


def test_update_matches_per_pixel_loop_with_ignored_targets():
    g = torch.Generator().manual_seed(0)
    c = 5
    cm = ConfusionMatrix(c)
    expected = np.zeros((c, c), dtype=np.int64)
    for _ in range(3):
        target = torch.randint(0, c, (2, 7, 9), generator=g)
        target[torch.rand(target.shape, generator=g) < 0.2] = 255
        target[0, 0, :3] = -1
        pred = torch.randint(0, c, (2, 7, 9), generator=g)
        cm.update(target, pred)
        expected += slow_confusion(target, pred, c)
    assert cm.mat.dtype == torch.int64
    np.testing.assert_array_equal(cm.mat.numpy(), expected)


def test_reset_and_all_reduce_without_distributed_is_noop():
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.ones(1, 2, 2, dtype=torch.long))
    cm.all_reduce()
    assert cm.mat[0, 1] == 4
    cm.reset()
    assert cm.mat.sum() == 0


def test_scores_on_hand_computed_matrix():
    # rows target, columns prediction; class 2 is the unlabelled one
    mat = torch.tensor([[5, 1, 2],
                        [3, 4, 0],
                        [1, 1, 3]])
    s = scores_from_confusion(mat)
    # sky: TP 5, FP 3+1, FN 1+2, TN 4+0+1+3 ; car: TP 4, FP 1+1, FN 3+0, TN 5+2+1+3
    assert s["tp"].tolist() == [5, 4, 3]
    assert s["fp"].tolist() == [4, 2, 2]
    assert s["fn"].tolist() == [3, 3, 2]
    assert s["tn"].tolist() == [8, 11, 13]
    assert s["per_class_iou"] == pytest.approx([5 / 12, 4 / 9])  # last class excluded
    assert s["miou"] == pytest.approx((5 / 12 + 4 / 9) / 2)
    assert s["global_iou"] == pytest.approx(9 / (9 + 6 + 6))
    assert s["accuracy"] == pytest.approx(((5 + 8) / 20 + (4 + 11) / 20) / 2)
    assert all(isinstance(s[k], float) for k in ("miou", "global_iou", "accuracy"))


def test_absent_class_is_nan_and_left_out_of_miou():
    mat = torch.tensor([[6, 0, 2],
                        [0, 0, 0],
                        [2, 0, 5]])  # class 1 never in target nor prediction
    s = scores_from_confusion(mat)
    assert s["per_class_iou"][0] == pytest.approx(0.6)
    assert math.isnan(s["per_class_iou"][1])
    assert s["miou"] == pytest.approx(0.6)
    assert s["global_iou"] == pytest.approx(0.6)
    # accuracy stays defined for the absent class: (TP + TN) / N = 15 / 15
    assert s["accuracy"] == pytest.approx((11 / 15 + 1.0) / 2)


def test_compute_matches_literal_per_class_computation():
    g = torch.Generator().manual_seed(1)
    c = 6
    target = torch.randint(0, c, (3, 11, 13), generator=g)
    pred = torch.where(torch.rand(target.shape, generator=g) < 0.6, target,
                       torch.randint(0, c, target.shape, generator=g))
    cm = ConfusionMatrix(c)
    cm.update(target, pred)
    s = cm.compute()
    ious, accs, tps, dens = [], [], 0, 0
    for k in range(c - 1):
        tp = ((target == k) & (pred == k)).sum().item()
        fp = ((target != k) & (pred == k)).sum().item()
        fn = ((target == k) & (pred != k)).sum().item()
        tn = ((target != k) & (pred != k)).sum().item()
        ious.append(tp / (tp + fp + fn))
        accs.append((tp + tn) / (tp + tn + fp + fn))
        tps, dens = tps + tp, dens + tp + fp + fn
    assert s["per_class_iou"] == pytest.approx(ious)
    assert s["miou"] == pytest.approx(np.mean(ious))
    assert s["global_iou"] == pytest.approx(tps / dens)
    assert s["accuracy"] == pytest.approx(np.mean(accs))


def test_format_table_has_split_columns_class_rows_and_summary():
    results = {
        "val": {"per_class_iou": {"sky": 0.9, "car": 0.5}, "miou": 0.7, "global_iou": 0.8,
                "accuracy": 0.95, "loss": 0.25},
        "test": {"per_class_iou": {"sky": 0.85, "car": float("nan")}, "miou": 0.85,
                 "global_iou": 0.75, "accuracy": 0.9},
    }
    lines = format_table(results, NAMES).splitlines()
    assert lines[0].split() == ["class", "val", "test"]
    rows = {line.rsplit(None, 2)[0]: line.split()[-2:] for line in lines if not line.startswith("-")}
    assert rows["sky"] == ["0.9000", "0.8500"]
    assert rows["car"] == ["0.5000", "-"]
    assert rows["mIoU"] == ["0.7000", "0.8500"]
    assert rows["global IoU"] == ["0.8000", "0.7500"]
    assert rows["mean accuracy"] == ["0.9500", "0.9000"]
    assert rows["loss"] == ["0.2500", "-"]
    assert "unlabelled" not in rows


def test_format_table_accepts_compute_output():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[[0, 1, 2]]]), torch.tensor([[[0, 1, 2]]]))
    table = format_table({"val": cm.compute()}, NAMES)
    assert "car" in table and "loss" not in table


# ---------------------------------------------------------------- small objects

def blank(h=200, w=200):
    return np.full((1, h, w), 2, dtype=np.int64)  # everything "unlabelled"


def scores(target, pred, names=NAMES):
    meter = SmallObjectMeter(len(names), names)
    meter.update(target, pred)
    return meter.compute()


def test_perfect_small_object_is_detected():
    t = blank()
    t[0, 10:20, 10:20] = 0
    s = scores(t, t.copy())
    assert s["counts"]["small"] == {"sky": 1, "car": 0}
    assert s["recall50"]["small"] == {"sky": 1.0, "car": None}
    assert s["recall50"]["medium"]["sky"] is None
    assert s["small_iou"]["sky"] == 1.0
    assert s["mean_recall50"] == {"small": 1.0, "medium": None, "large": None}
    assert s["mean_small_iou"] == 1.0


def test_half_predicted_object_sits_on_the_05_boundary():
    t = blank()
    t[0, 10:20, 10:20] = 0
    p = t.copy()
    p[0, 10:15, 10:20] = 2
    s = scores(t, p)
    assert s["small_iou"]["sky"] == 0.5
    assert s["recall50"]["small"]["sky"] == 1.0  # IoU exactly 0.5 counts as detected
    p[0, 15, 10] = 2  # one pixel less -> below 0.5
    assert scores(t, p)["recall50"]["small"]["sky"] == 0.0


def test_object_merged_with_large_false_positive_is_missed():
    t = blank()
    t[0, 10:20, 10:20] = 0
    p = t.copy()
    p[0, 10:20, 20:60] = 0  # attached false-positive blob, 4x the object
    p[0, 150:190, 150:190] = 0  # detached false positive: must not count
    s = scores(t, p)
    assert s["small_iou"]["sky"] == pytest.approx(100 / 500)
    assert s["recall50"]["small"]["sky"] == 0.0


def test_object_sizes_go_to_coco_buckets():
    t = blank(300, 300)
    t[0, 0:31, 0:33] = 0  # 1023 px: small
    t[0, 50:82, 0:32] = 1  # 1024 px: medium
    t[0, 150:250, 150:250] = 0  # 10000 px: large
    s = scores(t, t.copy())
    assert s["counts"] == {"small": {"sky": 1, "car": 0}, "medium": {"sky": 0, "car": 1},
                           "large": {"sky": 1, "car": 0}}
    assert s["recall50"]["large"] == {"sky": 1.0, "car": None}


def test_multiple_classes_images_and_tensors():
    t = np.concatenate([blank(), blank()])
    t[0, 10:20, 10:20] = 0  # sky, perfectly predicted
    t[0, 40:50, 40:50] = 1  # car, missed
    t[1, 60:64, 60:64] = 1  # car, perfectly predicted
    t[1, 100:102, 100:102] = 1  # car, diagonal neighbour of the one below: the same 8-connected object
    t[1, 102:104, 102:104] = 1
    p = t.copy()
    p[0, 40:50, 40:50] = 0
    s = scores(torch.from_numpy(t), torch.from_numpy(p))
    assert s["counts"]["small"] == {"sky": 1, "car": 3}
    assert s["recall50"]["small"] == {"sky": 1.0, "car": pytest.approx(2 / 3)}
    assert s["small_iou"]["car"] == pytest.approx((16 + 8) / (100 + 16 + 8))
    assert s["mean_recall50"]["small"] == pytest.approx((1 + 2 / 3) / 2)


def test_ignored_target_pixels_do_not_enlarge_the_prediction():
    t = blank()
    t[0, 10:20, 10:20] = 0
    t[0, 10:20, 20:60] = 255  # void
    p = np.full_like(t, 2)
    p[0, 10:20, 10:60] = 0
    assert scores(t, p)["small_iou"]["sky"] == 1.0


def test_last_class_is_scored_when_not_ignored():
    t = blank(50, 50)
    meter = SmallObjectMeter(3, NAMES, ignore_last=False)
    meter.update(t, t)
    assert meter.compute()["counts"]["medium"]["unlabelled"] == 1


def test_object_overlaps_vectorised_values():
    gt = np.zeros((12, 12), bool)
    gt[0:4, 0:4] = True  # object 1
    gt[8:12, 8:12] = True  # object 2
    pred = np.zeros_like(gt)
    pred[2:6, 2:6] = True  # touches object 1: inter 4, |P'| 16
    pred[8:10, 8:12] = True  # inside object 2: inter 8, |P'| 8
    area, inter, union = object_overlaps(gt, pred)
    assert area.tolist() == [16, 16]
    assert inter.tolist() == [4, 8]
    assert union.tolist() == [28, 16]
