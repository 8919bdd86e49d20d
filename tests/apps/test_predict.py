"""--predict prepares inputs as evaluation does, reads every format its data set reads, never overwrites."""
import cv2
import numpy as np
import pytest
import torch

from models import build_model
from utils.apps.predict import output_names, predict
from utils.data.transforms import network_size
from utils.engine.checkpoint import save
from utils.errors import DataError


def checkpoint(tmp_path, dataset, classes, scale, train, evaluation):
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=classes, att_depth=2, patch_size=2, dataset=dataset,
                        scale=scale, train_size=network_size(train, scale), eval_size=network_size(evaluation, scale))
    path = tmp_path / "best.pt"
    save({"model": model.state_dict(), "model_spec": model.spec.to_dict(), "config": {}, "epoch": 1}, path)
    return path


def seen_sizes(monkeypatch):
    from models.segmentation import SegmentationModel

    sizes, forward = [], SegmentationModel.forward

    def spy(self, x):
        sizes.append(tuple(x.shape[-2:]))
        return forward(self, x)

    monkeypatch.setattr(SegmentationModel, "forward", spy)
    return sizes


def test_skin_lesions_are_pre_resized_as_the_data_set_is(tmp_path, monkeypatch):
    path = checkpoint(tmp_path, "skinlesion", ("lesion", "background"), 1 / 6, (192, 192), (192, 192))
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (300, 451, 3), dtype=np.uint8))
    sizes = seen_sizes(monkeypatch)
    written = predict(photo, path, str(tmp_path / "out"), "cpu")
    # The data set's pre-resize to 192x256, x 1/6: 32x43, padded to 32x64 (multiples of 32); not the photo shrunk by
    # the scale, and without the evaluation's centre crop (every pixel of the photo gets a label).
    assert sizes == [(32, 64)]
    labels = cv2.imread(str(tmp_path / "out" / "photo_labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (300, 451) and set(np.unique(labels)) <= {0, 1} and len(written) == 3


def test_lits_slices_are_read_as_the_data_set_reads_them(tmp_path):
    path = checkpoint(tmp_path, "lits", ("liver", "tumour", "background"), 0.125, (512, 512), (512, 512))
    folder = tmp_path / "slices"
    folder.mkdir()
    np.save(folder / "volume-1_slice-0001.npy", np.linspace(-1000, 1000, 100 * 80).reshape(100, 80))
    written = predict(folder, path, str(tmp_path / "out"), "cpu")
    assert sorted(p.name for p in written) == ["volume-1_slice-0001_labels.png", "volume-1_slice-0001_mask.png",
                                               "volume-1_slice-0001_overlay.png"]
    overlay = cv2.imread(str(tmp_path / "out" / "volume-1_slice-0001_overlay.png"))
    assert overlay.shape == (100, 80, 3)


def test_inputs_with_the_same_stem_never_share_outputs(tmp_path):
    path = checkpoint(tmp_path, "camvid", tuple("abcdefghijkl"), 0.125, (480, 640), (640, 960))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("photo.jpg", "photo.png", "other.png"):
        cv2.imwrite(str(folder / name), np.full((70, 90, 3), 128, np.uint8))
    written = predict(folder, path, str(tmp_path / "out"), "cpu")
    assert len(written) == len(set(written)) == 9 == len(list((tmp_path / "out").glob("*.png")))
    assert output_names([folder / "photo.jpg", folder / "photo.png", folder / "other.png"]) == \
        ["photo_jpg", "photo_png", "other"]


def test_a_file_the_data_set_cannot_read_is_refused(tmp_path):
    path = checkpoint(tmp_path, "camvid", tuple("abcdefghijkl"), 0.125, (480, 640), (640, 960))
    (tmp_path / "notes.txt").write_text("no image")
    with pytest.raises(DataError, match="notes.txt"):
        predict(tmp_path / "notes.txt", path, str(tmp_path / "out"), "cpu")
    assert not (tmp_path / "out").exists()


def camvid_checkpoint(tmp_path):
    return checkpoint(tmp_path, "camvid", ["a", "b"], 0.125, (64, 64), (64, 64))


def test_existing_outputs_are_replaced_only_when_told(tmp_path):
    path = camvid_checkpoint(tmp_path)
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 90, np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo_mask.png").write_bytes(b"another model's prediction")
    with pytest.raises(DataError, match="photo_mask.png exists.*--overwrite"):
        predict(image, path, str(out), scale=0.5)
    assert (out / "photo_mask.png").read_bytes() == b"another model's prediction"
    written = predict(image, path, str(out), scale=0.5, overwrite=True)
    assert [file.name for file in written] == ["photo_mask.png", "photo_overlay.png", "photo_labels.png"]
    assert cv2.imread(str(out / "photo_labels.png"), cv2.IMREAD_UNCHANGED).shape == (40, 40)


def test_a_failed_write_is_one_error_naming_the_file(tmp_path, monkeypatch):
    import errno

    import utils.files

    path = camvid_checkpoint(tmp_path)
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), np.full((40, 40, 3), 90, np.uint8))

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(utils.files.os, "fsync", full_disk)
    with pytest.raises(DataError, match=r"photo_mask.png cannot be written \(No space left on device\)"):
        predict(image, path, str(tmp_path / "out"), scale=0.5)
    assert list((tmp_path / "out").iterdir()) == []  # no half-written file, no temporary left


def test_a_one_pixel_image_is_one_error_and_inputs_are_streamed(tmp_path, monkeypatch):
    import utils.apps.predict as predicting

    path = camvid_checkpoint(tmp_path)
    folder = tmp_path / "inputs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 40, 3), 90, np.uint8))
    cv2.imwrite(str(folder / "b.png"), np.full((1, 1, 3), 90, np.uint8))
    order, read = [], predicting.read_input
    monkeypatch.setattr(predicting, "read_input", lambda file, *how: order.append(file.name) or read(file, *how))
    monkeypatch.setattr(predicting, "write_png", lambda target, picture: order.append(target.name) or target)
    with pytest.raises(DataError, match=r"b.png: 1x1 pixels is too small to segment"):
        predict(folder, path, str(tmp_path / "out"))
    assert order == ["a.png", "a_mask.png", "a_overlay.png", "a_labels.png", "b.png"]
