"""--predict prepares inputs as evaluation does, reads every format its data set reads, never overwrites;
segment_image is --predict from Python; large images are tiled."""
import json

import cv2
import numpy as np
import pytest
import torch

from models import build_model
from utils.apps.predict import output_names, predict, segment_image, tiled_logit_rows, window_logits, window_starts
from utils.engine.normalizer import Normalizer
from utils.engine.checkpoint import load_model
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


# ------------------------------------------------------------------ segment_image, tiles, notes (docs/your_model.md)
def camvid_checkpoint(tmp_path, arch="unet", encoder="resnet18", in_channels=3):
    torch.manual_seed(0)
    model = build_model(arch, encoder, None, classes=tuple("abcdefghijkl"), att_depth=2, patch_size=2,
                        dataset="camvid", scale=0.125, train_size=network_size((480, 640), 0.125),
                        eval_size=network_size((640, 960), 0.125), in_channels=in_channels)
    path = tmp_path / "best.pt"
    save({"model": model.state_dict(), "model_spec": model.spec.to_dict(), "config": {}, "epoch": 1}, path)
    return path


@pytest.mark.parametrize("arch,encoder", [("unet", "resnet18"), ("deeplabv3+", "resnet18"), ("upernet", "resnet18"),
                                          ("segformer", "mit_b0"), ("dpt", "tu-vit_tiny_patch16_224")])
def test_segment_image_is_what_predict_writes(tmp_path, arch, encoder):
    """The Python function and --predict give the same labels, for the new architectures too."""
    path = camvid_checkpoint(tmp_path, arch, encoder)
    photo = tmp_path / "photo.png"
    image = np.random.default_rng(0).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    cv2.imwrite(str(photo), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    predict(photo, path, str(tmp_path / "out"), "cpu", scale=0.5)
    written = cv2.imread(str(tmp_path / "out" / "photo_labels.png"), cv2.IMREAD_UNCHANGED)
    model, _ = load_model(path)
    labels = segment_image(model, image, scale=0.5)
    assert labels.shape == (150, 230) and np.array_equal(labels, written)
    assert not np.array_equal(labels, segment_image(model, image))  # the scale is used: the checkpoint's differs


def test_one_window_covering_the_image_is_whole_image_inference(tmp_path, monkeypatch):
    path = camvid_checkpoint(tmp_path)
    model, _ = load_model(path)
    image = np.random.default_rng(1).integers(0, 256, (90, 130, 3), dtype=np.uint8)  # 90x130 network pixels at 1
    sizes = seen_sizes(monkeypatch)
    whole = segment_image(model, image, scale=1.0)
    assert sizes == [(96, 160)]
    assert np.array_equal(segment_image(model, image, scale=1.0, tile=130), whole) and sizes[-1] == (96, 160)
    tiled = segment_image(model, image, scale=1.0, tile=64, tile_overlap=32)  # windows of 64x64 only
    assert set(sizes[2:]) == {(64, 64)} and len(sizes[2:]) == 2 * 4  # rows from 0, 26; columns 0, 32, 64, 66
    assert tiled.shape == whole.shape
    del sizes[:]
    quarter = segment_image(model, image, scale=1.0, tile=64)  # no overlap given: a quarter of the window, 16
    assert np.array_equal(quarter, segment_image(model, image, scale=1.0, tile=64, tile_overlap=16))
    assert len(sizes) == 2 * 2 * 3  # twice: rows from 0, 26; columns 0, 48, 66


@pytest.mark.parametrize("length,window,overlap,starts", [(100, 100, 10, [0]), (90, 100, 10, [0]),
                                                          (150, 64, 16, [0, 48, 86]), (128, 64, 0, [0, 64]),
                                                          (129, 64, 0, [0, 64, 65])])
def test_windows_start_every_window_less_overlap_and_the_last_ends_flush(length, window, overlap, starts):
    assert window_starts(length, window, overlap) == starts


def test_tiled_logits_are_the_mean_of_the_covering_windows_logits(tmp_path):
    """Band by band with a rolling buffer == every window's logits summed into full-size arrays, in float64."""
    torch.manual_seed(0)
    model = build_model("unet", "resnet18", None, classes=3, att_depth=2, patch_size=2).double().eval()
    normalizer = Normalizer(model.spec.mean, model.spec.std, "cpu")
    forward = window_logits(model, lambda x: normalizer(x).double())
    x = torch.randint(0, 256, (1, 3, 100, 150), dtype=torch.uint8)
    with torch.no_grad():
        rows = list(tiled_logit_rows(forward, x, (64, 64), 24))
        total, count = np.zeros((3, 100, 150)), np.zeros((100, 150))
        for top in (0, 36):  # 64-pixel windows every 40 pixels, the last flush with the end
            for left in (0, 40, 80, 86):
                total[:, top:top + 64, left:left + 64] += forward(x[..., top:top + 64, left:left + 64]).numpy()
                count[top:top + 64, left:left + 64] += 1
    assert [top for top, _ in rows] == [0, 36] and rows[0][1].dtype == torch.float64
    assert np.abs(torch.cat([band for _, band in rows], dim=1).numpy() - total / count).max() < 1e-12


def test_large_images_are_tiled_with_a_note_and_the_settings_recorded(tmp_path, monkeypatch, capsys):
    """Above the whole-image limit every forward is one window (memory of one window, whatever the image)."""
    import utils.apps.predict as predicting

    path = camvid_checkpoint(tmp_path)
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), np.random.default_rng(2).integers(0, 256, (300, 500, 3), dtype=np.uint8))
    monkeypatch.setattr(predicting, "WHOLE_IMAGE_LIMIT", 100 * 100)
    monkeypatch.setattr(predicting, "AUTO_TILE", 128)
    sizes = seen_sizes(monkeypatch)
    predict(photo, path, str(tmp_path / "out"), "cpu", scale=1.0, tile_overlap=32)
    assert set(sizes) == {(128, 128)} and len(sizes) == 3 * 5
    out = capsys.readouterr().out
    assert "note: big.png is 500x300 network pixels at --scale 1, more than 0 megapixels: segmented in 128-pixel " \
           "windows (--tile SIZE sets them)" in out
    assert "note: --scale 1 given: segmenting at 1, where the model was trained at --scale 0.125" in out
    recorded = json.loads((tmp_path / "out" / "predict.json").read_text())
    assert recorded[0]["scale"] == 1.0 and recorded[0]["scale_given"] and recorded[0]["trained_scale"] == 0.125
    assert len(recorded[0]["notes"]) == 3  # the scale, the frame size, the windows


