"""The committed synthetic CamVid sample (dataset/camvid) and its generator."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tools.make_sample import make_sample
from utils.data.datasets import SPLITS, CamVid

SAMPLE = Path(__file__).resolve().parents[2] / "dataset" / "camvid"


@pytest.fixture(autouse=True)
def require_sample():
    if not SAMPLE.is_dir():
        pytest.fail(f"{SAMPLE} is missing: run python tools/make_sample.py")


def sample_files():
    return sorted(p.relative_to(SAMPLE) for p in SAMPLE.rglob("*.png"))


def label_paths():
    return sorted(SAMPLE.glob("*annot/*.png"))


def test_sample_has_six_image_label_pairs_per_split():
    for split in SPLITS:
        images = sorted(p.name for p in (SAMPLE / split).glob("*.png"))
        labels = sorted(p.name for p in (SAMPLE / f"{split}annot").glob("*.png"))
        assert len(images) == 6 and images == labels


def test_images_are_960x720_rgb_and_labels_single_channel_uint8():
    for label_path in label_paths():
        image = cv2.imread(str(SAMPLE / label_path.parent.name[:-5] / label_path.name),
                           cv2.IMREAD_UNCHANGED)
        label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        assert image.shape == (720, 960, 3) and image.dtype == np.uint8
        assert label.shape == (720, 960) and label.dtype == np.uint8


def test_every_label_map_contains_all_12_classes():
    for path in label_paths():
        assert set(np.unique(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))) == set(range(12)), path


def test_small_classes_stay_small():
    """Poles, signs, pedestrians and cyclists must be small objects, as in real CamVid."""
    for path in label_paths():
        counts = np.bincount(cv2.imread(str(path), cv2.IMREAD_UNCHANGED).ravel(), minlength=12)
        share = counts / counts.sum()
        assert share[[2, 6, 9, 10]].max() < 0.015, path  # pole, sign, pedestrian, bicyclist
        assert share[[0, 1, 3, 4]].min() > 0.05, path  # sky, building, road, pavement


def test_pedestrians_are_about_15x40_pixels():
    for path in label_paths():
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        _, _, stats, _ = cv2.connectedComponentsWithStats((label == 9).astype(np.uint8))
        heights, widths = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
        assert np.median(heights) < 80 and np.median(widths) < 30, path


def test_total_size_is_small():
    total = sum((SAMPLE / rel).stat().st_size for rel in sample_files())
    assert total < 4 * 2 ** 20


def test_sample_passes_camvid_validation():
    for split in SPLITS:
        CamVid(SAMPLE, split).validate()


def pixels(path):
    """The decoded image, as stored (an OpenCV update may encode the same pixels in other PNG bytes)."""
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_generator_reproduces_the_committed_pixels(tmp_path):
    written = make_sample(tmp_path, seed=0)
    assert len(written) == 18
    regenerated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    assert regenerated == sample_files()
    for rel in regenerated:
        ours, committed = pixels(tmp_path / rel), pixels(SAMPLE / rel)
        assert ours.dtype == committed.dtype and np.array_equal(ours, committed), rel


def test_seed_changes_the_scenes(tmp_path):
    make_sample(tmp_path, seed=1)
    name = Path("trainannot") / "train_000.png"
    assert not np.array_equal(pixels(tmp_path / name), pixels(SAMPLE / name))
