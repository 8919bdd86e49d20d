"""Datasets on tiny files in their real folder layouts, DataError messages, real CamVid."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.data.datasets import (DATASETS, Birds, CamVid, Cityscapes, DataError, LiTS, SkinLesion,
                            build_dataset)
from utils.data.transforms import build_transforms
from utils.labels import IGNORE_LABEL, scored_classes

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
REAL_CAMVID = Path(__file__).resolve().parents[2].parent / "shared" / "camvid-sample"


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


def write_jpg(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array, [cv2.IMWRITE_JPEG_QUALITY, 95])


def rgb(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def error_message(call):
    """Run call, expect DataError, return its (one-line) message."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ CamVid

def make_camvid(root, names=("a", "b"), label_value=3):
    for split in ("train", "val", "test"):
        for i, name in enumerate(names):
            write_png(root / split / f"{name}.png", rgb(seed=i))
            label = np.full((24, 32), label_value, np.uint8)
            label[:, :4] = 11
            write_png(root / f"{split}annot" / f"{name}.png", label)
    return root


def test_camvid_finds_sorted_pairs_and_reads_rgb_and_indices(tmp_path):
    root = make_camvid(tmp_path, names=("b", "a"))
    ds = CamVid(root, "train")
    assert ds.pairs == [(root / "train" / "a.png", root / "trainannot" / "a.png"),
                        (root / "train" / "b.png", root / "trainannot" / "b.png")]
    image, mask = ds[1]
    # cv2 reads BGR; the dataset must hand out RGB.
    assert image.dtype == np.uint8 and np.array_equal(image, rgb(seed=0)[..., ::-1])
    assert mask.dtype == np.int64 and mask[0, 0] == 11 and mask[0, 10] == 3
    assert len(ds) == 2 and ds.num_classes == 12


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_data_set_describes_every_class_once(name):
    """A weight (if any) and a colour per class, colours that tell the classes apart in figures, small classes
    among the scored ones, and the name main.py's --dataset takes."""
    dataset = DATASETS[name]
    assert dataset.name == name
    assert dataset.class_weights is None or (len(dataset.class_weights) == len(dataset.classes)
                                             and min(dataset.class_weights) > 0)
    assert len(set(dataset.palette)) == len(dataset.palette) == len(dataset.classes)
    assert set(dataset.small_classes) <= set(scored_classes(dataset.classes))


def test_camvid_transform_gives_uint8_image_and_mask():
    sample = Path(__file__).resolve().parents[2] / "dataset" / "camvid"
    ds = CamVid(sample, "train", build_transforms(CamVid, "train", scale=0.5))
    image, mask = ds[0]
    assert image.shape == (3, 256, 320) and image.dtype == torch.uint8
    assert mask.shape == (256, 320) and mask.dtype == torch.uint8
    assert int(mask.min()) >= 0 and int(mask.max()) <= 11


def test_build_dataset_returns_the_registered_class(tmp_path):
    assert isinstance(build_dataset("camvid", make_camvid(tmp_path), "val"), CamVid)


# ------------------------------------------------------------------ DataError cases

def test_missing_root_is_named(tmp_path):
    assert str(tmp_path / "nowhere") in error_message(lambda: CamVid(tmp_path / "nowhere", "train"))


def test_missing_split_folder_is_named(tmp_path):
    assert str(tmp_path / "train") in error_message(lambda: CamVid(tmp_path, "train"))


def test_empty_split_is_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "trainannot").mkdir()
    message = error_message(lambda: CamVid(tmp_path, "train"))
    assert str(tmp_path / "train") in message and "no train images" in message


def test_image_without_label_names_both_files(tmp_path):
    root = make_camvid(tmp_path)
    (root / "valannot" / "b.png").unlink()
    message = error_message(lambda: CamVid(root, "val"))
    assert str(root / "valannot" / "b.png") in message and str(root / "val" / "b.png") in message


def test_label_without_image_names_both_files(tmp_path):
    root = make_camvid(tmp_path)
    (root / "test" / "a.png").unlink()
    message = error_message(lambda: CamVid(root, "test"))
    assert str(root / "test" / "a.png") in message and str(root / "testannot" / "a.png") in message


def test_corrupt_image_is_named_by_getitem_and_validate(tmp_path):
    root = make_camvid(tmp_path)
    (root / "train" / "b.png").write_bytes(b"not a png at all" * 10)
    ds = CamVid(root, "train")
    assert str(root / "train" / "b.png") in error_message(lambda: ds[1])
    assert "corrupt" in error_message(ds.validate)