def test_inputs_unlike_the_training_frames_are_noted_once(tmp_path, capsys):
    path = camvid_checkpoint(tmp_path)
    folder = tmp_path / "frames"
    folder.mkdir()
    half = np.random.default_rng(3).integers(0, 256, (360, 480, 3), dtype=np.uint8)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(folder / name), half)
    cv2.imwrite(str(folder / "grey.png"), half[..., 0])
    cv2.imwrite(str(folder / "same.png"), np.zeros((720, 960, 3), np.uint8))
    predict(folder, path, str(tmp_path / "out"), "cpu")
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: a.png (and any other input of its size) is 480x360, but the model was trained on camvid frames of "
        "960x720: its objects are about 0.5 times the size it learnt; --scale 0.25 would show them at that size",
        "note: grey.png has 1 channel, the model takes 3 (RGB): replicated to RGB"]
    assert json.loads((tmp_path / "out" / "predict.json").read_text())[0]["scale_given"] is False


@pytest.mark.parametrize("channels", [1, 4])
def test_models_of_other_channel_counts_segment_their_images(tmp_path, channels):
    path = camvid_checkpoint(tmp_path, in_channels=channels)
    image = np.random.default_rng(4).integers(0, 256, (80, 100, channels), dtype=np.uint8)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), image if channels == 1 else cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA))
    predict(photo, path, str(tmp_path / "out"), "cpu")
    written = cv2.imread(str(tmp_path / "out" / "photo_labels.png"), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(segment_image(load_model(path)[0], image), written)
    overlay = cv2.imread(str(tmp_path / "out" / "photo_overlay.png"), cv2.IMREAD_UNCHANGED)
    assert overlay.shape == (80, 100, 3)
    rgb = tmp_path / "rgb.png"
    cv2.imwrite(str(rgb), np.zeros((80, 100, 3), np.uint8))
    with pytest.raises(DataError, match=f"rgb.png has 3 channels, but .* images of {channels} are read here "
                                        f"\\(--in-channels {channels}\\): convert it, or use a model of --in-channels 3"):
        predict(rgb, path, str(tmp_path / "out2"), "cpu")
    with pytest.raises(ValueError, match=f"the model takes uint8 \\(H, W, {channels}\\) images"):
        segment_image(load_model(path)[0], np.zeros((80, 100, 3), np.uint8))
