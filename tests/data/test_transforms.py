"""The data sets' pipelines: spec settings, output shapes, nearest-only masks, borders, the normalisation."""

import cv2
import numpy as np
import pytest
import torch

from utils.data import augment as aug
from utils.data.datasets import Birds, CamVid, Cityscapes, LiTS, SkinLesion
from utils.data.transforms import build_transforms, network_size
from utils.engine.normalizer import Normalizer
from utils.labels import IGNORE_LABEL

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def frame(h, w, seed=0):
    """A random RGB frame and a blocky two-valued mask (values 5 and 9)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    blocks = rng.integers(0, 2, (h // 8 + 1, w // 8 + 1))
    mask = np.where(np.kron(blocks, np.ones((8, 8), int))[:h, :w] == 1, 9, 5).astype(np.uint8)
    return image, mask


def flatten(transforms):
    for t in transforms:
        yield t
        if hasattr(t, "transforms"):
            yield from flatten(t.transforms)


def test_camvid_train_pipeline_matches_spec():
    steps = list(flatten(build_transforms(CamVid, "train").transforms))
    by_type = {type(t): t for t in steps}
    assert by_type[aug.HorizontalFlip].p == 0.5
    pad = by_type[aug.PadIfNeeded]
    assert (pad.min_height, pad.min_width, pad.fill, pad.fill_mask) == (720, 960, 255, IGNORE_LABEL)
    one_of = by_type[aug.OneOf]
    assert {type(t) for t in one_of.transforms} == {aug.RandomSizedCrop, aug.RandomCrop}
    sized = by_type[aug.RandomSizedCrop]
    assert tuple(sized.min_max_height) == (240, 720) and tuple(sized.size) == (480, 640)
    assert sized.w2h_ratio == pytest.approx(4 / 3)
    assert (by_type[aug.RandomCrop].height, by_type[aug.RandomCrop].width) == (480, 640)
    assert by_type[aug.GaussNoise].p == 0.1 and by_type[aug.Perspective].p == 0.1
    assert by_type[aug.GaussNoise].var_limit == (10, 50)
    assert by_type[aug.Perspective].fill_mask == IGNORE_LABEL  # its borders are not the frame's pixels either


@pytest.mark.parametrize("dataset_cls", [CamVid, Cityscapes, Birds, SkinLesion, LiTS])
def test_training_masks_only_hold_input_values_or_the_border_label(dataset_cls):
    """Crops, shift-scale, perspective and the 0.5 prescale move class indices (nearest), never blend them;
    every border is the data set's border label."""
    image, mask = frame(300, 400)
    for border in (IGNORE_LABEL, dataset_cls.RELEASED_BORDER_LABEL):
        cls = type("Bordered", (dataset_cls,), {"border_label": border})
        for scale in (1.0, 0.5):
            transform = build_transforms(cls, "train", scale)
            seen = set()
            for seed in range(8):
                transform.set_random_seed(seed)
                seen |= set(transform(image=image, mask=mask)["mask"].unique().tolist())
            assert seen <= {5, 9, border} and border in seen, (scale, seen)


@pytest.mark.parametrize("split, scale, size", [
    ("train", 1.0, (480, 640)), ("val", 1.0, (640, 960)), ("test", 1.0, (640, 960)),
    ("train", 0.5, (256, 320)), ("val", 0.5, (320, 480))])
def test_camvid_output_shapes_and_types(split, scale, size):
    transform = build_transforms(CamVid, split, scale)
    out = transform(image=frame(720, 960)[0], mask=frame(720, 960)[1])
    assert out["image"].shape == (3, *size) and out["image"].dtype == torch.uint8
    assert out["mask"].shape == size


def test_camvid_eval_is_an_exact_centre_crop_in_uint8():
    image, mask = frame(720, 960)
    out = build_transforms(CamVid, "val")(image=image, mask=mask)
    assert torch.equal(out["mask"], torch.from_numpy(mask[40:680]))
    assert np.array_equal(out["image"].permute(1, 2, 0).numpy(), image[40:680])


def test_normalizer_uses_the_given_mean_and_std_exactly():
    image = np.tile(np.array([10, 128, 250], np.uint8), (720, 960, 1))
    mask = np.zeros((720, 960), np.uint8)
    out = build_transforms(CamVid, "val")(image=image, mask=mask)
    x = Normalizer(MEAN, STD, "cpu")(out["image"].unsqueeze(0))
    expected = (np.array([10, 128, 250]) / 255 - MEAN) / STD
    assert x.dtype == torch.float32 and x[0, :, 0, 0].numpy() == pytest.approx(expected, abs=1e-5)
    back = (x[0].numpy().transpose(1, 2, 0) * np.asarray(STD) + np.asarray(MEAN)) * 255
    assert np.array_equal(np.rint(back).astype(np.uint8), image[40:680])


