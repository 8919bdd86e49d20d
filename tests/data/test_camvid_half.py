"""The SegNet tutorial's 480x360 CamVid is the data set at half size: at --scale 0.5 its frames go through
unresized and every pad and crop is that of a 960x720 frame at scale 0.5; smaller scales resize them, larger
ones are refused; the frame size found travels in the model spec (config.json, checkpoints, --predict)."""

import json

import cv2
import numpy as np
import pytest
import torch

import main
from models import build_model
from tests.conftest import FAST, SAMPLE
from utils.apps.predict import predict
from utils.config import make_config
from utils.data.datasets import CamVid, CamVidHalf, dataset_class
from utils.data.transforms import build_transforms, network_size
from utils.engine.checkpoint import save
from utils.errors import UsageError


def write_half_copy(root, count=1):
    """The sample's first frames at 480x360 (area for frames, nearest for labels), in the CamVid layout."""
    for split in ("train", "val", "test"):
        for folder, interpolation in ((split, cv2.INTER_AREA), (f"{split}annot", cv2.INTER_NEAREST)):
            (root / folder).mkdir(parents=True)
            for file in sorted((SAMPLE / folder).iterdir())[:count]:
                image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
                cv2.imwrite(str(root / folder / file.name), cv2.resize(image, (480, 360), interpolation=interpolation))
    return root


def settings(root, **changes):
    return main.DEFAULTS | {"data_dir": str(root), "encoder": "resnet18", "workers": "0", "device": "cpu"} | changes


def test_480x360_frames_are_found_and_recorded(tmp_path):
    half = make_config(settings(write_half_copy(tmp_path / "half")))
    full = make_config(settings(SAMPLE))
    assert dataset_class(half.dataset, half.model.dataset_params) is CamVidHalf
    assert dataset_class(full.dataset, full.model.dataset_params) is CamVid
    # config.json and every checkpoint hold the model spec: the frame size found is in it.
    assert half.to_dict()["model"]["dataset_params"] == {"frame_size": [360, 480]}
    assert full.to_dict()["model"]["dataset_params"] == {"frame_size": [720, 960]}
    assert (half.model.train_size, half.model.eval_size) == (full.model.train_size, full.model.eval_size)


def test_a_spec_with_dataset_params_stays_hashable_and_equal_to_its_json_round_trip(tmp_path):
    from models.spec import ModelSpec

    spec = make_config(settings(write_half_copy(tmp_path / "half"))).model
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and hash(again) == hash(spec) and len({spec, again}) == 1


@pytest.mark.parametrize("split", ["train", "val"])
def test_at_scale_half_the_half_size_copy_gives_exactly_the_crops_of_the_full_frames(tmp_path, split):
    half_root = write_half_copy(tmp_path / "half")
    half = CamVidHalf(half_root, split, build_transforms(CamVidHalf, split, scale=0.5))
    full = CamVid(SAMPLE, split, build_transforms(CamVid, split, scale=0.5))
    for seed in range(6):  # flips, sized and plain crops, noise and warps: the same draws, the same pixels
        (half_image, half_mask), (full_image, full_mask) = half[0, seed], full[0, seed]
        assert half_image.shape == full_image.shape and torch.equal(half_image, full_image)
        assert torch.equal(half_mask, full_mask)


def test_at_scale_half_nothing_is_resized_and_below_it_the_480x360_frames_are(tmp_path):
    half_root = write_half_copy(tmp_path / "half")
    image, _ = CamVidHalf(half_root, "val", build_transforms(CamVidHalf, "predict", scale=0.5))[0]
    assert image.shape[-2:] == (360, 480)
    image, mask = CamVidHalf(half_root, "val", build_transforms(CamVidHalf, "predict", scale=0.25))[0]
    assert image.shape[-2:] == mask.shape == (180, 240)
    for split in ("train", "val"):
        half = CamVidHalf(half_root, split, build_transforms(CamVidHalf, split, scale=0.25))
        full = CamVid(SAMPLE, split, build_transforms(CamVid, split, scale=0.25))
        assert half[0, 3][0].shape == full[0, 3][0].shape == (3, *network_size(
            CamVid.train_size if split == "train" else CamVid.eval_size, 0.25))


def test_a_scale_above_half_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    root = write_half_copy(tmp_path / "half")
    with pytest.raises(UsageError, match=r"--scale 1.0 is too large .*480x360 .*--scale 0.5 or less"):
        make_config(settings(root, scale=1.0))
    out = tmp_path / "out"
    assert main.main([*FAST, "--scale", "0.75", "--data-dir", str(root), "--output-dir", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: --scale 0.75") and "\n" not in message and "upsampling" in message
    assert not out.exists()


def test_a_960x720_frame_among_480x360_ones_is_named(tmp_path):
    root = write_half_copy(tmp_path / "half")
    big = sorted((SAMPLE / "val").iterdir())[1]
    cv2.imwrite(str(root / "val" / big.name), cv2.imread(str(big)))
    cv2.imwrite(str(root / "valannot" / big.name), cv2.imread(str(SAMPLE / "valannot" / big.name), -1))
    with pytest.raises(Exception, match=rf"{big.name} is 960x720 but camvid frames must be 480x360"):
        CamVidHalf(root, "val").validate()


def test_predict_feeds_a_half_size_model_its_frames_unresized(tmp_path, monkeypatch):
    from models.segmentation import SegmentationModel

    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=CamVid.classes, att_depth=2, patch_size=2, dataset="camvid",
                        dataset_params={"frame_size": [360, 480]}, scale=0.25,
                        train_size=network_size(CamVid.train_size, 0.25),
                        eval_size=network_size(CamVid.eval_size, 0.25))
    path = tmp_path / "best.pt"
    save({"model": model.state_dict(), "model_spec": model.spec.to_dict(), "config": {}, "epoch": 1}, path)
    photo = tmp_path / "frame.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (360, 480, 3), dtype=np.uint8))
    sizes, forward = [], SegmentationModel.forward
    monkeypatch.setattr(SegmentationModel, "forward",
                        lambda self, x: sizes.append(tuple(x.shape[-2:])) or forward(self, x))
    predict(photo, path, str(tmp_path / "out"))
    assert sizes == [model.valid_size(180, 240)]  # 480x360 at scale 0.25 of the 960x720 data set: halved, not quartered
    labels = cv2.imread(str(tmp_path / "out" / "frame_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (360, 480)


@pytest.mark.e2e
def test_main_trains_and_evaluates_on_the_half_size_copy(tmp_path, capsys):
    root, out = write_half_copy(tmp_path / "half", count=2), tmp_path / "run"
    assert main.main([*FAST, "--scale", "0.25", "--epochs", "1", "--data-dir", str(root),
                      "--output-dir", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["dataset_params"] == {"frame_size": [360, 480]} and config["model"]["scale"] == 0.25
    # The checkpoint evaluates on the full-resolution frames too: their own size is found again.
    assert main.main(["--checkpoint", str(out / "best.pt"), "--data-dir", str(SAMPLE), "--workers", "0"]) == 0