def test_truncated_png_and_jpeg_are_detected(tmp_path):
    root = make_camvid(tmp_path)
    png = root / "train" / "a.png"
    png.write_bytes(png.read_bytes()[:200])
    assert str(png) in error_message(CamVid(root, "train").validate)
    jpg = tmp_path / "x.jpg"
    write_jpg(jpg, rgb(64, 64))
    jpg.write_bytes(jpg.read_bytes()[:-400])
    assert str(jpg) in error_message(lambda: CamVid(root, "val").read_image(jpg))


def test_size_mismatch_names_both_files_and_sizes(tmp_path):
    root = make_camvid(tmp_path)
    write_png(root / "valannot" / "b.png", np.zeros((20, 30), np.uint8))
    message = error_message(CamVid(root, "val").validate)
    assert str(root / "val" / "b.png") in message and str(root / "valannot" / "b.png") in message
    assert "32x24" in message and "30x20" in message


def test_out_of_range_label_names_file_and_value(tmp_path):
    root = make_camvid(tmp_path, label_value=17)
    message = error_message(CamVid(root, "train").validate)
    assert str(root / "trainannot" / "a.png") in message and "17" in message


def test_colour_label_is_rejected(tmp_path):
    root = make_camvid(tmp_path)
    write_png(root / "trainannot" / "a.png", rgb())
    assert "single-channel" in error_message(lambda: CamVid(root, "train")[0])


def test_unknown_dataset_and_split_are_named(tmp_path):
    message = error_message(lambda: build_dataset("pascal", tmp_path, "train"))
    assert "pascal" in message and all(name in message for name in DATASETS)
    assert "'training'" in error_message(lambda: CamVid(make_camvid(tmp_path), "training"))


# ------------------------------------------------------------------ Cityscapes

def make_cityscapes(root, with_train_ids=True):
    for city, frame in (("aachen", "aachen_000000_000019"), ("bonn", "bonn_000001_000019")):
        write_png(root / "leftImg8bit" / "train" / city / f"{frame}_leftImg8bit.png", rgb())
        label = np.full((24, 32), 255, np.uint8)
        label[:12] = 18
        label[:, :5] = 0
        suffix = "labelTrainIds" if with_train_ids else "labelIds"
        write_png(root / "gtFine" / "train" / city / f"{frame}_gtFine_{suffix}.png", label)
    return root


def test_cityscapes_pairs_and_void_mapping(tmp_path):
    ds = Cityscapes(make_cityscapes(tmp_path), "train")
    assert [p[1].name for p in ds.pairs] == ["aachen_000000_000019_gtFine_labelTrainIds.png",
                                             "bonn_000001_000019_gtFine_labelTrainIds.png"]
    _, mask = ds[0]
    assert mask[0, 10] == 18 and mask[20, 10] == 19 and mask[20, 0] == 0
    assert ds.num_classes == 20 and ds.class_weights is None


def test_cityscapes_transforms_pad_with_the_ignore_label(tmp_path):
    ds = Cityscapes(make_cityscapes(tmp_path), "train",
                    build_transforms(Cityscapes, "val", scale=0.0625))
    image, mask = ds[0]
    assert image.shape == (3, 64, 128) and mask.shape == (64, 128) and mask.dtype == torch.uint8
    assert mask[0, 0] == IGNORE_LABEL


def test_cityscapes_without_train_id_labels_explains_how_to_make_them(tmp_path):
    message = error_message(lambda: Cityscapes(make_cityscapes(tmp_path, False), "train"))
    assert "csCreateTrainIdLabelImgs" in message and f"CITYSCAPES_DATASET={tmp_path}" in message


def test_cityscapes_rejects_non_train_id_values(tmp_path):
    root = make_cityscapes(tmp_path)
    label = root / "gtFine/train/bonn/bonn_000001_000019_gtFine_labelTrainIds.png"
    write_png(label, np.full((24, 32), 33, np.uint8))
    message = error_message(Cityscapes(root, "train").validate)
    assert str(label) in message and "33" in message


# ------------------------------------------------------------------ Birds

