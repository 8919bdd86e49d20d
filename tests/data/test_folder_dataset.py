"""--dataset folder: {split}/images/ and {split}/masks/ with classes.json beside them; masks as class indices or
as the file's colours; every bad file or key named in one line; the CamVid recipe at the file's crop sizes."""

import json
import pickle

import cv2
import numpy as np
import pytest

from utils.data.datasets import DataError, FolderDataset, dataset_class, read_classes_file
from utils.data.transforms import build_transforms, network_size

CLASSES = {"classes": ["background", "road", "car"], "unlabelled": "background", "train_size": [32, 48],
           "eval_size": [48, 64]}
COLOURS = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]


def make_folder(root, classes=CLASSES, names=("a", "b"), colour_masks=False, size=(48, 64)):
    """Images (a.jpg, b.png, ...) and index (or colour) masks of three classes in every split."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps(classes))
    h, w = size
    for split in ("train", "val", "test"):
        for folder in ("images", "masks"):
            (root / split / folder).mkdir(parents=True)
        for i, name in enumerate(names):
            mask = np.zeros((h, w), np.uint8)
            mask[h // 2:, :] = 1
            mask[4:12, 4 + i:20] = 2
            image = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
            suffix = ".jpg" if i % 2 == 0 else ".png"
            assert cv2.imwrite(str(root / split / "images" / f"{name}{suffix}"), image)
            stored = np.array(COLOURS, np.uint8)[mask][..., ::-1] if colour_masks else mask  # cv2 writes BGR
            assert cv2.imwrite(str(root / split / "masks" / f"{name}.png"), stored)
    return root


def folder(root, split="train", transform=None):
    return dataset_class("folder", FolderDataset.describe(root))(root, split, transform)


def expected_classes(h=48, w=64, i=0):
    """The masks of make_folder as class indices: the file's order with its unlabelled class last."""
    mask = np.full((h, w), 2)  # background is the last class
    mask[h // 2:, :] = 0  # road
    mask[4:12, 4 + i:20] = 1  # car
    return mask


@pytest.mark.parametrize("colour_masks", [False, True])
def test_index_and_colour_masks_read_as_the_same_classes_with_unlabelled_last(tmp_path, colour_masks):
    classes = CLASSES | ({"colours": COLOURS} if colour_masks else {})
    data = folder(make_folder(tmp_path / "data", classes, colour_masks=colour_masks))
    assert data.classes == ("road", "car", "background")
    assert [(image.name, mask.name) for image, mask in data.pairs] == [("a.jpg", "a.png"), ("b.png", "b.png")]
    for i in range(2):
        image, mask = data[i]
        assert image.shape == (48, 64, 3) and np.array_equal(mask, expected_classes(i=i))


def test_weights_small_classes_and_colours_follow_the_classes_to_their_new_places(tmp_path):
    classes = CLASSES | {"colours": COLOURS, "class_weights": [0.5, 1.0, 4.0], "small_classes": ["car"]}
    cls = dataset_class("folder", read_classes_file(make_folder(tmp_path / "d", classes) / "classes.json"))
    assert cls.class_weights == (1.0, 4.0, 0.5) and cls.small_classes == ("car",)
    assert cls.palette == ((128, 64, 128), (0, 0, 142), (0, 0, 0))
    plain = dataset_class("folder", CLASSES)
    assert plain.class_weights is None and len(set(plain.palette)) == 3 and plain.palette[-1] == (0, 0, 0)


def test_the_training_recipe_is_camvids_at_the_files_crop_sizes(tmp_path):
    root = make_folder(tmp_path / "d", CLASSES | {"train_size": [64, 64], "eval_size": [96, 128]}, size=(80, 100))
    for scale in (1.0, 0.5):
        cls = dataset_class("folder", FolderDataset.describe(root))
        names = [type(t).__name__ for t in build_transforms(cls, "train", scale).transforms]
        assert names[-5:] == ["HorizontalFlip", "PadIfNeeded", "OneOf", "GaussNoise", "Perspective"]
        for split, size in (("train", (64, 64)), ("val", (96, 128))):
            data = cls(root, split, build_transforms(cls, split, scale))
            for seed in range(8):  # the random-sized crop stays inside the padded frame at the crops' aspect
                image, mask = data[0, seed]
                assert image.shape[-2:] == mask.shape == network_size(size, scale)


SIZES = {"train_size": [64, 64], "eval_size": [96, 128]}  # what --train-size 64x64 --eval-size 96x128 give


def test_the_size_flags_replace_the_files_sizes_which_may_then_leave_them_out(tmp_path):
    root = make_folder(tmp_path / "d", size=(80, 100))  # the file's crops: 32x48 and 48x64
    assert FolderDataset.describe(root, sizes=SIZES) == CLASSES | SIZES
    assert FolderDataset.describe(root, sizes={"eval_size": [96, 128]}) == CLASSES | {"eval_size": [96, 128]}
    (root / "classes.json").write_text(json.dumps({k: v for k, v in CLASSES.items() if k not in SIZES}))
    cls = dataset_class("folder", FolderDataset.describe(root, sizes=SIZES))
    assert (cls.train_size, cls.eval_size, cls.pad_size) == ((64, 64), (96, 128), (96, 128))
    for split, size in (("train", (64, 64)), ("val", (96, 128))):  # the pipeline crops at the flags' sizes
        image, mask = cls(root, split, build_transforms(cls, split, 1.0))[0]
        assert image.shape[-2:] == mask.shape == size
    # No classes file (a checkpoint evaluated on bare data): the saved parameters, with the flags' sizes over them.
    (root / "classes.json").unlink()
    assert FolderDataset.describe(root, saved=CLASSES, sizes={"train_size": [64, 64]}) == CLASSES | {
        "train_size": [64, 64]}


@pytest.mark.parametrize("key, flag", [("train_size", "--train-size"), ("eval_size", "--eval-size")])
def test_a_size_given_neither_in_the_file_nor_by_flag_is_refused_saying_both(tmp_path, key, flag):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({k: v for k, v in CLASSES.items() if k != key}))
    what = "training" if key == "train_size" else "evaluation"
    assert error(lambda: read_classes_file(path)) == (f'{path}: "{key}" is missing: set it there ([h, w] {what} crop '
                                                      f'at --scale 1) or give {flag} HxW')
    other = "eval_size" if key == "train_size" else "train_size"
    assert f'"{key}" is missing' in error(lambda: read_classes_file(path, {other: [64, 64]}))  # not the other flag
    assert read_classes_file(path, {key: [64, 80]})[key] == [64, 80]


