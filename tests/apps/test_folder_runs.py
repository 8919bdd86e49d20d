"""--dataset folder end to end: train, resume, evaluate and predict on a tiny generated images/masks data set;
the classes file travels in the run, so evaluation and prediction need nothing but the checkpoint."""
import json

import cv2
import numpy as np
import pytest

import main
from tests.data.test_folder_dataset import COLOURS, make_folder

FOLDER = ["--dataset", "folder", "--encoder", "resnet18", "--scale", "1", "--batch-size", "2", "--workers", "0",
          "--patch-size", "4", "--lr", "1e-3"]
CLASSES = {"classes": ["background", "road", "car"], "unlabelled": "background", "train_size": [64, 64],
           "eval_size": [64, 96], "colours": COLOURS, "small_classes": ["car"], "class_weights": [1, 1, 3]}


@pytest.mark.e2e
def test_train_resume_evaluate_and_predict_on_a_folder_data_set(tmp_path, capsys):
    root, run = make_folder(tmp_path / "data", CLASSES, size=(64, 96), colour_masks=True), tmp_path / "run"
    assert main.main([*FOLDER, "--epochs", "1", "--data-dir", str(root), "--output-dir", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["classes"] == ["road", "car", "background"]
    assert config["model"]["dataset_params"] == CLASSES and config["class_weights"] == [1.0, 3.0, 1.0]
    assert main.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert json.loads((run / "metrics.json").read_text())["run"]["epochs"] == 2
    # An edited classes file is other data: resuming on it is refused in one line, before anything is written.
    (root / "classes.json").write_text(json.dumps(CLASSES | {"class_weights": [1, 1, 9]}))
    capsys.readouterr()
    assert main.main(["--resume", str(run), "--epochs", "3"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith(f"error: --resume {run}: the data in {root} is not what the run started on")
    assert "\n" not in message and "--allow-changed-run" in message
    assert json.loads((run / "metrics.json").read_text())["run"]["epochs"] == 2
    # The classes file gone from the data folder: the checkpoint's copy describes the data set.
    (root / "classes.json").unlink()
    capsys.readouterr()
    assert main.main(["--checkpoint", str(run / "best.pt"), "--data-dir", str(root), "--workers", "0"]) == 0
    assert "car" in capsys.readouterr().out
    out = tmp_path / "predicted"
    assert main.main(["--predict", str(root / "test" / "images"), "--checkpoint", str(run / "best.pt"),
                      "--output-dir", str(out)]) == 0
    labels = cv2.imread(str(out / "a_labels.png"), cv2.IMREAD_UNCHANGED)
    colours = cv2.cvtColor(cv2.imread(str(out / "a_mask.png")), cv2.COLOR_BGR2RGB)
    assert labels.shape == (64, 96) and labels.max() <= 2
    # The masks are drawn in the file's colours, at the classes' new places (background last).
    palette = np.array([COLOURS[1], COLOURS[2], COLOURS[0]], np.uint8)
    assert np.array_equal(colours, palette[labels])


@pytest.mark.e2e
def test_a_folder_data_set_with_another_classes_file_is_refused_for_a_checkpoint(tmp_path, capsys):
    root, run = make_folder(tmp_path / "data", CLASSES, size=(64, 96), colour_masks=True), tmp_path / "run"
    assert main.main([*FOLDER, "--epochs", "1", "--data-dir", str(root), "--output-dir", str(run)]) == 0
    bus = CLASSES | {"classes": ["background", "road", "bus"], "small_classes": ["bus"]}
    other = make_folder(tmp_path / "other", bus, size=(64, 96), colour_masks=True)
    capsys.readouterr()
    assert main.main(["--checkpoint", str(run / "best.pt"), "--data-dir", str(other), "--workers", "0"]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: ") and "\n" not in message and "'bus'" in message, message
