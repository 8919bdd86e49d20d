"""No pixel the data does not hold is scored or trained on: padding is IGNORE_LABEL, which the confusion
matrix, the NLL and the gold AFMA leave out; CamVid frames of the wrong size are refused before any run."""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main
from models.afma import one_hot
from tests.conftest import FAST, SAMPLE
from utils.data.datasets import CamVid, DataError
from utils.data.transforms import build_transforms
from utils.labels import IGNORE_LABEL
from utils.losses import AFMALoss
from utils.metrics import ConfusionMatrix


def test_ignore_label_is_outside_every_class_range():
    from utils.data.datasets import DATASETS
    assert all(IGNORE_LABEL >= len(d.classes) for d in DATASETS.values())
    assert IGNORE_LABEL <= np.iinfo(np.uint8).max  # masks travel as uint8


@pytest.mark.parametrize("split", ["val", "test"])
def test_camvid_at_scale_quarter_scores_only_the_frame(split):
    """At --scale 0.25 the 180x240 frame is centre-cropped to 160x256: 8 columns each side are padding."""
    ds = CamVid(SAMPLE, split, build_transforms(CamVid, split, scale=0.25))
    _, mask = ds[0]
    assert mask.shape == (160, 256)
    padded = mask == IGNORE_LABEL
    assert padded[:, :8].all() and padded[:, -8:].all() and not padded[:, 8:-8].any()
    cm = ConfusionMatrix(ds.num_classes)
    cm.update(mask.long()[None], torch.zeros_like(mask, dtype=torch.long)[None])
    assert int(cm.mat.sum()) == 160 * 240  # the frame's pixels only; today's code counted padding as sky


def test_loss_leaves_padding_out_of_the_nll_and_the_gold_afma():
    """AFMALoss() by default: padding changes neither the NLL (float64, against the unpadded crop) nor its
    gradient, and its one-hot for the gold AFMA is all zeros."""
    torch.manual_seed(0)
    c, weights = 4, torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    logits = torch.randn(2, c, 6, 10, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, c, (2, 6, 10))
    target[..., -3:] = IGNORE_LABEL
    loss = AFMALoss(weights)((logits, None), target)
    # Literal weighted mean over the frame's pixels only.
    logp = F.log_softmax(logits[..., :-3], 1)
    picked = logp.gather(1, target[..., :-3].unsqueeze(1)).squeeze(1)
    w = weights[target[..., :-3]]
    assert torch.allclose(loss, -(w * picked).sum() / w.sum(), rtol=1e-12)
    loss.backward()
    assert logits.grad[..., -3:].abs().max() == 0
    assert one_hot(target, c)[..., -3:].abs().max() == 0


def write_small_copy(root, size=(480, 360)):
    """The sample's first frames resized to `size` (W, H), in the CamVid folder layout."""
    for split in ("train", "val", "test"):
        for folder, interpolation in ((split, cv2.INTER_AREA), (f"{split}annot", cv2.INTER_NEAREST)):
            (root / folder).mkdir(parents=True)
            for file in sorted((SAMPLE / folder).iterdir())[:1]:
                image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
                cv2.imwrite(str(root / folder / file.name), cv2.resize(image, size, interpolation=interpolation))
    return root


def test_camvid_frames_of_another_size_than_960x720_or_480x360_are_refused_with_the_fix(tmp_path):
    root = write_small_copy(tmp_path / "camvid", size=(640, 480))
    with pytest.raises(DataError) as info:
        CamVid(root, "train").validate()
    message = str(info.value)
    assert "\n" not in message and "640x480" in message and "960x720" in message and "480x360" in message
    assert "tools/prepare_data.py camvid" in message


def test_main_refuses_camvid_of_another_size_before_writing_the_run_folder(tmp_path, capsys):
    root = write_small_copy(tmp_path / "camvid", size=(640, 480))
    out = tmp_path / "out"
    assert main.main([*FAST, "--epochs", "1", "--data-dir", str(root), "--output-dir", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "640x480" in message and "\n" not in message
    assert not out.exists()