def test_camvid_pads_small_frames_with_white_image_and_the_ignore_label():
    image, mask = frame(600, 800)
    out = build_transforms(CamVid, "val")(image=image, mask=mask)
    assert out["mask"].shape == (640, 960)
    # The 600x800 frame is padded to 720x960 (60 rows each side), then rows 40..680 kept.
    assert (out["mask"][:20] == IGNORE_LABEL).all() and (out["mask"][:, :80] == IGNORE_LABEL).all()
    assert (out["mask"][20:-20, 80:-80] == torch.from_numpy(mask[:, :])).all()
    assert (out["image"][:, :20] == 255).all()


@pytest.mark.parametrize("dataset_cls, size", [(Birds, 320), (SkinLesion, 192), (LiTS, 512)])
@pytest.mark.parametrize("split", ["train", "test"])
def test_crop_datasets_give_square_inputs_with_nearest_masks(dataset_cls, size, split):
    image, mask = frame(300, 451)
    out = build_transforms(dataset_cls, split)(image=image, mask=mask)
    assert out["image"].shape == (3, size, size) and out["mask"].shape == (size, size)
    assert set(out["mask"].unique().tolist()) <= {5, 9, IGNORE_LABEL}


@pytest.mark.parametrize("dataset_cls, size", [(Birds, 320), (LiTS, 512)])
def test_evaluation_is_the_centre_crop_of_the_unresized_image(dataset_cls, size):
    image, mask = frame(size + 40, size + 100)
    out = build_transforms(dataset_cls, "val")(image=image, mask=mask)
    assert torch.equal(out["mask"], torch.from_numpy(mask[20:-20, 50:-50]))
    assert torch.equal(out["image"], torch.from_numpy(image[20:-20, 50:-50]).permute(2, 0, 1))


def test_skin_lesions_are_resized_to_192x256_then_centre_cropped_to_192x192():
    image, mask = frame(300, 451)
    out = build_transforms(SkinLesion, "val")(image=image, mask=mask)
    resized = cv2.resize(mask, (256, 192), interpolation=cv2.INTER_NEAREST)
    assert torch.equal(out["mask"], torch.from_numpy(resized[:, 32:-32]))


def test_evaluation_pads_small_frames_with_the_ignore_label():
    image, mask = frame(300, 451)
    out = build_transforms(Birds, "val")(image=image, mask=mask)["mask"]
    assert (out[:10] == IGNORE_LABEL).all() and (out[-10:] == IGNORE_LABEL).all()
    assert not (out[10:-10] == IGNORE_LABEL).any()


def test_cityscapes_crops_for_training_and_keeps_full_frames_for_evaluation():
    image, mask = frame(1024, 2048)
    train = build_transforms(Cityscapes, "train")(image=image, mask=mask)
    assert train["image"].shape == (3, 640, 800)
    evaluation = build_transforms(Cityscapes, "val")(image=image, mask=mask)
    assert torch.equal(evaluation["mask"], torch.from_numpy(mask))


def test_cityscapes_padding_is_ignored():
    image, mask = frame(100, 200)
    out = build_transforms(Cityscapes, "val", scale=0.25)(image=image, mask=mask)
    assert out["mask"].shape == (256, 512)
    assert (out["mask"][0] == IGNORE_LABEL).all() and (out["mask"][:, 0] == IGNORE_LABEL).all()


def test_network_sizes_scale_to_multiples_of_32_and_stay_exact_at_scale_1():
    for size in [(480, 640), (640, 960), (640, 800), (1024, 2048), (320, 320), (192, 192)]:
        assert network_size(size, 1.0) == size
    assert network_size((480, 640), 0.5) == (256, 320)
    assert network_size((192, 192), 0.1) == (32, 32)


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="'Train'"):
        build_transforms(CamVid, "Train")


def test_predict_pipeline_takes_an_image_alone():
    """--predict has no mask: the pipeline resizes the image as the data set's evaluation does."""
    image, _ = frame(300, 451)
    out = build_transforms(SkinLesion, "predict")(image=image)["image"]
    assert out.shape == (3, 192, 256) and out.dtype == torch.uint8
