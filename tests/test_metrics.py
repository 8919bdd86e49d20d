import json
import math

import numpy as np
import pytest
import torch

from utils.engine.evaluate import evaluate
from utils.engine.setup import Engine
from utils.files import write_json
from utils.metrics import ConfusionMatrix, SmallObjectMeter, labelled_pixels, object_overlaps, \
    scores_from_confusion, void_ignored_scores

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


# ---------------------------------------------------------------- the two protocols

ROAD = ["road", "car", "void"]  # the last class is void
ROAD_SCORED = ROAD[:-1]
HAND = [[5, 1, 2],
        [3, 4, 0],
        [1, 1, 3]]  # the matrix of test_scores_on_hand_computed_matrix


def matrix(mat):
    cm = ConfusionMatrix(len(mat))
    cm.mat = torch.tensor(mat, dtype=torch.int64)
    return cm


def scores_of(target, pred, names=ROAD):
    cm = ConfusionMatrix(len(names))
    cm.update(torch.tensor([target]), torch.tensor([pred]))
    return cm.scores(names[:-1])


def test_scores_keeps_the_existing_keys_and_adds_the_void_ignored_block():
    s = matrix(HAND).scores(ROAD_SCORED)
    authors = scores_from_confusion(torch.tensor(HAND))
    assert s["miou"] == authors["miou"] and s["global_iou"] == authors["global_iou"]
    assert s["accuracy"] == authors["accuracy"]
    assert s["per_class_iou"] == dict(zip(ROAD_SCORED, authors["per_class_iou"]))
    assert s["confusion_matrix"] == HAND
    assert set(s["void_ignored"]) == {"miou", "global_iou", "accuracy", "per_class_iou"}
    assert list(s["void_ignored"]["per_class_iou"]) == ROAD_SCORED  # the same name -> IoU shape
    assert s["labelled_pixels"] == 15  # rows road and car: 8 + 7
    assert s["no_labels"] is False


def test_void_ignored_scores_on_hand_computed_matrix():
    # the void row is dropped: [[5, 1, 2], [3, 4, 0], [0, 0, 0]], N' = 15 labelled pixels
    # road: TP 5, FP 3 (car row only), FN 1 + 2 (the 2 predicted void still count), TN 15 - 11 = 4
    # car:  TP 4, FP 1, FN 3, TN 15 - 8 = 7
    v = void_ignored_scores(torch.tensor(HAND))
    assert v["fp"][:2].tolist() == [3, 1]
    assert v["fn"][:2].tolist() == [3, 3]
    assert v["tn"][:2].tolist() == [4, 7]
    assert v["per_class_iou"] == pytest.approx([5 / 11, 4 / 8])
    assert v["miou"] == pytest.approx((5 / 11 + 0.5) / 2)
    assert v["global_iou"] == pytest.approx(9 / (9 + 4 + 6))
    # accuracy: the authors' formula, mean of (TP + TN) / N', on the matrix without the void row
    assert v["accuracy"] == pytest.approx(((5 + 4) / 15 + (4 + 7) / 15) / 2)
    s = matrix(HAND).scores(ROAD_SCORED)["void_ignored"]
    assert s["per_class_iou"] == {"road": pytest.approx(5 / 11), "car": pytest.approx(0.5)}
    assert s["miou"] == pytest.approx(v["miou"]) and s["accuracy"] == pytest.approx(v["accuracy"])
    assert labelled_pixels(torch.tensor(HAND)) == 15


def test_void_pixel_predicted_road_lowers_road_only_under_the_authors_protocol():
    target = [[0, 0, 1, 1]]
    exact = scores_of(target, target)
    assert exact["per_class_iou"]["road"] == 1.0 and exact["void_ignored"]["per_class_iou"]["road"] == 1.0
    # one void pixel more, which the model calls road
    s = scores_of([[0, 0, 1, 1, 2]], [[0, 0, 1, 1, 0]])
    assert s["per_class_iou"]["road"] == pytest.approx(2 / 3)  # a false positive of road
    assert s["miou"] == pytest.approx((2 / 3 + 1) / 2)
    assert s["void_ignored"]["per_class_iou"]["road"] == 1.0  # not counted at all
    assert s["void_ignored"]["miou"] == 1.0 and s["void_ignored"]["global_iou"] == 1.0
    assert s["void_ignored"]["accuracy"] == 1.0
    assert s["labelled_pixels"] == 4


