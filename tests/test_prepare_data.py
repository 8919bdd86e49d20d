"""tools/prepare_data.py on fixtures made here: CamVid colour labels at the release's 960x720, tiny NIfTI
volumes, CUB / ISIC / Cityscapes layouts, and downloads from an HTTP server on 127.0.0.1 (never the internet).

Most tests call main(argv) in-process for speed; one runs the script as a subprocess for the CLI.
"""
import http.server
import io
import json
import re
import socket
import subprocess
import sys
import tarfile
import threading
import types
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from tools.prepare import camvid, checks, cli, common, download, lits, sources

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "prepare_data.py"
# The package's modules seen as one namespace, as the tests read them (patch a module itself, not this view).
prep = types.SimpleNamespace(**{name: value for module in (common, sources, download, camvid, lits, checks, cli)
                                for name, value in vars(module).items() if not name.startswith("__")})

WIDTH, HEIGHT = prep.CAMVID_SIZE
SPLIT_NAMES = {split: (prep.CAMVID_SPLIT_DIR / f"{split}.txt").read_text().split()[:2] for split in prep.SPLITS}
BAND = WIDTH // len(prep.CAMVID_COLOURS)  # 30 px: one vertical band per CamVid colour


# ---- helpers ------------------------------------------------------------------------------------------------

def run(capsys, *argv):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    code = prep.main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(code, err, *fragments):
    """Exit status 2 and exactly one `error:` line holding every fragment."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert str(fragment) in lines[0]


def assert_nothing_written(out):
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))


def tree(root):
    """{relative path: bytes} of every file below root."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def png(rgb):
    return cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def colour_label():
    """A 960x720 label with every one of the 32 CamVid colours as a 30 px vertical band."""
    label = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    for i, (colour, _, _) in enumerate(prep.CAMVID_COLOURS):
        label[:, i * BAND:(i + 1) * BAND] = colour
    return label


LABEL_PNG = png(colour_label())


def make_camvid(root, per_split=2, zipped=False):
    """A CamVid release: 701_StillsRaw_full/NAME.png and LabeledApproved_full/NAME_L.png (or the zips)."""
    frames, labels = root / "701_StillsRaw_full", root / "LabeledApproved_full"
    frames.mkdir(parents=True)
    labels.mkdir()
    names = [name for split in prep.SPLITS for name in SPLIT_NAMES[split][:per_split]]
    for i, name in enumerate(names):
        frame = np.full((HEIGHT, WIDTH, 3), 40 * i % 256, np.uint8)
        frame[100:200, 100 + 10 * i:300] = (200, 10 * i, 50)
        (frames / f"{name}.png").write_bytes(png(frame))
        (labels / f"{name}_L.png").write_bytes(LABEL_PNG)
    if zipped:
        zip_folder(frames, root / "701_StillsRaw_full.zip", prefix="701_StillsRaw_full/")
        zip_folder(labels, root / "LabeledApproved_full.zip", prefix="")
    return names


def zip_folder(folder, archive, prefix):
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, prefix + path.name)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()


def expected_index_label():
    index = np.zeros((HEIGHT, WIDTH), np.uint8)
    for i, (_, _, cls) in enumerate(prep.CAMVID_COLOURS):
        index[:, i * BAND:(i + 1) * BAND] = prep.CAMVID_CLASSES.index(cls)
    return index


# ---- CamVid -------------------------------------------------------------------------------------------------

def test_camvid_table_has_32_colours_grouped_into_the_12_classes():
    colours = [colour for colour, _, _ in prep.CAMVID_COLOURS]
    assert len(set(colours)) == len({name for _, name, _ in prep.CAMVID_COLOURS}) == 32
    assert {cls for _, _, cls in prep.CAMVID_COLOURS} == set(prep.CAMVID_CLASSES)
    group = {name: cls for _, name, cls in prep.CAMVID_COLOURS}
    # The disputed choices, as documented beside the table.
    assert group["LaneMkgsDriv"] == group["LaneMkgsNonDriv"] == "road"
    assert group["Child"] == group["CartLuggagePram"] == group["Animal"] == "pedestrian"
    assert group["TrafficCone"] == "pole" and group["TrafficLight"] == group["Misc_Text"] == "signsymbol"
    assert group["Void"] == "unlabelled" and prep.CAMVID_CLASSES.index("unlabelled") == 11