def make_birds(root):
    entries = [(1, "001.Albatross/a_1.jpg", 1), (2, "001.Albatross/a_2.jpg", 0),
               (3, "002.Auklet/b_3.jpg", 1)]
    (root / "images.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _ in entries))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, t in entries))
    for i, rel, _ in entries:
        write_jpg(root / "images" / rel, rgb(seed=i))
        soft = np.zeros((24, 32), np.uint8)
        soft[:, 8:16], soft[:, 16:24], soft[:, 24:] = 127, 128, 255
        write_png((root / "segmentations" / rel).with_suffix(".png"), soft)
    return root


def test_birds_val_split_is_an_explicit_setting_and_says_so(tmp_path, monkeypatch):
    root = make_birds(tmp_path)
    val = Birds(root, "val")
    assert [p[0].name for p in val.pairs] == ["a_2.jpg"] and "test images" in val.note
    assert CamVid.note == ""
    monkeypatch.setattr(Birds, "VAL_FROM", "train")
    assert [p[0].name for p in Birds(root, "val").pairs] == ["a_1.jpg", "b_3.jpg"]
    assert [p[0].name for p in Birds(root, "test").pairs] == ["a_2.jpg"]


def test_birds_splits_follow_the_cub_lists_and_val_is_test(tmp_path):
    root = make_birds(tmp_path)
    assert [p[0].name for p in Birds(root, "train").pairs] == ["a_1.jpg", "b_3.jpg"]
    assert Birds(root, "val").pairs == Birds(root, "test").pairs
    assert [p[1].name for p in Birds(root, "test").pairs] == ["a_2.png"]


def test_birds_soft_masks_are_thresholded_above_127(tmp_path):
    _, mask = Birds(make_birds(tmp_path), "train")[0]
    assert mask.dtype == np.int64
    assert (mask[:, :16] == 1).all() and (mask[:, 16:] == 0).all()  # 0 and 127 background


def test_birds_transform_shapes_and_missing_mask(tmp_path):
    root = make_birds(tmp_path)
    image, mask = Birds(root, "train", build_transforms(Birds, "train"))[1]
    assert image.shape == (3, 320, 320) and mask.shape == (320, 320)
    assert set(mask.unique().tolist()) == {0, 1, IGNORE_LABEL}  # the small frame is padded
    (root / "segmentations" / "002.Auklet" / "b_3.png").unlink()
    assert "b_3.png" in error_message(lambda: Birds(root, "train"))


# ------------------------------------------------------------------ Skin lesion

def make_isic(root, phase="Training"):
    for name in ("ISIC_0000001", "ISIC_0000000"):
        write_jpg(root / f"ISIC2018_Task1-2_{phase}_Input" / f"{name}.jpg", rgb())
        mask = np.zeros((24, 32), np.uint8)
        mask[5:15, 5:20] = 255
        write_png(root / f"ISIC2018_Task1_{phase}_GroundTruth" / f"{name}_segmentation.png", mask)
    (root / f"ISIC2018_Task1-2_{phase}_Input" / "LICENSE.txt").write_text("cc")
    return root


def test_skin_lesion_pairs_masks_and_shapes(tmp_path):
    root = make_isic(tmp_path, "Validation")
    ds = SkinLesion(root, "val")
    assert [p[1].name for p in ds.pairs] == ["ISIC_0000000_segmentation.png",
                                            "ISIC_0000001_segmentation.png"]
    _, mask = ds[0]
    assert mask[10, 10] == 0 and mask[0, 0] == 1
    image, mask = SkinLesion(root, "val", build_transforms(SkinLesion, "val"))[0]
    assert image.shape == (3, 192, 192) and mask.shape == (192, 192) and mask.dtype == torch.uint8


def test_skin_lesion_missing_ground_truth_folder_is_named(tmp_path):
    make_isic(tmp_path, "Training")
    message = error_message(lambda: SkinLesion(tmp_path, "test"))
    assert str(tmp_path / "ISIC2018_Task1-2_Test_Input") in message


# ------------------------------------------------------------------ LiTS

def make_lits(root, split="train"):
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    hu = np.array([[-1000.0, -250.0, 0.0, 250.0, 3000.0]] * 4)
    np.save(root / split / "images" / "vol0_s10.npy", hu)
    np.save(root / split / "masks" / "vol0_s10.npy", np.array([[0, 1, 2, 1, 0]] * 4, np.uint8))
    return root


def test_lits_windows_hu_and_maps_labels(tmp_path):
    image, mask = LiTS(make_lits(tmp_path), "train")[0]
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert image[0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert (image[..., 0] == image[..., 2]).all()
    assert mask[0].tolist() == [2, 0, 1, 0, 2]  # background last, liver 0, tumour 1


def test_lits_transform_shapes_and_bad_values(tmp_path):
    root = make_lits(tmp_path)
    image, mask = LiTS(root, "train", build_transforms(LiTS, "train"))[0]
    assert image.shape == (3, 512, 512) and mask.shape == (512, 512)
    values = set(mask.unique().tolist())  # the shift-scale may move a small region out of the crop
    assert values <= {0, 1, 2, IGNORE_LABEL} and IGNORE_LABEL in values  # the small slice is padded
    bad = root / "train" / "masks" / "vol0_s10.npy"
    np.save(bad, np.full((4, 5), 3, np.uint8))
    message = error_message(LiTS(root, "train").validate)
    assert str(bad) in message and "3" in message
    bad.write_bytes(b"garbage")
    assert str(bad) in error_message(LiTS(root, "train").validate)


# ------------------------------------------------------------------ real CamVid frames

@pytest.fixture
def real_camvid():
    if not REAL_CAMVID.is_dir():
        pytest.skip(f"{REAL_CAMVID} is absent (real CamVid frames are not part of the project)")
    return REAL_CAMVID


@pytest.mark.parametrize("split", ["val", "test"])
def test_real_camvid_eval_is_a_lossless_centre_crop(real_camvid, split):
    raw = CamVid(real_camvid, split)
    ds = CamVid(real_camvid, split, build_transforms(CamVid, split))
    raw.validate()
    for i in (0, len(ds) - 1):
        image, mask = ds[i]
        raw_image, raw_mask = raw[i]
        assert raw_image.shape == (720, 960, 3)
        assert image.shape == (3, 640, 960) and image.dtype == torch.uint8
        assert mask.shape == (640, 960) and mask.dtype == torch.uint8
        assert torch.equal(mask, torch.from_numpy(raw_mask[40:680]))


def test_real_camvid_train_crops(real_camvid):
    ds = CamVid(real_camvid, "train", build_transforms(CamVid, "train"))
    raw_values = set(np.unique(CamVid(real_camvid, "train")[0][1]).tolist())
    image, mask = ds[0]
    assert image.shape == (3, 480, 640) and mask.shape == (480, 640)
    assert set(mask.unique().tolist()) <= raw_values | {IGNORE_LABEL}  # perspective borders


def test_camvid_folder_of_jpegs_says_only_png_is_read(tmp_path):
    for folder in ("train", "trainannot"):
        (tmp_path / folder).mkdir()
    cv2.imwrite(str(tmp_path / "train" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "trainannot" / "a.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"a\.jpg is not read: CamVid frames and labels must be \.png"):
        CamVid(tmp_path, "train")


@pytest.mark.e2e
def test_importing_the_project_asks_no_server_for_anything_and_needs_no_albumentations():
    """No socket at import (albumentations 2.x asked PyPI for updates at import), and albumentations is not
    imported: the augmentations are the project's own (utils/data/augment.py)."""
    import os
    import subprocess
    import sys

    code = ("import sys, time\n"
            "calls = []\n"
            "sys.addaudithook(lambda event, args: calls.append(event) if event.startswith('socket.') else None)\n"
            "import main, utils.data.transforms, utils.apps.train\n"
            "time.sleep(0.5)\n"
            "assert 'albumentations' not in sys.modules, 'albumentations was imported'\n"
            "print(sorted(set(calls)))\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_lits_normalisation_gives_the_released_input_of_the_clipped_hu():
    """Normalizer(LiTS.normalisation(mean, std)) of the uint8 slice == (HU/255 - mean)/std of the dequantised
    HU (float64 literal), and that HU is within half a 500/255 step of the clipped slice."""
    from utils.engine.normalizer import Normalizer
    hu = np.linspace(-400, 400, 3 * 11 * 13).reshape(11, 13, 3)
    low, high = LiTS.HU_WINDOW
    u8 = np.rint((np.clip(hu, low, high) - low) / (high - low) * 255).astype(np.uint8)
    dequantised = low + (high - low) * u8.astype(np.float64) / 255
    assert np.abs(dequantised - np.clip(hu, low, high)).max() <= (high - low) / 255 / 2 + 1e-9
    mean, std = np.array(MEAN), np.array(STD)
    want = (dequantised / 255 - mean) / std
    got = Normalizer(*LiTS.normalisation(MEAN, STD), "cpu")(torch.from_numpy(u8).permute(2, 0, 1)[None])
    assert np.allclose(got[0].permute(1, 2, 0).double().numpy(), want, atol=1e-5)
    assert CamVid.normalisation(MEAN, STD) == (MEAN, STD)
