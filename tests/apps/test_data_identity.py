"""What a run and a comparison trained and were tested on: each split's fingerprint (names and sampled content).
A resume on rewritten data, and a comparison taken up on other data, are refused in one line (or, where the user
says so, resumed or trained anew); a refused comparison writes nothing."""
import json
import os
import shutil

import cv2
import pytest

import main
from tests.conftest import FAST
from utils.data.datasets import build_dataset
from utils.fingerprint import SAMPLE, data_changes, split_record


def record(root, split="val"):
    return {split: split_record(build_dataset("camvid", root, split))}


def relabel(label_path, value=3):
    """Rewrite a label with one pixel of another class: the same name, and most likely the same size."""
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    label[0, 0] = value if label[0, 0] != value else value + 1
    assert cv2.imwrite(str(label_path), label)


def test_the_fingerprint_notices_a_rewritten_label_not_a_copy_or_a_touch(tiny_camvid, tmp_path):
    before = record(tiny_camvid)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_camvid, copy)  # new modification times, another root: the same data
    os.utime(next((copy / "valannot").iterdir()), (0, 0))
    assert data_changes(before, record(copy)) == []
    relabel(sorted((copy / "valannot").iterdir())[0])
    assert data_changes(before, record(copy)) == [
        "the content of the val split's files differs from what the run was trained on (same names, a file rewritten)"]


def test_a_change_in_the_middle_of_a_large_file_is_seen_through_the_png_checksum_at_its_end(tiny_camvid):
    image = sorted((tiny_camvid / "val").iterdir())[0]
    picture = cv2.imread(str(image))
    assert image.stat().st_size > 2 * SAMPLE  # the middle of this file is not read
    before = record(tiny_camvid)
    picture[picture.shape[0] // 2, picture.shape[1] // 2] ^= 255
    assert cv2.imwrite(str(image), picture)
    assert data_changes(before, record(tiny_camvid))


def test_a_record_of_an_older_version_without_content_is_compared_by_names_alone(tiny_camvid):
    before = record(tiny_camvid)
    del before["val"]["content_sha1"]
    relabel(sorted((tiny_camvid / "valannot").iterdir())[0])
    assert data_changes(before, record(tiny_camvid)) == []


@pytest.mark.e2e
def test_a_resume_after_the_val_labels_were_rewritten_is_refused_unless_allowed(tiny_camvid, tmp_path, capsys):
    run = tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--epochs", "1", "--output-dir", str(run)]) == 0
    for label in (tiny_camvid / "valannot").iterdir():
        relabel(label)
    capsys.readouterr()
    assert main.main(["--resume", str(run), "--epochs", "2"]) == 2
    assert capsys.readouterr().err == (f"error: --resume {run}: the content of the val split's files differs from "
                                       f"what the run was trained on (same names, a file rewritten); pass "
                                       f"--allow-changed-run to resume anyway\n")
    assert main.main(["--resume", str(run), "--epochs", "2", "--allow-changed-run"]) == 0


def compare(data, out, *flags):
    return main.main([*FAST, "--compare", "linknet", "--epochs", "1", "--data-dir", str(data), "--output-dir",
                      str(out), *flags])


def folder_state(folder):
    return {str(path.relative_to(folder)): path.stat().st_mtime_ns for path in folder.rglob("*")}


@pytest.mark.e2e
def test_a_comparison_on_other_data_is_refused_and_trained_anew_with_overwrite(tiny_camvid, tmp_path, capsys):
    out, other = tmp_path / "compare", tmp_path / "other"
    assert compare(tiny_camvid, out) == 0
    shutil.copytree(tiny_camvid, other)
    relabel(sorted((other / "testannot").iterdir())[0])
    before = folder_state(out)
    capsys.readouterr()
    assert compare(other, out) == 2
    assert capsys.readouterr().err == (
        f"error: --output-dir {out} holds this comparison trained on other data (the content of the test split's "
        f"files differs from what the run was trained on (same names, a file rewritten)): choose a new folder, or "
        f"pass --overwrite to train its runs anew on this data\n")
    assert folder_state(out) == before  # nothing written
    assert compare(tiny_camvid, out) == 0  # its own data: taken up, the runs kept
    assert "finished earlier, kept" in capsys.readouterr().out
    assert compare(other, out, "--overwrite") == 0
    assert "finished earlier, kept" not in capsys.readouterr().out
    tested_on = json.loads((out / "linknet-baseline" / "config.json").read_text())["trained_on"]["data"]["test"]
    assert tested_on == record(other, "test")["test"]
    assert json.loads((out / "comparison.json").read_text())["data"]["test"] == tested_on


@pytest.mark.e2e
def test_a_comparison_refused_for_its_data_writes_nothing_and_the_corrected_command_runs(tiny_camvid, tmp_path,
                                                                                         capsys, monkeypatch):
    image = sorted((tiny_camvid / "test").iterdir())[0]
    good = image.read_bytes()
    image.write_bytes(b"")
    out = tmp_path / "compare"
    assert compare(tiny_camvid, out, "--scale", "0.25") == 2
    assert capsys.readouterr().err.startswith(f"error: {image} ")
    assert not out.exists()
    image.write_bytes(good)
    import utils.apps.compare as comparison

    monkeypatch.setattr(comparison, "finish", lambda config, train, allow_changed: {"refused": "after the claim"})
    with pytest.raises(KeyError):  # past every check and the claim: the report finds no results
        compare(tiny_camvid, out)
    assert json.loads((out / "comparison.json").read_text())["scale"] == 0.125


@pytest.mark.parametrize("flag, words", [("--overwrite", "--overwrite goes with --predict"),
                                         ("--allow-changed-run", "--allow-changed-run goes with --resume")])
def test_flags_a_plain_run_would_ignore_are_refused(tiny_camvid, tmp_path, capsys, flag, words):
    assert main.main([*FAST, "--data-dir", str(tiny_camvid), "--output-dir", str(tmp_path / "run"), flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {words}") and err.count("\n") == 1 and not (tmp_path / "run").exists()