def test_colours_to_indices_maps_every_pixel_and_names_an_unknown_colour():
    rgb = np.array([[(128, 128, 128), (128, 0, 192)], [(192, 128, 64), (0, 0, 0)]], np.uint8)
    assert prep.colours_to_indices(rgb, "x").tolist() == [[0, 3], [9, 11]]
    rgb[1, 0] = (1, 2, 3)
    with pytest.raises(prep.PrepareError, match=r"lab\.png has colour \(1, 2, 3\) at pixel \(x=0, y=1\)"):
        prep.colours_to_indices(rgb, "lab.png")


def test_camvid_folders_become_the_segnet_layout_at_full_size(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "data" / "CamVid"
    make_camvid(source)
    code, stdout, _ = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert code == 0
    assert f"ready: use --data-dir {out}" in stdout
    assert sorted(p.name for p in out.iterdir()) == [prep.MARKER, "test", "testannot", "train", "trainannot",
                                                     "val", "valannot"]
    expected = expected_index_label()
    for split in prep.SPLITS:
        names = sorted(f"{name}.png" for name in SPLIT_NAMES[split])
        assert sorted(p.name for p in (out / split).iterdir()) == names
        assert sorted(p.name for p in (out / f"{split}annot").iterdir()) == names
        for name in names:
            assert (out / split / name).read_bytes() == (source / "701_StillsRaw_full" / name).read_bytes()
            label = cv2.imread(str(out / f"{split}annot" / name), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.shape == (HEIGHT, WIDTH)
            np.testing.assert_array_equal(label, expected)


def test_camvid_zip_archives_give_the_same_bytes_and_reruns_are_identical(tmp_path, capsys):
    folders, zips = tmp_path / "folders", tmp_path / "zips"
    make_camvid(folders, per_split=1)
    make_camvid(zips, per_split=1, zipped=True)
    assert sorted(p.name for p in zips.iterdir()) == ["701_StillsRaw_full.zip", "LabeledApproved_full.zip"]
    for source in (folders, zips):
        assert run(capsys, "camvid", "--source", source, "--out", source / "out", "--allow-partial")[0] == 0
    first = tree(zips / "out")
    assert len(first) == 7 and first == tree(folders / "out")  # 6 PNGs and the marker
    assert run(capsys, "camvid", "--source", zips, "--out", zips / "out", "--allow-partial", "--force")[0] == 0
    assert tree(zips / "out") == first  # --out inside --source is not read back as input either


def test_camvid_unknown_colour_names_file_colour_and_pixel(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "out"
    name = make_camvid(source, per_split=1)[1]
    label = colour_label()
    label[7, 5] = (1, 2, 3)
    (source / "LabeledApproved_full" / f"{name}_L.png").write_bytes(png(label))
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert_error(code, err, f"{name}_L.png", "colour (1, 2, 3) at pixel (x=5, y=7)")
    assert_nothing_written(out)


@pytest.mark.parametrize("missing", ["label", "frame"])
def test_camvid_frame_without_label_or_the_reverse(tmp_path, capsys, missing):
    source, out = tmp_path / "release", tmp_path / "out"
    name = make_camvid(source, per_split=1)[0]
    frame, label = source / "701_StillsRaw_full" / f"{name}.png", source / "LabeledApproved_full" / f"{name}_L.png"
    (label if missing == "label" else frame).unlink()
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    if missing == "label":
        assert_error(code, err, f"{frame} has no label {name}_L.png")
    else:
        assert_error(code, err, f"{label} has no frame {name}.png")
    assert_nothing_written(out)


def test_camvid_wrong_size_is_an_error(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "out"
    name = make_camvid(source, per_split=1)[2]
    (source / "701_StillsRaw_full" / f"{name}.png").write_bytes(png(np.zeros((360, 480, 3), np.uint8)))
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert_error(code, err, f"{name}.png is 480x360, not 960x720")
    assert_nothing_written(out)


def test_camvid_corrupt_png_is_one_error_line_without_opencv_warnings(tmp_path, capfd):
    source, out = tmp_path / "release", tmp_path / "out"
    names = make_camvid(source, per_split=1)
    label = source / "LabeledApproved_full" / f"{names[0]}_L.png"
    label.write_bytes(label.read_bytes()[:200])  # truncated: OpenCV logs a warning of its own on stderr
    code = prep.main(["camvid", "--source", str(source), "--out", str(out), "--allow-partial"])
    assert_error(code, capfd.readouterr().err, label, "cannot be decoded")  # fd 2: OpenCV's C++ log too
    assert_nothing_written(out)


def test_camvid_frame_in_no_split_list_is_an_error(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "out"
    make_camvid(source, per_split=1)
    (source / "701_StillsRaw_full" / "0001TP_999999.png").write_bytes(png(np.zeros((HEIGHT, WIDTH, 3), np.uint8)))
    (source / "LabeledApproved_full" / "0001TP_999999_L.png").write_bytes(LABEL_PNG)
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert_error(code, err, "0001TP_999999.png is in no split list")
    assert_nothing_written(out)


def test_camvid_split_frames_missing_need_allow_partial(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "out"
    make_camvid(source, per_split=1)
    missing = SPLIT_NAMES["train"][1]  # the first split-list frame the fixture leaves out
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out)
    assert_error(code, err, f"{missing}.png", "train.txt", "697 more", "--allow-partial")
    assert_nothing_written(out)


def test_camvid_existing_out_needs_force(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "out"
    make_camvid(source, per_split=1)
    assert run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")[0] == 0
    (out / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert_error(code, err, f"--out {out} exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"
    assert run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial", "--force")[0] == 0
    assert not (out / "keep.txt").exists() and len(list((out / "trainannot").iterdir())) == 1
    assert not list(tmp_path.glob(".out.*"))


def test_force_never_replaces_a_folder_the_tool_did_not_write(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "thesis"
    make_camvid(source, per_split=1)
    write(out / "thesis.tex", "years of work")
    before = tree(tmp_path)
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial", "--force")
    assert_error(code, err, f"--out {out} was not written by this tool", prep.MARKER)
    assert tree(tmp_path) == before and not list(tmp_path.glob(".thesis.*"))


@pytest.mark.parametrize("where", ["source itself", "parent of source"])
def test_force_never_removes_the_source_or_a_folder_holding_it(tmp_path, capsys, where):
    parent = tmp_path / "work"
    source = parent / "release"
    make_camvid(source, per_split=1)
    write(source / "notes.txt", "my notes")
    write(parent / "thesis.tex", "years of work")
    out = source if where == "source itself" else parent
    (out / prep.MARKER).write_text(prep.MARKER_TEXT)  # even a folder the tool once wrote
    before = tree(tmp_path)
    for force in ((), ("--force",)):
        code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial", *force)
        assert_error(code, err, f"--out {out} holds --source {source}", "delete the source")
        assert tree(tmp_path) == before and not list(out.parent.glob(f".{out.name}.*"))


def test_camvid_ctrl_c_leaves_nothing(tmp_path, capsys, monkeypatch):
    source, out = tmp_path / "release", tmp_path / "out"
    make_camvid(source, per_split=1)
    write = prep.write_camvid_pair
    calls = []

    def interrupted(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        write(*args)

    monkeypatch.setattr(camvid, "write_camvid_pair", interrupted)
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert code == 130 and err.startswith("error: interrupted")
    assert_nothing_written(out)


def test_camvid_truncated_zip_is_named(tmp_path, capsys):
    source, out = tmp_path / "release", tmp_path / "out"
    make_camvid(source, per_split=1, zipped=True)
    archive = source / "LabeledApproved_full.zip"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    code, _, err = run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")
    assert_error(code, err, archive, "truncated or corrupt")
    assert_nothing_written(out)


def test_prepared_camvid_is_read_by_the_project_reader(tmp_path, capsys):
    from utils.data.datasets import CamVid as camvid

    source, out = tmp_path / "release", tmp_path / "out"
    make_camvid(source, per_split=1)
    assert run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")[0] == 0
    dataset = camvid(out, "val")
    image, mask = dataset[0]
    assert len(dataset) == 1 and image.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(mask, expected_index_label())


# The release's own colour -> class pairs (label_colors.txt names, SegNet's 11 classes), written out here so
# that the prepared labels are checked against the reader's CamVid.classes, not the tool against itself.
RELEASE_CLASS = {"Sky": "sky", "Building": "building", "Column_Pole": "pole", "Road": "road",
                 "Sidewalk": "pavement", "Tree": "tree", "SignSymbol": "signsymbol", "Fence": "fence",
                 "Car": "car", "Pedestrian": "pedestrian", "Bicyclist": "bicyclist", "Void": "unlabelled"}


def test_prepared_camvid_class_order_is_the_readers(tmp_path, capsys):
    from utils.data.datasets import CamVid

    source, out = tmp_path / "release", tmp_path / "out"
    make_camvid(source, per_split=1)
    assert run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")[0] == 0
    _, mask = CamVid(out, "test")[0]
    for i, (_, name, _) in enumerate(prep.CAMVID_COLOURS):
        if name in RELEASE_CLASS:
            band = mask[:, i * BAND:(i + 1) * BAND]
            assert (band == CamVid.classes.index(RELEASE_CLASS[name])).all(), name


@pytest.mark.e2e
def test_main_trains_one_epoch_on_the_prepared_camvid(tmp_path, capsys):
    import main
    from tests.conftest import FAST

    source, out, run_dir = tmp_path / "release", tmp_path / "CamVid", tmp_path / "run"
    make_camvid(source, per_split=2)
    assert run(capsys, "camvid", "--source", source, "--out", out, "--allow-partial")[0] == 0
    assert main.main([*FAST, "--data-dir", str(out), "--epochs", "1", "--output-dir", str(run_dir)]) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert sum(map(sum, metrics["test"]["confusion_matrix"])) == 2 * 90 * 120  # 2 test frames, 720x960 at 0.125, no padding


def test_prepared_lits_is_read_by_the_project_reader(tmp_path, capsys):
    from utils.data.datasets import LiTS as lits

    make_lits(tmp_path / "lits", numbers=range(3))
    assert run(capsys, "lits", "--source", tmp_path / "lits", "--out", tmp_path / "LiTS")[0] == 0
    image, mask = lits(tmp_path / "LiTS", "test")[1]  # slice 3: liver (class 0) with one tumour voxel (1)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert mask[6, 6] == 1 and mask[5, 5] == 0 and mask[0, 0] == 2


# ---- LiTS ---------------------------------------------------------------------------------------------------

LITS_SHAPE = (16, 16, 6)
LIVER_SLICES = (2, 3)


def lits_volume(number):
    """HU values from -1000 to 1000 (so windowing shows), different per volume."""
    return (np.linspace(-1000, 1000, np.prod(LITS_SHAPE)).reshape(LITS_SHAPE) + number).astype(np.int16)


def lits_mask():
    mask = np.zeros(LITS_SHAPE, np.uint8)
    mask[4:10, 4:10, LIVER_SLICES[0]:LIVER_SLICES[-1] + 1] = 1
    mask[6, 6, LIVER_SLICES[-1]] = 2
    return mask


def save_nifti(array, path):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(array, np.eye(4)), path)


def make_lits(root, numbers=range(6)):
    """volume-N.nii / segmentation-N.nii in two batch folders; volume 5 as .nii.gz."""
    for number in numbers:
        folder = root / ("Training Batch 1" if number < 3 else "Training Batch 2")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".nii.gz" if number == 5 else ".nii"
        save_nifti(lits_volume(number), folder / f"volume-{number}{suffix}")
        save_nifti(lits_mask(), folder / f"segmentation-{number}{suffix}")


def slice_files(out, split, kind="images"):
    return sorted(p.name for p in (out / split / kind).iterdir())


def test_lits_splits_by_volume_keeps_liver_slices_and_windows(tmp_path, capsys):
    source, out = tmp_path / "lits", tmp_path / "LiTS"
    make_lits(source)
    code, stdout, _ = run(capsys, "lits", "--source", source, "--out", out)
    assert code == 0 and f"ready: use --data-dir {out}" in stdout
    record = json.loads((out / "split.json").read_text())
    volumes = record["volumes"]
    assert sorted(sum(volumes.values(), [])) == list(range(6))  # each volume in exactly one split
    assert [len(volumes[split]) for split in prep.SPLITS] == [4, 1, 1]
    assert record["seed"] == 0 and record["fractions"] == {"train": 0.7, "val": 0.1, "test": 0.2}
    assert record["slices"] == "liver" and "liver" in record["slice_policy"]
    for split in prep.SPLITS:
        names = slice_files(out, split)
        assert names == slice_files(out, split, "masks")
        assert names == sorted(f"volume-{n}_slice-{k:04d}.npy" for n in volumes[split] for k in LIVER_SLICES)
        assert record["slice_counts"][split] == len(names)
    number = volumes["val"][0]
    image = np.load(out / "val" / "images" / f"volume-{number}_slice-0003.npy")
    mask = np.load(out / "val" / "masks" / f"volume-{number}_slice-0003.npy")
    assert image.dtype == np.float32 and image.min() == -250 and image.max() == 250
    np.testing.assert_array_equal(image, np.clip(lits_volume(number)[:, :, 3], -250, 250))
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, lits_mask()[:, :, 3])
    again = tmp_path / "again"
    assert run(capsys, "lits", "--source", source, "--out", again)[0] == 0
    assert tree(again) == tree(out)


def test_lits_all_slices_keeps_every_slice(tmp_path, capsys):
    source, out = tmp_path / "lits", tmp_path / "LiTS"
    make_lits(source, numbers=range(3))
    assert run(capsys, "lits", "--source", source, "--out", out, "--all-slices", "--seed", "3")[0] == 0
    record = json.loads((out / "split.json").read_text())
    assert record["slices"] == "all" and record["seed"] == 3
    assert sum(len(slice_files(out, split)) for split in prep.SPLITS) == 3 * LITS_SHAPE[2]
    number = record["volumes"]["test"][0]
    empty = np.load(out / "test" / "masks" / f"volume-{number}_slice-0000.npy")
    assert not empty.any()  # a slice without liver, kept only with --all-slices


def test_lits_split_is_seeded_and_by_fractions():
    ids = list(range(20))
    first = prep.split_volumes(ids, (0.7, 0.1, 0.2), seed=0)
    assert first == prep.split_volumes(ids, (0.7, 0.1, 0.2), seed=0)
    assert first != prep.split_volumes(ids, (0.7, 0.1, 0.2), seed=1)
    assert [len(first[split]) for split in prep.SPLITS] == [14, 2, 4]
    assert prep.split_counts(131, (0.7, 0.1, 0.2)) == [92, 13, 26]
    assert prep.split_counts(3, (0.7, 0.1, 0.2)) == [1, 1, 1]
    with pytest.raises(prep.PrepareError, match="2 LiTS volume.*every split needs at least one volume"):
        prep.split_volumes([0, 1], (0.7, 0.1, 0.2), seed=0)


def test_lits_split_with_an_empty_split_is_refused(tmp_path, capsys):
    source, out = tmp_path / "lits", tmp_path / "LiTS"
    make_lits(source, numbers=range(3))
    code, stdout, err = run(capsys, "lits", "--source", source, "--out", out, "--split", "0.5,0.5,0")
    assert code == 2 and "ready" not in stdout
    assert "every split needs at least one volume" in " ".join(err.split())
    assert_nothing_written(out)


@pytest.mark.parametrize("case, fragment", [
    ("shape", "has shape (16, 16, 6) but"),
    ("no segmentation", "has no segmentation-1.nii"),
    ("label 3", "has label value 3 at voxel (0, 0, 0)"),
])
def test_lits_bad_input_is_one_error_line(tmp_path, capsys, case, fragment):
    source, out = tmp_path / "lits", tmp_path / "LiTS"
    make_lits(source, numbers=range(3))
    segmentation = source / "Training Batch 1" / "segmentation-1.nii"
    if case == "shape":
        save_nifti(np.zeros((16, 16, 5), np.uint8), segmentation)
    elif case == "no segmentation":
        segmentation.unlink()
    else:
        mask = lits_mask()
        mask[0, 0, 0] = 3
        save_nifti(mask, segmentation)
    code, _, err = run(capsys, "lits", "--source", source, "--out", out)
    assert_error(code, err, fragment, "volume-1.nii" if case == "no segmentation" else "segmentation-1.nii")
    assert_nothing_written(out)


# ---- birds, skinlesion, cityscapes checks --------------------------------------------------------------------

JPEG = cv2.imencode(".jpg", np.full((8, 8, 3), 120, np.uint8))[1].tobytes()
MASK = cv2.imencode(".png", np.full((8, 8), 255, np.uint8))[1].tobytes()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def make_cub(root, masks_beside=False):
    """CUB_200_2011/ with 2 classes x 3 images (ids 1..6, odd ones train) and their masks."""
    cub = root / "CUB_200_2011"
    rels = [f"00{c}.Class_{c}/Bird_{c}_{i}.jpg" for c in (1, 2) for i in range(3)]
    write(cub / "images.txt", "".join(f"{n} {rel}\n" for n, rel in enumerate(rels, 1)))
    write(cub / "train_test_split.txt", "".join(f"{n} {n % 2}\n" for n in range(1, 7)))
    for rel in rels:
        write(cub / "images" / rel, JPEG)
        write((root if masks_beside else cub) / "segmentations" / rel.replace(".jpg", ".png"), MASK)
    return cub


CUB_COUNTS = {"images": 6, "train": 3, "test": 3, "classes": 2}


def test_birds_in_place_is_ready_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(prep.EXPECTED_COUNTS, "birds", CUB_COUNTS)
    cub = make_cub(tmp_path / "cub")
    before = tree(tmp_path)
    code, stdout, _ = run(capsys, "birds", "--source", tmp_path / "cub")
    assert code == 0 and stdout.strip() == f"ready: use --data-dir {cub}"
    assert tree(tmp_path) == before


def test_birds_names_missing_masks_and_counts(tmp_path, capsys):
    cub = make_cub(tmp_path)
    (cub / "segmentations" / "001.Class_1" / "Bird_1_0.png").unlink()
    (cub / "images" / "002.Class_2" / "Stray.jpg").write_bytes(JPEG)
    code, _, err = run(capsys, "birds", "--source", tmp_path)
    assert code == 2 and err.startswith(f"error: {tmp_path} is not a complete CUB-200-2011 copy")
    assert "missing masks (segmentations.tgz) (1): segmentations/001.Class_1/Bird_1_0.png" in err
    assert "images not listed in images.txt (misnamed?) (1): images/002.Class_2/Stray.jpg" in err
    assert "images listed in images.txt: 6 found, 11788 expected" in err
    assert "class folders: 2 found, 200 expected" in err


def test_birds_other_counts_need_allow_partial(tmp_path, capsys):
    cub = make_cub(tmp_path)
    code, _, err = run(capsys, "birds", "--source", tmp_path)
    assert code == 2 and "train images (train_test_split.txt 1): 3 found, 5994 expected" in err
    assert "--allow-partial" in err
    code, stdout, _ = run(capsys, "birds", "--source", tmp_path, "--allow-partial")
    assert code == 0 and f"ready: use --data-dir {cub}" in stdout
    assert "note: images listed in images.txt: 6 found, 11788 expected" in stdout


def tar_folder(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)


def test_birds_from_the_two_archives_is_assembled_with_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(prep.EXPECTED_COUNTS, "birds", CUB_COUNTS)
    staging, source, out = tmp_path / "staging", tmp_path / "downloads", tmp_path / "CUB"
    cub = make_cub(staging, masks_beside=True)
    source.mkdir()
    tar_folder(cub, source / "CUB_200_2011.tgz")
    tar_folder(staging / "segmentations", source / "segmentations.tgz")
    code, _, err = run(capsys, "birds", "--source", source)
    assert_error(code, err, "not in one folder", "pass --out DIR")
    code, stdout, _ = run(capsys, "birds", "--source", source, "--out", out)
    assert code == 0 and f"ready: use --data-dir {out}" in stdout
    assert (out / "images.txt").read_bytes() == (cub / "images.txt").read_bytes()
    assert (out / "segmentations" / "002.Class_2" / "Bird_2_1.png").read_bytes() == MASK
    assert len(list((out / "images").rglob("*.jpg"))) == 6
    assert run(capsys, "birds", "--source", out)[1].strip() == f"ready: use --data-dir {out}"


def make_isic(root):
    for phase, ids in (("Training", (0, 1)), ("Validation", (2,)), ("Test", (3,))):
        for number in ids:
            write(root / f"ISIC2018_Task1-2_{phase}_Input" / f"ISIC_{number:07d}.jpg", JPEG)
            write(root / f"ISIC2018_Task1_{phase}_GroundTruth" / f"ISIC_{number:07d}_segmentation.png", MASK)
        write(root / f"ISIC2018_Task1-2_{phase}_Input" / "LICENSE.txt", "licence")


def test_skinlesion_ready_then_misnamed_mask_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(prep.EXPECTED_COUNTS, "skinlesion", {"Training": 2, "Validation": 1, "Test": 1})
    make_isic(tmp_path)
    code, stdout, _ = run(capsys, "skinlesion", "--source", tmp_path)
    assert code == 0 and stdout.strip() == f"ready: use --data-dir {tmp_path}"
    truth = tmp_path / "ISIC2018_Task1_Training_GroundTruth"
    (truth / "ISIC_0000001_segmentation.png").rename(truth / "ISIC_0000001.png")
    code, _, err = run(capsys, "skinlesion", "--source", tmp_path)
    assert code == 2
    assert ("misnamed Training masks (want ISIC_<digits>_segmentation.png) (1): "
            "ISIC2018_Task1_Training_GroundTruth/ISIC_0000001.png") in err
    assert "Training images without a mask" in err and "ISIC_0000001.jpg" in err
    assert "Training masks: 1 found, 2 expected" in err


CITY_COUNTS = {"train": 2, "val": 1, "test": 1}


def make_cityscapes(root, train_ids=True):
    for split, frames in (("train", (19, 20)), ("val", (21,)), ("test", (22,))):
        for frame in frames:
            stem = f"aachen_000000_0000{frame}"
            write(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png", MASK)
            write(root / "gtFine" / split / "aachen" / f"{stem}_gtFine_polygons.json", "{}")
            if train_ids:
                write(root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelTrainIds.png", MASK)


def test_cityscapes_ready_with_train_ids(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(prep.EXPECTED_COUNTS, "cityscapes", CITY_COUNTS)
    make_cityscapes(tmp_path / "cityscapes")
    code, stdout, _ = run(capsys, "cityscapes", "--source", tmp_path)
    assert code == 0 and stdout.strip() == f"ready: use --data-dir {tmp_path / 'cityscapes'}"


def test_cityscapes_without_train_ids_prints_the_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(prep.EXPECTED_COUNTS, "cityscapes", CITY_COUNTS)
    monkeypatch.setitem(sys.modules, "cityscapesscripts", None)  # not installed
    make_cityscapes(tmp_path, train_ids=False)
    code, _, err = run(capsys, "cityscapes", "--source", tmp_path)
    assert_error(code, err, "pip install cityscapesscripts",
                 f"CITYSCAPES_DATASET={tmp_path} csCreateTrainIdLabelImgs")


@pytest.mark.parametrize("zipped", [False, True])
def test_cityscapes_runs_the_official_conversion_when_installed(tmp_path, capsys, monkeypatch, zipped):
    monkeypatch.setitem(prep.EXPECTED_COUNTS, "cityscapes", CITY_COUNTS)
    source, out = tmp_path / "cityscapes", tmp_path / "assembled"
    make_cityscapes(source, train_ids=False)
    if zipped:  # the two official archives, which only --out can turn into the layout
        for folder, archive in zip(("leftImg8bit", "gtFine"), prep.CITYSCAPES_ARCHIVES):
            with zipfile.ZipFile(source / archive, "w") as zf:
                for path in sorted((source / folder).rglob("*.*")):
                    zf.write(path, path.relative_to(source).as_posix())
            prep.shutil.rmtree(source / folder)
    seen = []

    def convert():  # stands in for cityscapesscripts' createTrainIdLabelImgs.main
        root = Path(prep.os.environ["CITYSCAPES_DATASET"])
        seen.append(root)
        for polygons in root.glob("gtFine/*/*/*_gtFine_polygons.json"):
            polygons.with_name(polygons.name.replace("polygons.json", "labelTrainIds.png")).write_bytes(MASK)

    module = types.ModuleType("cityscapesscripts.preparation.createTrainIdLabelImgs")
    module.main = convert
    for name in ("cityscapesscripts", "cityscapesscripts.preparation"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.delenv("CITYSCAPES_DATASET", raising=False)
    code, stdout, _ = run(capsys, "cityscapes", "--source", source, *(["--out", out] if zipped else []))
    root = out if zipped else source
    assert code == 0 and f"ready: use --data-dir {root}" in stdout
    assert len(seen) == 1 and "CITYSCAPES_DATASET" not in prep.os.environ
    assert len(list(root.glob("gtFine/*/*/*_labelTrainIds.png"))) == 4
    assert len(list(root.glob("leftImg8bit/*/*/*_leftImg8bit.png"))) == 4


# ---- downloads ----------------------------------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.files; honours `Range: bytes=N-` unless server.honour_range is False; sends only
    server.cut bytes of the body (with the full Content-Length) when set."""

    def do_GET(self):
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        self.server.ranges.append(requested)
        start = int(re.match(r"bytes=(\d+)-", requested)[1]) if requested and self.server.honour_range else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:][: self.server.cut])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    for variable in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.files, httpd.honour_range, httpd.cut, httpd.ranges = {}, True, None, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def zip_bytes(size=200_000):
    """A zip of incompressible bytes, so that cutting the file cuts member data."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("data.bin", np.random.default_rng(0).bytes(size))
    return buffer.getvalue()


def test_download_then_prepare_camvid(tmp_path, capsys, monkeypatch, server):
    staging, source, out = tmp_path / "staging", tmp_path / "downloads", tmp_path / "CamVid"
    make_camvid(staging, per_split=1, zipped=True)
    downloads = []
    for name in prep.CAMVID_ARCHIVES:
        server.files[f"/camvid/{name}"] = (staging / name).read_bytes()
        downloads.append((f"{server.url}/camvid/{name}", name))
    monkeypatch.setitem(prep.DOWNLOADS, "camvid", tuple(downloads))
    code, stdout, _ = run(capsys, "camvid", "--download", "--source", source, "--out", out, "--allow-partial")
    assert code == 0 and f"ready: use --data-dir {out}" in stdout
    assert sorted(p.name for p in source.iterdir()) == sorted(prep.CAMVID_ARCHIVES)  # no .part left
    assert len(tree(out)) == 7  # 6 PNGs and the marker
    code, stdout, _ = run(capsys, "camvid", "--download", "--source", source, "--out", out, "--allow-partial",
                          "--force")
    assert code == 0 and "already downloaded and complete" in stdout and len(server.ranges) == 2


def test_download_resumes_a_part_file_with_range(tmp_path, server):
    data = zip_bytes()
    server.files["/a.zip"] = data
    dest = tmp_path / "a.zip"
    (tmp_path / "a.zip.part").write_bytes(data[:70_000])
    prep.fetch(f"{server.url}/a.zip", dest)
    assert server.ranges == ["bytes=70000-"]
    assert dest.read_bytes() == data and not (tmp_path / "a.zip.part").exists()
    prep.close_archives()


def test_download_restarts_when_the_server_ignores_range(tmp_path, server):
    data = zip_bytes()
    server.files["/a.zip"], server.honour_range = data, False
    (tmp_path / "a.zip.part").write_bytes(b"x" * 50_000)  # would corrupt the file if appended to
    prep.fetch(f"{server.url}/a.zip", tmp_path / "a.zip")
    assert server.ranges == ["bytes=50000-"] and (tmp_path / "a.zip").read_bytes() == data
    prep.close_archives()


def test_download_cut_short_keeps_the_part_for_resume(tmp_path, server):
    data = zip_bytes()
    server.files["/a.zip"], server.cut = data, 80_000
    url, part = f"{server.url}/a.zip", tmp_path / "a.zip.part"
    with pytest.raises(prep.PrepareError, match=r"stopped at 80000 bytes .*a\.zip\.part is kept"):
        prep.fetch(url, tmp_path / "a.zip")
    assert part.read_bytes() == data[:80_000]
    server.cut = None
    prep.fetch(url, tmp_path / "a.zip")
    assert server.ranges == [None, "bytes=80000-"] and (tmp_path / "a.zip").read_bytes() == data
    prep.close_archives()


def test_download_of_a_corrupt_archive_is_removed(tmp_path, server):
    server.files["/a.zip"] = b"not a zip at all" * 100
    with pytest.raises(prep.PrepareError, match="gave a truncated or corrupt archive"):
        prep.fetch(f"{server.url}/a.zip", tmp_path / "a.zip")
    assert list(tmp_path.iterdir()) == []


def test_truncated_tgz_is_detected_by_reading_every_member(tmp_path):
    archive = tmp_path / "segmentations.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = np.random.default_rng(1).bytes(300_000)
        info = tarfile.TarInfo("segmentations/a.png")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    archive.write_bytes(archive.read_bytes()[:150_000])
    with pytest.raises(prep.PrepareError, match=r"segmentations\.tgz is truncated or corrupt"):
        prep.list_archive(archive)


def test_download_http_404_and_offline_are_one_line_errors(tmp_path, capsys, monkeypatch, server):
    source = tmp_path / "downloads"
    missing = f"{server.url}/ISIC2018_Task1-2_Training_Input.zip"
    monkeypatch.setitem(prep.DOWNLOADS, "skinlesion", ((missing, "ISIC2018_Task1-2_Training_Input.zip"),))
    code, _, err = run(capsys, "skinlesion", "--download", "--source", source)
    assert_error(code, err, f"cannot download {missing}: HTTP Error 404", f"download it by hand into {source}")
    assert not source.exists()  # the folder the download made, and nothing came into, is not left behind
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}/CUB_200_2011.tgz"
    monkeypatch.setitem(prep.DOWNLOADS, "birds", ((closed, "CUB_200_2011.tgz"),))
    code, _, err = run(capsys, "birds", "--download", "--source", source)
    assert_error(code, err, f"cannot download {closed}:", "refused", "download it by hand")


@pytest.mark.parametrize("dataset, where", [("lits", "codalab.org"), ("cityscapes", "cityscapes-dataset.com")])
def test_download_is_not_offered_for_registration_only_data(tmp_path, capsys, dataset, where):
    assert prep.main([dataset, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--download" not in text
    assert "cannot be downloaded by this tool" in text and "registration" in text and where in text
    code, _, err = run(capsys, dataset, "--download", "--source", tmp_path / "x")
    assert code == 2 and "unrecognized arguments: --download" in err
    assert not (tmp_path / "x").exists()


# ---- command line -------------------------------------------------------------------------------------------

def test_help_lists_every_data_set(capsys):
    assert prep.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in ("camvid", "lits", "birds", "skinlesion", "cityscapes"))
    assert prep.main(["lits", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "only slices with liver" in text and "this project's own choices" in text
    assert "original" not in text  # the released code says nothing about slice selection or the split


@pytest.mark.e2e
def test_cli_runs_as_a_script(tmp_path):
    make_lits(tmp_path / "lits", numbers=range(3))
    done = subprocess.run([sys.executable, str(TOOL), "lits", "--source", str(tmp_path / "lits"), "--out",
                           str(tmp_path / "LiTS")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"ready: use --data-dir {tmp_path / 'LiTS'}" in done.stdout
    failed = subprocess.run([sys.executable, str(TOOL), "camvid", "--source", str(tmp_path / "nowhere")],
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2 and failed.stderr.startswith(f"error: --source {tmp_path / 'nowhere'} is not")
