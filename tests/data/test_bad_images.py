"""Bad image files, in a split or as a --predict input: one DataError naming the file, and no line of OpenCV's own
before it (libpng prints straight to the process's stderr, so these tests read file descriptor 2)."""
import shutil

import numpy as np
import pytest
from PIL import Image

from utils.apps.predict import read_input
from utils.data.datasets import DATASETS, build_dataset
from utils.errors import DataError


def first(root, folder):
    return sorted((root / folder).iterdir())[0]


@pytest.mark.parametrize("cut, words", [(0, r"is empty \(0 bytes\)"), (2000, "cannot be decoded"),
                                        (-20, "cannot be decoded")])
def test_an_empty_or_truncated_png_is_one_line_naming_it_in_a_split_and_for_predict(tiny_camvid, capfd, cut, words):
    image = first(tiny_camvid, "test")
    data = image.read_bytes()
    image.write_bytes(data[:cut])
    with pytest.raises(DataError, match=words) as in_split:
        build_dataset("camvid", tiny_camvid, "test").validate()
    with pytest.raises(DataError, match=words) as in_predict:
        read_input(image, DATASETS["camvid"])
    assert str(image) in str(in_split.value) and str(image) in str(in_predict.value)
    assert capfd.readouterr().err == ""  # no "libpng error: ..." of OpenCV's


def test_macos_appledouble_files_are_not_taken_for_frames(tiny_camvid):
    for folder in ("test", "testannot"):
        shutil.copy(first(tiny_camvid, folder), tiny_camvid / folder / f"._{first(tiny_camvid, folder).name}")
    (tiny_camvid / "test" / "._only_an_image.png").write_bytes(b"\x00\x05\x16\x07")  # no label: not an error
    assert len(build_dataset("camvid", tiny_camvid, "test")) == 2


def test_a_palette_label_is_called_a_palette_png_not_three_channels(tiny_camvid):
    label = first(tiny_camvid, "valannot")
    indices = np.asarray(Image.open(label))
    palette = Image.fromarray(indices.astype(np.uint8), mode="P")
    palette.putpalette([v for i in range(256) for v in (i, 255 - i, i // 2)])
    palette.save(label)
    with pytest.raises(DataError, match=f"{label} is a palette PNG .* single-channel"):
        build_dataset("camvid", tiny_camvid, "val").validate()
