"""--in-channels N: how images of 1, 3 and 4 channels are read, and each refusal in one line."""
import cv2
import numpy as np
import pytest

from utils.data.datasets import LiTS, display_rgb, read_channels
from utils.errors import DataError

RNG = np.random.default_rng(0)


def write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


def test_grey_images_are_read_as_one_channel(tmp_path):
    grey = RNG.integers(0, 256, (6, 8), dtype=np.uint8)
    image = read_channels(write(tmp_path / "g.png", grey), 1)
    assert image.shape == (6, 8, 1) and np.array_equal(image[..., 0], grey)


def test_sixteen_bit_images_keep_their_high_byte(tmp_path):
    grey = RNG.integers(0, 65536, (6, 8), dtype=np.uint16)
    image = read_channels(write(tmp_path / "g16.png", grey), 1)
    assert image.dtype == np.uint8 and np.array_equal(image[..., 0], (grey // 256).astype(np.uint8))


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_four_channel_images_are_read_as_rgba(tmp_path, suffix):
    rgba = RNG.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    image = read_channels(write(tmp_path / f"a{suffix}", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)), 4)
    assert image.shape == (6, 8, 4) and np.array_equal(image, rgba)


def test_three_channels_read_as_always(tmp_path):
    """RGB as before --in-channels existed: a grey file replicated, an RGBA file's alpha dropped."""
    rgba = RNG.integers(0, 256, (6, 8, 4), dtype=np.uint8)
    path = write(tmp_path / "a.png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert np.array_equal(read_channels(path, 3), rgba[..., :3])
    grey = write(tmp_path / "g.png", rgba[..., 0])
    assert np.array_equal(read_channels(grey, 3), np.repeat(rgba[..., :1], 3, axis=2))


@pytest.mark.parametrize("stored,channels,words", [
    (3, 1, "has 3 channels, but grey images of 1 are read here (--in-channels 1): convert it, or use a model of "
           "--in-channels 3"),
    (1, 4, "has 1 channel, but RGBA images of 4 are read here (--in-channels 4): convert it, or use a model of "
           "--in-channels 1"),
    (4, 1, "has 4 channels, but grey images of 1"),
])
def test_another_channel_count_is_one_line_naming_the_file(tmp_path, stored, channels, words):
    path = write(tmp_path / "x.png", RNG.integers(0, 256, (6, 8, stored) if stored > 1 else (6, 8), dtype=np.uint8))
    with pytest.raises(DataError) as error:
        read_channels(path, channels)
    assert str(error.value) == f"{path} {words}" if stored != 4 else str(error.value).startswith(f"{path} {words}")


def test_float_images_are_refused(tmp_path):
    path = write(tmp_path / "f.tif", RNG.random((6, 8)).astype(np.float32))
    with pytest.raises(DataError, match="f.tif holds float32 pixels: images are read as 8- or 16-bit integers"):
        read_channels(path, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_lits_slices_are_replicated_to_the_channels(tmp_path, channels):
    np.save(tmp_path / "s.npy", np.array([[-1000.0, 0.0], [250.0, 100.0]]))
    image = LiTS.read_image(tmp_path / "s.npy", channels)
    assert image.shape == (2, 2, channels) and (image == image[..., :1]).all()
    assert image[..., 0].tolist() == [[0, 128], [255, 178]]


@pytest.mark.parametrize("channels,expected", [(1, [7, 7, 7]), (2, [7, 7, 7]), (3, [7, 8, 9]), (4, [7, 8, 9])])
def test_images_are_shown_as_rgb(channels, expected):
    image = np.arange(7, 7 + channels, dtype=np.uint8).reshape(1, 1, channels)
    assert display_rgb(image).tolist() == [[expected]]
