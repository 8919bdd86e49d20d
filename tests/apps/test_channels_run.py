"""--in-channels 1 and 4: a run trains, evaluates (--checkpoint) and predicts end to end; the settings' checks."""
import json
import shutil

import cv2
import pytest

import main
import utils.run_folder as run_folder
from tests.conftest import FAST, SAMPLE
from utils.errors import UsageError


def channel_copy(tmp_path, channels):
    """Two frames per split of the bundled sample, grey (1) or RGBA (4)."""
    root = tmp_path / f"camvid{channels}"
    conversion = {1: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGR2BGRA}[channels]
    for split in ("train", "val", "test"):
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
            for file in sorted((SAMPLE / folder).iterdir())[:2]:
                if folder == split:
                    cv2.imwrite(str(root / folder / file.name), cv2.cvtColor(cv2.imread(str(file)), conversion))
                else:
                    shutil.copy(file, root / folder / file.name)
    return root


@pytest.mark.e2e
@pytest.mark.parametrize("channels", [1, 4])
def test_a_run_of_other_channels_trains_evaluates_and_predicts(tmp_path, channels):
    data, run = channel_copy(tmp_path, channels), tmp_path / "run"
    assert main.main([*FAST, "--data-dir", str(data), "--in-channels", str(channels), "--epochs", "1",
                      "--output-dir", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["in_channels"] == channels and len(config["model"]["mean"]) == channels
    assert main.main(["--checkpoint", str(run / "best.pt"), "--data-dir", str(data), "--workers", "0",
                      "--output-dir", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["test"]["miou"] >= 0
    assert main.main(["--predict", str(data / "test"), "--checkpoint", str(run / "best.pt"),
                      "--output-dir", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*_labels.png"))) == 2


def run_config(*argv):
    args, explicit = main.parse_args([*argv, "--encoder", "resnet18", "--scale", "0.25"])
    return main.new_run(args, explicit)


def test_channels_and_normalisation_reach_the_model_spec():
    spec = run_config("--in-channels", "4", "--mean", "0.1,0.2,0.3,0.4").model
    assert spec.in_channels == 4 and spec.mean == (0.1, 0.2, 0.3, 0.4) and spec.std == (0.229, 0.224, 0.225, 0.229)
    assert run_config("--in-channels", "1").model.mean == pytest.approx(((0.485 + 0.456 + 0.406) / 3,))
    assert run_config().model.in_channels == 3


@pytest.mark.parametrize("argv,words", [
    (["--in-channels", "0"], "--in-channels 0 is not valid: it must be at least 1"),
    (["--in-channels", "2"], "--in-channels 2 is not valid with --dataset camvid: its images are read with OpenCV, "
                             "as grey (1), RGB (3) or RGBA (4)"),
    (["--in-channels", "4", "--dataset", "birds"], "--in-channels 4 is not valid with --dataset birds: its training "
                                                   "recipe's colour transforms (CLAHE, hue-saturation) take 1 or 3 "
                                                   "channels"),
    (["--in-channels", "1", "--mean", "0.5,0.5"], "--mean '0.5,0.5' is not valid: give 1 numbers, 0 or more "
                                                  "separated by commas (one per --in-channels 1 channel, on a 0..1 "
                                                  "pixel scale), or auto"),
    (["--std", "0.2,0,0.2"], "--std '0.2,0,0.2' is not valid: give 3 positive numbers separated by commas"),
    (["--tile", "64", "--tile-overlap", "64"], "--tile-overlap 64 is not valid: 0 or more, and less than --tile (64)"),
])
def test_bad_channel_settings_are_one_line(tmp_path, argv, words):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(UsageError) as error:
        run_config("--data-dir", str(data), *argv)
    assert str(error.value).startswith(words)


def test_a_small_tile_without_its_overlap_shares_a_quarter_of_itself(tmp_path):
    """--tile 64 alone is no error for the default overlap's sake (128 >= 64): its windows share 16 pixels; a tile
    that holds the default keeps it, and an overlap given is checked as given (the case above)."""
    data = tmp_path / "data"
    data.mkdir()
    assert run_config("--data-dir", str(data), "--tile", "64").tile_overlap == 16
    assert run_config("--data-dir", str(data), "--tile", "256").tile_overlap == 128
    assert run_config("--data-dir", str(data), "--tile", "64", "--tile-overlap", "8").tile_overlap == 8


def test_a_config_saved_before_its_fields_existed_loads_with_what_those_runs_used(monkeypatch):
    """config.json of a run older than the loss weights (646cac0), the global batch (e3d3ae3), channels and tiles
    (49fa0f1) and the crop sizes (a99930a): it ran with the paper's loss weights, RGB and the encoder's
    normalisation, whole-image prediction and the data set's crops, whatever main.py's constants say now."""
    monkeypatch.setitem(main.DEFAULTS, "ce_weight", 2.0)  # today's default is not what the old run trained with
    saved = run_config().to_dict()
    old = ("ce_weight", "mse_weight", "global_batch_size", "mean", "std", "tile", "tile_overlap", "train_size",
           "eval_size")
    for key in old:
        del saved[key]
    del saved["model"]["in_channels"]
    again = run_folder.saved_config(saved, "config.json")
    assert {key: getattr(again, key) for key in old} == dict(
        ce_weight=5.0, mse_weight=1.0, global_batch_size=None, mean="auto", std="auto", tile=0, tile_overlap=128,
        train_size="", eval_size="")
    assert again.model.in_channels == 3 and again.settings()["in_channels"] == 3
    assert again.settings()["ce_weight"] == 5.0  # what a resume of it layers over main.py's constants


def test_predict_refuses_a_channel_count_the_checkpoint_contradicts(tmp_path, capsys):
    from tests.apps.test_predict import camvid_checkpoint

    path = camvid_checkpoint(tmp_path, in_channels=1)
    assert main.main(["--predict", str(tmp_path), "--checkpoint", str(path), "--in-channels", "3"]) == 2
    assert capsys.readouterr().err.startswith(f"error: --in-channels 3 contradicts {path}, which holds a model with "
                                              f"in_channels=1")
