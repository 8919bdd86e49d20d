"""tools/prepare_data.py camvid on a folder already in main.py's layout (the SegNet tutorial's 480x360 copy, or
a prepared 960x720 one): it says so and checks it (pairs, one frame size, labels 0..11, the split lists) instead
of reading train/X.png and trainannot/X.png as the same frame found twice."""

import cv2
import numpy as np
import pytest

from tests.test_prepare_data import SPLIT_NAMES, assert_error, prep, run


def make_layout(root, size=(480, 360), per_split=2):
    """The SegNet layout with the first frames of each standard split list, labels 0..11."""
    width, height = size
    for split in prep.SPLITS:
        for i, name in enumerate(SPLIT_NAMES[split][:per_split]):
            for folder in (split, f"{split}annot"):
                (root / folder).mkdir(parents=True, exist_ok=True)
            frame = np.full((height, width, 3), 30 * i, np.uint8)
            label = (np.arange(width)[None].repeat(height, 0) * 12 // width).astype(np.uint8)  # every class 0..11
            assert cv2.imwrite(str(root / split / f"{name}.png"), frame)
            assert cv2.imwrite(str(root / f"{split}annot" / f"{name}.png"), label)
    return root


@pytest.mark.parametrize("size, words", [((480, 360), "480x360 frames: the data set at half size"),
                                         ((960, 720), "960x720 frames: the full-resolution data set")])
def test_the_layout_main_py_reads_is_checked_and_said_to_be_ready(tmp_path, capsys, size, words):
    source, out = make_layout(tmp_path / "CamVid", size), tmp_path / "out"
    code, stdout, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert code == 0, err
    assert f"{source} is already the layout main.py reads" in stdout and "2 train, 2 val, 2 test" in stdout
    assert words in stdout and f"--data-dir {source}" in stdout and "found twice" not in err
    assert not out.exists()


@pytest.mark.parametrize("case, fragment", [
    ("label 12", "contains label value 12: camvid labels must be 0..11"),
    ("not in the lists", "0001TP_999999.png is not in"),
    ("missing frames", "is missing (365 of the 367 frames"),
    ("two sizes", "is 960x720 but camvid frames must be 480x360"),
    ("label without frame", "has no image"),
])
def test_a_bad_layout_is_one_error_line_naming_the_file(tmp_path, capsys, case, fragment):
    source = make_layout(tmp_path / "CamVid")
    first = SPLIT_NAMES["train"][0]
    if case == "label 12":
        cv2.imwrite(str(source / "valannot" / f"{SPLIT_NAMES['val'][1]}.png"), np.full((360, 480), 12, np.uint8))
    elif case == "not in the lists":
        cv2.imwrite(str(source / "train" / "0001TP_999999.png"), np.zeros((360, 480, 3), np.uint8))
        cv2.imwrite(str(source / "trainannot" / "0001TP_999999.png"), np.zeros((360, 480), np.uint8))
    elif case == "two sizes":
        cv2.imwrite(str(source / "train" / f"{SPLIT_NAMES['train'][1]}.png"), np.zeros((720, 960, 3), np.uint8))
        cv2.imwrite(str(source / "trainannot" / f"{SPLIT_NAMES['train'][1]}.png"), np.zeros((720, 960), np.uint8))
    elif case == "label without frame":
        (source / "train" / f"{first}.png").unlink()
    partial = [] if case == "missing frames" else ["--allow-partial"]
    code, _, err = run(capsys, "camvid", "--source", source, *partial)
    assert_error(code, err, fragment)