def test_labelled_pixel_predicted_void_is_a_false_negative_under_both_protocols():
    s = scores_of([[0, 0, 0, 1]], [[0, 0, 2, 1]])  # one road pixel called void
    for protocol in (s, s["void_ignored"]):
        assert protocol["per_class_iou"]["road"] == pytest.approx(2 / 3)  # TP 2, FN 1
        assert protocol["per_class_iou"]["car"] == 1.0  # the void prediction is no false positive of car
        assert protocol["global_iou"] == pytest.approx(3 / 4)
    mat = torch.tensor(s["confusion_matrix"])
    assert mat[0, 2] == 1  # road pixel, void prediction
    for counts in (scores_from_confusion(mat), void_ignored_scores(mat)):
        assert counts["fn"][0] == 1 and counts["fp"][:2].tolist() == [0, 0]


def test_ignored_targets_count_in_neither_protocol():
    with_255 = scores_of([[0, 1, 255, 255]], [[0, 1, 1, 0]])
    without = scores_of([[0, 1]], [[0, 1]])
    assert with_255["labelled_pixels"] == 2
    for key in ("miou", "global_iou", "accuracy"):
        assert with_255[key] == without[key] == 1.0
        assert with_255["void_ignored"][key] == without["void_ignored"][key] == 1.0


def test_all_void_split_has_no_labels_and_nan_scores_not_zero(tmp_path):
    s = scores_of([[2, 2, 2, 255]], [[0, 1, 2, 0]])  # void everywhere, some of it called road or car
    assert s["no_labels"] is True and s["labelled_pixels"] == 0
    for protocol in (s, s["void_ignored"]):
        assert all(math.isnan(protocol[key]) for key in ("miou", "global_iou", "accuracy"))
        assert list(protocol["per_class_iou"]) == ROAD_SCORED
        assert all(math.isnan(v) for v in protocol["per_class_iou"].values())
    # without the flag the authors' formula would have said IoU 0 for road and car
    assert scores_from_confusion(torch.tensor(s["confusion_matrix"]))["miou"] == 0.0
    saved = json.loads(write_json(tmp_path / "metrics.json", s).read_text())
    assert saved["miou"] is None and saved["void_ignored"]["miou"] is None
    assert saved["per_class_iou"] == {"road": None, "car": None} and saved["no_labels"] is True


class Constant(torch.nn.Module):
    """A 'model' that predicts one class everywhere, with the (logits, ...) output AFMA models give."""

    def __init__(self, cls, num_classes):
        super().__init__()
        self.cls, self.num_classes = cls, num_classes

    def forward(self, images):
        logits = torch.zeros(images.shape[0], self.num_classes, *images.shape[2:])
        logits[:, self.cls] = 1.0
        return (logits,)


class Identity:
    device = torch.device("cpu")

    def __call__(self, images):
        return images


def run_evaluate(targets, desc, batch_sizes=None):
    """evaluate() of the constant road model under cross-entropy, over `targets` cut into batches."""
    batches = targets.split(batch_sizes or len(targets))
    loader = [(torch.zeros(len(t), 3, *t.shape[1:]), t) for t in batches]
    criterion = lambda output, target: torch.nn.functional.cross_entropy(output[0], target)  # noqa: E731
    return evaluate(Constant(0, 3), Engine(torch.device("cpu"), None, criterion, Identity(), None), loader, ROAD,
                    desc=desc)


# the constant model's logits are (1, 0, 0) everywhere: cross-entropy log(e + 2) - 1 on road, log(e + 2) elsewhere
CE_ROAD, CE_OTHER = math.log(math.e + 2) - 1, math.log(math.e + 2)


def test_evaluate_warns_once_on_a_split_without_labels(capsys):
    result = run_evaluate(torch.full((2, 4, 4), 2), desc="test")
    err = capsys.readouterr().err
    assert result["no_labels"] is True and math.isnan(result["miou"]) and math.isnan(result["void_ignored"]["miou"])
    assert result["loss"] == pytest.approx(CE_OTHER)  # the loss is still reported
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: test: the split has no labelled pixels (every target is void or ignored): no scores"]


def test_evaluate_does_not_warn_on_a_labelled_split(capsys):
    targets = torch.full((3, 4, 4), 2)
    targets[0, 0] = 0  # 4 road pixels in the first image, 44 void ones
    result = run_evaluate(targets, desc="val", batch_sizes=[1, 2])
    assert result["no_labels"] is False and result["labelled_pixels"] == 4
    assert result["per_class_iou"]["road"] == pytest.approx(4 / 48)  # 44 void pixels called road
    assert result["void_ignored"]["per_class_iou"]["road"] == 1.0
    # batches of 1 and 2 images: their losses weighted by size are the mean over all 48 pixels
    assert result["loss"] == pytest.approx((4 * CE_ROAD + 44 * CE_OTHER) / 48)
    assert "warning" not in capsys.readouterr().err


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