def test_a_flags_training_crop_above_the_files_pad_size_is_named_with_the_flag(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps(CLASSES | {"pad_size": [48, 64]}))
    assert '"pad_size" must be at least train_size [64, 64] (--train-size 64x64)' in error(
        lambda: read_classes_file(path, {"train_size": [64, 64]}))


def test_a_configured_data_set_survives_pickling_as_spawned_loader_workers_need(tmp_path):
    data = folder(make_folder(tmp_path / "d"), "val")
    copy = pickle.loads(pickle.dumps(data))
    assert copy.classes == data.classes and np.array_equal(copy[1][1], data[1][1])


def error(call):
    with pytest.raises(DataError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("change, fragment", [
    ({"classes": ["only"]}, '"classes" must be a list of two or more distinct names'),
    ({"classes": ["a", "a"]}, '"classes" must be a list of two or more distinct names'),
    ({"unlabelled": "void"}, '"unlabelled" must be one of the classes'),
    ({"train_size": [32]}, '"train_size" must be two positive integers [h, w]'),
    ({"eval_size": None}, '"eval_size" is missing'),
    ({"eval_size": [0, 64]}, '"eval_size" must be two positive integers'),
    ({"colours": [[0, 0, 0]]}, '"colours" must be one [r, g, b] (0..255) per class, 3 in all'),
    ({"colours": [[0, 0, 0], [0, 0, 0], [1, 2, 3]]}, '"colours" must differ from class to class'),
    ({"class_weights": [1, -1, 1]}, '"class_weights" must be one number, 0 or more, per class'),
    ({"small_classes": ["bus"]}, '"small_classes" must be a list of class names'),
    ({"colour": COLOURS}, 'unknown key "colour"'),
])
def test_every_bad_key_of_the_classes_file_is_named_in_one_line(tmp_path, change, fragment):
    path = tmp_path / "classes.json"
    path.write_text(json.dumps({key: value for key, value in (CLASSES | change).items() if value is not None}))
    message = error(lambda: read_classes_file(path))
    assert message.startswith(str(path)) and fragment in message


def test_a_missing_or_broken_classes_file_is_named(tmp_path):
    assert f"{tmp_path / 'classes.json'} is missing" in error(lambda: FolderDataset.describe(tmp_path))
    (tmp_path / "classes.json").write_text('{"classes": [')
    assert f"{tmp_path / 'classes.json'} is not valid JSON" in error(lambda: FolderDataset.describe(tmp_path))
    # Without a file, the parameters the run or checkpoint saved serve (evaluation needs nothing else).
    (tmp_path / "classes.json").unlink()
    assert FolderDataset.describe(tmp_path, saved=CLASSES) == CLASSES


@pytest.mark.parametrize("case, fragment", [
    ("no mask", "train/masks/a.png is missing: image"),
    ("no image", "train/images/c.* is missing: label"),
    ("jpeg mask", "masks must be .png files"),
    ("value 3", "contains label value 3: the masks of this folder data set must be 0..2"),
    ("colour without colours", "has 3 channels: masks must be single-channel class indices (or give \"colours\""),
    ("unknown colour", "has colour (1, 2, 3) at pixel (x=5, y=6)"),
    ("no masks folder", "train/masks is missing: the folder data set needs train/images/ and train/masks/"),
    ("same stem", "share the name a"),
    ("size", "they must match pixel for pixel"),
])
def test_every_bad_file_is_named_in_one_line(tmp_path, case, fragment):
    colours = case == "unknown colour"
    root = make_folder(tmp_path / "d", CLASSES | ({"colours": COLOURS} if colours else {}), colour_masks=colours)
    masks, images = root / "train" / "masks", root / "train" / "images"
    if case == "no mask":
        (masks / "a.png").unlink()
    elif case == "no image":
        cv2.imwrite(str(masks / "c.png"), np.zeros((48, 64), np.uint8))
    elif case == "jpeg mask":
        cv2.imwrite(str(masks / "c.jpg"), np.zeros((48, 64), np.uint8))
    elif case == "value 3":
        cv2.imwrite(str(masks / "b.png"), np.full((48, 64), 3, np.uint8))
    elif case == "colour without colours":
        cv2.imwrite(str(masks / "b.png"), np.zeros((48, 64, 3), np.uint8))
    elif case == "unknown colour":
        mask = np.zeros((48, 64, 3), np.uint8)
        mask[6, 5] = (3, 2, 1)  # BGR of (1, 2, 3)
        cv2.imwrite(str(masks / "b.png"), mask)
    elif case == "no masks folder":
        for file in masks.iterdir():
            file.unlink()
        masks.rmdir()
    elif case == "same stem":
        cv2.imwrite(str(images / "a.png"), np.zeros((48, 64, 3), np.uint8))
    elif case == "size":
        cv2.imwrite(str(masks / "b.png"), np.zeros((40, 64), np.uint8))
    assert fragment in error(lambda: folder(root).validate())
